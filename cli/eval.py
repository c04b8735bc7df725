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


# ------------------------------------------------------------------------------------------ eval retrieval


@eval_app.command(
    "retrieval",
    epilog=(
        "Examples:\n\n"
        "  bertkit eval retrieval runs/nextlevel --data data/bbc.jsonl --task title     # BBC headline → article\n\n"
        "  bertkit eval retrieval runs/nextlevel all-MiniLM-L6-v2 --data books.jsonl --task halves --limit 500\n\n"
        "  bertkit eval retrieval runs/nextlevel --data booksum-chapters.jsonl --task booksum --json"
    ),
)
def retrieval(
    sources: Annotated[
        list[str], typer.Argument(help="NextLevel run directories and/or encoders (name or directory).")
    ],
    data: Annotated[Path, typer.Option("--data", "-d", help="Task file (.jsonl; .txt for --task halves).")],
    task: Annotated[
        str, typer.Option(help="booksum (chapter → summaries) | title (title → text) | halves")
    ] = "booksum",
    query_field: Annotated[str | None, typer.Option(help="Field of the queries (default: by task).")] = None,
    target_field: Annotated[str | None, typer.Option(help="Field of the targets (default: by task).")] = None,
    limit: Annotated[int | None, typer.Option(help="Only the first N queries.")] = None,
    k: Annotated[int, typer.Option("-k", help="Cut-off of hit@k, mrr@k, map@k.")] = 10,
    baseline: Annotated[
        bool, typer.Option("--baseline/--no-baseline", help="Add each run's encoder (mean of chunk embeddings).")
    ] = True,
    chunk_size: Annotated[
        int | None, typer.Option(help="Chunk tokens of encoder sources given directly (default 256; 0 = sentences).")
    ] = None,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda | cuda:N")] = "auto",
    batch_size: Annotated[int | None, typer.Option(help="Chunks per encoder batch.")] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Also write the result as JSON here.")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout.")] = False,
) -> None:
    """Zero-shot retrieval as NextLevelBERT's BookSum evaluation: embed queries and targets, rank by cosine,
    report MRR, MAP and Hit@k of every source side by side (each run beside its encoder's mean-pooled baseline)."""
    import json

    from bertkit.eval.retrieval import evaluate_retrieval, load_task

    with user_errors():
        loaded = load_task(data, task, query_field=query_field, target_field=target_field, limit=limit)
        console.print(
            f"{task}: {len(loaded.queries):,} queries, {len(loaded.targets):,} targets from {escape(str(data))}",
            highlight=False,
        )
        result = evaluate_retrieval(
            sources,
            loaded,
            k=k,
            baseline=baseline,
            chunk_size=chunk_size,
            device=device,
            batch_size=batch_size,
            on_progress=lambda label, done, total: console.print(
                f"  {escape(label)}: {done:,}/{total:,} texts", style="dim", highlight=False
            ),
        )
        if out is not None:
            out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    if json_out:
        typer.echo(json.dumps(result, indent=2))
    _print_retrieval(result)


def _print_retrieval(result: dict[str, Any]) -> None:
    from rich.table import Table

    k = result["k"]
    table = Table(title=f"retrieval ({result['task']}): {result['queries']:,} queries", title_justify="left")
    table.add_column("source")
    for name in ("MRR", "MAP", "Hit@1", f"Hit@{k}", f"MRR@{k}", f"MAP@{k}"):
        table.add_column(name, justify="right")
    for label, m in result["results"].items():
        values = (m["mrr"], m["map"], m["hit@1"], m[f"hit@{k}"], m[f"mrr@{k}"], m[f"map@{k}"])
        table.add_row(escape(label), *(f"{v:.4f}" for v in values))
    console.print(table)
