"""Train a WordPiece vocabulary with Hugging Face `tokenizers`.

Two styles:
- `bert`: BertNormalizer (lower-casing optional) + BertPreTokenizer + WordPiece with `##` continuation pieces;
  specials [PAD] [UNK] [CLS] [SEP] [MASK] get ids 0-4; min_frequency 2 by default.
- `elc`: the tokenizer of ltgoslo/elc-bert (`tokenizers/create_tokenizer.py`): no normalizer, ByteLevel
  (add_prefix_space) + individual digits, WordPiece with an empty continuation prefix; specials [UNK] [CLS]
  [SEP] [PAD] [MASK] [PAR] [TAB] get ids 0-6; min_frequency 10 by default.

Text is streamed line by line from plain, `.gz` and `.jsonl` files (or directories of them). Lines that are not
valid UTF-8 are decoded as latin-1 and counted per file.
"""

from __future__ import annotations

import gzip
import json
import os
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bertkit.exceptions import ConfigError, FormatError, InputError

STYLES = ("bert", "elc")
SPECIALS = {
    "bert": ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"],
    "elc": ["[UNK]", "[CLS]", "[SEP]", "[PAD]", "[MASK]", "[PAR]", "[TAB]"],
}
DEFAULT_MIN_FREQUENCY = {"bert": 2, "elc": 10}
PREFIX = {"bert": "##", "elc": ""}


@dataclass
class _Reading:
    """Counters filled while the corpus is streamed."""

    files: list[str] = field(default_factory=list)
    lines: int = 0
    bytes: int = 0
    latin1_lines: dict[str, int] = field(default_factory=dict)


def _expand(paths: Sequence[str | os.PathLike[str]]) -> list[Path]:
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.is_file() and not any(part.startswith(".") for part in f.parts))
            if not found:
                raise InputError(f"{p}: the directory holds no files")
            files.extend(found)
        elif p.is_file():
            files.append(p)
        else:
            raise FileNotFoundError(2, "no such corpus file or directory", str(p))
    if not files:
        raise ConfigError("no corpus files given")
    return files


def _is_jsonl(p: Path) -> bool:
    name = p.name.lower().removesuffix(".gz")
    return name.endswith(".jsonl") or name.endswith(".ndjson")


def _lines(path: Path, text_field: str, stats: _Reading) -> Iterator[str]:
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    jsonl = _is_jsonl(path)
    latin1 = 0
    stats.files.append(str(path))
    try:
        with opener(path, "rb") as f:
            for lineno, raw in enumerate(f, 1):
                stats.bytes += len(raw)
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError:
                    line = raw.decode("latin-1")
                    latin1 += 1
                if jsonl:
                    if not line.strip():
                        continue
                    try:
                        obj = json.loads(line)
                    except json.JSONDecodeError as e:
                        raise InputError(f"{path}:{lineno}: invalid JSON: {e.msg}") from None
                    if not isinstance(obj, dict) or text_field not in obj:
                        raise InputError(f"{path}:{lineno}: no {text_field!r} field (use --text-field)")
                    text = obj[text_field]
                    if not isinstance(text, str):
                        raise InputError(f"{path}:{lineno}: field {text_field!r} is not a string")
                    for sub in text.splitlines():
                        if sub.strip():
                            stats.lines += 1
                            yield sub.strip()
                else:
                    line = line.strip()
                    if line:
                        stats.lines += 1
                        yield line
    except (gzip.BadGzipFile, EOFError) as e:
        raise InputError(f"{path}: not a readable gzip file: {e}") from None
    finally:
        if latin1:
            stats.latin1_lines[str(path)] = latin1


def iter_corpus_lines(
    paths: Sequence[str | os.PathLike[str]], text_field: str = "text", stats: _Reading | None = None
) -> Iterator[str]:
    """Non-empty stripped lines of every file (recursing into directories), in order."""
    stats = stats if stats is not None else _Reading()
    for p in _expand(paths):
        yield from _lines(p, text_field, stats)


def _build(style: str, lowercase: bool):
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    specials = SPECIALS[style]
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]", continuing_subword_prefix=PREFIX[style]))
    if style == "bert":
        tok.normalizer = normalizers.BertNormalizer(
            clean_text=True, handle_chinese_chars=True, strip_accents=None, lowercase=lowercase
        )
        tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tok.decoder = decoders.WordPiece(prefix="##")
        tok.post_processor = processors.BertProcessing(
            ("[SEP]", specials.index("[SEP]")), ("[CLS]", specials.index("[CLS]"))
        )
    else:
        tok.pre_tokenizer = pre_tokenizers.Sequence(
            [pre_tokenizers.ByteLevel(add_prefix_space=True), pre_tokenizers.Digits(individual_digits=True)]
        )
        tok.decoder = decoders.ByteLevel()
        tok.post_processor = processors.ByteLevel(trim_offsets=True)
    return tok


def _write_atomic(path: Path, text: str) -> None:
    from bertkit.data.format import write_bytes_atomic

    write_bytes_atomic(path, text.encode("utf-8"))


def train_tokenizer(
    files: Sequence[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    vocab_size: int,
    style: str = "bert",
    min_frequency: int | None = None,
    lowercase: bool = True,
    limit_alphabet: int = 1000,
    text_field: str = "text",
) -> dict[str, Any]:
    """Train a WordPiece vocabulary on `files`; write `out_dir/tokenizer.json` and `out_dir/vocab.txt`.

    Returns a summary (vocab size, specials, lines and bytes read, files with latin-1 lines, seconds).
    `lowercase` applies to the `bert` style only (the `elc` style has no normalizer).
    """
    if style not in STYLES:
        raise ConfigError(f"unknown tokenizer style {style!r} (one of {', '.join(STYLES)})")
    specials = SPECIALS[style]
    if vocab_size <= len(specials):
        raise ConfigError(f"vocab_size {vocab_size} leaves no room beyond the {len(specials)} special tokens")
    min_frequency = DEFAULT_MIN_FREQUENCY[style] if min_frequency is None else min_frequency
    if min_frequency < 0:
        raise ConfigError(f"min_frequency must be >= 0, not {min_frequency}")
    paths = _expand(files)  # missing files fail here, before any work

    from tokenizers import Tokenizer, trainers

    stats = _Reading()
    lines = iter_corpus_lines(paths, text_field, stats)
    first = next(lines, None)
    if first is None:
        raise InputError(f"empty corpus: no text in {', '.join(str(p) for p in paths)}")

    def stream() -> Iterator[str]:
        yield first
        yield from lines

    tok = _build(style, lowercase)
    kw: dict[str, Any] = {"limit_alphabet": limit_alphabet} if style == "bert" else {}
    trainer = trainers.WordPieceTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=specials,
        continuing_subword_prefix=PREFIX[style],
        show_progress=False,
        **kw,
    )
    t0 = time.perf_counter()
    tok.train_from_iterator(stream(), trainer=trainer)
    seconds = time.perf_counter() - t0

    vocab = tok.get_vocab()
    n = len(vocab)
    by_id = sorted(vocab.items(), key=lambda kv: kv[1])
    if [i for _, i in by_id] != list(range(n)):
        raise FormatError("the trained vocabulary has non-contiguous ids")
    for t, i in zip(specials, range(len(specials)), strict=True):
        if vocab.get(t) != i:
            raise FormatError(f"special token {t} got id {vocab.get(t)}, expected {i}")
    if n > vocab_size:
        alphabet = n - len(specials) - sum(1 for t, _ in by_id[len(specials) :] if len(t) > 1 + len(PREFIX[style]))
        raise ConfigError(
            f"vocab_size {vocab_size} is too small: the {len(specials)} special tokens and the corpus alphabet "
            f"(about {alphabet} symbols) alone need {n} entries"
        )
    bad = [t for t, _ in by_id if "\n" in t or "\r" in t or t != t.strip()]
    if bad:
        raise FormatError(f"the trained vocabulary has tokens that cannot be written one per line: {bad[:3]!r}")

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    _write_atomic(out / "tokenizer.json", tok.to_str(pretty=True))
    _write_atomic(out / "vocab.txt", "".join(t + "\n" for t, _ in by_id))
    # The written file must load back (catches a pipeline `tokenizers` cannot serialise).
    Tokenizer.from_file(str(out / "tokenizer.json"))

    for path, count in stats.latin1_lines.items():
        warnings.warn(f"{path}: {count} line(s) were not UTF-8 and were decoded as latin-1", stacklevel=2)
    return {
        "style": style,
        "vocab_size": n,
        "requested_vocab_size": vocab_size,
        "min_frequency": min_frequency,
        "lowercase": lowercase if style == "bert" else False,
        "special_tokens": {t: i for i, t in enumerate(specials)},
        "continuing_subword_prefix": PREFIX[style],
        "files": stats.files,
        "lines": stats.lines,
        "bytes": stats.bytes,
        "latin1_lines": stats.latin1_lines,
        "seconds": round(seconds, 3),
        "tokenizer_json": str(out / "tokenizer.json"),
        "vocab_txt": str(out / "vocab.txt"),
    }
