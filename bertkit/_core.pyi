"""Type stubs for the compiled extension `bertkit._core` (rust/py). Users import `bertkit.data` instead.

Checked against the built module with ``python -m mypy.stubtest bertkit._core`` (``make lint``). Errors raised by
every function: `OSError` (and its `FileNotFoundError` / `PermissionError` subclasses) for I/O, naming the file, and
the `bertkit.exceptions` classes for the rest (`InputError`, `FormatError`, `ConfigError`, `DatasetExistsError`,
`Cancelled`).
"""

from collections.abc import Callable, Iterable, Mapping, Sequence
from os import PathLike
from typing import Literal, TypedDict, final, type_check_only

import numpy as np
import numpy.typing as npt

__all__ = [
    "__version__",
    "prepare",
    "expand_inputs",
    "parquet_row_groups",
    "split_sentences",
    "WordPieceTokenizer",
    "nsp_view",
    "mlm_view",
    "mlm_rows",
    "chunk_view",
    "elc_view",
    "MlmStream",
]

__version__: str
"""The version of the Rust crate the extension was built from (the same as `bertkit.__version__`)."""

_Path = str | PathLike[str]
_U64 = npt.NDArray[np.uint64]

_Splitter = Literal["rules", "lines", "none"]
_Stage = Literal["tokenize", "instances", "done"]

# prepare.rs

@type_check_only
class _PrepareProgress(TypedDict):
    """The counters `prepare` hands its callback (cumulative since the start of the run)."""

    bytes: int
    total_bytes: int
    documents: int
    tokens: int
    instances: int
    stage: _Stage

@type_check_only
class _Totals(TypedDict):
    documents: int
    sentences: int
    tokens: int
    instances: dict[str, int]
    """Instances per kind: ``nsp``, ``mlm``, ``chunks``."""
    skipped: dict[str, int]
    """What was dropped on the way, by reason (e.g. ``empty_documents``, ``invalid_utf8_lines``)."""

@type_check_only
class _PrepareSummary(TypedDict):
    out: str
    totals: _Totals
    shards: int
    input_bytes: int
    resumed_shards: int
    seconds: float
    notes: list[str]
    """Things the user should know that are not errors (an input given twice, read once)."""

def prepare(
    config_json: str,
    callback: Callable[[_PrepareProgress], object] | None = None,
    documents: Iterable[str | Mapping[str, object]] | None = None,
) -> _PrepareSummary:
    """Prepare a dataset (tokenized corpus shards, optional static instances, then the manifest).

    `config_json` is a JSON object of `bertkit.data.prepare.PrepareConfig` fields. `documents`, an iterable of texts
    or of mappings holding the config's text field, is read after the input files (named ``<documents>`` in the
    manifest and in errors); an exception it raises stops the run and is re-raised as itself. The work runs on a
    worker thread with its own thread pool and the GIL released; the calling thread calls `callback(counters)` about
    every 100 ms and checks for Ctrl-C, which cancels the run (`Cancelled`; completed shards stay, no manifest is
    written). An exception raised by the callback stops the run the same way and is re-raised. Returns the run's
    summary. Callers go through `bertkit.data.prepare.prepare`, which also holds the output directory's lock.
    """

def expand_inputs(specs: list[str]) -> list[str]:
    """The files `prepare` would read for these input specs, in its order: files as given, directories
    recursively (sorted, hidden files skipped), glob patterns (sorted), Hugging Face datasets folders in their
    listed order, ``-`` for stdin. A spec that matches nothing raises `ConfigError` naming it."""

def parquet_row_groups(path: str) -> list[int]:
    """The number of rows of each row group of the Parquet file at `path` (what ``prepare --ray`` partitions)."""

# splitter.rs

def split_sentences(text: str, splitter: _Splitter = "rules") -> list[str]:
    """The sentences of `text`, in order, trimmed of surrounding whitespace and never empty.

    `splitter`: ``"rules"`` the rule-based English splitter, ``"lines"`` one sentence per non-blank line, ``"none"``
    the whole (trimmed) text as one sentence. Another name raises `ConfigError`. Runs without the GIL.
    """

# views.rs

@type_check_only
class _NspView(TypedDict):
    """One epoch of NSP pairs: segment A is ``tokens[a_start:a_end]``, B ``tokens[b_start:b_end]`` (global token
    indices into the dataset's concatenated corpus), ``labels`` 1 = B is a random next segment, 0 = the true next."""

    a_start: _U64
    a_end: _U64
    b_start: _U64
    b_end: _U64
    labels: npt.NDArray[np.uint8]

@type_check_only
class _ChunkView(TypedDict):
    """NextLevelBERT chunks as global token ranges ``tokens[starts[i]:ends[i]]`` without [CLS]/[SEP]; the chunks of
    document d are ``document_offsets[d] : document_offsets[d + 1]``."""

    starts: _U64
    ends: _U64
    document_offsets: _U64

def nsp_view(
    dataset: _Path,
    seq_len: int = 128,
    seed: int = 12345,
    epoch: int = 0,
    short_seq_prob: float = 0.1,
    fix_quirks: bool = False,
) -> _NspView:
    """NSP pairs of one epoch over a prepared dataset, built as google-research/bert's `create_pretraining_data.py`
    builds them (target lengths, random next segment with put-back, `truncate_seq_pair`), without masking.

    Epoch `e` gives the pairs of dupe pass `e` of the static NSP instances with the same `seed`. Randomness is keyed
    by (seed, epoch, document), so the result does not depend on the number of threads. `fix_quirks` switches the
    original's quirks off (see docs/QUIRKS.md).
    """

def mlm_view(dataset: _Path, seq_len: int = 128, seed: int = 12345, epoch: int = 0) -> _U64:
    """The packed-MLM row starts of one epoch (positions in the document stream, see `mlm_rows`), in the epoch's
    visiting order (a permutation keyed by `seed` and `epoch`). `seq_len` counts [CLS] and [SEP]."""

def mlm_rows(dataset: _Path, starts: npt.ArrayLike, seq_len: int = 128) -> npt.NDArray[np.uint32]:
    """Rows ``[CLS] + stream[s : s + seq_len - 2] + [SEP]`` for each start `s`, as a uint32 array
    ``[len(starts), seq_len]``; rows running past the end of the stream are padded with [PAD].

    The stream is the documents with at least one token, in corpus order, with one [SEP] between consecutive ones.
    Opens the dataset on every call: use `MlmStream` for repeated reads.
    """

def chunk_view(dataset: _Path, chunk_size: int = 256) -> _ChunkView:
    """NextLevelBERT chunk token ranges of a prepared dataset. ``chunk_size = N > 0``: each document's tokens cut into
    pieces of ``N - 2`` tokens (the last one shorter); ``0``: one sentence per chunk (at most 254 tokens)."""

def elc_view(dataset: _Path, seq_len: int = 128) -> _ChunkView:
    """ELC-BERT's rows (ltgoslo/elc-bert `pre_training/cache_dataset.py`) as global token ranges without [CLS]/[SEP]:
    per document, sentences appended until a row exceeds ``seq_len - 2`` tokens, that row cut to ``seq_len - 2``, the
    next one starting with the whole overflowing sentence; the rows of document d are
    ``document_offsets[d] : document_offsets[d + 1]``."""

@final
class MlmStream:
    """A prepared dataset opened once (memory-mapped, with the stream's separator index built on opening) for
    repeated packed-MLM reads: ``MlmStream(dataset).rows(starts, seq_len)``. Immutable, usable from any thread."""

    def __new__(cls, dataset: _Path) -> MlmStream:
        """Open `dataset` (a directory written by `prepare`)."""

    def __len__(self) -> int:
        """The stream's length: the corpus tokens plus one separator between consecutive non-empty documents."""

    def view(self, seq_len: int = 128, seed: int = 12345, epoch: int = 0) -> _U64:
        """The row starts of one epoch, as `mlm_view` returns them."""

    def rows(self, starts: npt.ArrayLike, seq_len: int = 128) -> npt.NDArray[np.uint32]:
        """The rows for `starts`, as `mlm_rows` returns them."""

# tokenizer.rs

@type_check_only
class _SpecialIds(TypedDict):
    pad: int
    unk: int
    cls: int
    sep: int
    mask: int

@type_check_only
class _TokenizerInfo(TypedDict):
    """A tokenizer's identity, as a dataset manifest records it."""

    kind: Literal["wordpiece"]
    source: str
    """The file name the tokenizer was read from (``vocab.txt`` or a ``tokenizer.json``)."""
    vocab_sha256: str
    vocab_size: int
    lowercase: bool
    strip_accents: bool | None
    continuing_subword_prefix: str
    special_tokens: dict[str, int]
    special_ids: _SpecialIds
    pipeline: Literal["bert", "byte_level"]
    """``bert``: BertNormalizer + BertPreTokenizer; ``byte_level``: ELC-BERT's ByteLevel + Digits."""
    max_input_chars_per_word: int

@final
class WordPieceTokenizer:
    """A WordPiece tokenizer (ids only, no special tokens added), read from a ``vocab.txt`` (one token per line) or a
    Hugging Face ``tokenizer.json`` with a WordPiece model. Immutable, usable from any thread."""

    def __new__(cls, path: _Path, lowercase: bool | None = None) -> WordPieceTokenizer:
        """Read the tokenizer at `path`. `lowercase`: None takes it from the tokenizer.json's normalizer (True for a
        vocab.txt). Errors name the file: unreadable, unsupported tokenizer.json pipeline, a missing [CLS], [SEP],
        [MASK] or [UNK]."""

    @property
    def vocab_size(self) -> int:
        """The number of tokens in the vocabulary."""

    def encode(self, text: str) -> list[int]:
        """The ids of `text`, without special tokens. Runs without the GIL."""

    def encode_batch(self, texts: Sequence[str], threads: int = 0) -> list[list[int]]:
        """The ids of each text, on `threads` threads (0: one per core), without the GIL."""

    def decode(self, ids: Sequence[int]) -> str:
        """The text of `ids`; ids outside the vocabulary are skipped. The ``bert`` pipeline joins tokens with spaces
        and continuation pieces (``##``) to the previous one; ``byte_level`` maps the tokens back to their bytes."""

    def id_to_token(self, id: int) -> str | None:
        """The token of `id`, or None when `id` is outside the vocabulary."""

    def token_to_id(self, token: str) -> int | None:
        """The id of `token`, or None when it is not in the vocabulary."""

    def info(self) -> _TokenizerInfo:
        """The tokenizer's identity (file, vocabulary hash, normalisation, special ids) as a manifest records it."""
