"""The names of bertkit's architectures and their presets, without importing torch.

``bertkit.models.ARCHITECTURES`` (which needs torch) is the registry; this is the list of its names and presets
that the command line shows in ``--help`` and offers as choices before torch loads (and on an install without
torch). ``tests/test_catalog.py`` pins the two to each other.
"""

from __future__ import annotations

__all__ = ["ARCHITECTURE_NAMES", "PRESET_NAMES", "presets_help"]

PRESET_NAMES: dict[str, tuple[str, ...]] = {
    "bert": ("tiny", "small", "base", "large"),
    "narrowbert": ("tiny", "small", "base", "large"),
    "elc-bert": ("tiny", "small", "base"),
    "ltg-bert": ("tiny", "small", "base"),
    "nextlevel": ("tiny", "small", "minilm"),
}
"""The presets of each architecture, in the registry's order."""

ARCHITECTURE_NAMES: tuple[str, ...] = tuple(PRESET_NAMES)
"""``--arch`` names, in the registry's order."""


def presets_help() -> str:
    """``tiny | small | base | large (bert, narrowbert); ...``: the presets grouped by architectures sharing them."""
    groups: dict[tuple[str, ...], list[str]] = {}
    for arch, presets in PRESET_NAMES.items():
        groups.setdefault(presets, []).append(arch)
    return "; ".join(f"{' | '.join(p)} ({', '.join(a)})" for p, a in groups.items())
