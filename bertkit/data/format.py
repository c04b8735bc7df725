"""The on-disk dataset format, mirrored from the Rust writer (`rust/core/src/format.rs`; spec in docs/FORMAT.md).

A dataset is a directory with `manifest.json` (written last, atomically) and `shards/`. This module holds the
constants, the manifest dataclasses (`from_json`/`to_json` round-trip the Rust JSON) and atomic manifest I/O.
It imports only the standard library.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bertkit.exceptions import FormatError

FORMAT_NAME = "bertkit.dataset"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
SHARD_DIR = "shards"
# The tokenizer files copied into the dataset so that it is self-contained (`vocab.txt`, `tokenizer.json`).
TOKENIZER_DIR = "tokenizer"
VOCAB_FILE = "vocab.txt"
TOKENIZER_JSON = "tokenizer.json"

SHARD_KINDS = ("corpus", "nsp", "mlm", "chunks")
DATASET_KINDS = ("corpus", "merged")

# dtype names used in the manifest -> numpy dtype strings (little-endian).
DTYPES = {"uint8": "|u1", "uint16": "<u2", "uint32": "<u4", "uint64": "<u8", "float16": "<f2"}
TOKEN_DTYPES = ("uint16", "uint32")

# For each shard kind, its arrays and their dtype ("token" = the dataset's token dtype) and rank.
ARRAYS: dict[str, dict[str, tuple[str, int]]] = {
    "corpus": {
        "tokens": ("token", 1),
        "sentence_offsets": ("uint64", 1),
        "document_offsets": ("uint64", 1),
        "document_sources": ("uint32", 1),
    },
    "nsp": {
        "input_ids": ("token", 1),
        "offsets": ("uint64", 1),
        "segment_a_lengths": ("uint16", 1),
        "next_sentence_labels": ("uint8", 1),
        "masked_positions": ("uint16", 1),
        "masked_lm_ids": ("token", 1),
        "masked_offsets": ("uint64", 1),
    },
    "mlm": {"input_ids": ("token", 2)},
    "chunks": {
        "input_ids": ("token", 1),
        "offsets": ("uint64", 1),
        "document_offsets": ("uint64", 1),
    },
}


def token_dtype_for_vocab(vocab_size: int) -> str:
    """uint16 when every id fits, else uint32 (as the Rust writer decides)."""
    return "uint16" if vocab_size <= 65_536 else "uint32"


def _get(d: Any, key: str, where: str, kind: type | tuple[type, ...] | None = None) -> Any:
    if not isinstance(d, dict):
        raise FormatError(f"{where}: expected a JSON object, found {type(d).__name__}")
    if key not in d:
        raise FormatError(f"{where}: missing key {key!r}")
    v = d[key]
    if kind is not None and (not isinstance(v, kind) or (isinstance(v, bool) and kind is int)):
        raise FormatError(f"{where}: {key!r} has type {type(v).__name__}")
    return v


def _int(d: Any, key: str, where: str, default: int | None = None) -> int:
    if default is not None and isinstance(d, dict) and key not in d:
        return default
    v = _get(d, key, where)
    if not isinstance(v, int) or isinstance(v, bool) or v < 0:
        raise FormatError(f"{where}: {key!r} must be a non-negative integer, found {v!r}")
    return v


@dataclass
class ArrayFile:
    """One `.npy` file of a shard. `path` is relative to the manifest's directory (may start with `../`)."""

    path: str
    dtype: str
    shape: list[int]
    size: int  # bytes, header included
    xxh3: str  # xxh3-64 of the whole file, 16 lower-case hex digits

    @classmethod
    def from_json(cls, d: Any, where: str = "array") -> ArrayFile:
        dtype = _get(d, "dtype", where, str)
        if dtype not in DTYPES:
            raise FormatError(f"{where}: unknown dtype {dtype!r}")
        shape = _get(d, "shape", where, list)
        if not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in shape):
            raise FormatError(f"{where}: bad shape {shape!r}")
        return cls(
            path=_get(d, "path", where, str),
            dtype=dtype,
            shape=list(shape),
            size=_int(d, "size", where),
            xxh3=_get(d, "xxh3", where, str),
        )

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "dtype": self.dtype, "shape": list(self.shape), "size": self.size, "xxh3": self.xxh3}


@dataclass
class Shard:
    """A group of arrays covering a contiguous range of documents (corpus, chunks) or instances (nsp, mlm)."""

    kind: str
    name: str
    rows: int
    tokens: int
    arrays: dict[str, ArrayFile]
    sentences: int = 0
    chunks: int = 0
    # After `merge`: index of this shard's source dataset's first input in the merged `inputs` list, so that
    # `document_sources` (local to the source dataset) map to the merged list. 0 for prepared datasets.
    input_offset: int = 0

    @classmethod
    def from_json(cls, d: Any, where: str = "shard") -> Shard:
        name = _get(d, "name", where, str)
        where = f"{where} {name!r}"
        kind = _get(d, "kind", where, str)
        arrays_j = _get(d, "arrays", where, dict)
        arrays = {k: ArrayFile.from_json(v, f"{where} array {k!r}") for k, v in arrays_j.items()}
        return cls(
            kind=kind,
            name=name,
            rows=_int(d, "rows", where),
            tokens=_int(d, "tokens", where),
            arrays=arrays,
            sentences=_int(d, "sentences", where, 0),
            chunks=_int(d, "chunks", where, 0),
            input_offset=_int(d, "input_offset", where, 0),
        )

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "kind": self.kind,
            "name": self.name,
            "rows": self.rows,
            "sentences": self.sentences,
            "tokens": self.tokens,
            "chunks": self.chunks,
            "arrays": {k: self.arrays[k].to_json() for k in sorted(self.arrays)},
        }
        if self.input_offset:
            d["input_offset"] = self.input_offset
        return d


@dataclass
class InputFile:
    path: str
    size: int
    xxh3: str

    @classmethod
    def from_json(cls, d: Any, where: str = "input") -> InputFile:
        return cls(path=_get(d, "path", where, str), size=_int(d, "size", where), xxh3=_get(d, "xxh3", where, str))

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "size": self.size, "xxh3": self.xxh3}


@dataclass
class Totals:
    documents: int = 0
    sentences: int = 0
    tokens: int = 0
    instances: dict[str, int] = field(default_factory=dict)  # per kind: nsp, mlm, chunks
    skipped: dict[str, int] = field(default_factory=dict)  # what was dropped, by reason

    @classmethod
    def from_json(cls, d: Any, where: str = "totals") -> Totals:
        def counts(key: str) -> dict[str, int]:
            v = d.get(key, {}) if isinstance(d, dict) else {}
            if not isinstance(v, dict):
                raise FormatError(f"{where}: {key!r} must be an object")
            return {k: _int(v, k, f"{where}.{key}") for k in v}

        return cls(
            documents=_int(d, "documents", where),
            sentences=_int(d, "sentences", where),
            tokens=_int(d, "tokens", where),
            instances=counts("instances"),
            skipped=counts("skipped"),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "documents": self.documents,
            "sentences": self.sentences,
            "tokens": self.tokens,
            "instances": dict(sorted(self.instances.items())),
            "skipped": dict(sorted(self.skipped.items())),
        }

    def __add__(self, other: Totals) -> Totals:
        def add(a: dict[str, int], b: dict[str, int]) -> dict[str, int]:
            return {k: a.get(k, 0) + b.get(k, 0) for k in sorted(set(a) | set(b))}

        return Totals(
            documents=self.documents + other.documents,
            sentences=self.sentences + other.sentences,
            tokens=self.tokens + other.tokens,
            instances=add(self.instances, other.instances),
            skipped=add(self.skipped, other.skipped),
        )


@dataclass
class Manifest:
    format: str
    version: int
    kind: str  # "corpus" (prepare) or "merged" (merge)
    created_by: str
    tokenizer: dict[str, Any]  # identity: vocab_sha256, lowercase, special_ids, ...
    splitter: dict[str, Any]
    config: dict[str, Any]
    inputs: list[InputFile]
    token_dtype: str
    totals: Totals
    shards: list[Shard]

    @classmethod
    def from_json(cls, d: Any, where: str = MANIFEST) -> Manifest:
        fmt = _get(d, "format", where, str)
        if fmt != FORMAT_NAME:
            raise FormatError(f"{where}: unknown format {fmt!r} (expected {FORMAT_NAME!r})")
        version = _int(d, "version", where)
        if version > FORMAT_VERSION:
            raise FormatError(
                f"{where}: format version {version} is newer than this bertkit understands ({FORMAT_VERSION})"
            )
        token_dtype = _get(d, "token_dtype", where, str)
        if token_dtype not in TOKEN_DTYPES:
            raise FormatError(f"{where}: token_dtype {token_dtype!r} is not one of {', '.join(TOKEN_DTYPES)}")
        shards = [Shard.from_json(s, f"{where}: shard #{i}") for i, s in enumerate(_get(d, "shards", where, list))]
        names = [s.name for s in shards]
        if len(set(names)) != len(names):
            raise FormatError(f"{where}: duplicate shard names")
        return cls(
            format=fmt,
            version=version,
            kind=_get(d, "kind", where, str),
            created_by=_get(d, "created_by", where, str),
            tokenizer=_get(d, "tokenizer", where, dict),
            splitter=_get(d, "splitter", where, dict),
            config=_get(d, "config", where, dict),
            inputs=[
                InputFile.from_json(x, f"{where}: input #{i}") for i, x in enumerate(_get(d, "inputs", where, list))
            ],
            token_dtype=token_dtype,
            totals=Totals.from_json(_get(d, "totals", where, dict), f"{where}: totals"),
            shards=shards,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "version": self.version,
            "kind": self.kind,
            "created_by": self.created_by,
            "tokenizer": self.tokenizer,
            "splitter": self.splitter,
            "config": self.config,
            "inputs": [x.to_json() for x in self.inputs],
            "token_dtype": self.token_dtype,
            "totals": self.totals.to_json(),
            "shards": [s.to_json() for s in self.shards],
        }

    def shards_of(self, kind: str) -> list[Shard]:
        return [s for s in self.shards if s.kind == kind]


def read_manifest(path: str | os.PathLike[str]) -> Manifest:
    """Read and validate `DIR/manifest.json`. A missing manifest means the dataset is incomplete."""
    d = Path(path)
    mpath = d / MANIFEST
    if not mpath.is_file():
        if d.is_dir():
            raise FormatError(
                f"{d}: not a complete bertkit dataset: {MANIFEST} is missing "
                "(an interrupted prepare? rerun it with --resume)"
            )
        raise FormatError(f"{d}: no such dataset directory")
    try:
        data = json.loads(mpath.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise FormatError(f"{mpath}: invalid manifest: {e}") from None
    return Manifest.from_json(data, str(mpath))


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes) -> None:
    """Write `data` to `path` via a temporary file, fsync and os.replace: readers see the old or the new file."""
    p = Path(path)
    tmp = p.with_name(f"{p.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, p)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_manifest(path: str | os.PathLike[str], manifest: Manifest) -> None:
    """Write `DIR/manifest.json` atomically (the last step of publishing a dataset)."""
    text = json.dumps(manifest.to_json(), indent=2, ensure_ascii=False) + "\n"
    write_bytes_atomic(Path(path) / MANIFEST, text.encode("utf-8"))
