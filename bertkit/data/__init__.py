"""Datasets: prepare (Rust), open, inspect, verify, merge, views.

Only numpy is needed to read a dataset; torch is never imported here. Names are imported lazily so
that `bertkit.data.prepare` (pure Rust work) does not load numpy: numpy's OpenBLAS threads would
compete with the prepare workers for cores.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "Dataset": "bertkit.data.dataset",
    "Document": "bertkit.data.dataset",
    "open_dataset": "bertkit.data.dataset",
    "verify_dataset": "bertkit.data.dataset",
    "Manifest": "bertkit.data.format",
    "read_manifest": "bertkit.data.format",
    "write_manifest": "bertkit.data.format",
    "merge_datasets": "bertkit.data.merge",
}

__all__ = [  # noqa: F822 (resolved lazily by __getattr__)
    "Dataset",
    "Document",
    "Manifest",
    "merge_datasets",
    "open_dataset",
    "read_manifest",
    "verify_dataset",
    "write_manifest",
]

if TYPE_CHECKING:
    from bertkit.data.dataset import Dataset, Document, open_dataset, verify_dataset
    from bertkit.data.format import Manifest, read_manifest, write_manifest
    from bertkit.data.merge import merge_datasets


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'bertkit.data' has no attribute {name!r}")
