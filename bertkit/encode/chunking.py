"""Texts → NextLevelBERT chunks, exactly as ``bertkit prepare --instances chunks`` cuts a document.

A document is split into sentences by the Rust splitter and each sentence is tokenized by the Rust WordPiece
tokenizer (the ones prepare uses). ``chunk_size = N > 0``: the document's tokens, sentences concatenated, are cut into
pieces of ``N - 2`` tokens (the last one shorter); ``N = 0``: one piece per sentence, at most 254 tokens (the
original's `max_seq_len - 2` with `max_seq_len = 256`). Each piece
becomes ``[CLS] piece [SEP]``. So a text embedded at inference time gets the chunks its document got in training.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from bertkit.exceptions import ConfigError

__all__ = ["MAX_SENTENCE_TOKENS", "Chunker", "check_chunk_size"]

MAX_SENTENCE_TOKENS = 254
"""Sentence chunks keep at most this many tokens (as the Rust chunker: 256 with [CLS] and [SEP], like
aiintelligentsystems/next-level-bert's ``create_input_sents``)."""


def check_chunk_size(chunk_size: Any) -> int:
    """``chunk_size`` if it is 0 (sentence chunks) or an integer >= 3, else a ConfigError."""
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 0 or chunk_size in (1, 2):
        raise ConfigError(
            f"chunk_size must be 0 (one sentence per chunk) or an integer >= 3 ([CLS] + tokens + [SEP]), "
            f"got {chunk_size!r}"
        )
    return chunk_size


class Chunker:
    """Cuts texts into ``[CLS] piece [SEP]`` id arrays with a ``bertkit._core.WordPieceTokenizer``."""

    def __init__(self, tokenizer: Any, chunk_size: int, *, splitter: str = "rules") -> None:
        self.tokenizer = tokenizer
        self.chunk_size = check_chunk_size(chunk_size)
        self.splitter = splitter
        ids = tokenizer.info()["special_ids"]
        self.cls_id, self.sep_id = int(ids["cls"]), int(ids["sep"])

    def chunk(self, texts: Sequence[str]) -> list[list[np.ndarray]]:
        """Per text, its chunks (int64 arrays); a text without any token gets an empty list."""
        from bertkit import _core

        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise ConfigError(f"document {i} is a {type(t).__name__}, not a string")
        sentences = [_core.split_sentences(t, self.splitter) for t in texts]
        flat = [s for doc in sentences for s in doc]
        encoded = self.tokenizer.encode_batch(flat) if flat else []
        out, k = [], 0
        for doc in sentences:
            pieces = [p for p in encoded[k : k + len(doc)] if p]
            k += len(doc)
            out.append(self._wrap(pieces))
        return out

    def _wrap(self, sentences: list[list[int]]) -> list[np.ndarray]:
        if self.chunk_size == 0:
            pieces = [np.asarray(s[:MAX_SENTENCE_TOKENS], dtype=np.int64) for s in sentences]
        else:
            tokens = np.asarray([t for s in sentences for t in s], dtype=np.int64)
            step = self.chunk_size - 2
            pieces = [tokens[i : i + step] for i in range(0, len(tokens), step)]
        return [np.concatenate([[self.cls_id], p, [self.sep_id]]).astype(np.int64) for p in pieces]
