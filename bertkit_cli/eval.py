"""`bertkit eval ...`: evaluate trained runs (thin wrappers over `bertkit.eval`): `mlm`, `retrieval` (NextLevelBERT
document embeddings), and the fine-tuning evaluations `glue`, `classify`, `ner`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from bertkit_cli._common import console, make_app, user_errors

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
    verify_data: Annotated[
        bool, typer.Option("--verify-data/--no-verify-data", help="Check each dataset shard's checksum on first read.")
    ] = True,
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
            verify_data=verify_data,
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
    bootstrap: Annotated[
        int, typer.Option(help="Paired-bootstrap resamples for each run's MRR difference to its baseline (0: off).")
    ] = 10_000,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Also write the result as JSON here.")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout.")] = False,
) -> None:
    """Zero-shot retrieval as NextLevelBERT's BookSum evaluation: embed queries and targets, rank by cosine,
    report MRR, MAP and Hit@k of every source side by side (each run beside its encoder's mean-pooled baseline, with
    the MRR difference and its 95 % paired-bootstrap confidence interval)."""
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
            bootstrap=bootstrap,
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
    for c in result.get("comparisons", []):
        low, high = c["ci"]
        console.print(
            f"{escape(c['source'])}: MRR {c['value']:.4f} vs {c['baseline_value']:.4f} of its baseline "
            f"({c['ratio']:.2f}×), difference {c['delta']:+.4f}, {c['confidence']:.0%} CI [{low:+.4f}, {high:+.4f}] "
            f"(paired bootstrap over {c['queries']:,} queries): "
            + {"above": "above the baseline", "below": "below the baseline"}.get(c["verdict"], "within noise"),
            highlight=False,
        )


# ------------------------------------------------------------------------------------------------ fine-tuning
# `eval glue | classify | ner`: thin wrappers over bertkit.eval.{glue,classify,ner}; shared option declarations.

LrOpt = Annotated[float | None, typer.Option(help="Peak learning rate (default: the task's).")]
BatchOpt = Annotated[int | None, typer.Option(help="Examples per batch (default: the task's).")]
EpochsOpt = Annotated[int | None, typer.Option(help="Training epochs (default: the task's, ≤ 5).")]
MaxLenOpt = Annotated[int | None, typer.Option(help="Tokens per sequence, [CLS] and [SEP] included (default 128).")]
MaxStepsOpt = Annotated[int | None, typer.Option(help="Cap on the optimiser steps (quick runs).")]
DropoutOpt = Annotated[float | None, typer.Option(help="Dropout of the fine-tuned model (default 0.1).")]
SeedsOpt = Annotated[int, typer.Option(help="Fine-tune with N seeds and report the median.")]
GridOpt = Annotated[bool, typer.Option("--grid", help="Also search lr × batch size; keep the best median dev score.")]
SeedOpt = Annotated[int | None, typer.Option(help="First seed (default 0).")]
DeviceOpt = Annotated[str | None, typer.Option(help="auto | cpu | cuda")]
CheckpointOpt = Annotated[
    Path | None, typer.Option(help="Checkpoint directory of a run (default: its newest complete one).")
]
TokenizerOpt = Annotated[
    Path | None, typer.Option(help="Tokenizer directory or file (default: the run's dataset tokenizer/).")
]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress display.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout.")]


def _finetune_overrides(**options: Any) -> dict[str, Any]:
    return {k: v for k, v in options.items() if v is not None}


class _FinetuneProgress:
    """Per-task / per-run progress from the fine-tuning events: a bar over the optimiser steps of the current run
    and one line per evaluation."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self.progress: Any = None
        self.bar: Any = None
        self.label = ""

    def __enter__(self) -> _FinetuneProgress:
        if self.enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
                TextColumn("{task.fields[detail]}"),
                console=console,
            )
            self.progress.__enter__()
        return self

    def _say(self, text: str, style: str | None = None) -> None:
        if self.enabled:
            console.print(escape(text), style=style, highlight=False)

    def on_event(self, event: dict[str, Any]) -> None:
        kind = event.get("event")
        task = event.get("task")
        prefix = f"{task}: " if task else ""
        if kind == "task":
            status = event["status"]
            if status == "start":
                self._say(
                    f"[{event['index']}/{event['total']}] {task}: {event['train']:,} training examples "
                    f"({event['layout']})"
                )
            elif status == "skipped":
                self._say(f"[{event['index']}/{event['total']}] {task}: done earlier, kept", style="dim")
            elif status == "done":
                self._say(f"[{event['index']}/{event['total']}] {task}: score {100 * event['score']:.1f}")
        elif kind == "run":
            cfg = event["config"]
            self.label = f"{prefix}run {event['index']}/{event['total']}"
            self._say(
                f"{self.label}: lr {cfg['lr']:g}, batch {cfg['batch_size']}, {cfg['epochs']} epochs, "
                f"seed {cfg['seed']}",
                style="dim",
            )
        elif kind == "start" and self.progress is not None:
            if self.bar is not None:
                self.progress.remove_task(self.bar)
            self.bar = self.progress.add_task(self.label or f"{prefix}fine-tune", total=event["total"], detail="")
        elif kind == "step" and self.progress is not None and self.bar is not None:
            self.progress.update(self.bar, completed=event["step"], detail=f"loss {event['loss']:.4f}")
        elif kind == "eval":
            shown = {k: v for k, v in event["metrics"].items() if isinstance(v, float)}
            text = ", ".join(f"{k} {100 * v:.1f}" for k, v in shown.items())
            self._say(f"{prefix}step {event['step']}/{event['total']}: {event['set']} {text}")
        elif kind in ("embed", "probe"):
            what = (
                f"embedding {event['texts']:,} {event['set']} texts"
                if kind == "embed"
                else (f"linear probe on {event['train']:,} examples × {event['features']:,} features")
            )
            self._say(what, style="dim")
        elif kind == "restart":
            console.print(f"[yellow]note[/]: {escape(event['reason'])}", highlight=False)

    def __exit__(self, *exc: Any) -> None:
        if self.progress is not None:
            self.progress.__exit__(*exc)


def _split_files(
    data: Path | None, train: Path | None, dev: Path | None, test: Path | None, suffixes: tuple[str, ...]
) -> tuple[Path, Path | None, Path | None, str]:
    """(train, dev, test, task name) from --data DIR or explicit files."""
    from bertkit.eval.tasks import find_split_files
    from bertkit.exceptions import ConfigError

    if data is not None:
        if train is not None:
            raise ConfigError("give --data DIR or --train FILE, not both")
        found = find_split_files(data, suffixes)
        return found["train"], dev or found.get("dev"), test or found.get("test"), data.name
    if train is None:
        raise ConfigError("no training data: pass --data DIR (train/dev/test files) or --train FILE")
    return train, dev, test, train.parent.name or train.stem


def _print_result_table(title: str, sets: dict[str, dict[str, Any]], keys: list[str]) -> None:
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    table.add_column("set")
    for k in keys:
        table.add_column(k, justify="right")
    for name, metrics in sets.items():
        table.add_row(name, *(f"{100 * metrics[k]:.2f}" for k in keys))
    console.print(table)


@eval_app.command(
    "glue",
    epilog=(
        "Examples:\n\n"
        "  bertkit eval glue runs/base --data glue_data\n\n"
        "  bertkit eval glue runs/base --data glue_data --tasks rte,mrpc,stsb --seeds 5\n\n"
        "  bertkit eval glue exports/bert-base-uncased --data hf_glue --tasks sst2 --grid --out results/glue.json"
    ),
)
def glue(
    run: Annotated[Path, typer.Argument(help="Run directory (bertkit train --out) or a Hugging Face BERT directory.")],
    data: Annotated[Path, typer.Option("--data", "-d", help="GLUE directory: the GLUE download or HF copies.")],
    tasks: Annotated[
        str, typer.Option(help="all, or a comma-separated list: cola,sst2,mrpc,stsb,qqp,mnli,qnli,rte,wnli.")
    ] = "all",
    out: Annotated[Path | None, typer.Option(help="Results JSON (default RUN/eval/glue.json; .md beside it).")] = None,
    seeds: SeedsOpt = 1,
    grid: GridOpt = False,
    lr: LrOpt = None,
    batch_size: BatchOpt = None,
    epochs: EpochsOpt = None,
    max_len: MaxLenOpt = None,
    max_steps: MaxStepsOpt = None,
    max_train: Annotated[int, typer.Option(help="Fine-tune on a seeded sample of N training examples.")] = 0,
    dropout: DropoutOpt = None,
    seed: SeedOpt = None,
    device: DeviceOpt = None,
    checkpoint: CheckpointOpt = None,
    tokenizer: TokenizerOpt = None,
    quiet: QuietOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Fine-tune and evaluate GLUE tasks with their official metrics (median over --seeds); resumable: finished
    tasks in the results file are kept. Missing task directories are listed, the others evaluated."""
    from bertkit.eval.finetune import load_backbone
    from bertkit.eval.glue import evaluate_glue, format_glue_table

    overrides = _finetune_overrides(
        lr=lr,
        batch_size=batch_size,
        epochs=epochs,
        max_len=max_len,
        max_steps=max_steps,
        dropout=dropout,
        seed=seed,
        device=device,
    )
    with user_errors(), _FinetuneProgress(enabled=not quiet) as progress:
        backbone = load_backbone(run, checkpoint=checkpoint, tokenizer=tokenizer)
        result = evaluate_glue(
            backbone,
            data,
            tasks=tasks,
            out=out,
            seeds=seeds,
            grid=grid,
            overrides=overrides,
            max_train=max_train,
            on_progress=progress.on_event,
        )
    if json_out:
        import json

        typer.echo(json.dumps(result, indent=2, ensure_ascii=False))
    console.print(format_glue_table(result), highlight=False, markup=False)
    for name, reason in result["missing"].items():
        console.print(f"[yellow]missing[/] {name}: {escape(reason)}", highlight=False)
    console.print(f"written to {escape(result['out'])} and {escape(result['markdown'])}", style="dim", highlight=False)


@eval_app.command(
    "classify",
    epilog=(
        "Examples:\n\n"
        "  bertkit eval classify runs/tiny --data data/tasks/sentiment\n\n"
        "  bertkit eval classify runs/base --train pairs/train.tsv --dev pairs/dev.tsv --text-field q1 "
        "--pair-field q2 --label-field dup\n\n"
        "  bertkit eval classify runs/base --data data/tasks/bbc --max-len 512 --truncation head+tail\n\n"
        "  bertkit eval classify --embeddings data/minilm --data data/tasks/trec\n\n"
        "  bertkit eval classify --bow --data data/tasks/sentiment"
    ),
)
def classify(
    source: Annotated[
        Path | None, typer.Argument(help="Run directory or Hugging Face BERT directory to fine-tune.")
    ] = None,
    data: Annotated[Path | None, typer.Option("--data", "-d", help="Task directory with train/dev/test files.")] = None,
    train: Annotated[Path | None, typer.Option(help="Training file (.tsv / .csv with a header, or .jsonl).")] = None,
    dev: Annotated[Path | None, typer.Option(help="Dev file (default: a stratified 10 % of train).")] = None,
    test: Annotated[Path | None, typer.Option(help="Test file (scored with the state chosen on dev).")] = None,
    text_field: Annotated[str, typer.Option(help="Field / column of the text.")] = "text",
    pair_field: Annotated[str | None, typer.Option(help="Field of the second segment (sentence pairs).")] = None,
    label_field: Annotated[str, typer.Option(help="Field of the label.")] = "label",
    embeddings: Annotated[
        str | None, typer.Option(help="Instead of fine-tuning: embed with this source and train a linear probe.")
    ] = None,
    bow: Annotated[bool, typer.Option("--bow", help="Instead of a model: TF-IDF bag of words + linear probe.")] = False,
    truncation: Annotated[str | None, typer.Option(help="head | head+tail (long documents).")] = None,
    metric: Annotated[str, typer.Option(help="Selection metric: accuracy | macro_f1.")] = "accuracy",
    out: Annotated[Path | None, typer.Option(help="Results JSON (default SOURCE/eval/classify-TASK.json).")] = None,
    seeds: SeedsOpt = 1,
    grid: GridOpt = False,
    lr: LrOpt = None,
    batch_size: BatchOpt = None,
    epochs: EpochsOpt = None,
    max_len: MaxLenOpt = None,
    max_steps: MaxStepsOpt = None,
    dropout: DropoutOpt = None,
    seed: SeedOpt = None,
    device: DeviceOpt = None,
    checkpoint: CheckpointOpt = None,
    tokenizer: TokenizerOpt = None,
    quiet: QuietOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Train and score a classifier on a TSV / CSV / JSONL task (single texts or pairs): fine-tune a run or HF
    directory, or probe --embeddings, or the --bow floor. Accuracy and macro-F1 on dev and test."""
    from bertkit.eval.classify import CLASSIFY_CONFIG, evaluate_classify
    from bertkit.eval.finetune import load_backbone
    from bertkit.eval.glue import GRID
    from bertkit.eval.tasks import CLASSIFY_SUFFIXES
    from bertkit.exceptions import ConfigError

    with user_errors(), _FinetuneProgress(enabled=not quiet) as progress:
        modes = [
            m
            for m, given in (("finetune", source is not None), ("embeddings", embeddings is not None), ("bow", bow))
            if given
        ]
        if len(modes) != 1:
            raise ConfigError("give exactly one of: a model SOURCE to fine-tune, --embeddings SOURCE, or --bow")
        train_file, dev_file, test_file, task = _split_files(data, train, dev, test, CLASSIFY_SUFFIXES)
        config = CLASSIFY_CONFIG.replace(
            **_finetune_overrides(
                lr=lr,
                batch_size=batch_size,
                epochs=epochs,
                max_len=max_len,
                max_steps=max_steps,
                dropout=dropout,
                seed=seed,
                device=device,
                truncation=truncation,
            )
        )
        backbone = load_backbone(source, checkpoint=checkpoint, tokenizer=tokenizer) if source is not None else None
        if out is None and source is not None:
            out = source / "eval" / f"classify-{task}.json"
        result = evaluate_classify(
            train_file,
            dev=dev_file,
            test=test_file,
            mode=modes[0],
            backbone=backbone,
            embeddings=embeddings,
            text_field=text_field,
            pair_field=pair_field,
            label_field=label_field,
            config=config,
            seeds=seeds,
            grid=GRID if grid else None,
            metric=metric,
            task=task,
            out=out,
            on_progress=progress.on_event,
        )
    if json_out:
        import json

        typer.echo(json.dumps(result, indent=2, ensure_ascii=False))
    _print_result_table(
        f"{result['task']} ({result['mode']}, {len(result['labels'])} labels)",
        result["median"],
        ["accuracy", "macro_f1"],
    )
    if "out" in result:
        console.print(f"written to {escape(result['out'])}", style="dim", highlight=False)


@eval_app.command(
    "ner",
    epilog=(
        "Examples:\n\n"
        "  bertkit eval ner runs/tiny --data data/tasks/wnut16\n\n"
        "  bertkit eval ner runs/base --train conll/train.txt --dev conll/dev.txt --test conll/test.txt --strict"
    ),
)
def ner(
    source: Annotated[Path, typer.Argument(help="Run directory or Hugging Face BERT directory to fine-tune.")],
    data: Annotated[Path | None, typer.Option("--data", "-d", help="Task directory with train/dev/test files.")] = None,
    train: Annotated[Path | None, typer.Option(help="Training file (CoNLL: token<TAB>tag, blank lines).")] = None,
    dev: Annotated[Path | None, typer.Option(help="Dev file (default: a seeded 10 % of train).")] = None,
    test: Annotated[Path | None, typer.Option(help="Test file (scored with the state chosen on dev).")] = None,
    strict: Annotated[bool, typer.Option("--strict", help="IOB2 strict entity decoding (seqeval mode='strict').")] = (
        False
    ),
    out: Annotated[Path | None, typer.Option(help="Results JSON (default SOURCE/eval/ner-TASK.json).")] = None,
    seeds: SeedsOpt = 1,
    grid: GridOpt = False,
    lr: LrOpt = None,
    batch_size: BatchOpt = None,
    epochs: EpochsOpt = None,
    max_len: MaxLenOpt = None,
    max_steps: MaxStepsOpt = None,
    dropout: DropoutOpt = None,
    seed: SeedOpt = None,
    device: DeviceOpt = None,
    checkpoint: CheckpointOpt = None,
    tokenizer: TokenizerOpt = None,
    quiet: QuietOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Fine-tune token classification on CoNLL-format BIO data; entity-level precision, recall and F1
    (seqeval-style), queried at the first sub-token of every word."""
    from bertkit.eval.finetune import load_backbone
    from bertkit.eval.glue import GRID
    from bertkit.eval.ner import NER_CONFIG, evaluate_ner
    from bertkit.eval.tasks import CONLL_SUFFIXES

    with user_errors(), _FinetuneProgress(enabled=not quiet) as progress:
        train_file, dev_file, test_file, task = _split_files(data, train, dev, test, CONLL_SUFFIXES)
        config = NER_CONFIG.replace(
            **_finetune_overrides(
                lr=lr,
                batch_size=batch_size,
                epochs=epochs,
                max_len=max_len,
                max_steps=max_steps,
                dropout=dropout,
                seed=seed,
                device=device,
            )
        )
        backbone = load_backbone(source, checkpoint=checkpoint, tokenizer=tokenizer)
        result = evaluate_ner(
            backbone,
            train_file,
            dev=dev_file,
            test=test_file,
            config=config,
            seeds=seeds,
            grid=GRID if grid else None,
            strict=strict,
            task=task,
            out=out or source / "eval" / f"ner-{task}.json",
            on_progress=progress.on_event,
        )
    if json_out:
        import json

        typer.echo(json.dumps(result, indent=2, ensure_ascii=False))
    _print_result_table(
        f"{result['task']} ({len(result['tags'])} tags, entity level)",
        result["median"],
        ["precision", "recall", "f1", "token_accuracy"],
    )
    console.print(f"written to {escape(result['out'])}", style="dim", highlight=False)


# ------------------------------------------------------------------------------------------ eval blimp


@eval_app.command(
    "blimp",
    epilog=(
        "Examples:\n\n"
        "  bertkit eval blimp runs/elc --data blimp/data\n\n"
        "  bertkit eval blimp exports/bert-base-uncased --data blimp/data --variant pll-word-l2r --device cuda\n\n"
        "  bertkit eval blimp runs/base --data blimp/data/wh_island.jsonl --out results/wh_island.json"
    ),
)
def blimp(
    source: Annotated[Path, typer.Argument(help="Run directory or Hugging Face masked-LM directory.")],
    data: Annotated[
        Path, typer.Option("--data", "-d", help="BLiMP's data/ directory (one .jsonl per paradigm) or one file.")
    ],
    variant: Annotated[
        str, typer.Option(help="PLL variant(s), comma-separated: pll (Salazar et al.), pll-word-l2r (Kauf & Ivanova).")
    ] = "pll,pll-word-l2r",
    out: Annotated[Path | None, typer.Option(help="Results JSON (default SOURCE/eval/blimp.json; .md beside it).")] = (
        None
    ),
    batch_size: Annotated[int, typer.Option(help="Masked copies per forward pass.")] = 256,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda | cuda:N")] = "auto",
    checkpoint: CheckpointOpt = None,
    tokenizer: TokenizerOpt = None,
    trust_remote_code: Annotated[
        bool, typer.Option("--trust-remote-code", help="HF directories: allow their own modeling code (auto_map).")
    ] = False,
    quiet: QuietOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Zero-shot BLiMP: score both sentences of every minimal pair by masked-LM pseudo-log-likelihood (every token
    masked in turn) and count the pair right when the good one scores higher. Accuracy per paradigm, per phenomenon
    and macro averages; resumable (finished paradigms in the results file are kept)."""
    from bertkit.eval.blimp import check_batch_size, check_variants, evaluate_blimp, format_blimp_table, load_scorer

    def on_event(event: dict[str, Any]) -> None:
        if quiet:
            return
        if event["event"] == "paradigm" and event["status"] != "start":
            what = (
                "done earlier, kept"
                if event["status"] == "skipped"
                else ", ".join(f"{k} {100 * v:.1f}" for k, v in event["accuracy"].items())
            )
            console.print(f"[{event['index']}/{event['total']}] {escape(event['paradigm'])}: {what}", highlight=False)
        elif event["event"] == "restart":
            console.print(f"[yellow]note[/]: {escape(event['reason'])}", highlight=False)

    with user_errors():
        variants = check_variants(variant)  # the options before the model loads
        check_batch_size(batch_size)
        scorer = load_scorer(
            source, checkpoint=checkpoint, tokenizer=tokenizer, device=device, trust_remote_code=trust_remote_code
        )
        result = evaluate_blimp(scorer, data, variants=variants, out=out, batch_size=batch_size, on_progress=on_event)
    if json_out:
        import json

        typer.echo(json.dumps(result, indent=2, ensure_ascii=False))
    console.print(format_blimp_table(result), highlight=False, markup=False)
    console.print(f"written to {escape(result['out'])} and {escape(result['markdown'])}", style="dim", highlight=False)


# ------------------------------------------------------------------------------------------ eval msgs


@eval_app.command(
    "msgs",
    epilog=(
        "Examples:\n\n"
        "  bertkit eval msgs runs/elc --data msgs_filtered\n\n"
        "  bertkit eval msgs runs/base --data msgs --tasks main_verb_lexical_content_the,main_verb_control --seeds 3"
    ),
)
def msgs(
    run: Annotated[Path, typer.Argument(help="Run directory or Hugging Face BERT directory to fine-tune.")],
    data: Annotated[
        Path,
        typer.Option(
            "--data", "-d", help="MSGS tasks: <task>/train.jsonl + test.jsonl, or <task>.train.json + .validation.json."
        ),
    ],
    tasks: Annotated[str, typer.Option(help="all, or a comma-separated list of task names.")] = "all",
    out: Annotated[Path | None, typer.Option(help="Results JSON (default RUN/eval/msgs.json; .md beside it).")] = None,
    seeds: SeedsOpt = 1,
    lr: LrOpt = None,
    batch_size: BatchOpt = None,
    epochs: Annotated[int | None, typer.Option(help="Training epochs (default 10, BabyLM's).")] = None,
    max_len: MaxLenOpt = None,
    max_steps: MaxStepsOpt = None,
    dropout: DropoutOpt = None,
    seed: Annotated[int | None, typer.Option(help="First seed (default 12, BabyLM's).")] = None,
    device: DeviceOpt = None,
    checkpoint: CheckpointOpt = None,
    tokenizer: TokenizerOpt = None,
    quiet: QuietOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """MSGS-style probing: fine-tune on each task's ambiguous training set, report the Matthews correlation on the
    unambiguous test set (+1 linguistic, -1 surface generalisation) and the mean over tasks; resumable."""
    from bertkit.eval.finetune import load_backbone
    from bertkit.eval.msgs import evaluate_msgs, format_msgs_table

    overrides = _finetune_overrides(
        lr=lr,
        batch_size=batch_size,
        epochs=epochs,
        max_len=max_len,
        max_steps=max_steps,
        dropout=dropout,
        seed=seed,
        device=device,
    )
    with user_errors(), _FinetuneProgress(enabled=not quiet) as progress:
        backbone = load_backbone(run, checkpoint=checkpoint, tokenizer=tokenizer)
        result = evaluate_msgs(
            backbone, data, tasks=tasks, out=out, seeds=seeds, overrides=overrides, on_progress=progress.on_event
        )
    if json_out:
        import json

        typer.echo(json.dumps(result, indent=2, ensure_ascii=False))
    console.print(format_msgs_table(result), highlight=False, markup=False)
    console.print(f"written to {escape(result['out'])} and {escape(result['markdown'])}", style="dim", highlight=False)
