"""Triton kernels for `bertkit.ops`. Importing this package never imports triton itself.

Kernels run on CUDA, or on the CPU under ``TRITON_INTERPRET=1`` (fp32 only; set the variable before
triton is first imported). `triton_importable()` says whether the `triton` package can be imported.

Every launcher goes through `launch` and asks `planned_sms` what it plans for, so that `recording(sms)` can collect
the exact launches (kernel, grid, arguments, block sizes, num_warps, num_stages) the launchers would make on a CUDA
device with that many SMs, from CPU tensors of the same shapes, strides and dtypes, without running anything.
``scripts/aot_kernels.py`` compiles those launches ahead of time for real targets (sm_80, sm_90) on a machine
without a GPU.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Launch", "Recorder", "launch", "planned_sms", "recording", "triton_importable", "triton_usable"]


@functools.cache
def triton_importable() -> bool:
    """True when the `triton` package is installed and imports."""
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


def triton_usable() -> bool:
    """True when kernels can run here: triton imports and CUDA is available or TRITON_INTERPRET=1."""
    if not triton_importable():
        return False
    if os.environ.get("TRITON_INTERPRET") == "1":
        return True
    import torch

    return torch.cuda.is_available()


@dataclass(frozen=True)
class Launch:
    """One kernel launch as a launcher would make it: ``kernel[grid](*args, **kwargs)``."""

    kernel: Any
    grid: tuple[int, ...]
    args: tuple[Any, ...]
    kwargs: dict[str, Any]


@dataclass
class Recorder:
    """The launches made inside `recording`, planned for a CUDA device with `sms` streaming multiprocessors."""

    sms: int
    launches: list[Launch] = field(default_factory=list)


_RECORDER: contextvars.ContextVar[Recorder | None] = contextvars.ContextVar("bertkit_triton_recorder", default=None)


@contextlib.contextmanager
def recording(sms: int) -> Iterator[Recorder]:
    """Within the block, launchers accept CPU tensors, plan every launch for a CUDA device with `sms` SMs (block
    sizes, warps, stages, vocabulary splits: what they choose on such a device) and record it instead of running it;
    the outputs they return are uninitialised. For ahead-of-time compilation (``scripts/aot_kernels.py``)."""
    if sms < 1:
        raise ValueError(f"sms must be positive; got {sms}")
    recorder = Recorder(sms)
    token = _RECORDER.set(recorder)
    try:
        yield recorder
    finally:
        _RECORDER.reset(token)


def interpreting() -> bool:
    """True when the kernels run in Triton's interpreter (``TRITON_INTERPRET=1``) and no recording is active."""
    return _RECORDER.get() is None and os.environ.get("TRITON_INTERPRET") == "1"


def planned_sms(tensor: Any) -> int | None:
    """SMs of the CUDA device the launchers plan for: the recording's target inside `recording`, the tensor's device
    when it is on CUDA; None under the interpreter or for a CPU tensor (the launchers then pick interpreter tiles)."""
    recorder = _RECORDER.get()
    if recorder is not None:
        return recorder.sms
    if interpreting() or not tensor.is_cuda:
        return None
    import torch

    return torch.cuda.get_device_properties(tensor.device).multi_processor_count


def runnable_on(tensor: Any) -> bool:
    """Whether a launcher may take this tensor: on CUDA, under the interpreter, or while recording."""
    return tensor.is_cuda or _RECORDER.get() is not None or os.environ.get("TRITON_INTERPRET") == "1"


def launch(kernel: Any, grid: tuple[int, ...], *args: Any, **kwargs: Any) -> None:
    """``kernel[grid](*args, **kwargs)``, or, inside `recording`, the launch recorded instead of run."""
    recorder = _RECORDER.get()
    if recorder is None:
        kernel[grid](*args, **kwargs)
    else:
        recorder.launches.append(Launch(kernel, tuple(grid), tuple(args), dict(kwargs)))
