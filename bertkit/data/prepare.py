"""`prepare`: turn raw corpora into a sharded, memory-mapped dataset (the work runs in Rust).

from bertkit.data.prepare import PrepareConfig, prepare
summary = prepare(PrepareConfig(inputs=["corpus.txt"], out="data/ds", tokenizer="vocab.txt",
                                instances=["nsp"]))
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from bertkit.exceptions import ConfigError

DOC_MODES = ("blank-line", "one-doc-per-line", "sentences-per-line")
SPLITTERS = ("rules", "lines", "none")
INVALID_UTF8 = ("error", "replace", "skip")
INSTANCE_KINDS = ("nsp", "mlm", "chunks")
TEXT_FILTERS = ("", "nanobert")
# Options that are unsigned integers in the Rust config (`bertkit prepare --NAME` with dashes).
_UNSIGNED = (
    "threads",
    "shard_size",
    "seed",
    "max_seq_length",
    "max_predictions_per_seq",
    "dupe_factor",
    "mlm_seq_len",
    "chunk_size",
)


@dataclass
class PrepareConfig:
    """Options of `bertkit prepare` (mirrors `PrepareConfig` in rust/core/src/prepare.rs)."""

    inputs: Sequence[str | os.PathLike[str]] = ()
    """Files, directories (recursive), glob patterns or "-" (standard input): .txt and .jsonl (also as .gz, .zst,
    .bz2, .xz), .parquet, .arrow, and folders written by `datasets.save_to_disk`. Standard input and FIFOs are read
    once, as a stream (their size and xxh3 are computed while read; `resume` is refused for them)."""
    out: str | os.PathLike[str] = ""
    """Output dataset directory."""
    tokenizer: str | os.PathLike[str] = ""
    """A WordPiece `vocab.txt` or a Hugging Face `tokenizer.json`."""
    lowercase: bool | None = None
    """Override the tokenizer's lower-casing (None: the tokenizer's own setting)."""
    doc_mode: str = "blank-line"
    """How plain text splits into documents: blank-line, one-doc-per-line, sentences-per-line (Google's format)."""
    text_field: str = "text"
    """JSONL field, or Parquet / Arrow column, holding the text."""
    on_invalid_utf8: str = "error"
    """error (names file and byte offset), replace (U+FFFD) or skip (drop the line, counted)."""
    splitter: str = "rules"
    """Sentence splitter: rules (default), lines, none."""
    threads: int = 0
    """Worker threads; 0 = all cores. The output does not depend on it."""
    shard_size: int = 64 << 20
    """Bytes of input text per corpus shard."""
    instances: Sequence[str] = ()
    """Static instances to build: nsp (Google), mlm (packed), chunks (NextLevelBERT)."""
    seed: int = 12345
    max_seq_length: int = 128
    max_predictions_per_seq: int = 20
    masked_lm_prob: float = 0.15
    short_seq_prob: float = 0.1
    dupe_factor: int = 10
    whole_word_mask: bool = False
    fix_quirks: bool = False
    """Correct Google's quirks (see docs/QUIRKS.md) instead of reproducing them."""
    mlm_seq_len: int = 0
    """Packed MLM sequence length; 0 = max_seq_length."""
    chunk_size: int = 256
    """NextLevelBERT chunk size in tokens; 0 = one sentence per chunk."""
    paragraph_token: str = ""
    """A token appended to the last sentence of every paragraph (a line of a document), e.g. ``[PAR]`` with the
    ELC-style tokenizer (ltgoslo/elc-bert ``preprocess/segment.py``); sentences are then split per line. "" = none."""
    text_filter: str = ""
    """``nanobert``: drop every character outside ``[a-zA-Z0-9\\s,.!?'"-]`` before splitting and tokenizing
    (my-best-day/medium ``scripts/tokenize_text.py``). "" = none."""
    overwrite: bool = False
    resume: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.doc_mode not in DOC_MODES:
            raise ConfigError(f"unknown document mode {self.doc_mode!r} (choose from {', '.join(DOC_MODES)})")
        if self.splitter not in SPLITTERS:
            raise ConfigError(f"unknown splitter {self.splitter!r} (choose from {', '.join(SPLITTERS)})")
        if self.on_invalid_utf8 not in INVALID_UTF8:
            raise ConfigError(f"unknown --on-invalid-utf8 {self.on_invalid_utf8!r} ({', '.join(INVALID_UTF8)})")
        for k in self.instances:
            if k not in INSTANCE_KINDS:
                raise ConfigError(f"unknown instance kind {k!r} (choose from {', '.join(INSTANCE_KINDS)})")
        if self.text_filter not in TEXT_FILTERS:
            raise ConfigError(f"unknown text filter {self.text_filter!r} (nanobert, or empty for none)")
        if not isinstance(self.paragraph_token, str):
            raise ConfigError(f"paragraph_token must be a token string, got {self.paragraph_token!r}")
        # Integers are checked here, naming the option: a negative one would otherwise reach the Rust config parser
        # as "expected usize at line 1 column N".
        for name in _UNSIGNED:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                flag = "--shard-size-mb" if name == "shard_size" else "--" + name.replace("_", "-")
                raise ConfigError(f"{name} ({flag}) must be a non-negative integer, got {value!r}")
        from bertkit.resources import THREADS_CEILING

        if self.threads > THREADS_CEILING:
            raise ConfigError(f"threads = {self.threads}: above the ceiling of {THREADS_CEILING}")
        if self.extra:
            raise ConfigError(f"unknown prepare options: {', '.join(sorted(self.extra))}")

    def to_json(self) -> str:
        d = dataclasses.asdict(self)
        d.pop("extra")
        d["inputs"] = [os.fspath(p) for p in self.inputs]
        d["out"] = os.fspath(self.out)
        d["tokenizer"] = os.fspath(self.tokenizer)
        d["instances"] = list(self.instances)
        return json.dumps(d)


ProgressCallback = Callable[[dict[str, Any]], None]


def prepare(
    config: PrepareConfig,
    on_progress: ProgressCallback | None = None,
    documents: Iterable[str | Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """Run `prepare`; returns the summary (totals, shard count, input bytes, seconds).

    `documents`: any iterable of str or of mappings with the `text_field` key (a generator, a list, a Hugging Face
    `Dataset` or streaming `IterableDataset`), read after `config.inputs` (which may then be empty). The Rust reader
    thread pulls it in batches of up to 1024 items / 4 MB of text, holding the GIL only for that, so memory stays
    bounded and the output is the same as for a JSONL file of the same texts. A None text is an empty document
    (dropped, counted); an exception raised by the iterable stops the run and is raised as itself. The manifest
    lists it as the input "<documents>" with the size and xxh3 of its texts; `resume` is refused for it.

    `on_progress(counters)` is called about every 100 ms with `bytes`, `total_bytes`, `documents`,
    `tokens`, `instances` and `stage`. Ctrl-C stops the run cleanly (`bertkit.exceptions.Cancelled`):
    completed shards stay, no manifest is written, and `resume=True` continues.

    The output directory is locked (`bertkit.locks.output_lock`) from before the first byte until the manifest is
    published: a second writer of the same directory gets `OutputLockedError` naming this process.
    """
    from bertkit import _core
    from bertkit.resources import logical_cpus

    if config.threads > logical_cpus():  # more workers than CPUs only adds contention (the output is the same)
        config = dataclasses.replace(config, threads=logical_cpus())
    from bertkit.locks import output_lock

    out = os.fspath(config.out)
    if not out:
        raise ConfigError("no output directory given (--out)")
    existed = os.path.lexists(out)
    try:
        with output_lock(out, purpose="bertkit prepare"):
            return _core.prepare(config.to_json(), on_progress, documents)
    finally:
        if not existed:  # a failed run that wrote nothing leaves no empty directory behind
            with contextlib.suppress(OSError):
                os.rmdir(out)
