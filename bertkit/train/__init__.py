"""Pretraining: run config, optimisers, schedules, checkpoints and the shared trainer.

``from bertkit.train import TrainConfig, train``. Importing this package (or ``bertkit.train.config``) does not import
torch; ``train`` and the other torch-backed names load on first use.
"""

from __future__ import annotations

from typing import Any

from bertkit.train.config import Phase, TrainConfig

__all__ = ["NonFiniteLossError", "Phase", "TrainConfig", "TrainSummary", "latest", "train"]

_LAZY = {
    "train": "bertkit.train.trainer",
    "TrainSummary": "bertkit.train.trainer",
    "NonFiniteLossError": "bertkit.train.trainer",
    "latest": "bertkit.train.checkpoint",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'bertkit.train' has no attribute {name!r}")
