#!/usr/bin/env python3
"""Turn the labelled files of ``scripts/fetch_data.py`` into fixed train/dev/test splits for ``bertkit eval``.

Reads ``--data`` (default ``$BERTKIT_DATA`` or ``data/``) and writes ``--out`` (default ``DATA/tasks``)::

    sentiment/{train,dev,test}.jsonl  Rotten Tomatoes snippets (SST's source text), positive / negative: the VADER
                                      ground-truth score's sign; score 0 dropped
    trec/{train,dev,test}.jsonl       TREC questions, 6 coarse classes (``fine`` keeps e.g. ``DESC:manner``);
                                      the file repeats questions: one copy kept
    sms/{train,dev,test}.jsonl        SMS spam / ham
    bbc/{train,dev,test}.jsonl        BBC News, 5 classes, title + body (long documents)
    wnut16/{train,dev,test}.conll     WNUT-16 NER tweets, token<TAB>BIO tag, blank line between tweets
    README.md, SUMMARY.json           counts per split and label

Classification records are ``{"text": ..., "label": ...}`` (JSONL). Exact duplicate texts are dropped everywhere
(keeping the first), so no text is in two splits. Splits are 80/10/10, stratified by label for the classification
tasks, by a seeded shuffle (``--seed``, default 12345): the same inputs give byte-identical files. Each task
directory appears atomically. Standard library only::

    python scripts/prepare_tasks.py --data data
    python scripts/prepare_tasks.py --data data --what sentiment,wnut16 --out /tmp/tasks
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import random
import shutil
import sys
import tempfile
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

SPLITS = (("train", 0.8), ("dev", 0.1), ("test", 0.1))
DEFAULT_SEED = 12345


class TaskError(Exception):
    """An input problem the user can act on; printed without a traceback."""


def _read(path: Path, target: str) -> str:
    if not path.is_file():
        raise TaskError(f"{path}: not found; run `python scripts/fetch_data.py --what {target} --out {path.parent}`")
    return path.read_bytes().decode("utf-8")


def repair_mojibake(text: str) -> str:
    """UTF-8 that was decoded as latin-1 once (``Weâ\\x80\\x99ve`` → ``We’ve``); other text is returned as is."""
    if not any("\x80" <= c <= "\xff" for c in text):
        return text
    try:
        return text.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return text


def dedupe(records: list[dict]) -> tuple[list[dict], int]:
    seen: set[str] = set()
    out = []
    for r in records:
        if r["text"] not in seen:
            seen.add(r["text"])
            out.append(r)
    return out, len(records) - len(out)


# ------------------------------------------------------------------------------------------------ converters


def sentiment_records(text: str, name: str = "movie_review_snippets.tsv") -> tuple[list[dict], dict]:
    """``id<TAB>score<TAB>text`` lines (header first); the sign of the score is the label, 0 is dropped."""
    lines = text.replace("\r\n", "\n").split("\n")
    if not lines or lines[0].strip().split("\t")[:3] != ["id", "sentiment", "text"]:
        raise TaskError(f"{name}: expected the header 'id<TAB>sentiment<TAB>text'")
    records, zero = [], 0
    for lineno, line in enumerate(lines[1:], 2):
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) != 3:
            raise TaskError(f"{name}:{lineno}: expected 3 tab-separated fields, got {len(parts)}")
        try:
            score = float(parts[1])
        except ValueError:
            raise TaskError(f"{name}:{lineno}: score {parts[1]!r} is not a number") from None
        if score == 0:
            zero += 1
            continue
        body = " ".join(repair_mojibake(parts[2]).split())
        records.append({"text": body, "label": "positive" if score > 0 else "negative", "score": score})
    records, dupes = dedupe(records)
    return records, {"dropped_zero_score": zero, "duplicates": dupes}


def trec_records(text: str, name: str = "trec_questions.txt") -> tuple[list[dict], dict]:
    """``COARSE:fine question`` lines; repeated questions are kept once."""
    records = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        label, _, question = line.strip().partition(" ")
        coarse, colon, fine = label.partition(":")
        if not colon or not coarse.isupper() or not fine or not question.strip():
            raise TaskError(f"{name}:{lineno}: expected 'COARSE:fine question', got {line[:60]!r}")
        records.append({"text": question.strip(), "label": coarse, "fine": label})
    records, dupes = dedupe(records)
    return records, {"duplicates": dupes}


def sms_records(text: str, name: str = "sms_spam.csv") -> tuple[list[dict], dict]:
    """CSV ``,spam,text`` (index, 0/1, message; messages may span lines)."""
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader, None)
    if header is None or header[1:] != ["spam", "text"]:
        raise TaskError(f"{name}: expected the header ',spam,text'")
    records = []
    for row in reader:
        if not row:
            continue
        if len(row) != 3 or row[1] not in ("0", "1"):
            raise TaskError(f"{name}:{reader.line_num}: expected 'index,0|1,text'")
        body = " ".join(row[2].split())
        if body:
            records.append({"text": body, "label": "spam" if row[1] == "1" else "ham"})
    records, dupes = dedupe(records)
    return records, {"duplicates": dupes}


def bbc_records(text: str, name: str = "bbc.jsonl") -> tuple[list[dict], dict]:
    """fetch_data's bbc.jsonl (title, text, label) → title and body as one text."""
    records = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            r = json.loads(line)
            records.append({"text": r["title"].strip() + "\n" + r["text"].strip(), "label": r["label"]})
        except (ValueError, KeyError, AttributeError, TypeError):
            raise TaskError(f"{name}:{lineno}: expected a JSON object with title, text and label") from None
    records, dupes = dedupe(records)
    return records, {"duplicates": dupes}


def conll_sentences(text: str, name: str = "wnut16_train.conll") -> list[list[tuple[str, str]]]:
    """``token<TAB>tag`` lines, a blank (or whitespace-only) line between sentences."""
    sentences: list[list[tuple[str, str]]] = []
    current: list[tuple[str, str]] = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            if current:
                sentences.append(current)
                current = []
            continue
        parts = line.split("\t")
        if len(parts) != 2 or not parts[0] or not parts[1]:
            raise TaskError(f"{name}:{lineno}: expected 'token<TAB>tag', got {line!r}")
        current.append((parts[0], parts[1].strip()))
    if current:
        sentences.append(current)
    return sentences


# ------------------------------------------------------------------------------------------------ splitting


def stratified_splits(records: Sequence[dict], seed: int) -> dict[str, list[dict]]:
    """80/10/10 of every label (seeded shuffle per label), each split then shuffled."""
    by_label: dict[str, list[dict]] = {}
    for r in records:
        by_label.setdefault(r["label"], []).append(r)
    out: dict[str, list[dict]] = {name: [] for name, _ in SPLITS}
    for label in sorted(by_label):
        members = list(by_label[label])
        random.Random(f"{seed}:{label}").shuffle(members)
        n_dev = round(SPLITS[1][1] * len(members))
        n_test = round(SPLITS[2][1] * len(members))
        out["dev"] += members[:n_dev]
        out["test"] += members[n_dev : n_dev + n_test]
        out["train"] += members[n_dev + n_test :]
    for name in out:
        random.Random(f"{seed}:{name}").shuffle(out[name])
    return out


def random_splits(items: Sequence, seed: int) -> dict[str, list]:
    order = list(items)
    random.Random(seed).shuffle(order)
    n_dev = round(SPLITS[1][1] * len(order))
    n_test = round(SPLITS[2][1] * len(order))
    return {"dev": order[:n_dev], "test": order[n_dev : n_dev + n_test], "train": order[n_dev + n_test :]}


# ------------------------------------------------------------------------------------------------ writing


def _publish_dir(files: dict[str, str], target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        for name, text in files.items():
            (tmp / name).write_text(text, encoding="utf-8", newline="\n")
        os.chmod(tmp, 0o755)
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_classification(out: Path, task: str, records: list[dict], notes: dict, seed: int) -> dict:
    splits = stratified_splits(records, seed)
    files = {
        f"{name}.jsonl": "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
        for name, rows in splits.items()
    }
    _publish_dir(files, out / task)
    return {
        "format": "jsonl",
        "counts": {name: len(rows) for name, rows in splits.items()},
        "labels": {name: dict(sorted(Counter(r["label"] for r in rows).items())) for name, rows in splits.items()},
        **notes,
    }


def write_conll(out: Path, task: str, sentences: list[list[tuple[str, str]]], seed: int) -> dict:
    splits = random_splits(sentences, seed)
    files = {
        f"{name}.conll": "\n".join("".join(f"{w}\t{t}\n" for w, t in s) for s in rows) for name, rows in splits.items()
    }
    _publish_dir(files, out / task)

    def entities(rows: list) -> dict[str, int]:
        return dict(sorted(Counter(t[2:] for s in rows for _, t in s if t.startswith("B-")).items()))

    return {
        "format": "conll",
        "counts": {name: len(rows) for name, rows in splits.items()},
        "tokens": {name: sum(len(s) for s in rows) for name, rows in splits.items()},
        "entities": {name: entities(rows) for name, rows in splits.items()},
    }


# task → (input file in DATA, fetch_data target, converter or None for CoNLL)
TASKS: dict[str, tuple[str, str, Callable[[str, str], tuple[list[dict], dict]] | None]] = {
    "sentiment": ("movie_review_snippets.tsv", "sentiment", sentiment_records),
    "trec": ("trec_questions.txt", "trec", trec_records),
    "sms": ("sms_spam.csv", "sms", sms_records),
    "bbc": ("bbc.jsonl", "bbc", bbc_records),
    "wnut16": ("wnut16_train.conll", "wnut16", None),
}


def summary_markdown(summary: dict[str, dict], seed: int) -> str:
    lines = [
        "# bertkit evaluation tasks",
        "",
        f"Written by `scripts/prepare_tasks.py` (seed {seed}) from the files of `scripts/fetch_data.py`.",
        "",
        "| task | format | train | dev | test | labels (train) | notes |",
        "|---|---|---|---|---|---|---|",
    ]
    for task, s in summary.items():
        c = s["counts"]
        if s["format"] == "conll":
            labels = ", ".join(f"{k} {v}" for k, v in s["entities"]["train"].items())
            notes = f"{s['tokens']['train']:,} train tokens; entity counts"
        else:
            labels = ", ".join(f"{k} {v}" for k, v in s["labels"]["train"].items())
            notes = "; ".join(f"{k.replace('_', ' ')} {v}" for k, v in s.items() if isinstance(v, int))
        lines.append(f"| {task} | {s['format']} | {c['train']:,} | {c['dev']:,} | {c['test']:,} | {labels} | {notes} |")
    return "\n".join(lines) + "\n"


def prepare(data: Path, out: Path, tasks: Sequence[str], seed: int, log: Callable[[str], None]) -> dict[str, dict]:
    inputs = {task: _read(data / TASKS[task][0], TASKS[task][1]) for task in tasks}  # all inputs checked first
    summary = {}
    for task in tasks:
        name, _, convert = TASKS[task]
        if convert is None:
            summary[task] = write_conll(out, task, conll_sentences(inputs[task], name), seed)
        else:
            records, notes = convert(inputs[task], name)
            summary[task] = write_classification(out, task, records, notes, seed)
        c = summary[task]["counts"]
        log(f"wrote    {out / task}/ (train {c['train']:,}, dev {c['dev']:,}, test {c['test']:,})")
    old = {}
    if (out / "SUMMARY.json").is_file():  # accumulate over runs with different --what
        old = json.loads((out / "SUMMARY.json").read_text(encoding="utf-8")).get("tasks", {})
    merged = {**old, **summary}
    merged = {t: merged[t] for t in TASKS if t in merged}
    (out / "SUMMARY.json").write_text(json.dumps({"seed": seed, "tasks": merged}, indent=2) + "\n", encoding="utf-8")
    (out / "README.md").write_text(summary_markdown(merged, seed), encoding="utf-8")
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path(os.environ.get("BERTKIT_DATA", "data")))
    parser.add_argument("--out", type=Path, default=None, help="default: DATA/tasks")
    parser.add_argument("--what", default=",".join(TASKS), help="comma-separated subset of: " + ",".join(TASKS))
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    tasks = [t.strip() for t in args.what.split(",") if t.strip()]
    unknown = [t for t in tasks if t not in TASKS]
    if unknown or not tasks:
        parser.error(f"unknown task(s) {','.join(unknown) or args.what!r}; choose from {','.join(TASKS)}")
    out = args.out or args.data / "tasks"
    try:
        prepare(args.data, out, list(dict.fromkeys(tasks)), args.seed, (lambda m: None) if args.quiet else print)
    except (TaskError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    if not args.quiet:
        print(f"summary: {out / 'README.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
