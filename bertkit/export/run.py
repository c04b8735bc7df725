"""``bertkit export hf RUN OUT``: a run's checkpoint as a directory other tools load, for every architecture.

The architecture's registry entry names its exporter (``Architecture.exporter``): ``bert`` → a plain Hugging Face
BERT directory (``bertkit.export.hf``); ``narrowbert`` / ``elc-bert`` / ``ltg-bert`` → ``transformers`` remote code
(``bertkit.export.remote``); ``nextlevel`` → a sentence-transformers directory
(``bertkit.export.sentence_transformers``). Writing goes through ``bertkit.export.output.publish`` (lock, refuse
what bertkit did not write, write aside, rename last); OUT is checked before the checkpoint is even read.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bertkit.exceptions import ConfigError

__all__ = ["ExportResult", "export_run", "resolve"]


@dataclass
class ExportResult:
    out: Path
    arch: str
    checkpoint: Path
    step: int
    tokenizer_dir: Path | None
    """Where the tokenizer files came from; None when the run's tokenizer is gone (no tokenizer exported)."""
    files: list[str]


def resolve(dotted: str) -> Any:
    """The object named ``module:attribute``."""
    module, _, name = dotted.partition(":")
    return getattr(importlib.import_module(module), name)


def export_run(
    run: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    checkpoint: str | os.PathLike[str] | None = None,
    tokenizer: str | os.PathLike[str] | None = None,
    overwrite: bool = False,
) -> ExportResult:
    """Export the newest complete checkpoint of ``run`` (or ``checkpoint``) to ``out``; ``tokenizer`` overrides the
    run's tokenizer directory (its dataset's ``tokenizer/``, else its ``init_from`` directory)."""
    from bertkit.eval.mlm import load_run
    from bertkit.eval.text import run_tokenizer_dir
    from bertkit.export.output import check_out_dir, publish
    from bertkit.models import get_architecture

    check_out_dir(out, overwrite)
    if tokenizer is not None and not Path(tokenizer).is_dir():
        raise ConfigError(f"{tokenizer}: tokenizer directory not found")
    loaded = load_run(run, checkpoint)
    arch = get_architecture(loaded.arch)
    if not arch.exporter:
        raise ConfigError(f"{loaded.checkpoint}: architecture {arch.name!r} has no export")
    tok = Path(tokenizer) if tokenizer is not None else run_tokenizer_dir(loaded.config)
    files = resolve(arch.exporter)(loaded, tok)
    info = {"arch": arch.name, "run": str(loaded.run_dir), "checkpoint": str(loaded.checkpoint), "step": loaded.step}
    path = publish(out, files, overwrite=overwrite, info=info, purpose=f"bertkit export hf {out}")
    return ExportResult(path, arch.name, loaded.checkpoint, loaded.step, tok, sorted(files))
