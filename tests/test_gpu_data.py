"""scripts/gpu_data.py: the carry folder for the GPU checks (MiniLM as float16, news, vocabulary)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from helpers import load_script
from nextlevel_fixtures import write_tiny_encoder

gd = load_script("gpu_data")


def _data(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    write_tiny_encoder(data / "minilm")
    (data / "news.jsonl").write_text('{"text": "one article."}\n', encoding="utf-8")
    shutil.copy(data / "minilm" / "vocab.txt", data / "vocab.txt")
    (data / "tokenizer.json").write_text("{}", encoding="utf-8")
    return data


def test_build_stores_float16_weights_that_encode_like_the_original(tmp_path):
    import torch
    from safetensors.torch import load_file

    from bertkit.encode import load_encoder

    data = _data(tmp_path)
    out = tmp_path / "gpu" / "data"
    size = gd.build(data, out)
    assert size == sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    for f in ("news.jsonl", "vocab.txt", "tokenizer.json", "minilm/modules.json", "minilm/1_Pooling/config.json"):
        assert (out / f).read_bytes() == (data / f).read_bytes()
    original, half = load_file(data / "minilm" / "model.safetensors"), load_file(out / "minilm" / "model.safetensors")
    assert half.keys() == original.keys()
    for k, v in half.items():
        assert v.dtype == (torch.float16 if original[k].is_floating_point() else original[k].dtype)
        assert np.allclose(v.float().numpy(), original[k].float().numpy(), rtol=1e-3, atol=1e-4)
    ids = [np.asarray([2, 7, 9, 11, 3]), np.asarray([2, 5, 3])]
    a = load_encoder(data / "minilm", device="cpu").encode_ids(ids)
    b = load_encoder(out / "minilm", device="cpu").encode_ids(ids)
    assert b.dtype == np.float32
    assert np.min(np.sum(a * b, axis=1)) > 0.999  # both normalised: cosine
    assert not list(out.parent.glob("*.tmp-build"))


def test_missing_input_names_it_and_leaves_the_old_folder(tmp_path):
    data = _data(tmp_path)
    out = tmp_path / "gpu" / "data"
    gd.build(data, out)
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    (data / "news.jsonl").unlink()
    with pytest.raises(SystemExit, match=r"news\.jsonl.*fetch_data"):
        gd.build(data, out)
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before


def test_a_folder_too_big_for_the_carry_is_refused_and_removed(tmp_path, monkeypatch):
    data = _data(tmp_path)
    out = tmp_path / "gpu" / "data"
    monkeypatch.setattr(gd, "CARRY_LIMIT", 4096)
    with pytest.raises(SystemExit, match=r"would not fit the 64 MiB carry"):
        gd.build(data, out)
    assert not out.exists() and not list(out.parent.iterdir())
