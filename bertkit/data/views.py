"""Per-epoch views over a prepared dataset, computed in Rust, returned as numpy index arrays.

The expensive work (tokenizing) happened once in `prepare`; a view is an index computation over the
tokenized corpus, so training can draw fresh NSP pairs or shifted MLM packings every epoch, change
sequence length mid-run (128 → 512) and resume from `(seed, epoch, cursor)` without preparing again.

Positions are global token offsets into the corpus (all corpus shards concatenated in manifest order;
see `bertkit.data.open_dataset(...).token_slice`).
"""

from __future__ import annotations

import os

import numpy as np

from bertkit import _core

PathLike = str | os.PathLike[str]


def nsp_view(
    dataset: PathLike,
    seq_len: int = 128,
    seed: int = 12345,
    epoch: int = 0,
    short_seq_prob: float = 0.1,
    fix_quirks: bool = False,
) -> dict[str, np.ndarray]:
    """Google's NSP pairs for one epoch, as token ranges with truncation applied.

    Returns `a_start, a_end, b_start, b_end` (uint64 global token offsets) and `labels` (uint8,
    1 = random next). The pair for epoch `e` equals the static instances' pass `e` without masking.
    """
    return _core.nsp_view(os.fspath(dataset), seq_len, seed, epoch, short_seq_prob, fix_quirks)


def mlm_view(dataset: PathLike, seq_len: int = 128, seed: int = 12345, epoch: int = 0) -> np.ndarray:
    """Start positions (uint64, in the document stream joined by [SEP]) of the packed MLM rows of an epoch.

    The rows are cut at multiples of `seq_len - 2` after an epoch-keyed shift and returned in the
    epoch's keyed permutation order; materialise a batch of them with `mlm_rows`.
    """
    return _core.mlm_view(os.fspath(dataset), seq_len, seed, epoch)


def mlm_rows(dataset: PathLike, starts: np.ndarray, seq_len: int = 128) -> np.ndarray:
    """`[len(starts), seq_len]` uint32 rows `[CLS] tokens [SEP]` for stream positions from `mlm_view`."""
    return _core.mlm_rows(os.fspath(dataset), np.ascontiguousarray(starts, dtype=np.uint64), seq_len)


def chunk_view(dataset: PathLike, chunk_size: int = 256) -> dict[str, np.ndarray]:
    """NextLevelBERT chunks as token ranges (without [CLS]/[SEP]); `chunk_size=0` = one sentence per chunk.

    Returns `starts`, `ends` (uint64) and `document_offsets` (chunks of document d are
    `document_offsets[d]:document_offsets[d+1]`).
    """
    return _core.chunk_view(os.fspath(dataset), chunk_size)


def elc_view(dataset: PathLike, seq_len: int = 128) -> dict[str, np.ndarray]:
    """ELC-BERT's rows (ltgoslo/elc-bert ``pre_training/cache_dataset.py``) as token ranges without [CLS]/[SEP].

    Per document, sentences are appended to a row until it exceeds ``seq_len - 2`` tokens; then its first
    ``seq_len - 2`` tokens are a row and the next row starts with the whole sentence that overflowed (its head thus
    appears twice); a document's last row keeps what is left. Returns ``starts``, ``ends`` (uint64) and
    ``document_offsets`` (rows of document d are ``document_offsets[d]:document_offsets[d+1]``).
    """
    return _core.elc_view(os.fspath(dataset), seq_len)


MlmStream = _core.MlmStream
"""Repeated `rows(...)`/`view(...)` over one opened dataset without reopening it."""
