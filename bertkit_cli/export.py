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


@export_app.command(
    "hf",
    epilog=(
        "Examples:\n\n"
        "  bertkit export hf runs/tiny exports/tiny\n\n"
        "  bertkit export hf runs/elc exports/elc   # then AutoModelForMaskedLM.from_pretrained(..., "
        "trust_remote_code=True)\n\n"
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
        Path | None,
        typer.Option(help="Directory with tokenizer.json / vocab.txt (default: the run's dataset tokenizer/)."),
    ] = None,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace OUT when it holds a previous bertkit export (nothing else).")
    ] = False,
) -> None:
    """Write a run's checkpoint as a Hugging Face directory: config.json, model.safetensors, the tokenizer, and for
    narrowbert / elc-bert / ltg-bert a modeling file (load with trust_remote_code=True)."""
    from bertkit.export.run import export_run

    with user_errors():
        result = export_run(run, out, checkpoint=checkpoint, tokenizer=tokenizer, overwrite=overwrite)
    if result.tokenizer_dir is None:
        console.print(
            "[yellow]note[/]: no tokenizer files found (the run's dataset is gone); pass --tokenizer DIR",
            highlight=False,
        )
    console.print(
        f"[green]exported[/] {escape(str(result.checkpoint))} ({result.arch}, step {result.step}) to "
        f"{escape(str(result.out))}",
        highlight=False,
        soft_wrap=True,
    )
