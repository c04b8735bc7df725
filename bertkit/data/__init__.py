"""Datasets: prepare (Rust), open, inspect, verify, merge, views.

Only numpy is needed to read a dataset; torch is never imported here.
"""

from bertkit.data.dataset import Dataset, Document, open_dataset, verify_dataset
from bertkit.data.format import Manifest, read_manifest, write_manifest
from bertkit.data.merge import merge_datasets

__all__ = [
    "Dataset",
    "Document",
    "Manifest",
    "merge_datasets",
    "open_dataset",
    "read_manifest",
    "verify_dataset",
    "write_manifest",
]
