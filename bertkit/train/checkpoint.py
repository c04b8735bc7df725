"""Atomic training checkpoints with exact resume.

A checkpoint is a directory ``RUN/checkpoints/ckpt-000123/`` (123 = optimiser steps done) holding::

    model.pt       the model's state_dict (unwrapped: no DDP/compile prefixes)
    optimizer.pt   the optimiser's state_dict
    trainer.pt     step, scheduler and grad-scaler state, data cursor, RNG states (torch, CUDA, numpy, python)
    config.json    the resolved TrainConfig
    meta.json      arch, model config, step, data cursor (human-readable)
    COMPLETE       written last

It is written as ``ckpt-000123.tmp-<pid>/``, every file fsynced, then renamed into place (and the parent
directory fsynced). :func:`latest` only returns directories with the final name and the ``COMPLETE`` marker, so a
checkpoint interrupted mid-write is never loaded. Every file is read with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bertkit.exceptions import ConfigError, FormatError
from bertkit.train.config import RESUME_MUTABLE, config_diff

__all__ = [
    "CHECKPOINT_DIR",
    "capture_rng",
    "check_compatible",
    "list_checkpoints",
    "latest",
    "load_checkpoint",
    "read_meta",
    "restore_rng",
    "save_checkpoint",
]

CHECKPOINT_DIR = "checkpoints"
COMPLETE = "COMPLETE"
_NAME = re.compile(r"^ckpt-(\d{6,})$")


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def capture_rng() -> dict[str, Any]:
    """The global RNG states (torch CPU and CUDA, numpy, python) as weights_only-loadable values."""
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": [np_state[0], np_state[1].tolist(), int(np_state[2]), int(np_state[3]), float(np_state[4])],
        "python": _to_lists(random.getstate()),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _to_lists(x: Any) -> Any:
    return [_to_lists(v) for v in x] if isinstance(x, (tuple, list)) else x


def _to_tuples(x: Any) -> Any:
    return tuple(_to_tuples(v) for v in x) if isinstance(x, list) else x


def restore_rng(state: Mapping[str, Any]) -> None:
    """Undo :func:`capture_rng`."""
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n[0], np.asarray(n[1], dtype=np.uint32), n[2], n[3], n[4]))
    random.setstate(_to_tuples(state["python"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def checkpoint_name(step: int) -> str:
    return f"ckpt-{step:06d}"


def list_checkpoints(run_dir: str | os.PathLike[str]) -> list[Path]:
    """Complete checkpoints of a run, oldest first (temporary and unmarked directories are ignored)."""
    root = Path(run_dir) / CHECKPOINT_DIR
    if not root.is_dir():
        return []
    found = []
    for p in root.iterdir():
        m = _NAME.match(p.name)
        if m and p.is_dir() and (p / COMPLETE).is_file():
            found.append((int(m.group(1)), p))
    return [p for _, p in sorted(found)]


def latest(run_dir: str | os.PathLike[str]) -> Path | None:
    """The newest complete checkpoint of ``run_dir``, or None."""
    found = list_checkpoints(run_dir)
    return found[-1] if found else None


def save_checkpoint(
    run_dir: str | os.PathLike[str],
    step: int,
    *,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    config: Mapping[str, Any],
    arch: str,
    model_config: Mapping[str, Any],
    data_state: Mapping[str, Any],
    scaler: Any = None,
    keep_last: int | None = None,
    extra: Mapping[str, Any] | None = None,
    model_state: Mapping[str, Any] | None = None,
    optimizer_state: Mapping[str, Any] | None = None,
) -> Path:
    """Write a checkpoint atomically and return its directory; then delete all but the ``keep_last`` newest.

    ``model_state`` / ``optimizer_state`` replace ``model.state_dict()`` / ``optimizer.state_dict()`` when given
    (FSDP gathers full state dicts itself)."""
    root = Path(run_dir) / CHECKPOINT_DIR
    root.mkdir(parents=True, exist_ok=True)
    final = root / checkpoint_name(step)
    tmp = root / f"{final.name}.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    files = {
        "model.pt": dict(model_state) if model_state is not None else model.state_dict(),
        "optimizer.pt": dict(optimizer_state) if optimizer_state is not None else optimizer.state_dict(),
        "trainer.pt": {
            "step": step,
            "scheduler": scheduler.state_dict() if scheduler is not None else None,
            "scaler": scaler.state_dict() if scaler is not None and scaler.is_enabled() else None,
            "data_state": dict(data_state),
            "rng": capture_rng(),
            "extra": dict(extra or {}),
        },
    }
    for name, obj in files.items():
        torch.save(obj, tmp / name)
    meta = {
        "arch": arch,
        "step": step,
        "model_config": dict(model_config),
        "data_state": dict(data_state),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "torch": torch.__version__,
    }
    (tmp / "config.json").write_text(json.dumps(dict(config), indent=2) + "\n", encoding="utf-8")
    (tmp / "meta.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    for p in tmp.iterdir():
        _fsync_file(p)
    (tmp / COMPLETE).write_text(f"{step}\n", encoding="utf-8")
    _fsync_file(tmp / COMPLETE)
    _fsync_dir(tmp)
    if final.exists():  # the same step saved again (e.g. at exit right after a periodic save)
        old = root / f"{final.name}.old-{os.getpid()}"
        final.rename(old)
        shutil.rmtree(old, ignore_errors=True)
    tmp.rename(final)
    _fsync_dir(root)
    if keep_last is not None:
        for stale in list_checkpoints(run_dir)[:-keep_last]:
            shutil.rmtree(stale, ignore_errors=True)
    return final


def read_meta(ckpt: str | os.PathLike[str]) -> dict[str, Any]:
    """meta.json of a checkpoint (a FormatError naming the file when it is missing or broken)."""
    path = Path(ckpt) / "meta.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise FormatError(f"{path}: unreadable checkpoint metadata ({e})") from None


def read_config(ckpt: str | os.PathLike[str]) -> dict[str, Any]:
    path = Path(ckpt) / "config.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise FormatError(f"{path}: unreadable checkpoint config ({e})") from None


def check_compatible(
    ckpt: str | os.PathLike[str],
    config: Mapping[str, Any],
    arch: str,
    model_config: Mapping[str, Any] | None = None,
    world_size: int | None = None,
) -> None:
    """ConfigError unless the checkpoint was made by the same architecture, model config and run config (keys in
    ``RESUME_MUTABLE`` may differ) and, when ``world_size`` is given, the same number of ranks (the data cursor
    counts global batches of ``batch_size · world_size`` samples, and masking is keyed by rank); the message lists
    every differing key."""
    meta = read_meta(ckpt)
    if meta.get("arch") != arch:
        raise ConfigError(f"{ckpt}: checkpoint of architecture {meta.get('arch')!r}, but this run is {arch!r}")
    saved_world = meta.get("data_state", {}).get("world_size")
    if world_size is not None and saved_world is not None and saved_world != world_size:
        raise ConfigError(
            f"{ckpt}: written by a run of {saved_world} rank(s), resumed with {world_size}: the data cursor and the "
            f"masking keys depend on the number of ranks; resume with {saved_world} rank(s) (torchrun "
            f"--nproc-per-node / --nnodes), or start a new run directory"
        )
    diff = config_diff(read_config(ckpt), config, RESUME_MUTABLE)
    if model_config is not None:
        saved_model = meta.get("model_config", {})
        diff += [f"model config {line}" for line in config_diff(saved_model, model_config, frozenset())]
    if diff:
        raise ConfigError(
            f"{ckpt}: cannot resume with a different config; differing keys:\n  "
            + "\n  ".join(diff)
            + "\n(start a new run directory, or resume with the saved config)"
        )


def _load(path: Path, map_location: Any) -> Any:
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise FormatError(f"{path}: missing from the checkpoint") from None
    except Exception as e:  # noqa: BLE001 - any unreadable file is a format error naming it
        raise FormatError(f"{path}: unreadable checkpoint file ({type(e).__name__}: {e})") from None


def load_checkpoint(
    ckpt: str | os.PathLike[str],
    *,
    model: torch.nn.Module | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any = None,
    scaler: Any = None,
    map_location: Any = "cpu",
    restore_rng_state: bool = True,
) -> dict[str, Any]:
    """Load the given parts in place and return the trainer state (``step``, ``data_state``, ``extra``)."""
    ckpt = Path(ckpt)
    if not (ckpt / COMPLETE).is_file():
        raise FormatError(f"{ckpt}: not a complete checkpoint (no {COMPLETE} marker)")
    state = _load(ckpt / "trainer.pt", map_location="cpu")
    if model is not None:
        model.load_state_dict(_load(ckpt / "model.pt", map_location))
    if optimizer is not None:
        optimizer.load_state_dict(_load(ckpt / "optimizer.pt", map_location))
    if scheduler is not None and state.get("scheduler") is not None:
        scheduler.load_state_dict(state["scheduler"])
    if scaler is not None and state.get("scaler") is not None:
        scaler.load_state_dict(state["scaler"])
    if restore_rng_state:
        restore_rng(state["rng"])
    return state
