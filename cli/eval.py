"""`bertkit eval ...`: evaluate trained runs (thin wrappers over `bertkit.eval`). `mlm` now; later issues add more
commands to the same sub-app."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from cli._common import console, make_app, user_errors

eval_app = make_app(help="Evaluate a trained run.")


def register(app: typer.Typer) -> None:
    app.add_typer(eval_app, name="eval")


@eval_app.command(
    "mlm",
    epilog=(
        "Examples:\n\n"
        "  bertkit eval mlm runs/tiny --data data/news --show 5\n\n"
        "  bertkit eval mlm runs/base --data data/nsp --checkpoint runs/base/checkpoints/ckpt-001000 --batches 20"
    ),
)
def mlm(
    run: Annotated[Path, typer.Argument(help="Run directory (bertkit train --out).")],
    data: Annotated[
        Path | None, typer.Option("--data", "-d", help="Prepared dataset (default: the run's own dataset).")
    ] = None,
    checkpoint: Annotated[
        Path | None, typer.Option(help="Checkpoint directory (default: the run's newest complete one).")
    ] = None,
    split: Annotated[str, typer.Option(help="eval (held-out rows) | train")] = "eval",
    batches: Annotated[int | None, typer.Option(help="At most this many batches (default: the whole split).")] = None,
    show: Annotated[int, typer.Option(help="Print N rows with the predictions marked.")] = 0,
    seed: Annotated[int | None, typer.Option(help="Seed of the masks (default: the run's seed).")] = None,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda")] = "auto",
    batch_size: Annotated[int | None, typer.Option(help="Rows per batch (default: the run's).")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout.")] = False,
) -> None:
    """Masked-LM loss, perplexity and accuracy (and NSP accuracy) of a checkpoint on a dataset's held-out split,
    masked as in training; written to RUN/eval_mlm.json."""
    from bertkit.eval.mlm import evaluate_mlm

    with user_errors():
        result = evaluate_mlm(
            run,
            data,
            checkpoint=checkpoint,
            split=split,
            batches=batches,
            show=show,
            seed=seed,
            device=device,
            batch_size=batch_size,
            on_progress=lambda text: console.print(escape(text), style="dim", highlight=False),
        )
    if json_out:
        import json

        typer.echo(json.dumps(result, indent=2, ensure_ascii=False))
    _print_table(result)
    for i, example in enumerate(result.get("examples", [])):
        console.print(f"\n[bold]example {i + 1}[/]", highlight=False)
        console.print(_colour(example), highlight=False, soft_wrap=True)
    console.print(f"\nwritten to {escape(str(Path(run) / 'eval_mlm.json'))}", style="dim", highlight=False)


def _print_table(result: dict[str, Any]) -> None:
    from rich.table import Table

    if "mlm_loss" not in result:
        console.print(f"[yellow]no result[/]: {escape(result.get('note', 'no batches'))}", highlight=False)
        return
    table = Table(title=f"MLM evaluation: step {result['step']}, {result['split']} split", title_justify="left")
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_row("MLM loss", f"{result['mlm_loss']:.4f}")
    table.add_row("perplexity", f"{result['perplexity']:.2f}")
    table.add_row("MLM accuracy", f"{100 * result['mlm_accuracy']:.2f}%")
    if "nsp_accuracy" in result:
        table.add_row("NSP loss", f"{result['nsp_loss']:.4f}")
        table.add_row("NSP accuracy", f"{100 * result['nsp_accuracy']:.2f}%")
    table.add_row("masked tokens", f"{int(result['masked_tokens']):,}")
    table.add_row("batches", f"{result['batches']} × {result['batch_size']} × {result['seq_len']}")
    console.print(table)


def _colour(example: str) -> str:
    """Rich markup for a format_predictions line: hits green, misses red (everything else escaped)."""
    import re

    parts = re.split(r"(\[[^\[\]]*→[^\[\]]*[✓✗][^\[\]]*\])", example)
    out = []
    for part in parts:
        if re.fullmatch(r"\[[^\[\]]*→[^\[\]]*[✓✗][^\[\]]*\]", part or "-"):
            colour = "green" if "✓" in part else "red"
            out.append(f"[{colour}]{escape(part)}[/{colour}]")
        else:
            out.append(escape(part))
    return "".join(out)
