"""Datasets: prepare (Rust), open, inspect, verify, merge, views."""
