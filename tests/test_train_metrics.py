"""metrics.jsonl records, MFU arithmetic and the GPU peak table."""

from __future__ import annotations

import json

import pytest

from bertkit.train.metrics import MetricsWriter, mfu, peak_flops, read_metrics


def test_peak_table_matches_device_names():
    assert peak_flops("NVIDIA H100 80GB HBM3") == pytest.approx(989.4e12)
    assert peak_flops("NVIDIA H100 PCIe") == pytest.approx(756e12)
    assert peak_flops("NVIDIA A100-SXM4-80GB") == pytest.approx(312e12)
    assert peak_flops("NVIDIA GeForce GTX 1080") is None and peak_flops(None) is None


def test_mfu_reference_anchor():
    # docs/ANCHORS.md: BERT-base S128 sparse 15 % = 545.4 MFLOP/token; 726k tok/s on an H100 SXM ≈ 40 % MFU
    assert mfu(726_000, 545.4e6, 989.4e12) == pytest.approx(0.40, abs=0.002)
    assert mfu(726_000, 545.4e6, None) is None


def test_writer_appends_json_lines_and_disabled_writer_writes_nothing(tmp_path):
    w = MetricsWriter(tmp_path, tensorboard=False)
    w.write("train", 1, {"loss": 2.5, "lr": 1e-3, "mfu": None})
    w.write("nonfinite", 2, {"loss": float("nan")})
    w.close()
    recs = read_metrics(tmp_path / "metrics.jsonl")
    assert recs[0] == {"kind": "train", "step": 1, "loss": 2.5, "lr": 1e-3}  # None values are left out
    assert recs[1]["loss"] == "nan"  # valid JSON, still readable
    for line in (tmp_path / "metrics.jsonl").read_text().splitlines():
        json.loads(line)
    other = tmp_path / "rank1"
    other.mkdir()
    MetricsWriter(other, enabled=False).write("train", 1, {"loss": 1.0})
    assert not (other / "metrics.jsonl").exists()
