"""Test helpers that damage or rewrite checkpoint files the way faults and old bertkit versions do."""

from __future__ import annotations

import json
import shutil
from pathlib import Path


def flip_byte(path: Path, where: float = 0.5) -> None:
    """Flip every bit of one byte at the relative position ``where`` of the file (a disk or transfer fault)."""
    data = bytearray(path.read_bytes())
    i = min(len(data) - 1, int(len(data) * where))
    data[i] ^= 0xFF
    path.write_bytes(bytes(data))


def rerecord(ckpt: Path, name: str) -> None:
    """Record the current size and checksum of ``ckpt/name`` in meta.json, as if it had been written so (a file
    that is intact but holds something else)."""
    from bertkit.train import checkpoint as ck

    meta_path = ckpt / "meta.json"
    meta = json.loads(meta_path.read_text())
    meta.setdefault("files", {})[name] = {"size": (ckpt / name).stat().st_size, "xxh3": ck.file_digest(ckpt / name)}
    meta_path.write_text(json.dumps(meta, indent=2) + "\n")


def replace_weights(source_ckpt: Path, ckpt: Path) -> None:
    """Put the weights of ``source_ckpt`` into ``ckpt``, recorded as its own (weights of another architecture)."""
    from bertkit.train import checkpoint as ck

    src = ck.model_file(source_ckpt)
    shutil.copy(src, ckpt / src.name)
    rerecord(ckpt, src.name)


def make_legacy(ckpt: Path) -> None:
    """Rewrite a checkpoint the way bertkit wrote them before safetensors and checksums: the weights in
    ``model.pt`` (a torch state dict, tied tensors shared), no ``files`` table in meta.json."""
    import torch

    from bertkit.train import checkpoint as ck

    state = ck.load_model_state(ckpt)
    torch.save(state, ckpt / "model.pt")
    (ckpt / ck.MODEL_FILE).unlink()
    meta_path = ckpt / "meta.json"
    meta = json.loads(meta_path.read_text())
    meta.pop("files", None)
    meta_path.write_text(json.dumps(meta, indent=2) + "\n")
