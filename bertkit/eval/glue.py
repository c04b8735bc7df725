"""``bertkit eval glue``: fine-tune and evaluate the nine GLUE tasks with their official metrics.

Data layouts, per task directory under ``GLUE_DIR`` (found by the official name ``CoLA``, ``SST-2``, ``STS-B``, … or
the Hugging Face config name ``cola``, ``sst2``, ``stsb``, …, case-insensitively):

- the GLUE download (TSV): ``train.tsv`` + ``dev.tsv`` (MNLI: ``dev_matched.tsv`` + ``dev_mismatched.tsv``);
  ``CoLA`` has no header row (source, label, original label, sentence), the others a header naming the columns;
  MRPC may instead hold the original ``msr_paraphrase_train.txt`` (+ ``dev_ids.tsv`` to carve out GLUE's dev set,
  else ``msr_paraphrase_test.txt`` is evaluated);
- Hugging Face ``datasets`` copies: parquet files ``train-*.parquet`` / ``validation-*.parquet`` (the hub layout of
  ``nyu-mll/glue``; MNLI ``validation_matched`` / ``validation_mismatched``), or a ``DatasetDict.save_to_disk``
  directory (``train/``, ``validation/`` … holding ``data-*.arrow``), read with pyarrow.

Labels are checked against the task: TSV labels must be the task's label strings (``0``/``1``, ``entailment``, …),
Hugging Face labels class indices in range (STS-B: a score in [0, 5]); anything else is a FormatError naming the
file and the line (row). Test splits have no public labels and are not read.

Metrics (GLUE's): CoLA Matthews correlation; SST-2, QNLI, RTE, WNLI accuracy; MRPC and QQP F1 and accuracy; STS-B
Pearson and Spearman; MNLI accuracy on matched and mismatched. A task's score is the mean of its metrics (MNLI: of
the two accuracies); ``average`` is the mean task score and ``average_no_wnli`` leaves WNLI out (as BERT and
Cramming report).

Hyper-parameters: Cramming's GLUE-sane recipe (JonasGeiping/cramming ``config/eval/GLUE_sane.yaml``: batch 16,
lr 4e-5, 5 epochs, 10 % warmup, sequence length 128, one setting for every task), with the large tasks shortened to
3 epochs of batch 32 (BERT's recipe) and SST-2 at the nanoBERT seed's batch 64 / lr 6e-5; reported from the last
epoch (no selection on the dev set). ``seeds=N`` reports the median of N seeds; ``grid=True`` runs lr × batch size
(:data:`GRID`) and keeps the point with the best median dev score — an optimistic figure, as dev is also reported.

Results: ``RUN/eval/glue.json`` and ``glue.md`` (or ``out``), rewritten atomically after every fine-tuning run, so
an interrupted evaluation resumes: finished tasks are skipped and finished runs of a task are reused when the model
checkpoint and the settings are the same. Results of the same model from earlier calls with other ``tasks`` stay in
the file, so ``--tasks rte`` then ``--tasks mrpc`` build one table.
"""

from __future__ import annotations

import json
import os
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bertkit.eval.finetune import (
    Backbone,
    FinetuneConfig,
    ProgressFn,
    SequenceData,
    previous_results,
    results_path,
    write_text_atomic,
)
from bertkit.eval.tasks import Example
from bertkit.exceptions import ConfigError, FormatError

__all__ = ["GLUE_TASKS", "GRID", "GlueTask", "evaluate_glue", "find_glue_tasks", "format_glue_table", "read_glue_task"]


@dataclass(frozen=True)
class GlueTask:
    name: str
    dirname: str
    """Directory of the official GLUE download."""
    hf_fields: tuple[str, str | None]
    """Text (and pair) columns of the Hugging Face copies."""
    tsv_fields: tuple[str | int, str | int | None, str | int]
    """Text, pair and label columns of the TSV: header names, or indices when the file has no header."""
    labels: tuple[str, ...] | None
    """Label strings in Hugging Face's class-index order; None = regression (STS-B)."""
    metrics: tuple[str, ...]
    eval_sets: dict[str, tuple[str, str]] = field(default_factory=lambda: {"dev": ("dev.tsv", "validation")})
    """Evaluation set → (TSV file, Hugging Face split)."""
    overrides: dict[str, Any] = field(default_factory=dict)
    """Changes to :data:`BASE_CONFIG` for this task."""

    @property
    def header(self) -> bool:
        return isinstance(self.tsv_fields[0], str)


MNLI_SETS = {
    "matched": ("dev_matched.tsv", "validation_matched"),
    "mismatched": ("dev_mismatched.tsv", "validation_mismatched"),
}
LARGE = {"batch_size": 32, "epochs": 3}

GLUE_TASKS: dict[str, GlueTask] = {
    t.name: t
    for t in (
        GlueTask("cola", "CoLA", ("sentence", None), (3, None, 1), ("0", "1"), ("mcc",)),
        GlueTask(
            "sst2",
            "SST-2",
            ("sentence", None),
            ("sentence", None, "label"),
            ("0", "1"),
            ("accuracy",),
            overrides={"batch_size": 64, "lr": 6e-5, "epochs": 3},
        ),
        GlueTask(
            "mrpc",
            "MRPC",
            ("sentence1", "sentence2"),
            ("#1 String", "#2 String", "Quality"),
            ("0", "1"),
            ("f1", "accuracy"),
        ),
        GlueTask(
            "stsb",
            "STS-B",
            ("sentence1", "sentence2"),
            ("sentence1", "sentence2", "score"),
            None,
            ("pearson", "spearman"),
        ),
        GlueTask(
            "qqp",
            "QQP",
            ("question1", "question2"),
            ("question1", "question2", "is_duplicate"),
            ("0", "1"),
            ("f1", "accuracy"),
            overrides=LARGE,
        ),
        GlueTask(
            "mnli",
            "MNLI",
            ("premise", "hypothesis"),
            ("sentence1", "sentence2", "gold_label"),
            ("entailment", "neutral", "contradiction"),
            ("accuracy",),
            eval_sets=MNLI_SETS,
            overrides=LARGE,
        ),
        GlueTask(
            "qnli",
            "QNLI",
            ("question", "sentence"),
            ("question", "sentence", "label"),
            ("entailment", "not_entailment"),
            ("accuracy",),
            overrides=LARGE,
        ),
        GlueTask(
            "rte",
            "RTE",
            ("sentence1", "sentence2"),
            ("sentence1", "sentence2", "label"),
            ("entailment", "not_entailment"),
            ("accuracy",),
        ),
        GlueTask(
            "wnli", "WNLI", ("sentence1", "sentence2"), ("sentence1", "sentence2", "label"), ("0", "1"), ("accuracy",)
        ),
    )
}

BASE_CONFIG = FinetuneConfig(lr=4e-5, batch_size=16, epochs=5, warmup=0.1, weight_decay=0.01, max_len=128)
GRID: list[dict[str, Any]] = [{"lr": lr, "batch_size": bs} for lr in (2e-5, 4e-5, 6e-5) for bs in (16, 32)]
STS_RANGE = (0.0, 5.0)


class MissingSplitError(FormatError):
    """A task directory without one of the files / splits the task needs (the task counts as missing)."""


# ------------------------------------------------------------------------------------------------ reading


def _task_dirs(glue_dir: Path) -> dict[str, Path]:
    """Lower-cased directory name → directory, for the subdirectories of ``glue_dir``."""
    return {p.name.lower(): p for p in sorted(glue_dir.iterdir()) if p.is_dir()}


def find_glue_tasks(glue_dir: str | os.PathLike[str], tasks: Sequence[str]) -> tuple[dict[str, Path], dict[str, str]]:
    """(task → its directory) for the requested tasks present in ``glue_dir``, and (task → why it is missing)."""
    root = Path(glue_dir)
    if not root.is_dir():
        raise ConfigError(f"{root}: GLUE directory not found")
    dirs = _task_dirs(root)
    found, missing = {}, {}
    for name in tasks:
        task = GLUE_TASKS[name]
        d = dirs.get(task.dirname.lower()) or dirs.get(task.name)
        if d is None:
            missing[name] = f"no {task.dirname}/ (or {task.name}/) directory in {root}"
        else:
            found[name] = d
    return found, missing


def _tsv_lines(path: Path) -> list[str]:
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise FormatError(f"{path}: not UTF-8 (byte {e.start})") from None
    lines = text.splitlines()
    if not any(line.strip() for line in lines):
        raise FormatError(f"{path}: the file is empty")
    return lines


def _label(task: GlueTask, raw: Any, where: str) -> str | float:
    if task.labels is None:
        try:
            value = float(raw)
        except (TypeError, ValueError):
            raise FormatError(f"{where}: STS-B score {raw!r} is not a number") from None
        if not STS_RANGE[0] <= value <= STS_RANGE[1]:
            raise FormatError(f"{where}: STS-B score {value} is outside [0, 5]")
        return value
    label = str(raw).strip()
    if label not in task.labels:
        raise FormatError(
            f"{where}: label {label!r} does not match task {task.name} (labels: {', '.join(task.labels)}); "
            "is this the right task directory?"
        )
    return label


def _read_tsv(path: Path, task: GlueTask, keep: Callable[[Mapping[str, str]], bool] | None = None) -> list[Example]:
    lines = _tsv_lines(path)
    text_col, pair_col, label_col = task.tsv_fields
    start = 0
    columns: dict[str | int, int] = {}
    width = None
    if task.header:
        header = lines[0].split("\t")
        width = len(header)
        for name in (text_col, pair_col, label_col):
            if name is None:
                continue
            if name not in header:
                raise FormatError(
                    f"{path}:1: no column {name!r} in the header ({', '.join(header)}); not a GLUE {task.dirname} file"
                )
            columns[name] = header.index(name)
        start = 1
    else:
        columns = {c: c for c in (text_col, pair_col, label_col) if c is not None}
    examples = []
    for lineno, line in enumerate(lines[start:], start + 1):
        if not line.strip():
            continue
        values = line.split("\t")
        if (width is not None and len(values) != width) or len(values) <= max(columns.values()):
            expected = width if width is not None else max(columns.values()) + 1
            raise FormatError(f"{path}:{lineno}: {len(values)} tab-separated columns, expected {expected}")
        row = {str(k): values[i] for k, i in columns.items()}
        if keep is not None and not keep(dict(zip(lines[0].split("\t"), values, strict=False))):
            continue
        where = f"{path}:{lineno}"
        text = row[str(text_col)]
        pair = row[str(pair_col)] if pair_col is not None else None
        examples.append(Example(text, pair, _label(task, row[str(label_col)], where), lineno))
    if not examples:
        raise FormatError(f"{path}: no examples")
    return examples


def _read_table(files: Sequence[Path], task: GlueTask) -> list[Example]:
    """Rows of parquet files or a save_to_disk split (arrow streams) as examples."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise ConfigError(
            f"{files[0]}: reading Hugging Face parquet / arrow copies of GLUE needs pyarrow "
            "(pip install 'bertkit[eval]'), or use the GLUE TSV download"
        ) from None

    examples = []
    for path in files:
        try:
            if path.suffix == ".parquet":
                table = pq.read_table(path)
            else:
                with pa.memory_map(str(path)) as source:
                    try:
                        table = pa.ipc.open_stream(source).read_all()
                    except pa.ArrowInvalid:
                        table = pa.ipc.open_file(source).read_all()
        except (pa.ArrowException, OSError) as e:
            raise FormatError(f"{path}: unreadable {path.suffix[1:]} file ({e})") from None
        text_col, pair_col = task.hf_fields
        for name in (text_col, pair_col, "label"):
            if name is not None and name not in table.column_names:
                raise FormatError(
                    f"{path}: no column {name!r} ({', '.join(table.column_names)}); not a GLUE {task.name} copy"
                )
        texts = table.column(text_col).to_pylist()
        pairs = table.column(pair_col).to_pylist() if pair_col is not None else [None] * len(texts)
        labels = table.column("label").to_pylist()
        for row, (text, pair, raw) in enumerate(zip(texts, pairs, labels, strict=True)):
            where = f"{path}: row {row}"
            if task.labels is None:
                label = _label(task, raw, where)
            else:
                if isinstance(raw, bool) or not isinstance(raw, int) or not 0 <= raw < len(task.labels):
                    hint = " (-1: an unlabelled test split)" if raw == -1 else ""
                    raise FormatError(
                        f"{where}: label {raw!r} does not match task {task.name} "
                        f"(class indices 0-{len(task.labels) - 1}){hint}"
                    )
                label = task.labels[raw]
            if not isinstance(text, str) or (pair_col is not None and not isinstance(pair, str)):
                raise FormatError(f"{where}: text column is not a string")
            examples.append(Example(text, pair, label, row))
    if not examples:
        raise FormatError(f"{files[0]}: no rows")
    return examples


def _hf_split_files(task_dir: Path, split: str) -> list[Path]:
    parquet = sorted(task_dir.glob(f"{split}-*.parquet")) + sorted(task_dir.glob(f"{split}.parquet"))
    if parquet:
        return parquet
    arrow_dir = task_dir / split
    if arrow_dir.is_dir():
        return sorted(arrow_dir.glob("*.arrow"))
    return []


def read_glue_task(task_dir: str | os.PathLike[str], task: GlueTask | str) -> tuple[dict[str, list[Example]], str]:
    """``({"train": [...], <eval set>: [...]}, layout)`` of one task directory; layout is ``tsv``, ``parquet`` or
    ``arrow``. A missing split is a FormatError naming what was looked for."""
    task = GLUE_TASKS[task] if isinstance(task, str) else task
    d = Path(task_dir)
    has_tsv = any(d.glob("*.tsv")) or (d / "msr_paraphrase_train.txt").is_file()
    if has_tsv:
        return _read_tsv_task(d, task), "tsv"
    splits = {"train": "train", **{name: hf for name, (_, hf) in task.eval_sets.items()}}
    files = {name: _hf_split_files(d, split) for name, split in splits.items()}
    if not any(files.values()):
        raise MissingSplitError(
            f"{d}: no GLUE data (train.tsv, train-*.parquet or a save_to_disk train/ directory with .arrow files)"
        )
    for name, found in files.items():
        if not found:
            raise MissingSplitError(
                f"{d}: no {splits[name]} split ({splits[name]}-*.parquet or {splits[name]}/*.arrow)"
            )
    layout = "parquet" if files["train"][0].suffix == ".parquet" else "arrow"
    return {name: _read_table(found, task) for name, found in files.items()}, layout


def _read_tsv_task(d: Path, task: GlueTask) -> dict[str, list[Example]]:
    if task.name == "mrpc" and not (d / "train.tsv").is_file() and (d / "msr_paraphrase_train.txt").is_file():
        return _read_msr(d, task)
    out = {}
    for name, filename in {"train": "train.tsv", **{k: f for k, (f, _) in task.eval_sets.items()}}.items():
        path = d / filename
        if not path.is_file():
            raise MissingSplitError(f"{path}: not found (the {task.dirname} task needs it)")
        out[name] = _read_tsv(path, task)
    return out


def _read_msr(d: Path, task: GlueTask) -> dict[str, list[Example]]:
    """MRPC from the original MSR files: GLUE's dev set is the pairs of ``dev_ids.tsv`` taken out of the training
    file; without that list, ``msr_paraphrase_test.txt`` is the evaluation set."""
    train_file = d / "msr_paraphrase_train.txt"
    ids_file = d / "dev_ids.tsv"
    if ids_file.is_file():
        dev_ids = {tuple(line.split("\t")[:2]) for line in _tsv_lines(ids_file) if line.strip()}

        def is_dev(row: Mapping[str, str]) -> bool:
            return (row.get("#1 ID"), row.get("#2 ID")) in dev_ids

        dev = _read_tsv(train_file, task, keep=is_dev)
        train = _read_tsv(train_file, task, keep=lambda row: not is_dev(row))
        return {"train": train, "dev": dev}
    test_file = d / "msr_paraphrase_test.txt"
    if not test_file.is_file():
        raise MissingSplitError(f"{d}: msr_paraphrase_train.txt without dev_ids.tsv or msr_paraphrase_test.txt")
    return {"train": _read_tsv(train_file, task), "dev": _read_tsv(test_file, task)}


# ------------------------------------------------------------------------------------------------ scoring


def score_task(task: GlueTask, predictions: Sequence[Any], gold: Sequence[Any]) -> dict[str, float]:
    from bertkit.eval import metrics as m

    fns = {
        "mcc": m.matthews_corrcoef,
        "accuracy": m.accuracy,
        "f1": m.binary_f1,
        "pearson": m.pearson,
        "spearman": m.spearman,
    }
    out = {name: fns[name](gold, predictions) for name in task.metrics}
    out["score"] = statistics.fmean(out.values())
    return out


def task_score(task: GlueTask, median: Mapping[str, Mapping[str, float]]) -> float:
    """The task's headline: the mean of its metrics, averaged over its evaluation sets (MNLI m/mm)."""
    return statistics.fmean(median[s]["score"] for s in task.eval_sets)


# ------------------------------------------------------------------------------------------------ the driver


def _parse_tasks(tasks: str | Sequence[str]) -> list[str]:
    if isinstance(tasks, str):
        tasks = [t.strip().lower() for t in tasks.split(",") if t.strip()]
    names = [t.lower().replace("-", "") for t in tasks]
    if names == ["all"]:
        return list(GLUE_TASKS)
    aliases = {t.dirname.lower().replace("-", ""): t.name for t in GLUE_TASKS.values()}
    unknown = [t for t in names if t not in GLUE_TASKS and t not in aliases]
    if unknown or not names:
        raise ConfigError(f"unknown GLUE task(s) {', '.join(unknown) or '(none)'}; valid: all, {', '.join(GLUE_TASKS)}")
    return list(dict.fromkeys(aliases.get(t, t) for t in names))


def _percent(x: float) -> str:
    return f"{100 * x:.1f}"


def format_glue_table(result: Mapping[str, Any]) -> str:
    """The results as a markdown table (×100; MRPC/QQP F1/acc, STS-B Pearson/Spearman, MNLI m/mm)."""
    tasks = result.get("tasks", {})
    header, cells = [], []
    for name, task in GLUE_TASKS.items():
        entry = tasks.get(name)
        if entry is None or entry.get("status") != "done":
            continue
        med = entry["median"]
        if name == "mnli":
            header.append("MNLI-m/mm")
            cells.append(f"{_percent(med['matched']['accuracy'])}/{_percent(med['mismatched']['accuracy'])}")
        else:
            header.append(task.dirname)
            cells.append("/".join(_percent(med["dev"][k]) for k in task.metrics))
    source = result.get("source", {})
    lines = [
        f"GLUE dev results of `{source.get('source', '?')}` ({source.get('arch', '?')}"
        + (f", step {source['step']}" if source.get("step") is not None else "")
        + f"); median of {result.get('seeds', 1)} seed(s)"
        + ("; best grid point by median dev score" if result.get("grid") else "")
        + ".",
        "",
        "| " + " | ".join(["model", *header, "avg", "avg w/o WNLI"]) + " |",
        "|" + "---|" * (len(header) + 3),
    ]
    avg = result.get("average")
    avg_nw = result.get("average_no_wnli")
    lines.append(
        "| "
        + " | ".join(
            [
                source.get("arch", "?"),
                *cells,
                _percent(avg) if avg is not None else "-",
                _percent(avg_nw) if avg_nw is not None else "-",
            ]
        )
        + " |"
    )
    lines.append("")
    lines.append("Metrics: CoLA MCC; MRPC, QQP F1/accuracy; STS-B Pearson/Spearman; others accuracy (all ×100).")
    if result.get("missing"):
        lines.append("")
        lines.append("Missing: " + "; ".join(f"{k} ({v})" for k, v in result["missing"].items()) + ".")
    return "\n".join(lines) + "\n"


def _settings(
    task: GlueTask, config: FinetuneConfig, seeds: int, grid: Sequence[Mapping[str, Any]] | None, max_train: int
) -> dict[str, Any]:
    return {
        "config": config.to_dict(),
        "seeds": seeds,
        "grid": [dict(p) for p in grid] if grid else None,
        "max_train": max_train,
    }


def _run_task(
    backbone: Backbone,
    task: GlueTask,
    train: list[Example],
    splits: Mapping[str, list[Example]],
    config: FinetuneConfig,
    seeds: int,
    grid: Sequence[Mapping[str, Any]] | None,
    done: Sequence[Mapping[str, Any]],
    on_run: Callable[[dict[str, Any], list[dict[str, Any]]], None],
    emit: ProgressFn,
) -> dict[str, Any]:
    """Seeds (and grid points) of one task: encode once per sequence length, fine-tune, score every eval set."""
    from bertkit.eval.finetune import encode_sequences, finetune, run_grid

    label_ids = {label: i for i, label in enumerate(task.labels)} if task.labels else None
    num_labels = len(task.labels) if task.labels else 1
    encoded: dict[tuple[int, str], tuple[SequenceData, dict[str, SequenceData]]] = {}

    def encode(examples: list[Example], cfg: FinetuneConfig) -> SequenceData:
        gold = [label_ids[e.label] for e in examples] if label_ids else [float(e.label) for e in examples]
        pairs = [str(e.pair) for e in examples] if examples[0].pair is not None else None
        return encode_sequences(
            backbone.tokenizer, [e.text for e in examples], pairs, gold, cfg.max_len, cfg.truncation
        )

    def score(predictions: list[Any], data: SequenceData) -> dict[str, float]:
        return score_task(task, predictions, data.labels or [])

    def run_one(cfg: FinetuneConfig) -> dict[str, Any]:
        key = (cfg.max_len, cfg.truncation)
        if key not in encoded:
            encoded[key] = (encode(train, cfg), {s: encode(splits[s], cfg) for s in task.eval_sets})
        train_data, evals = encoded[key]
        return finetune(backbone, "sequence", num_labels, train_data, evals, score, "score", cfg, on_progress=emit)

    return run_grid(
        run_one,
        config,
        seeds=seeds,
        grid=grid,
        select_set=next(iter(task.eval_sets)),
        primary="score",
        done=done,
        on_run=on_run,
        on_progress=emit,
    )


def evaluate_glue(
    backbone: Backbone,
    glue_dir: str | os.PathLike[str],
    *,
    tasks: str | Sequence[str] = "all",
    out: str | os.PathLike[str] | None = None,
    seeds: int = 1,
    grid: bool | Sequence[Mapping[str, Any]] = False,
    overrides: Mapping[str, Any] | None = None,
    max_train: int = 0,
    on_progress: ProgressFn | None = None,
) -> dict[str, Any]:
    """Fine-tune ``backbone`` on each GLUE task found in ``glue_dir`` and write the results (see the module doc).

    ``overrides`` change the fine-tuning options of every task (e.g. ``{"epochs": 1, "device": "cpu"}``);
    ``max_train`` > 0 fine-tunes on a seeded sample of that many training examples (quick checks). Returns the
    result dict that is written to ``out`` (default ``RUN/eval/glue.json``, beside it ``glue.md``).
    """
    import numpy as np

    from bertkit.eval.finetune import check_config

    names = _parse_tasks(tasks)
    found, missing = find_glue_tasks(glue_dir, names)
    if not found:
        raise ConfigError(f"{glue_dir}: none of the requested GLUE tasks is there ({'; '.join(missing.values())})")
    overrides = dict(overrides or {})
    for name in names:  # unknown / invalid options, a missing head, a too long max_len: fail before reading data
        check_config(backbone, BASE_CONFIG.replace(**{**GLUE_TASKS[name].overrides, **overrides}), "sequence")
    if isinstance(max_train, bool) or not isinstance(max_train, int) or max_train < 0:
        raise ConfigError(f"max_train must be a non-negative integer, got {max_train!r}")
    grid_points = GRID if grid is True else (list(grid) if grid else None)
    emit = on_progress or (lambda event: None)

    # Read and check every task's files first: a bad label in RTE must not surface after hours of MNLI.
    data: dict[str, dict[str, list[Example]]] = {}
    layouts: dict[str, str] = {}
    for name, d in found.items():
        try:
            data[name], layouts[name] = read_glue_task(d, name)
        except MissingSplitError as e:  # an incomplete task directory counts as missing
            missing[name] = str(e)
    if not data:
        raise ConfigError(f"{glue_dir}: no complete GLUE task ({'; '.join(missing.values())})")

    out_path = results_path(out, backbone.source, "glue")
    md_path = out_path.with_suffix(".md")
    source = backbone.describe()
    previous = previous_results(out_path, source, emit)
    result: dict[str, Any] = {
        "source": source,
        "glue_dir": str(glue_dir),
        "seeds": seeds,
        "grid": bool(grid_points),
        "tasks": dict(previous.get("tasks", {})),  # tasks of earlier calls stay: one table accumulates
        "missing": missing,
    }

    def save() -> None:
        done = {k: v for k, v in result["tasks"].items() if v.get("status") == "done"}
        scores = {k: v["score"] for k, v in done.items()}
        result["average"] = statistics.fmean(scores.values()) if scores else None
        no_wnli = [v for k, v in scores.items() if k != "wnli"]
        result["average_no_wnli"] = statistics.fmean(no_wnli) if no_wnli else None
        write_text_atomic(out_path, json.dumps(result, indent=2, ensure_ascii=False) + "\n")
        write_text_atomic(md_path, format_glue_table(result))

    for index, (name, splits) in enumerate(data.items(), 1):
        task = GLUE_TASKS[name]
        config = BASE_CONFIG.replace(**{**task.overrides, **overrides})
        settings = _settings(task, config, seeds, grid_points, max_train)
        entry = result["tasks"].get(name, {})
        if entry.get("settings") != settings:
            entry = {}
        if entry.get("status") == "done":
            emit({"event": "task", "task": name, "index": index, "total": len(data), "status": "skipped"})
            continue
        emit(
            {
                "event": "task",
                "task": name,
                "index": index,
                "total": len(data),
                "status": "start",
                "train": len(splits["train"]),
                "layout": layouts[name],
            }
        )
        train = splits["train"]
        if max_train and len(train) > max_train:
            pick = np.random.default_rng(config.seed).choice(len(train), max_train, replace=False)
            train = [train[i] for i in sorted(pick.tolist())]

        def on_run(run: dict[str, Any], runs: list[dict[str, Any]], n: str = name, s: Any = settings) -> None:
            result["tasks"][n] = {"status": "partial", "settings": s, "runs": runs}
            save()

        outcome = _run_task(
            backbone,
            task,
            train,
            splits,
            config,
            seeds,
            grid_points,
            entry.get("runs", []),
            on_run,
            lambda e, n=name: emit({**e, "task": n}),
        )
        result["tasks"][name] = {
            "status": "done",
            "settings": settings,
            "layout": layouts[name],
            "train_examples": len(train),
            "eval_examples": {s: len(splits[s]) for s in task.eval_sets},
            "score": task_score(task, outcome["median"]),
            **outcome,
        }
        save()
        emit(
            {
                "event": "task",
                "task": name,
                "index": index,
                "total": len(data),
                "status": "done",
                "score": result["tasks"][name]["score"],
            }
        )
    save()
    result["out"] = str(out_path)
    result["markdown"] = str(md_path)
    return result
