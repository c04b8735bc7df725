"""Readers for fine-tuning data: classification files (TSV / CSV / JSONL) and CoNLL token classification.

Classification files (:func:`read_classification`): ``.tsv`` (tab-separated, no quoting), ``.csv`` (RFC 4180 quoting,
multi-line fields allowed) — both with a header row naming the fields — or ``.jsonl`` (one JSON object per line;
``.json`` too, or a JSON array of objects, as Hugging Face ``datasets`` reads ``.json`` files).
``text_field`` holds the text, ``pair_field`` the optional second segment, ``label_field`` the label (any string or
number, compared as text). Errors name the file and the line: unknown fields, empty texts, missing labels.

CoNLL files (:func:`read_conll`): one token per line, the token in the first column and its tag in the last
(tab-separated when the line has a tab, else whitespace-separated), a blank line between sentences, ``-DOCSTART-``
lines ignored. Tags are BIO / IOB2 (``O``, ``B-TYPE``, ``I-TYPE``). A line with a single column, or a tag that is not
BIO, is a FormatError with its line number.

:func:`find_split_files` finds ``train`` / ``dev`` (or ``validation``) / ``test`` files in a task directory
(``scripts/prepare_tasks.py`` writes that layout).
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from bertkit.exceptions import ConfigError, FormatError

__all__ = [
    "CLASSIFY_SUFFIXES",
    "CONLL_SUFFIXES",
    "Example",
    "LabelledSentence",
    "check_labels",
    "find_split_files",
    "read_classification",
    "read_conll",
]

CLASSIFY_SUFFIXES = (".tsv", ".csv", ".jsonl", ".ndjson")
CONLL_SUFFIXES = (".conll", ".conllu", ".bio", ".iob", ".txt", ".tsv")
SPLIT_NAMES = {"train": ("train",), "dev": ("dev", "validation", "valid", "val"), "test": ("test",)}


@dataclass
class Example:
    """One classification example; ``line`` is where it starts in its file (for error messages)."""

    text: str
    pair: str | None
    label: str | float | None
    line: int


@dataclass
class LabelledSentence:
    words: list[str]
    tags: list[str]
    lines: list[int]
    """Line number of every token."""


def _read_text(path: Path) -> str:
    if not path.is_file():
        raise FormatError(f"{path}: file not found")
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise FormatError(f"{path}: not UTF-8 (byte {e.start})") from None
    if not text.strip():
        raise FormatError(f"{path}: the file is empty")
    return text


def _rows(path: Path, text: str) -> Iterable[tuple[int, dict[str, object]]]:
    """(line number, record) of a TSV / CSV / JSONL file."""
    suffix = path.suffix.lower()
    if suffix == ".json" and text.lstrip().startswith("["):  # a JSON array of records
        try:
            records = json.loads(text)
        except json.JSONDecodeError as e:
            raise FormatError(f"{path}:{e.lineno}: invalid JSON: {e.msg}") from None
        for index, obj in enumerate(records, 1):
            if not isinstance(obj, dict):
                raise FormatError(f"{path}: record {index}: expected a JSON object, got {type(obj).__name__}")
            yield index, obj
        return
    if suffix in (".jsonl", ".ndjson", ".json"):  # .json: JSON Lines, as `datasets.load_dataset("json")` reads it
        for lineno, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise FormatError(f"{path}:{lineno}: invalid JSON: {e.msg}") from None
            if not isinstance(obj, dict):
                raise FormatError(f"{path}:{lineno}: expected a JSON object, got {type(obj).__name__}")
            yield lineno, obj
        return
    if suffix == ".tsv":
        lines = text.splitlines()
        header = lines[0].split("\t")
        for lineno, line in enumerate(lines[1:], 2):
            if not line.strip():
                continue
            values = line.split("\t")
            if len(values) != len(header):
                raise FormatError(f"{path}:{lineno}: {len(values)} tab-separated fields, the header has {len(header)}")
            yield lineno, dict(zip(header, values, strict=True))
        return
    if suffix == ".csv":
        reader = csv.reader(io.StringIO(text, newline=""))
        try:
            header = next(reader)
            end = reader.line_num
            for values in reader:
                lineno, end = end + 1, reader.line_num  # a quoted field may span lines: report where the row starts
                if not values or not any(v.strip() for v in values):
                    continue
                if len(values) != len(header):
                    raise FormatError(f"{path}:{lineno}: {len(values)} fields, the header has {len(header)}")
                yield lineno, dict(zip(header, values, strict=True))
        except csv.Error as e:
            raise FormatError(f"{path}:{reader.line_num}: malformed CSV ({e})") from None
        return
    raise FormatError(f"{path}: unknown file type {suffix!r} (use {', '.join(CLASSIFY_SUFFIXES)})")


def read_classification(
    path: str | os.PathLike[str],
    text_field: str = "text",
    pair_field: str | None = None,
    label_field: str = "label",
    *,
    require_labels: bool = True,
) -> list[Example]:
    """Every example of a TSV / CSV / JSONL classification file (see the module docstring)."""
    p = Path(path)
    text = _read_text(p)
    examples: list[Example] = []
    for lineno, row in _rows(p, text):
        for name in (text_field, pair_field, label_field):
            if name is not None and name not in row and (name != label_field or require_labels):
                fields = ", ".join(map(str, row)) or "none"
                raise FormatError(f"{p}:{lineno}: no field {name!r} (fields: {fields})")
        values = []
        for name in (text_field, pair_field):
            if name is None:
                values.append(None)
                continue
            value = row[name]
            if not isinstance(value, str):
                raise FormatError(f"{p}:{lineno}: field {name!r} is not text ({type(value).__name__})")
            if not value.strip():
                raise FormatError(f"{p}:{lineno}: field {name!r} is empty")
            values.append(value)
        label = row.get(label_field)
        if label is None or (isinstance(label, str) and not label.strip()):
            if require_labels:
                raise FormatError(f"{p}:{lineno}: no label in field {label_field!r}")
            label = None
        elif isinstance(label, (bool, list, dict)):
            raise FormatError(f"{p}:{lineno}: label {label!r} is not a class name or a number")
        elif isinstance(label, (int, float)):
            label = str(label)
        else:
            label = str(label).strip()
        examples.append(Example(values[0], values[1], label, lineno))
    if not examples:
        raise FormatError(f"{p}: no examples")
    return examples


def check_labels(examples: Sequence[Example], labels: Sequence[str], path: str | os.PathLike[str]) -> None:
    """FormatError naming the file and line of the first example whose label is not one of ``labels``."""
    known = set(labels)
    for ex in examples:
        if ex.label is not None and ex.label not in known:
            raise FormatError(
                f"{path}:{ex.line}: label {ex.label!r} is not one of the task's labels ({', '.join(labels)})"
            )


def _is_bio(tag: str) -> bool:
    if tag == "O":
        return True
    prefix, sep, kind = tag.partition("-")
    return bool(sep) and prefix in ("B", "I") and bool(kind)


def read_conll(path: str | os.PathLike[str]) -> list[LabelledSentence]:
    """The sentences of a CoNLL file (see the module docstring)."""
    p = Path(path)
    text = _read_text(p)
    sentences: list[LabelledSentence] = []
    words: list[str] = []
    tags: list[str] = []
    lines: list[int] = []
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.rstrip("\r\n")
        if not line.strip():
            if words:
                sentences.append(LabelledSentence(words, tags, lines))
                words, tags, lines = [], [], []
            continue
        parts = line.split("\t") if "\t" in line else line.split()
        parts = [x.strip() for x in parts]
        if parts[0] == "-DOCSTART-":
            continue
        if len(parts) < 2 or not parts[0] or not parts[-1]:
            raise FormatError(f"{p}:{lineno}: expected 'token<TAB>tag' (token first, BIO tag last), got {line!r}")
        tag = parts[-1]
        if not _is_bio(tag):
            raise FormatError(f"{p}:{lineno}: tag {tag!r} is not BIO / IOB2 (O, B-TYPE or I-TYPE)")
        words.append(parts[0])
        tags.append(tag)
        lines.append(lineno)
    if words:
        sentences.append(LabelledSentence(words, tags, lines))
    if not sentences:
        raise FormatError(f"{p}: no sentences")
    return sentences


def find_split_files(directory: str | os.PathLike[str], suffixes: Sequence[str]) -> dict[str, Path]:
    """``{"train": path, "dev": path, "test": path}`` (dev and test optional) of a task directory."""
    d = Path(directory)
    if not d.is_dir():
        raise ConfigError(f"{d}: task directory not found")
    found: dict[str, Path] = {}
    for split, names in SPLIT_NAMES.items():
        matches = [d / f"{n}{s}" for n in names for s in suffixes if (d / f"{n}{s}").is_file()]
        if len(matches) > 1:
            raise ConfigError(
                f"{d}: several {split} files ({', '.join(m.name for m in matches)}); pass them explicitly"
            )
        if matches:
            found[split] = matches[0]
    if "train" not in found:
        raise ConfigError(f"{d}: no train file (train{'|'.join(suffixes)})")
    return found
