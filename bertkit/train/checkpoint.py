"""Atomic, self-checking training checkpoints with exact resume.

A checkpoint is a directory ``RUN/checkpoints/ckpt-000123/`` (123 = optimiser steps done) holding::

    model.safetensors  the model's state_dict (unwrapped: no DDP/compile prefixes; tied tensors stored once)
    optimizer.pt       the optimiser's state_dict
    trainer.pt         step, scheduler and grad-scaler state, data cursor, RNG states (torch, CUDA, numpy, python)
    config.json        the resolved TrainConfig
    meta.json          arch, model config, step, data cursor (human-readable) and the size + xxh3-64 of every file
    COMPLETE           written last

It is written as ``ckpt-000123.tmp-<pid>/``, every file fsynced, then renamed into place (and the parent
directory fsynced). :func:`latest` only returns directories with the final name and the ``COMPLETE`` marker, so a
checkpoint interrupted mid-write is never loaded. Every read checks the file against the checksum in meta.json
(a flipped bit is a FormatError naming the file, never a silently different model), model weights must be finite,
and the trainer state is validated before any RNG is touched; :func:`resumable` picks the newest checkpoint that
passes all of it. Torch files are read with ``torch.load(weights_only=True)``. Runs written before the safetensors
format (``model.pt``, no checksums in meta.json) still load: :func:`load_model_state` is the one reader of a
checkpoint's weights.
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
    "MODEL_FILE",
    "capture_rng",
    "check_checkpoint",
    "check_compatible",
    "file_digest",
    "latest",
    "list_checkpoints",
    "load_checkpoint",
    "load_model_state",
    "load_optimizer_state",
    "model_file",
    "quarantine",
    "read_meta",
    "restore_rng",
    "resumable",
    "save_checkpoint",
    "verify_files",
]

CHECKPOINT_DIR = "checkpoints"
COMPLETE = "COMPLETE"
MODEL_FILE = "model.safetensors"
LEGACY_MODEL_FILE = "model.pt"  # runs written before the safetensors format
_NAME = re.compile(r"^ckpt-(\d{6,})$")
_ALIASES = "bertkit.aliases"  # safetensors metadata: JSON {key: key it is tied to}


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


def _checked_rng(state: Any) -> tuple[torch.Tensor, tuple[Any, ...], tuple[Any, ...], Any]:
    """The RNG states of :func:`capture_rng` checked for type and range (FormatError otherwise), so that a corrupt
    trainer state is refused before any generator is touched."""
    if not isinstance(state, Mapping):
        raise FormatError(f"corrupt RNG state (a {type(state).__name__}, not a table)")
    try:
        t = state["torch"]
        if not isinstance(t, torch.Tensor) or t.dtype != torch.uint8 or t.dim() != 1:
            raise ValueError("torch state is not a 1-D uint8 tensor")
        n = state["numpy"]
        if not isinstance(n, (list, tuple)) or len(n) != 5 or n[0] != "MT19937":
            raise ValueError("numpy state is not an MT19937 state")
        key = np.asarray(n[1], dtype=np.int64)
        if key.shape != (624,) or key.min() < 0 or key.max() >= 2**32:
            raise ValueError("numpy key is not 624 32-bit words")
        pos, has_gauss, gauss = int(n[2]), int(n[3]), float(n[4])
        if not 0 <= pos <= 624 or has_gauss not in (0, 1):
            raise ValueError(f"numpy position {pos} / has_gauss {has_gauss} out of range")
        py = _to_tuples(state["python"])
        if not (isinstance(py, tuple) and len(py) == 3 and isinstance(py[1], tuple) and len(py[1]) == 625):
            raise ValueError("python state is not a Mersenne Twister state")
        if not all(isinstance(v, int) and 0 <= v < 2**32 for v in py[1]):
            raise ValueError("python state words out of range")
        cuda = state.get("cuda")
    except (KeyError, IndexError, TypeError, ValueError, OverflowError) as e:
        raise FormatError(f"corrupt RNG state ({type(e).__name__}: {e})") from None
    return t, ("MT19937", key.astype(np.uint32), pos, has_gauss, gauss), py, cuda


def restore_rng(state: Mapping[str, Any]) -> None:
    """Undo :func:`capture_rng` (FormatError, with no generator changed, when ``state`` is not a valid one)."""
    t, numpy_state, python_state, cuda = _checked_rng(state)
    try:
        torch.set_rng_state(t)
        np.random.set_state(numpy_state)
        random.setstate(python_state)
        if cuda is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(cuda)
    except (RuntimeError, TypeError, ValueError, OverflowError) as e:
        raise FormatError(f"corrupt RNG state ({type(e).__name__}: {e})") from None


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
    save_model_state(dict(model_state) if model_state is not None else model.state_dict(), tmp / MODEL_FILE)
    torch_files = {
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
    for name, obj in torch_files.items():
        torch.save(obj, tmp / name)
    (tmp / "config.json").write_text(json.dumps(dict(config), indent=2) + "\n", encoding="utf-8")
    meta = {
        "arch": arch,
        "step": step,
        "model_config": dict(model_config),
        "data_state": dict(data_state),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "torch": torch.__version__,
        # checked on every read: a checkpoint proves it is the one that was written
        "files": {name: _describe_file(tmp / name) for name in (MODEL_FILE, *torch_files, "config.json")},
    }
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


def file_digest(path: str | os.PathLike[str]) -> str:
    """xxh3-64 of a file's bytes, 16 lower-case hex digits (the checksum datasets use too)."""
    import xxhash

    h = xxhash.xxh3_64()
    buf = bytearray(1 << 22)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(buf):
            h.update(view[:n])
    return h.hexdigest()


def _describe_file(path: Path) -> dict[str, Any]:
    return {"size": path.stat().st_size, "xxh3": file_digest(path)}


def verify_files(ckpt: str | os.PathLike[str], names: list[str] | None = None) -> list[str]:
    """Problems of a checkpoint's files against the sizes and checksums recorded in its meta.json (all of them, or
    only ``names``); empty when they match. A checkpoint written before checksums (no ``files`` in meta.json) has
    nothing to check against and passes."""
    ckpt = Path(ckpt)
    if not (ckpt / COMPLETE).is_file():
        return [f"{ckpt}: not a complete checkpoint (no {COMPLETE} marker)"]
    try:
        recorded = read_meta(ckpt).get("files")
    except FormatError as e:
        return [str(e)]
    if recorded is None:
        return []
    if not isinstance(recorded, Mapping):
        return [f"{ckpt / 'meta.json'}: corrupt file table"]
    problems = []
    for name in names if names is not None else list(recorded):
        want, path = recorded.get(name), ckpt / name
        if not isinstance(want, Mapping):
            continue  # not recorded (e.g. model.pt of an old run); the loaders still check what they read
        try:
            size = path.stat().st_size
            if size != want.get("size"):
                problems.append(f"{path}: {size:,} bytes, the checkpoint recorded {want.get('size')} (truncated?)")
            elif (digest := file_digest(path)) != want.get("xxh3"):
                problems.append(f"{path}: checksum mismatch (recorded xxh3 {want.get('xxh3')}, found {digest})")
        except FileNotFoundError:
            problems.append(f"{path}: missing from the checkpoint")
        except OSError as e:
            problems.append(f"{path}: unreadable ({e.strerror or e})")
    return problems


def _verified(path: Path) -> Path:
    """``path`` after checking it against its checkpoint's recorded checksum (FormatError naming it otherwise)."""
    problems = verify_files(path.parent, [path.name])
    if problems:
        raise FormatError(f"corrupt checkpoint: {problems[0]}")
    return path


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
        return torch.load(_verified(path), map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise FormatError(f"{path}: missing from the checkpoint") from None
    except FormatError:
        raise
    except Exception as e:  # noqa: BLE001 - any unreadable file is a format error naming it
        raise FormatError(f"{path}: unreadable checkpoint file ({type(e).__name__}: {e})") from None


# ------------------------------------------------------------------------------------------------ model weights


def save_model_state(state: Mapping[str, Any], path: str | os.PathLike[str]) -> None:
    """Write a model state dict as safetensors. Tensors tied to another key (BERT's decoder and word embeddings)
    are stored once and recorded as aliases in the file's metadata; :func:`read_model_file` restores them."""
    from safetensors.torch import save_file

    tensors: dict[str, torch.Tensor] = {}
    aliases: dict[str, str] = {}
    seen: dict[tuple[Any, ...], str] = {}
    storages: set[int] = set()
    for key, value in state.items():
        if not isinstance(value, torch.Tensor):
            raise FormatError(f"{path}: model state {key!r} is a {type(value).__name__}, not a tensor")
        t = value.detach()
        ptr = t.untyped_storage().data_ptr() if t.numel() else 0
        ident = (t.device, ptr, t.storage_offset(), tuple(t.shape), tuple(t.stride()), t.dtype)
        if ptr and ident in seen:
            aliases[key] = seen[ident]
            continue
        if ptr and ptr in storages or not t.is_contiguous():  # a view of another tensor's storage: store a copy
            t = t.clone(memory_format=torch.contiguous_format)
        elif ptr:
            seen[ident] = key
            storages.add(ptr)
        tensors[key] = t.cpu()
    save_file(tensors, str(path), metadata={"format": "pt", _ALIASES: json.dumps(aliases)})


def model_file(ckpt: str | os.PathLike[str]) -> Path:
    """The weights file of a checkpoint: ``model.safetensors``, or ``model.pt`` of a run written before."""
    ckpt = Path(ckpt)
    for name in (MODEL_FILE, LEGACY_MODEL_FILE):
        if (ckpt / name).is_file():
            return ckpt / name
    raise FormatError(f"{ckpt}: no model weights ({MODEL_FILE} or {LEGACY_MODEL_FILE}) in the checkpoint")


def read_model_file(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """The state dict in a weights file (safetensors with bertkit's tied-key aliases, or a torch file), on the CPU,
    unchecked: :func:`load_model_state` is the checked reader of a checkpoint."""
    path = Path(path)
    if path.suffix != ".safetensors":
        state = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(state, Mapping):
            raise FormatError(f"{path}: not a state dict (a {type(state).__name__})")
        return dict(state)
    from safetensors import safe_open

    with safe_open(str(path), framework="pt", device="cpu") as f:
        aliases = json.loads((f.metadata() or {}).get(_ALIASES, "{}"))
        state = {key: f.get_tensor(key) for key in f.keys()}  # noqa: SIM118 - safe_open has no iteration
    for key, source in aliases.items():
        state[key] = state[source]
    return state


def _check_finite(state: Mapping[str, torch.Tensor], path: Path) -> None:
    for key, t in state.items():
        if not t.is_floating_point() or t.numel() == 0:
            continue
        if bool(torch.isfinite(t.sum())):  # a finite sum has only finite terms (fast path; an overflow is rechecked)
            continue
        if not bool(torch.isfinite(t).all()):
            bad = int((~torch.isfinite(t)).sum())
            raise FormatError(
                f"corrupt checkpoint: {path}: tensor {key} holds {bad:,} NaN/inf value(s) (weights of a healthy run "
                "are finite: the file was damaged, or saved from a diverged model)"
            )


def load_model_state(ckpt: str | os.PathLike[str], *, verify: bool = True) -> dict[str, torch.Tensor]:
    """The model state dict of a checkpoint directory (``model.safetensors``, or ``model.pt`` of an older run), on
    the CPU. With ``verify`` (the default) the file must match the checksum in meta.json and every float tensor must
    be finite; a failure is a FormatError naming the file. Every reader of a run's weights goes through this."""
    path = model_file(ckpt)
    try:
        state = read_model_file(_verified(path) if verify else path)
    except FormatError:
        raise
    except Exception as e:  # noqa: BLE001 - SafetensorError, UnpicklingError, RuntimeError, ...: a damaged file
        raise FormatError(f"{path}: unreadable checkpoint file ({type(e).__name__}: {e})") from None
    if verify:
        _check_finite(state, path)
    return state


def load_optimizer_state(ckpt: str | os.PathLike[str], map_location: Any = "cpu") -> dict[str, Any]:
    """The optimiser state dict of a checkpoint, checked against its recorded checksum."""
    path = Path(ckpt) / "optimizer.pt"
    state = _load(path, map_location)
    if not isinstance(state, Mapping):
        raise FormatError(f"{path}: not an optimiser state dict (a {type(state).__name__})")
    return dict(state)


def _load_trainer_state(ckpt: Path) -> dict[str, Any]:
    """trainer.pt, checked for its structure (step, data cursor, RNG states) before anything uses it."""
    path = ckpt / "trainer.pt"
    state = _load(path, map_location="cpu")
    try:
        if not isinstance(state, Mapping):
            raise ValueError(f"a {type(state).__name__}, not a table")
        step = state["step"]
        if not isinstance(step, int) or step < 0:
            raise ValueError(f"step {step!r}")
        ds = state["data_state"]
        if not isinstance(ds, Mapping) or not all(isinstance(ds.get(k), int) and ds[k] >= 0 for k in _CURSOR):
            raise ValueError(f"data cursor {ds!r}")
        _checked_rng(state["rng"])
    except (KeyError, ValueError, FormatError) as e:
        raise FormatError(f"corrupt checkpoint: {path}: bad trainer state ({e})") from None
    return dict(state)


_CURSOR = ("phase", "epoch", "cursor")


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
    """Load the given parts in place and return the trainer state (``step``, ``data_state``, ``extra``).

    Every file read is checked first (checksum, finite weights, trainer-state structure): a FormatError naming the
    file, with nothing loaded into ``model`` / ``optimizer`` and no RNG changed. A state dict that does not fit
    ``model`` raises the RuntimeError of ``load_state_dict``."""
    ckpt = Path(ckpt)
    if not (ckpt / COMPLETE).is_file():
        raise FormatError(f"{ckpt}: not a complete checkpoint (no {COMPLETE} marker)")
    state = _load_trainer_state(ckpt)
    model_state = load_model_state(ckpt) if model is not None else None
    optimizer_state = load_optimizer_state(ckpt, map_location) if optimizer is not None else None
    if model is not None:
        model.load_state_dict(model_state)
    if optimizer is not None:
        optimizer.load_state_dict(optimizer_state)
    if scheduler is not None and state.get("scheduler") is not None:
        scheduler.load_state_dict(state["scheduler"])
    if scaler is not None and state.get("scaler") is not None:
        scaler.load_state_dict(state["scaler"])
    if restore_rng_state:
        restore_rng(state["rng"])
    return state


# ------------------------------------------------------------------------------------------------ resuming


def check_checkpoint(ckpt: str | os.PathLike[str]) -> list[str]:
    """Everything a resume reads, checked without loading it into anything: the marker, meta.json, every file's
    checksum, the trainer state (step matching the name, cursor, RNG states) and finite model weights. Empty when
    the checkpoint is intact."""
    ckpt = Path(ckpt)
    problems = verify_files(ckpt)
    if problems:
        return problems
    try:
        meta = read_meta(ckpt)
        read_config(ckpt)
        state = _load_trainer_state(ckpt)
        m = _NAME.match(ckpt.name)
        if m and int(m.group(1)) != state["step"]:
            return [f"{ckpt / 'trainer.pt'}: step {state['step']}, but the checkpoint is named for {int(m.group(1))}"]
        if meta.get("step") not in (None, state["step"]):
            return [f"{ckpt / 'meta.json'}: step {meta.get('step')}, trainer.pt says {state['step']}"]
        load_model_state(ckpt)
        if not (ckpt / "optimizer.pt").is_file():
            return [f"{ckpt / 'optimizer.pt'}: missing from the checkpoint"]
        if "files" not in meta:  # an older checkpoint without checksums: at least the optimiser state must load
            load_optimizer_state(ckpt)
    except FormatError as e:
        return [str(e).removeprefix("corrupt checkpoint: ")]
    return []


def resumable(run_dir: str | os.PathLike[str]) -> tuple[Path | None, list[tuple[Path, str]]]:
    """The newest intact checkpoint of a run (:func:`check_checkpoint`) and the newer ones that failed, each with
    its first problem. A run whose checkpoints all fail is a FormatError listing them (no checkpoint: ``None``)."""
    found = list_checkpoints(run_dir)
    failed: list[tuple[Path, str]] = []
    for ckpt in reversed(found):
        problems = check_checkpoint(ckpt)
        if not problems:
            return ckpt, failed
        failed.append((ckpt, problems[0]))
    if failed:
        lines = "\n  ".join(f"{c.name}: {why}" for c, why in failed)
        raise FormatError(
            f"{run_dir}: cannot resume: no intact checkpoint (every one fails its check):\n  {lines}\n"
            "(restore the files from a backup, or start a new run directory)"
        )
    return None, failed


def quarantine(ckpt: str | os.PathLike[str]) -> Path:
    """Rename a failed checkpoint to ``<name>.corrupt`` (kept for inspection, ignored by :func:`latest` and by
    ``keep_last``, so a resumed run can write that step again); returns the new path."""
    ckpt = Path(ckpt)
    target = ckpt.with_name(f"{ckpt.name}.corrupt")
    n = 1
    while target.exists():
        n += 1
        target = ckpt.with_name(f"{ckpt.name}.corrupt-{n}")
    ckpt.rename(target)
    _fsync_dir(ckpt.parent)
    return target
