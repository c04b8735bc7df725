"""OWNER: see cli/__init__.py."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    pass
