"""The torch-free catalog of architecture and preset names equals the registry of bertkit.models."""

from __future__ import annotations

import subprocess
import sys

import pytest

from bertkit.catalog import ARCHITECTURE_NAMES, PRESET_NAMES, presets_help


def test_catalog_equals_the_registry():
    pytest.importorskip("torch")
    from bertkit.models import ARCHITECTURES

    assert ARCHITECTURE_NAMES == tuple(ARCHITECTURES)
    assert PRESET_NAMES == {name: tuple(arch.presets) for name, arch in ARCHITECTURES.items()}


def test_catalog_needs_no_torch():
    code = "import sys, bertkit.catalog, bertkit.train.config; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_presets_help_groups_architectures():
    text = presets_help()
    assert "tiny | small | base | large (bert, narrowbert)" in text and "minilm (nextlevel)" in text
