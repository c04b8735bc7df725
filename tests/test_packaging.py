"""The wheel ships the CLI inside bertkit's namespace (``bertkit_cli``), never a generic top-level ``cli``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]


def test_console_script_and_packages():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["project"]["scripts"] == {"bertkit": "bertkit_cli:main"}
    assert project["tool"]["maturin"]["python-packages"] == ["bertkit_cli"]
    assert not (ROOT / "cli").exists()


def test_python_m_bertkit_cli():
    result = subprocess.run([sys.executable, "-m", "bertkit_cli", "--version"], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.startswith("bertkit ")
