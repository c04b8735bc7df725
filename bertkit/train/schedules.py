"""Learning-rate schedules: a warmup followed by linear / cosine / one-cycle / constant, as LambdaLR factors.

``lr_factor(step)`` is the multiplier of the peak learning rate for the update made at optimiser step ``step``
(0-based: the first update uses ``lr_factor(0)``; this is ``torch.optim.lr_scheduler.LambdaLR``'s convention, where
``scheduler.step()`` follows ``optimizer.step()``).

- Warmup (``warmup`` steps, linear/cosine/constant): ``(step + 1) / warmup``, so the first update is not wasted at
  lr 0 and step ``warmup - 1`` reaches the peak.
- After warmup, with ``progress = (step - warmup) / (max_steps - warmup)`` clamped to [0, 1] and ``m`` the
  ``min_lr_ratio``: linear ``1 - (1 - m)·progress``; cosine ``m + (1 - m)·(1 + cos(π·progress))/2``; constant 1.
  ``step >= max_steps`` gives the final value ``m`` (linear, cosine).
- one-cycle (Cramming's triangle made smooth, torch's OneCycleLR shape): a cosine rise from ``m`` to 1 over the
  warmup (half the run when ``warmup`` is 0), then a cosine fall from 1 to ``m`` at ``max_steps``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

__all__ = ["lr_factor", "make_lr_lambda"]


def lr_factor(step: int, *, schedule: str, warmup: int, max_steps: int, min_lr_ratio: float = 0.0) -> float:
    """The learning-rate multiplier for the update at optimiser step ``step`` (0-based)."""
    m = min_lr_ratio
    if schedule == "one-cycle":
        up = warmup if warmup > 0 else max_steps // 2
        if step < up:
            t = step / up
            return m + (1.0 - m) * (1.0 - math.cos(math.pi * t)) / 2.0
        t = min(1.0, (step - up) / max(1, max_steps - up))
        return m + (1.0 - m) * (1.0 + math.cos(math.pi * t)) / 2.0
    if step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    progress = min(1.0, max(0.0, (step - warmup) / max(1, max_steps - warmup)))
    if schedule == "linear":
        return 1.0 - (1.0 - m) * progress
    if schedule == "cosine":
        return m + (1.0 - m) * (1.0 + math.cos(math.pi * progress)) / 2.0
    raise ValueError(f"unknown schedule {schedule!r}")


def make_lr_lambda(*, schedule: str, warmup: int, max_steps: int, min_lr_ratio: float = 0.0) -> Callable[[int], float]:
    """``lr_factor`` bound to one run's settings, for ``torch.optim.lr_scheduler.LambdaLR``."""
    if schedule not in ("linear", "cosine", "one-cycle", "constant"):
        raise ValueError(f"unknown schedule {schedule!r}")

    def factor(step: int) -> float:
        return lr_factor(step, schedule=schedule, warmup=warmup, max_steps=max_steps, min_lr_ratio=min_lr_ratio)

    return factor
