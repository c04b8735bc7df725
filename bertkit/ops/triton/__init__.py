"""Triton kernels for `bertkit.ops`. Importing this package never imports triton itself.

Kernels run on CUDA, or on the CPU under ``TRITON_INTERPRET=1`` (fp32 only; set the variable before
triton is first imported). `triton_importable()` says whether the `triton` package can be imported.
"""

from __future__ import annotations

import functools
import os

__all__ = ["triton_importable", "triton_usable"]


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
