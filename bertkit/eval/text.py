"""Text → model inputs for fine-tuning: the tokenizer of a run or an HF directory, BERT-style sequences.

:func:`load_tokenizer` opens a tokenizer directory (a dataset's ``tokenizer/``, an HF BERT directory) or file:
``tokenizer.json`` when there is one (any Hugging Face pipeline, e.g. ELC-BERT's byte-level WordPiece; padding and
truncation baked into the file are switched off), else ``vocab.txt`` as a ``BertWordPieceTokenizer`` whose
lower-casing comes from the dataset manifest or ``tokenizer_config.json`` (default: lower-case, as bert-base-uncased).
Text is always encoded without the tokenizer's own special tokens; :meth:`TextTokenizer.sequence` adds them the same
way for every tokenizer: ``[CLS] a [SEP]`` or ``[CLS] a [SEP] b [SEP]`` with segment ids 0 … 0 1 … 1.

Truncation: pairs drop tokens from the longer segment first (Hugging Face's ``longest_first``); single texts keep
the head, or with ``head+tail`` the first quarter and the last three quarters of the budget (Sun et al. 2019, "How to
Fine-Tune BERT for Text Classification?": head 128 + tail 382 of 512 was their best).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bertkit.exceptions import ConfigError, FormatError

__all__ = ["TRUNCATIONS", "Encoded", "TextTokenizer", "load_tokenizer", "run_tokenizer_dir"]

TRUNCATIONS = ("head", "head+tail")
HEAD_FRACTION = 0.25  # share of the budget kept from the start with head+tail truncation


@dataclass
class Encoded:
    """One model input row (no padding)."""

    input_ids: list[int]
    token_type_ids: list[int]


class TextTokenizer:
    """A Hugging Face ``tokenizers.Tokenizer`` plus the special ids of a BERT-style input."""

    def __init__(self, tokenizer: Any, source: str) -> None:
        self.tokenizer = tokenizer
        self.source = source
        ids = {}
        for token in ("[CLS]", "[SEP]", "[PAD]"):
            i = tokenizer.token_to_id(token)
            if i is None:
                raise FormatError(f"{source}: the tokenizer has no {token} token")
            ids[token] = i
        self.cls_id, self.sep_id, self.pad_id = ids["[CLS]"], ids["[SEP]"], ids["[PAD]"]
        self.vocab_size = tokenizer.get_vocab_size(with_added_tokens=True)

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids of each text, without special tokens."""
        return [e.ids for e in self.tokenizer.encode_batch(list(texts), add_special_tokens=False)]

    def encode_words(self, sentences: Sequence[Sequence[str]]) -> list[tuple[list[int], list[int | None]]]:
        """Pre-split words → (ids, word index of each id); a word that yields no token has no id."""
        out = []
        for e in self.tokenizer.encode_batch(
            [list(s) for s in sentences], is_pretokenized=True, add_special_tokens=False
        ):
            out.append((e.ids, list(e.word_ids)))
        return out

    def sequence(self, a: Sequence[int], b: Sequence[int] | None, max_len: int, truncation: str = "head") -> Encoded:
        """``[CLS] a [SEP] (b [SEP])`` truncated to ``max_len`` tokens."""
        if b is None:
            budget = max_len - 2
            a = _truncate_single(list(a), budget, truncation)
            ids = [self.cls_id, *a, self.sep_id]
            return Encoded(ids, [0] * len(ids))
        budget = max_len - 3
        a, b = list(a), list(b)
        while len(a) + len(b) > budget:  # longest first: one token at a time from the longer side
            if len(a) >= len(b):
                a.pop()
            else:
                b.pop()
        ids = [self.cls_id, *a, self.sep_id, *b, self.sep_id]
        return Encoded(ids, [0] * (len(a) + 2) + [1] * (len(b) + 1))


def _truncate_single(ids: list[int], budget: int, truncation: str) -> list[int]:
    if len(ids) <= budget:
        return ids
    if truncation == "head":
        return ids[:budget]
    head = int(round(budget * HEAD_FRACTION))
    return ids[:head] + ids[len(ids) - (budget - head) :]


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError):
        raise FormatError(f"{path}: not valid JSON") from None
    if not isinstance(data, dict):
        raise FormatError(f"{path}: not a JSON object")
    return data


def _lowercase_of(directory: Path) -> bool | None:
    """Lower-casing recorded beside a vocab.txt: a dataset manifest's tokenizer or an HF tokenizer_config.json."""
    manifest = directory.parent / "manifest.json"
    if directory.name == "tokenizer" and manifest.is_file():
        info = _read_json(manifest).get("tokenizer")
        if isinstance(info, dict) and isinstance(info.get("lowercase"), bool):
            return info["lowercase"]
    config = directory / "tokenizer_config.json"
    if config.is_file():
        value = _read_json(config).get("do_lower_case")
        if isinstance(value, bool):
            return value
    return None


def load_tokenizer(path: str | os.PathLike[str], *, lowercase: bool | None = None) -> TextTokenizer:
    """The tokenizer at ``path``: a directory holding ``tokenizer.json`` or ``vocab.txt``, or one of those files.
    ``lowercase`` (vocab.txt only) overrides what the directory records."""
    from tokenizers import Tokenizer
    from tokenizers.implementations import BertWordPieceTokenizer

    p = Path(path)
    if p.is_dir():
        candidates = [p / "tokenizer.json", p / "vocab.txt"]
        found = next((c for c in candidates if c.is_file()), None)
        if found is None:
            raise FormatError(f"{p}: no tokenizer.json or vocab.txt in the tokenizer directory")
        p = found
    elif not p.is_file():
        raise FormatError(f"{p}: tokenizer file or directory not found")
    if p.suffix == ".json":
        try:
            tok = Tokenizer.from_file(str(p))
        except Exception as e:  # tokenizers raises a bare Exception for unreadable files
            raise FormatError(f"{p}: not a Hugging Face tokenizer.json ({e})") from None
        tok.no_padding()
        tok.no_truncation()
        return TextTokenizer(tok, str(p))
    if lowercase is None:
        lowercase = _lowercase_of(p.parent)
    try:
        tok = BertWordPieceTokenizer(str(p), lowercase=True if lowercase is None else lowercase)
    except Exception as e:
        raise FormatError(f"{p}: not a WordPiece vocab.txt ({e})") from None
    return TextTokenizer(tok, str(p))


def run_tokenizer_dir(config: Any) -> Path | None:
    """The tokenizer a training run used: its dataset's ``tokenizer/`` directory, else the HF directory it was
    initialised from (``init_from``); None when neither exists any more."""
    data = getattr(config, "data", "")
    if data:
        d = Path(data) / "tokenizer"
        if (d / "tokenizer.json").is_file() or (d / "vocab.txt").is_file():
            return d
    init_from = getattr(config, "init_from", None)
    if init_from:
        d = Path(init_from)
        if (d / "tokenizer.json").is_file() or (d / "vocab.txt").is_file():
            return d
    return None


def check_max_len(max_len: int, max_positions: int | None, where: str) -> None:
    if max_len < 4:
        raise ConfigError(f"max_len must be at least 4, got {max_len}")
    if max_positions is not None and max_len > max_positions:
        raise ConfigError(f"max_len {max_len} exceeds the {max_positions} positions of {where}")
