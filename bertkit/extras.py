"""Which optional extra of the ``bertkit`` package provides a third-party module, for one-line install hints."""

from __future__ import annotations

__all__ = ["EXTRA_OF", "install_hint"]

EXTRA_OF: dict[str, str] = {
    "torch": "train",
    "safetensors": "train",
    "matplotlib": "train",
    "tensorboard": "train",
    "transformers": "hf",
    "pyarrow": "eval",
    "sentence_transformers": "nextlevel",
    "ray": "ray",
}
"""Top-level module name → the extra (``pip install "bertkit[EXTRA]"``) that installs it (pyproject.toml)."""


def install_hint(error: ImportError) -> str | None:
    """``torch is not installed; this needs the train extra: pip install "bertkit[train]"`` for a missing module
    that an extra provides; None for any other import error (a bug, not a missing extra)."""
    name = (getattr(error, "name", None) or "").split(".")[0]
    extra = EXTRA_OF.get(name)
    if extra is None:
        return None
    return f'{name} is not installed; this needs the {extra} extra: pip install "bertkit[{extra}]"'
