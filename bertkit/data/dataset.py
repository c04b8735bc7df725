"""Read a prepared dataset: memory-mapped arrays, global indexing across shards, instances, decode, verify.

Everything here is numpy only (no torch). Opening a dataset maps every array (`np.load(mmap_mode="r")`), checks
its dtype, shape and size against the manifest and validates its values with vectorised passes (offsets, id
ranges), optionally after checking each shard's checksum; there is no Python loop over tokens: a global index
finds its shard with `np.searchsorted` over the shards' start offsets.
"""

from __future__ import annotations

import errno
import hashlib
import operator
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bertkit.data.format import (
    ARRAYS,
    DTYPES,
    TOKENIZER_DIR,
    TOKENIZER_JSON,
    VOCAB_FILE,
    ArrayFile,
    Manifest,
    Shard,
    Totals,
    read_manifest,
)
from bertkit.exceptions import ConfigError, FormatError

_CHUNK = 1 << 20  # verify reads files in 1 MiB pieces


def _index(i: Any, n: int, what: str) -> int:
    """A valid non-negative index < n, else IndexError (negative indices are rejected, not wrapped)."""
    try:
        j = operator.index(i)
    except TypeError:
        raise TypeError(f"{what} indices must be integers or slices, not {type(i).__name__}") from None
    if j < 0 or j >= n:
        raise IndexError(f"{what} index {j} out of range (0 <= index < {n})")
    return j


def _starts(counts: Iterable[int]) -> np.ndarray:
    """Prefix sums with a leading 0 (int64): shard k covers [starts[k], starts[k+1])."""
    return np.concatenate([[0], np.cumsum(np.fromiter(counts, dtype=np.int64))]).astype(np.int64)


def _locate(starts: np.ndarray, i: int) -> tuple[int, int]:
    """(shard, local index) of global index i (0 <= i < starts[-1]); empty shards are skipped."""
    k = int(np.searchsorted(starts, i, side="right")) - 1
    return k, i - int(starts[k])


def _load_array(root: Path, shard: Shard, name: str, dtype: str, ndim: int) -> np.ndarray:
    """Memory-map one array of a shard, checking it against the manifest record."""
    rec: ArrayFile | None = shard.arrays.get(name)
    if rec is None:
        raise FormatError(f"{root}: shard {shard.name!r} ({shard.kind}) has no {name!r} array in the manifest")
    path = root / rec.path
    if rec.dtype != dtype:
        raise FormatError(f"{path}: manifest records dtype {rec.dtype} for {name!r}, expected {dtype}")
    if len(rec.shape) != ndim:
        raise FormatError(f"{path}: manifest records shape {rec.shape} for {name!r}, expected {ndim} dimension(s)")
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise FileNotFoundError(
            errno.ENOENT, f"shard {shard.name!r}: array file is missing (run bertkit verify)", str(path)
        ) from None
    if size != rec.size:
        raise FormatError(
            f"{path}: {size} bytes, the manifest says {rec.size} (shard {shard.name!r} is truncated or corrupt; "
            "run bertkit verify)"
        )
    try:
        a = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise FormatError(f"{path}: not a readable .npy file: {e}") from None
    if a.dtype != np.dtype(DTYPES[dtype]) or list(a.shape) != list(rec.shape):
        raise FormatError(
            f"{path}: holds {a.dtype.name}{list(a.shape)}, the manifest says {rec.dtype}{list(rec.shape)} "
            f"(shard {shard.name!r})"
        )
    # A plain ndarray view (its base keeps the map alive): slices are cheaper and print as arrays.
    return a.view(np.ndarray)


def _check(cond: bool, root: Path, shard: Shard, what: str) -> None:
    if not cond:
        raise FormatError(f"{root}: shard {shard.name!r} ({shard.kind}) is inconsistent: {what}")


def _check_offsets(root: Path, shard: Shard, name: str, offsets: np.ndarray, n: int, end: int) -> None:
    """Offsets have n+1 entries, start at 0 and end at `end` (reads two elements)."""
    _check(len(offsets) == n + 1, root, shard, f"{name} has {len(offsets)} entries, expected {n + 1}")
    _check(int(offsets[0]) == 0, root, shard, f"{name} does not start at 0")
    _check(int(offsets[-1]) == end, root, shard, f"{name} ends at {int(offsets[-1])}, expected {end}")


_BLOCK = 1 << 22  # elements per vectorised check (bounds the temporaries on huge arrays)


def _bad(root: Path, shard: Shard, name: str, what: str) -> FormatError:
    path = root / shard.arrays[name].path if name in shard.arrays else root
    return FormatError(
        f"{path}: shard {shard.name!r} ({shard.kind}) array {name!r} is corrupt: {what} (run bertkit verify)"
    )


def _check_monotone(root: Path, shard: Shard, name: str, offsets: np.ndarray, end: int) -> None:
    """Offsets never decrease and stay within [0, end] (the first and last entries are checked by _check_offsets)."""
    for lo in range(0, max(len(offsets) - 1, 0), _BLOCK):
        a = offsets[lo : lo + _BLOCK + 1]
        down = np.flatnonzero(a[1:] < a[:-1])
        if down.size:
            i = lo + int(down[0]) + 1
            raise _bad(
                root, shard, name, f"entry {i} ({int(offsets[i])}) is below entry {i - 1} ({int(offsets[i - 1])})"
            )
        if int(a.max(initial=0)) > end:
            i = lo + int(np.argmax(a > end))
            raise _bad(root, shard, name, f"entry {i} ({int(offsets[i])}) is beyond the end {end}")


def _check_below(root: Path, shard: Shard, name: str, values: np.ndarray, limit: int, what: str) -> None:
    """Every value < limit (token ids < vocab size, labels < 2, sources < number of inputs)."""
    for lo in range(0, values.size, _BLOCK):
        a = values.reshape(-1)[lo : lo + _BLOCK]
        if a.size and int(a.max()) >= limit:
            i = lo + int(np.argmax(a >= limit))
            raise _bad(root, shard, name, f"entry {i} is {int(values.reshape(-1)[i])}, {what} must be < {limit}")


# xxh3 of array files already checked by this process: (real path, size, mtime_ns) -> xxh3.
_VERIFIED: dict[tuple[str, int, int], str] = {}


def file_xxh3(path: Path) -> str:
    """xxh3-64 of a file, computed once per process (cached by real path, size and mtime)."""
    st = path.stat()
    key = (os.path.realpath(path), st.st_size, st.st_mtime_ns)
    digest = _VERIFIED.get(key)
    if digest is None:
        _, digest = _hash_file(path, bytearray(_CHUNK), None)
        _VERIFIED[key] = digest
    return digest


def _verify_checksums(root: Path, shard: Shard) -> None:
    """Hash every array file of a shard once per process (cached by path, size and mtime) against the manifest."""
    for name, rec in shard.arrays.items():
        path = root / rec.path
        try:
            digest = file_xxh3(path)
        except FileNotFoundError:
            raise FileNotFoundError(
                errno.ENOENT, f"shard {shard.name!r}: array file {name!r} is missing (run bertkit verify)", str(path)
            ) from None
        if digest != rec.xxh3:
            raise FormatError(
                f"{path}: shard {shard.name!r} ({shard.kind}) array {name!r} fails its checksum (xxh3 {digest}, "
                f"the manifest says {rec.xxh3}): the file is corrupt (run bertkit verify)"
            )


@dataclass(frozen=True)
class Document:
    """One document: its sentences (views of token ids), all its tokens, and the input file it came from."""

    index: int
    sentences: list[np.ndarray]
    tokens: np.ndarray
    source: str

    def __len__(self) -> int:
        return len(self.sentences)


@dataclass(frozen=True)
class _Limits:
    """What array values are checked against when a dataset is opened."""

    vocab_size: int
    inputs: int | None  # number of input files (document_sources index them); None: not recorded
    checksums: bool  # hash each shard's files (once per process) before reading them


class _CorpusShard:
    def __init__(self, root: Path, shard: Shard, token_dtype: str, limits: _Limits):
        if limits.checksums:
            _verify_checksums(root, shard)
        spec = ARRAYS["corpus"]
        a = {n: _load_array(root, shard, n, token_dtype if d == "token" else d, nd) for n, (d, nd) in spec.items()}
        self.tokens: np.ndarray = a["tokens"]
        self.sentence_offsets: np.ndarray = a["sentence_offsets"]
        self.document_offsets: np.ndarray = a["document_offsets"]
        self.document_sources: np.ndarray = a["document_sources"]
        self.input_offset = shard.input_offset
        _check(len(self.tokens) == shard.tokens, root, shard, f"{len(self.tokens)} tokens, record says {shard.tokens}")
        _check_offsets(root, shard, "sentence_offsets", self.sentence_offsets, shard.sentences, len(self.tokens))
        _check_offsets(root, shard, "document_offsets", self.document_offsets, shard.rows, shard.sentences)
        _check(len(self.document_sources) == shard.rows, root, shard, "document_sources length != rows")
        _check_monotone(root, shard, "sentence_offsets", self.sentence_offsets, len(self.tokens))
        _check_monotone(root, shard, "document_offsets", self.document_offsets, shard.sentences)
        _check_below(root, shard, "tokens", self.tokens, limits.vocab_size, "token ids")
        if limits.inputs is not None:
            n = limits.inputs - shard.input_offset
            _check_below(root, shard, "document_sources", self.document_sources, max(n, 0), "input indices")


class _View(Sequence):
    """Random access with IndexError for negative or out-of-range indices; slices give lists."""

    _what = "item"

    def __len__(self) -> int:  # pragma: no cover - overridden
        raise NotImplementedError

    def _get(self, i: int) -> Any:  # pragma: no cover - overridden
        raise NotImplementedError

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return [self._get(j) for j in range(*i.indices(len(self)))]
        return self._get(_index(i, len(self), self._what))

    def __iter__(self):
        for j in range(len(self)):
            yield self._get(j)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} of {len(self)} {self._what}s>"


class Documents(_View):
    _what = "document"

    def __init__(self, ds: Dataset):
        self._ds = ds

    def __len__(self) -> int:
        return int(self._ds._doc_starts[-1])

    def _get(self, i: int) -> Document:
        ds = self._ds
        k, d = _locate(ds._doc_starts, i)
        sh = ds._corpus[k]
        s0, s1 = int(sh.document_offsets[d]), int(sh.document_offsets[d + 1])
        offs = sh.sentence_offsets[s0 : s1 + 1].tolist()
        t0 = offs[0]
        tokens = sh.tokens[t0 : offs[-1]]
        sentences = [tokens[a - t0 : b - t0] for a, b in zip(offs[:-1], offs[1:], strict=True)]
        return Document(index=i, sentences=sentences, tokens=tokens, source=ds._source(sh, d))


class Sentences(_View):
    _what = "sentence"

    def __init__(self, ds: Dataset):
        self._ds = ds

    def __len__(self) -> int:
        return int(self._ds._sent_starts[-1])

    def _get(self, i: int) -> np.ndarray:
        k, s = _locate(self._ds._sent_starts, i)
        sh = self._ds._corpus[k]
        return sh.tokens[int(sh.sentence_offsets[s]) : int(sh.sentence_offsets[s + 1])]


class Tokens:
    """All token ids of the corpus as one sequence, without concatenating the shards.

    `tokens[i]` is an int, `tokens[a:b]` an array (a view when inside one shard), `tokens.shards` the per-shard
    memory maps, `np.asarray(tokens)` a copy of everything.
    """

    def __init__(self, ds: Dataset):
        self._ds = ds
        self.shards: list[np.ndarray] = [s.tokens for s in ds._corpus]

    def __len__(self) -> int:
        return int(self._ds._tok_starts[-1])

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            a, b, step = i.indices(len(self))
            if step != 1:
                raise ValueError("token slices must have step 1")
            return self._ds.token_slice(a, max(a, b))
        j = _index(i, len(self), "token")
        k, t = _locate(self._ds._tok_starts, j)
        return int(self.shards[k][t])

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        a = self._ds.token_slice(0, len(self))
        return a.astype(dtype) if dtype is not None else np.array(a)

    def __repr__(self) -> str:
        return f"<Tokens: {len(self)} ids in {len(self.shards)} shard(s)>"


def _check_nsp_values(root: Path, sh: Shard, a: dict[str, np.ndarray], limits: _Limits) -> None:
    """Offsets monotone and in bounds, ids in the vocabulary, labels 0/1, segment A and masked positions inside
    their instance (vectorised over the shard)."""
    offsets, masked_offsets = a["offsets"], a["masked_offsets"]
    _check_monotone(root, sh, "offsets", offsets, len(a["input_ids"]))
    _check_monotone(root, sh, "masked_offsets", masked_offsets, len(a["masked_positions"]))
    _check_below(root, sh, "input_ids", a["input_ids"], limits.vocab_size, "token ids")
    _check_below(root, sh, "masked_lm_ids", a["masked_lm_ids"], limits.vocab_size, "token ids")
    _check_below(root, sh, "next_sentence_labels", a["next_sentence_labels"], 2, "labels")
    lengths = np.diff(offsets.astype(np.int64))
    over = np.flatnonzero(a["segment_a_lengths"].astype(np.int64) > lengths)
    if over.size:
        i = int(over[0])
        raise _bad(root, sh, "segment_a_lengths", f"entry {i} ({int(a['segment_a_lengths'][i])}) exceeds its instance")
    per_instance = np.diff(masked_offsets.astype(np.int64))
    if len(a["masked_positions"]):
        limit = np.repeat(lengths, per_instance)
        over = np.flatnonzero(a["masked_positions"].astype(np.int64) >= limit)
        if over.size:
            i = int(over[0])
            raise _bad(
                root, sh, "masked_positions", f"entry {i} ({int(a['masked_positions'][i])}) is outside its instance"
            )


class NspInstances(_View):
    """Static NSP instances (Google `create_pretraining_data.py` layout, unpadded).

    Item i is a dict: `input_ids`, `token_type_ids` (0 for `[CLS] A [SEP]`, 1 after), `next_sentence_label`
    (1 = random next, Google's convention), `masked_lm_positions`, `masked_lm_ids`.
    """

    _what = "nsp instance"

    def __init__(self, root: Path, shards: list[Shard], token_dtype: str, limits: _Limits):
        self._shards = []
        for sh in shards:
            if limits.checksums:
                _verify_checksums(root, sh)
            a = {
                n: _load_array(root, sh, n, token_dtype if d == "token" else d, nd)
                for n, (d, nd) in ARRAYS["nsp"].items()
            }
            _check_offsets(root, sh, "offsets", a["offsets"], sh.rows, len(a["input_ids"]))
            _check_offsets(root, sh, "masked_offsets", a["masked_offsets"], sh.rows, len(a["masked_positions"]))
            _check(len(a["masked_lm_ids"]) == len(a["masked_positions"]), root, sh, "masked_lm_ids length")
            _check(len(a["segment_a_lengths"]) == sh.rows, root, sh, "segment_a_lengths length != rows")
            _check(len(a["next_sentence_labels"]) == sh.rows, root, sh, "next_sentence_labels length != rows")
            _check_nsp_values(root, sh, a, limits)
            self._shards.append(a)
        self._starts = _starts(sh.rows for sh in shards)

    def __len__(self) -> int:
        return int(self._starts[-1])

    def _get(self, i: int) -> dict[str, Any]:
        k, j = _locate(self._starts, i)
        a = self._shards[k]
        t0, t1 = int(a["offsets"][j]), int(a["offsets"][j + 1])
        m0, m1 = int(a["masked_offsets"][j]), int(a["masked_offsets"][j + 1])
        token_type_ids = np.zeros(t1 - t0, dtype=np.uint8)
        token_type_ids[int(a["segment_a_lengths"][j]) :] = 1
        return {
            "input_ids": a["input_ids"][t0:t1],
            "token_type_ids": token_type_ids,
            "next_sentence_label": int(a["next_sentence_labels"][j]),
            "masked_lm_positions": a["masked_positions"][m0:m1],
            "masked_lm_ids": a["masked_lm_ids"][m0:m1],
        }


class MlmInstances(_View):
    """Packed fixed-length rows `[CLS] ... [SEP]` (unmasked); item i is a row (array of `seq_len` ids)."""

    _what = "mlm row"

    def __init__(self, root: Path, shards: list[Shard], token_dtype: str, limits: _Limits):
        self._shards = []
        for sh in shards:
            if limits.checksums:
                _verify_checksums(root, sh)
            a = _load_array(root, sh, "input_ids", token_dtype, 2)
            _check(a.shape[0] == sh.rows, root, sh, f"{a.shape[0]} rows, record says {sh.rows}")
            _check_below(root, sh, "input_ids", a, limits.vocab_size, "token ids")
            self._shards.append(a)
        lengths = {a.shape[1] for a in self._shards}
        if len(lengths) > 1:
            raise FormatError(f"{root}: mlm shards have different sequence lengths {sorted(lengths)}")
        self.seq_len: int | None = lengths.pop() if lengths else None
        self._starts = _starts(sh.rows for sh in shards)

    def __len__(self) -> int:
        return int(self._starts[-1])

    def _get(self, i: int) -> np.ndarray:
        k, j = _locate(self._starts, i)
        return self._shards[k][j]

    def take(self, indices: Sequence[int]) -> np.ndarray:
        """Rows at `indices` stacked into a `[len(indices), seq_len]` array (a copy)."""
        idx = np.asarray(indices, dtype=np.int64)
        if idx.size and (idx.min() < 0 or idx.max() >= len(self)):
            bad = idx[(idx < 0) | (idx >= len(self))][0]
            raise IndexError(f"mlm row index {int(bad)} out of range (0 <= index < {len(self)})")
        dtype = self._shards[0].dtype if self._shards else np.uint16
        out = np.empty((idx.size, self.seq_len or 0), dtype=dtype)
        ks = np.searchsorted(self._starts, idx, side="right") - 1
        for k in np.unique(ks):
            sel = ks == k
            out[sel] = self._shards[k][idx[sel] - self._starts[k]]
        return out


class ChunkInstances(_View):
    """NextLevelBERT chunks: item i is document i's chunks (a list of `[CLS] piece [SEP]` arrays)."""

    _what = "chunked document"

    def __init__(self, root: Path, shards: list[Shard], token_dtype: str, limits: _Limits):
        self._shards = []
        for sh in shards:
            if limits.checksums:
                _verify_checksums(root, sh)
            spec = ARRAYS["chunks"]
            a = {n: _load_array(root, sh, n, token_dtype if d == "token" else d, nd) for n, (d, nd) in spec.items()}
            _check_offsets(root, sh, "offsets", a["offsets"], sh.chunks, len(a["input_ids"]))
            _check_offsets(root, sh, "document_offsets", a["document_offsets"], sh.rows, sh.chunks)
            _check_monotone(root, sh, "offsets", a["offsets"], len(a["input_ids"]))
            _check_monotone(root, sh, "document_offsets", a["document_offsets"], sh.chunks)
            _check_below(root, sh, "input_ids", a["input_ids"], limits.vocab_size, "token ids")
            self._shards.append(a)
        self._starts = _starts(sh.rows for sh in shards)
        self._chunk_starts = _starts(sh.chunks for sh in shards)

    def __len__(self) -> int:
        return int(self._starts[-1])

    @property
    def num_chunks(self) -> int:
        return int(self._chunk_starts[-1])

    def _get(self, i: int) -> list[np.ndarray]:
        k, d = _locate(self._starts, i)
        a = self._shards[k]
        c0, c1 = int(a["document_offsets"][d]), int(a["document_offsets"][d + 1])
        offs = a["offsets"][c0 : c1 + 1].tolist()
        ids = a["input_ids"]
        return [ids[x:y] for x, y in zip(offs[:-1], offs[1:], strict=True)]

    def chunk(self, j: int) -> np.ndarray:
        """Chunk j of the whole dataset (global chunk index)."""
        k, c = _locate(self._chunk_starts, _index(j, self.num_chunks, "chunk"))
        a = self._shards[k]
        return a["input_ids"][int(a["offsets"][c]) : int(a["offsets"][c + 1])]


_INSTANCE_VIEWS = {"nsp": NspInstances, "mlm": MlmInstances, "chunks": ChunkInstances}


class Vocab:
    """The dataset's vocabulary (`DIR/tokenizer/vocab.txt`), for decoding."""

    def __init__(self, path: Path, info: dict[str, Any]):
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise FileNotFoundError(
                errno.ENOENT,
                "the dataset has no vocabulary to decode with (prepare copies it to tokenizer/vocab.txt)",
                str(path),
            ) from None
        except UnicodeDecodeError as e:
            raise FormatError(f"{path}: not UTF-8: {e}") from None
        self.path = path
        self.tokens = text.splitlines()
        want = info.get("vocab_sha256")
        got = hashlib.sha256(("\n".join(self.tokens) + "\n").encode("utf-8")).hexdigest()
        if want and got != want:
            raise FormatError(f"{path}: vocabulary sha256 {got} does not match the manifest's {want}")
        self.prefix: str = info.get("continuing_subword_prefix", "##")
        self._hf = None
        if self.prefix == "" and (path.parent / TOKENIZER_JSON).is_file():
            # A byte-level vocabulary (ELC style): let `tokenizers` undo the byte mapping.
            from tokenizers import Tokenizer

            self._hf = Tokenizer.from_file(str(path.parent / TOKENIZER_JSON))

    def __len__(self) -> int:
        return len(self.tokens)

    def decode(self, ids: Iterable[int]) -> str:
        ids = [int(i) for i in ids]
        for i in ids:
            if not 0 <= i < len(self.tokens):
                raise FormatError(f"{self.path}: token id {i} is outside the vocabulary ({len(self.tokens)} entries)")
        if self._hf is not None:
            return self._hf.decode(ids, skip_special_tokens=False)
        words: list[str] = []
        for i in ids:
            tok = self.tokens[i]
            if self.prefix and tok.startswith(self.prefix) and words:
                words[-1] += tok[len(self.prefix) :]
            else:
                words.append(tok)
        return " ".join(words)


def _vocab_size(root: Path, m: Manifest) -> int:
    """The manifest's `tokenizer.vocab_size` (token ids are checked against it)."""
    v = m.tokenizer.get("vocab_size")
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise FormatError(f"{root / 'manifest.json'}: tokenizer.vocab_size is missing or not a positive integer")
    return v


class Dataset:
    """An opened dataset. Use `open_dataset(path)`."""

    def __init__(self, path: str | os.PathLike[str], *, verify_checksums: bool = False):
        self.path = Path(path)
        self.manifest: Manifest = read_manifest(self.path)
        m = self.manifest
        limits = _Limits(
            vocab_size=_vocab_size(self.path, m),
            inputs=len(m.inputs) if m.inputs or m.kind != "merged" else None,
            checksums=verify_checksums,
        )
        corpus = m.shards_of("corpus")
        self._corpus = [_CorpusShard(self.path, s, m.token_dtype, limits) for s in corpus]
        self._doc_starts = _starts(s.rows for s in corpus)
        self._sent_starts = _starts(s.sentences for s in corpus)
        self._tok_starts = _starts(s.tokens for s in corpus)
        got = (int(self._doc_starts[-1]), int(self._sent_starts[-1]), int(self._tok_starts[-1]))
        want = (m.totals.documents, m.totals.sentences, m.totals.tokens)
        if corpus and got != want:
            raise FormatError(
                f"{self.path}: corpus shards hold {got} (documents, sentences, tokens), the totals say {want}"
            )
        for s in m.shards:
            if s.kind not in ARRAYS:
                raise FormatError(f"{self.path}: shard {s.name!r} has unknown kind {s.kind!r}")
        self._instances = {
            kind: view(self.path, m.shards_of(kind), m.token_dtype, limits)
            for kind, view in _INSTANCE_VIEWS.items()
            if m.shards_of(kind)
        }
        self.documents = Documents(self)
        self.sentences = Sentences(self)
        self.tokens = Tokens(self)
        self._vocab: Vocab | None = None

    def __reduce__(self):
        # Pickle by path (e.g. for DataLoader workers started with spawn): the maps are reopened, never copied.
        return (open_dataset, (str(self.path),))

    def __repr__(self) -> str:
        t = self.totals
        return f"<Dataset {self.path}: {t.documents} documents, {t.tokens} tokens, {len(self.manifest.shards)} shards>"

    @property
    def totals(self) -> Totals:
        return self.manifest.totals

    @property
    def tokenizer_info(self) -> dict[str, Any]:
        return self.manifest.tokenizer

    @property
    def token_dtype(self) -> np.dtype:
        return np.dtype(DTYPES[self.manifest.token_dtype])

    @property
    def instance_kinds(self) -> list[str]:
        return sorted(self._instances)

    def _source(self, sh: _CorpusShard, d: int) -> str:
        j = sh.input_offset + int(sh.document_sources[d])
        inputs = self.manifest.inputs
        return inputs[j].path if j < len(inputs) else f"<input #{j}>"

    def token_slice(self, start: int, stop: int) -> np.ndarray:
        """Global tokens [start, stop): a view inside one shard, a concatenated copy across shard boundaries."""
        n = len(self.tokens)
        if not 0 <= start <= stop <= n:
            raise IndexError(f"token slice [{start}, {stop}) out of range (0 <= start <= stop <= {n})")
        starts = self._tok_starts
        if start == stop:
            return np.empty(0, dtype=self.token_dtype)
        k = int(np.searchsorted(starts, start, side="right")) - 1
        pieces = []
        while start < stop:
            a, b = int(starts[k]), int(starts[k + 1])
            take = min(stop, b)
            if take > start:
                pieces.append(self._corpus[k].tokens[start - a : take - a])
                start = take
            k += 1
        return pieces[0] if len(pieces) == 1 else np.concatenate(pieces)

    def instances(self, kind: str) -> Sequence:
        """Static instances: `"nsp"` (dicts), `"mlm"` (rows), `"chunks"` (per-document chunk lists)."""
        if kind not in _INSTANCE_VIEWS:
            raise ConfigError(f"unknown instance kind {kind!r} (one of {', '.join(_INSTANCE_VIEWS)})")
        if kind not in self._instances:
            have = ", ".join(self.instance_kinds) or "none"
            raise ConfigError(f"{self.path}: the dataset has no {kind} instances (it has: {have})")
        return self._instances[kind]

    @property
    def vocab(self) -> Vocab:
        if self._vocab is None:
            self._vocab = Vocab(self.path / TOKENIZER_DIR / VOCAB_FILE, self.tokenizer_info)
        return self._vocab

    def decode(self, ids: Iterable[int]) -> str:
        """Token ids to text with the dataset's vocabulary (WordPiece pieces glued to the previous word)."""
        return self.vocab.decode(ids)

    def summary(self) -> dict[str, Any]:
        """Everything `bertkit inspect` shows, as plain JSON-able data."""
        m = self.manifest
        by_kind: dict[str, dict[str, int]] = {}
        for s in m.shards:
            e = by_kind.setdefault(s.kind, {"shards": 0, "rows": 0, "tokens": 0, "bytes": 0})
            e["shards"] += 1
            e["rows"] += s.rows
            e["tokens"] += s.tokens
            e["bytes"] += sum(a.size for a in s.arrays.values())
        tok = m.tokenizer
        return {
            "path": str(self.path),
            "format": f"{m.format} v{m.version}",
            "kind": m.kind,
            "created_by": m.created_by,
            "token_dtype": m.token_dtype,
            "totals": m.totals.to_json(),
            "tokenizer": {
                k: tok.get(k) for k in ("kind", "source", "vocab_size", "lowercase", "continuing_subword_prefix")
            }
            | {"vocab_sha256": str(tok.get("vocab_sha256", ""))[:16], "special_ids": tok.get("special_ids")},
            "splitter": m.splitter,
            "config": m.config,
            "inputs": {"files": len(m.inputs), "bytes": sum(x.size for x in m.inputs)},
            "shards": {"count": len(m.shards), "files": sum(len(s.arrays) for s in m.shards), "by_kind": by_kind},
            "bytes": sum(e["bytes"] for e in by_kind.values()),
            "instance_kinds": self.instance_kinds,
        }

    def verify(self, on_progress: Callable[[int, int], None] | None = None) -> list[str]:
        return verify_dataset(self.path, on_progress)


def open_dataset(path: str | os.PathLike[str], *, verify_checksums: bool = False) -> Dataset:
    """Open a prepared (or merged) dataset directory: FormatError if incomplete or inconsistent.

    Every array's dtype and shape is checked against the manifest and its values are validated (offsets monotone
    and within bounds, token ids below the vocabulary size, labels and input indices in range), so a corrupt shard
    is named here and never reaches an index. `verify_checksums` also hashes each shard's files against the
    manifest before reading them (once per process; what `train`, `eval` and `encode` do unless told not to).
    """
    return Dataset(path, verify_checksums=verify_checksums)


def _hash_file(path: Path, buf: bytearray, on_bytes: Callable[[int], None] | None) -> tuple[int, str]:
    import xxhash

    h = xxhash.xxh3_64()
    size = 0
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(buf):
            h.update(view[:n])
            size += n
            if on_bytes is not None:
                on_bytes(n)
    return size, h.hexdigest()


def verify_dataset(path: str | os.PathLike[str], on_progress: Callable[[int, int], None] | None = None) -> list[str]:
    """Re-hash every array file listed in the manifest (and check the vocabulary's sha256), then recompute every
    claim of the manifest from the shards (dtypes and shapes from the .npy headers, rows, sentences, tokens,
    chunks, token dtype, totals, instance counts) and validate the values as opening does.

    Needs only the manifest, so it works on datasets too damaged to open. Returns one message per problem
    (naming the shard and the file), empty when intact. `on_progress(done_bytes, total_bytes)` is called as
    the files are read.
    """
    root = Path(path)
    m = read_manifest(root)
    files = [(s, a) for s in m.shards for a in s.arrays.values()]
    total = sum(a.size for _, a in files)
    done = 0

    def on_bytes(n: int) -> None:
        nonlocal done
        done += n
        on_progress(done, total)  # type: ignore[misc]

    buf = bytearray(_CHUNK)
    problems: list[str] = []
    for shard, a in files:
        p = root / a.path
        before = done
        try:
            size, digest = _hash_file(p, buf, on_bytes if on_progress else None)
        except FileNotFoundError:
            problems.append(f"shard {shard.name}: {p}: file is missing")
            continue
        except OSError as e:
            problems.append(f"shard {shard.name}: {p}: cannot read: {e.strerror or e}")
            continue
        finally:
            if on_progress is not None:
                done = before + a.size
                on_progress(done, total)
        if size != a.size:
            problems.append(f"shard {shard.name}: {p}: size {size} bytes, the manifest says {a.size} (truncated?)")
        elif digest != a.xxh3:
            problems.append(
                f"shard {shard.name}: {p}: checksum mismatch (expected xxh3 {a.xxh3}, found {digest}); "
                "the file is corrupt"
            )
    problems += _recount(root, m, problems)
    vocab = root / TOKENIZER_DIR / VOCAB_FILE
    want = m.tokenizer.get("vocab_sha256")
    if want and vocab.is_file():
        lines = vocab.read_bytes().decode("utf-8", errors="replace").splitlines()
        got = hashlib.sha256(("\n".join(lines) + "\n").encode("utf-8")).hexdigest()
        if got != want:
            problems.append(f"tokenizer: {vocab}: sha256 {got} does not match the manifest's vocab_sha256 {want}")
    return problems


def _recount(root: Path, m: Manifest, earlier: list[str]) -> list[str]:
    """Recompute what the manifest claims from the shards themselves: each array's dtype and shape (from its .npy
    header), each shard's rows / sentences / tokens / chunks, the token dtype, the totals and the instance counts;
    then, when all of that agrees, the values (as opening does: offsets, id ranges)."""
    problems: list[str] = []
    arrays: dict[tuple[str, str], np.ndarray] = {}
    vocab_size = m.tokenizer.get("vocab_size")
    if isinstance(vocab_size, int) and not isinstance(vocab_size, bool):
        from bertkit.data.format import token_dtype_for_vocab

        if m.token_dtype != token_dtype_for_vocab(vocab_size):
            want = token_dtype_for_vocab(vocab_size)
            problems.append(f"manifest: token_dtype {m.token_dtype}, but a vocabulary of {vocab_size} uses {want}")
    for sh in m.shards:
        spec = ARRAYS.get(sh.kind)
        if spec is None:
            problems.append(f"shard {sh.name}: unknown kind {sh.kind!r}")
            continue
        for name in sorted(set(spec) - set(sh.arrays)):
            problems.append(f"shard {sh.name}: the manifest lists no {name!r} array (a {sh.kind} shard has one)")
        for name, rec in sh.arrays.items():
            path = root / rec.path
            try:
                a = np.load(path, mmap_mode="r", allow_pickle=False)
            except (OSError, ValueError, EOFError):
                continue  # reported by the hashing above
            want_dtype, ndim = spec.get(name, (rec.dtype, len(rec.shape)))
            want_dtype = m.token_dtype if want_dtype == "token" else want_dtype
            found = f"{a.dtype.name}{list(a.shape)}"
            if a.dtype != np.dtype(DTYPES.get(rec.dtype, "V")) or list(a.shape) != list(rec.shape):
                problems.append(
                    f"shard {sh.name}: {path}: holds {found}, the manifest says {rec.dtype}{list(rec.shape)} ({name})"
                )
            elif rec.dtype != want_dtype or len(rec.shape) != ndim:
                problems.append(
                    f"shard {sh.name}: {path}: {name} is {found}, a {sh.kind} shard's {name} is {want_dtype} with "
                    f"{ndim} dimension(s)"
                )
            else:
                arrays[(sh.name, name)] = a
    if problems or earlier:  # the counts below would only echo a missing, truncated or corrupt file
        return problems

    def n(sh: Shard, name: str, minus: int = 0) -> int | None:
        a = arrays.get((sh.name, name))
        return None if a is None else int(a.shape[0]) - minus

    def claim(sh: Shard, field: str, value: int, got: int | None, source: str) -> None:
        if got is not None and value != got:
            problems.append(f"shard {sh.name}: the manifest says {field} {value}, its {source} gives {got}")

    counted: dict[str, int] = {}
    sums = {"documents": 0, "sentences": 0, "tokens": 0}
    for sh in m.shards:
        a = arrays.get((sh.name, "input_ids" if sh.kind != "corpus" else "tokens"))
        claim(sh, "tokens", sh.tokens, None if a is None else int(a.size), "token array")
        if sh.kind == "corpus":
            claim(sh, "rows", sh.rows, n(sh, "document_sources"), "document_sources")
            claim(sh, "rows", sh.rows, n(sh, "document_offsets", 1), "document_offsets")
            claim(sh, "sentences", sh.sentences, n(sh, "sentence_offsets", 1), "sentence_offsets")
            sums["documents"] += n(sh, "document_sources") or 0
            sums["sentences"] += n(sh, "sentence_offsets", 1) or 0
            sums["tokens"] += int(a.size) if a is not None else 0
            continue
        if sh.kind == "nsp":
            claim(sh, "rows", sh.rows, n(sh, "next_sentence_labels"), "next_sentence_labels")
            claim(sh, "rows", sh.rows, n(sh, "offsets", 1), "offsets")
            rows = n(sh, "next_sentence_labels")
        elif sh.kind == "mlm":
            claim(sh, "rows", sh.rows, n(sh, "input_ids"), "input_ids")
            rows = n(sh, "input_ids")
        else:
            claim(sh, "rows", sh.rows, n(sh, "document_offsets", 1), "document_offsets")
            claim(sh, "chunks", sh.chunks, n(sh, "offsets", 1), "offsets")
            rows = n(sh, "document_offsets", 1)
        counted[sh.kind] = counted.get(sh.kind, 0) + (rows or 0)
    t = m.totals
    if any(s.kind == "corpus" for s in m.shards):
        for field, got in sums.items():
            if getattr(t, field) != got:
                problems.append(f"manifest: totals.{field} is {getattr(t, field)}, the corpus shards hold {got}")
    for kind in sorted(set(counted) | {k for k, v in t.instances.items() if v}):
        if t.instances.get(kind, 0) != counted.get(kind, 0):
            problems.append(
                f"manifest: totals.instances.{kind} is {t.instances.get(kind, 0)}, the {kind} shards hold "
                f"{counted.get(kind, 0)}"
            )
    if not problems:
        try:
            Dataset(root)
        except FormatError as e:
            problems.append(str(e))
    return problems


def count_files(path: str | os.PathLike[str]) -> int:
    """Number of array files the manifest lists (what `verify` checks)."""
    return sum(len(s.arrays) for s in read_manifest(path).shards)
