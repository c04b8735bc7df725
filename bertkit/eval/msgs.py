"""``bertkit eval msgs``: MSGS-style probing of inductive biases (Warstadt et al., 2020, "Learning Which Features
Matter: RoBERTa Acquires a Preference for Linguistic Generalizations (Eventually)"; BabyLM's third benchmark).

Each task is a binary sentence classification whose training set is *ambiguous*: the label is explained equally well
by a linguistic feature (e.g. "the main verb is in the -ing form") and by a surface feature (e.g. "the sentence
contains *the*"). The test set is *unambiguous*: the two features disagree, so the Matthews correlation of the
predictions with the linguistic label (the linguistic bias score) is +1 when the model generalised linguistically,
-1 when it followed the surface feature. Control tasks (one feature, unambiguous in training too) check that each
feature can be learned at all.

Layouts of ``DIR``, one task per entry:

- the MSGS release (github.com/nyu-mll/msgs): ``DIR/<task>/train.jsonl`` and ``DIR/<task>/test.jsonl``;
- BabyLM's filtered copies (babylm/evaluation-pipeline-2023 ``filter-data/msgs_filtered``):
  ``DIR/<task>.train.json`` and ``DIR/<task>.validation.json`` (``.jsonl`` and ``.test.`` also accepted).

Each line is a JSON object with ``sentence`` and ``label`` (0 / 1: the label the model is trained and scored on);
when the test rows also carry ``linguistic_feature_label`` / ``surface_feature_label``, the Matthews correlation
with each is reported too (``mcc_linguistic`` / ``mcc_surface``). Other fields are ignored.

Fine-tuning goes through :mod:`bertkit.eval.finetune` (every architecture with a sequence-classification head, or
an HF BERT directory), with BabyLM's hyper-parameters (lr 5e-5, batch 64, up to 10 epochs, seed 12, sequence length
128, no warmup or weight decay: the transformers Trainer defaults). Unlike BabyLM's script, which early-stops on the
evaluation set itself (patience 10 evaluations every 200 steps), the last state is scored: nothing is chosen on the
test data (docs/QUIRKS.md). The headline is the mean test MCC over the tasks (×100, as the ELC-BERT paper reports
MSGS). Results: ``RUN/eval/msgs.json`` and ``msgs.md`` (or ``out``), rewritten atomically after every fine-tuning
run; an interrupted evaluation resumes (finished tasks and runs with the same model and settings are kept).
"""

from __future__ import annotations

import json
import os
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
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
from bertkit.eval.tasks import Example, read_classification
from bertkit.exceptions import ConfigError, FormatError

__all__ = ["MSGS_CONFIG", "MsgsTask", "evaluate_msgs", "find_msgs_tasks", "format_msgs_table", "read_msgs_task"]

MSGS_CONFIG = FinetuneConfig(
    lr=5e-5, batch_size=64, epochs=10, warmup=0.0, weight_decay=0.0, max_len=128, seed=12, select="last"
)
LABELS = ("0", "1")
FEATURE_FIELDS = {"mcc_linguistic": "linguistic_feature_label", "mcc_surface": "surface_feature_label"}
SUFFIXES = (".jsonl", ".json")


@dataclass(frozen=True)
class MsgsTask:
    name: str
    train: Path
    test: Path


def find_msgs_tasks(data: str | os.PathLike[str]) -> dict[str, MsgsTask]:
    """Task name → its train and test files, in either layout (see the module doc); sorted by name."""
    root = Path(data)
    if not root.is_dir():
        raise ConfigError(f"{root}: MSGS directory not found")
    tasks: dict[str, MsgsTask] = {}
    for d in sorted(p for p in root.iterdir() if p.is_dir()):
        train = next((d / f"train{s}" for s in SUFFIXES if (d / f"train{s}").is_file()), None)
        test = next((d / f"test{s}" for s in SUFFIXES if (d / f"test{s}").is_file()), None)
        if train is not None:
            if test is None:
                raise FormatError(f"{d}: train{train.suffix} but no test.jsonl (the unambiguous test set)")
            tasks[d.name] = MsgsTask(d.name, train, test)
    for f in sorted(root.iterdir()):
        for s in SUFFIXES:
            if f.is_file() and f.name.endswith(f".train{s}"):
                name = f.name[: -len(f".train{s}")]
                test = next(
                    (root / f"{name}.{split}{x}" for split in ("validation", "test") for x in SUFFIXES
                     if (root / f"{name}.{split}{x}").is_file()),
                    None,
                )  # fmt: skip
                if test is None:
                    raise FormatError(f"{f}: no {name}.validation.json (or .test.json) beside it")
                if name in tasks:
                    raise ConfigError(f"{root}: task {name!r} is both a directory and {f.name}")
                tasks[name] = MsgsTask(name, f, test)
    if not tasks:
        raise ConfigError(
            f"{root}: no MSGS tasks (<task>/train.jsonl + test.jsonl, or <task>.train.json + <task>.validation.json)"
        )
    return dict(sorted(tasks.items()))


def _read(path: Path, label_field: str) -> list[Example]:
    examples = read_classification(path, text_field="sentence", label_field=label_field)
    for e in examples:
        if e.label not in LABELS:
            raise FormatError(f"{path}:{e.line}: {label_field} {e.label!r} is not 0 or 1 (MSGS labels are binary)")
    return examples


def _optional_labels(path: Path, field: str) -> list[str] | None:
    """The values of ``field`` on every row, or None when no row has it (a partial column is an error)."""
    examples = read_classification(path, text_field="sentence", label_field=field, require_labels=False)
    have = [e for e in examples if e.label is not None]
    if not have:
        return None
    missing = next((e for e in examples if e.label is None), None)
    if missing is not None:
        raise FormatError(f"{path}:{missing.line}: no {field!r} (other rows of the file have it)")
    for e in have:
        if e.label not in LABELS:
            raise FormatError(f"{path}:{e.line}: {field} {e.label!r} is not 0 or 1")
    return [str(e.label) for e in examples]


def read_msgs_task(task: MsgsTask) -> dict[str, Any]:
    """``{"train": [...], "test": [...], "features": {metric: [gold label of every test row]}}``; FormatErrors name
    the file and line."""
    train = _read(task.train, "label")
    test = _read(task.test, "label")
    features = {}
    for metric, field in FEATURE_FIELDS.items():
        values = _optional_labels(task.test, field)
        if values is not None:
            features[metric] = values
    return {"train": train, "test": test, "features": features}


def _score(predictions: Sequence[int], gold: Sequence[int]) -> dict[str, float]:
    from bertkit.eval.metrics import accuracy, matthews_corrcoef

    return {"mcc": matthews_corrcoef(gold, predictions), "accuracy": accuracy(gold, predictions)}


def _run_task(
    backbone: Backbone,
    sets: Mapping[str, Any],
    config: FinetuneConfig,
    seeds: int,
    done: Sequence[Mapping[str, Any]],
    on_run: Any,
    emit: ProgressFn,
) -> dict[str, Any]:
    """The seeds of one task: encode once, fine-tune on train, score the test rows against every label column."""
    from bertkit.eval.finetune import encode_sequences, finetune, run_grid

    labels = {
        "test": [int(str(e.label)) for e in sets["test"]],
        **{metric.removeprefix("mcc_"): [int(x) for x in v] for metric, v in sets["features"].items()},
    }
    encoded: dict[tuple[int, str], tuple[SequenceData, dict[str, SequenceData]]] = {}

    def run_one(cfg: FinetuneConfig) -> dict[str, Any]:
        key = (cfg.max_len, cfg.truncation)
        if key not in encoded:
            tok = backbone.tokenizer
            gold = [int(str(e.label)) for e in sets["train"]]
            train = encode_sequences(tok, [e.text for e in sets["train"]], None, gold, cfg.max_len, cfg.truncation)
            test = encode_sequences(tok, [e.text for e in sets["test"]], None, None, cfg.max_len, cfg.truncation)
            encoded[key] = (train, {k: SequenceData(test.rows, v) for k, v in labels.items()})
        train, evals = encoded[key]
        return finetune(
            backbone,
            "sequence",
            len(LABELS),
            train,
            evals,
            lambda predictions, d: _score(predictions, d.labels or []),
            "mcc",
            cfg,
            select_on="test",
            on_progress=emit,
        )

    return run_grid(
        run_one, config, seeds=seeds, select_set="test", primary="mcc", done=done, on_run=on_run, on_progress=emit
    )


def format_msgs_table(result: Mapping[str, Any]) -> str:
    """Per task: test MCC ×100 with the label (and with each feature when given), accuracy; the mean MCC."""
    source = result.get("source", {})
    lines = [
        f"MSGS of `{source.get('source', '?')}` ({source.get('arch', '?')}"
        + (f", step {source['step']}" if source.get("step") is not None else "")
        + f"): fine-tuned on the ambiguous training set, scored on the unambiguous test set; median of "
        f"{result.get('seeds', 1)} seed(s); Matthews correlation ×100 (+100 linguistic, -100 surface generalisation).",
        "",
        "| task | train | test | MCC | MCC linguistic | MCC surface | accuracy |",
        "|---|---|---|---|---|---|---|",
    ]

    def cell(x: Any) -> str:
        return f"{100 * x:.1f}" if isinstance(x, (int, float)) else "-"

    for name, entry in result.get("tasks", {}).items():
        if entry.get("status") != "done":
            lines.append(f"| {name} | - | - | - | - | - | - |")
            continue
        med = entry["median"]
        lines.append(
            f"| {name} | {entry['train_examples']} | {entry['test_examples']} | {cell(med['test']['mcc'])} | "
            f"{cell(med.get('linguistic', {}).get('mcc'))} | {cell(med.get('surface', {}).get('mcc'))} | "
            f"{cell(med['test']['accuracy'])} |"
        )
    lines += ["", f"Mean test MCC: {cell(result.get('average'))}."]
    return "\n".join(lines) + "\n"


def evaluate_msgs(
    backbone: Backbone,
    data: str | os.PathLike[str],
    *,
    tasks: str | Sequence[str] = "all",
    out: str | os.PathLike[str] | None = None,
    seeds: int = 1,
    overrides: Mapping[str, Any] | None = None,
    on_progress: ProgressFn | None = None,
) -> dict[str, Any]:
    """Fine-tune ``backbone`` on every MSGS task of ``data`` (or the comma-separated ``tasks``) and write the results
    (see the module doc). ``overrides`` change :data:`MSGS_CONFIG` (e.g. ``{"epochs": 1, "max_steps": 50}``)."""
    from bertkit.eval.finetune import check_config

    config = MSGS_CONFIG.replace(**dict(overrides or {}))
    if config.select != "last" or config.patience:
        raise ConfigError(
            "MSGS scores the last fine-tuning state: select='best' or patience would choose on the test set "
            "(the only evaluation set an MSGS task has)"
        )
    check_config(backbone, config, "sequence")
    found = find_msgs_tasks(data)
    if isinstance(tasks, str):
        tasks = [t.strip() for t in tasks.split(",") if t.strip()]
    names = list(found) if list(tasks) == ["all"] else list(dict.fromkeys(tasks))
    unknown = [t for t in names if t not in found]
    if unknown or not names:
        raise ConfigError(f"unknown MSGS task(s) {', '.join(unknown) or '(none)'} in {data}; found: {', '.join(found)}")
    emit = on_progress or (lambda event: None)
    read = {name: read_msgs_task(found[name]) for name in names}  # every file checked before any fine-tuning

    out_path = results_path(out, backbone.source, "msgs")
    md_path = out_path.with_suffix(".md")
    source = backbone.describe()
    previous = previous_results(out_path, source, emit)
    result: dict[str, Any] = {"source": source, "data": str(data), "seeds": seeds, "tasks": {}}
    kept = previous.get("tasks", {})
    settings = {"config": config.to_dict(), "seeds": seeds}

    def save() -> None:
        done = [e for e in result["tasks"].values() if e.get("status") == "done"]
        result["average"] = statistics.fmean(e["median"]["test"]["mcc"] for e in done) if done else None
        write_text_atomic(out_path, json.dumps(result, indent=2, ensure_ascii=False) + "\n")
        write_text_atomic(md_path, format_msgs_table(result))

    for name in names:
        entry = kept.get(name, {})
        result["tasks"][name] = entry if entry.get("settings") == settings else {"status": "pending"}
    for index, name in enumerate(names, 1):
        entry = result["tasks"][name]
        if entry.get("status") == "done":
            emit({"event": "task", "task": name, "index": index, "total": len(names), "status": "skipped"})
            continue
        sets = read[name]
        emit(
            {
                "event": "task",
                "task": name,
                "index": index,
                "total": len(names),
                "status": "start",
                "train": len(sets["train"]),
                "layout": found[name].train.name,
            }
        )

        def on_run(run: dict[str, Any], runs: list[dict[str, Any]], n: str = name) -> None:
            result["tasks"][n] = {"status": "partial", "settings": settings, "runs": runs}
            save()

        outcome = _run_task(
            backbone,
            sets,
            config,
            seeds,
            entry.get("runs", []),
            on_run,
            lambda e, n=name: emit({**e, "task": n}),
        )
        result["tasks"][name] = {
            "status": "done",
            "settings": settings,
            "files": {"train": str(found[name].train), "test": str(found[name].test)},
            "train_examples": len(sets["train"]),
            "test_examples": len(sets["test"]),
            **outcome,
        }
        save()
        emit(
            {
                "event": "task",
                "task": name,
                "index": index,
                "total": len(names),
                "status": "done",
                "score": outcome["median"]["test"]["mcc"],
            }
        )
    save()
    result["out"] = str(out_path)
    result["markdown"] = str(md_path)
    return result
