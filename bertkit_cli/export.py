"""`bertkit export ...`: write a run's checkpoint in other formats (thin wrapper over `bertkit.export`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from bertkit_cli._common import console, make_app, user_errors

export_app = make_app(help="Export a trained run.")


def register(app: typer.Typer) -> None:
    app.add_typer(export_app, name="export")


def tokenizer_dir_of(config: object) -> Path | None:
    """The run's tokenizer files: the dataset's tokenizer/ directory, else the init_from model's directory."""
    data = getattr(config, "data", "")
    if data and (Path(data) / "tokenizer" / "vocab.txt").is_file():
        return Path(data) / "tokenizer"
    init_from = getattr(config, "init_from", None)
    if init_from and (Path(init_from) / "vocab.txt").is_file():
        return Path(init_from)
    return None


@export_app.command(
    "hf",
    epilog=(
        "Examples:\n\n"
        "  bertkit export hf runs/tiny exports/tiny\n\n"
        "  bertkit export hf runs/base exports/base --checkpoint runs/base/checkpoints/ckpt-010000 --overwrite"
    ),
)
def hf(
    run: Annotated[Path, typer.Argument(help="Run directory (bertkit train --out).")],
    out: Annotated[Path, typer.Argument(help="Output directory (transformers from_pretrained loads it).")],
    checkpoint: Annotated[
        Path | None, typer.Option(help="Checkpoint directory (default: the run's newest complete one).")
    ] = None,
    tokenizer: Annotated[
        Path | None, typer.Option(help="Directory with vocab.txt (default: the run's dataset tokenizer/).")
    ] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace a non-empty OUT.")] = False,
) -> None:
    """Write a bert run's checkpoint as a Hugging Face directory (config.json, model.safetensors, tokenizer)."""
    from bertkit.eval.mlm import load_run
    from bertkit.exceptions import ConfigError

    with user_errors():
        loaded = load_run(run, checkpoint)
        if loaded.arch != "bert":
            raise ConfigError(f"{loaded.checkpoint}: export hf writes bert checkpoints; this run is {loaded.arch!r}")
        tok = tokenizer if tokenizer is not None else tokenizer_dir_of(loaded.config)
        if out.exists() and (not out.is_dir() or any(out.iterdir())) and not overwrite:
            raise ConfigError(f"{out}: already exists and is not empty (use --overwrite)")
        from bertkit.export.hf import export_hf

        path = export_hf(loaded.model, loaded.model_config, out, tokenizer_dir=tok, overwrite=overwrite)
    if tok is None:
        console.print(
            "[yellow]note[/]: no tokenizer files found (the run's dataset is gone); pass --tokenizer DIR",
            highlight=False,
        )
    console.print(
        f"[green]exported[/] {escape(str(loaded.checkpoint))} (step {loaded.step}) to {escape(str(path))}",
        highlight=False,
        soft_wrap=True,
    )
