"""The chunk-embedding store: ``bertkit encode`` writes it, NextLevel training reads it (format in docs/FORMAT.md).

A store is a directory::

    EMB/
      encode.json                     the plan, written first: dataset and encoder identity, dtype, shard boundaries
      shards/emb-00000.embeddings.npy        float16 [chunks, dim], the shard's chunks in dataset order
      shards/emb-00000.document_offsets.npy  uint64 [documents + 1], shard-local: document d is rows do[d]:do[d+1]
      shards/emb-00000.json           the shard record (sizes, xxh3 checksums), written after its arrays: shard done
      manifest.json                   written last, atomically, once every shard is done

Shards hold whole documents (about ``shard_chunks`` chunks each), so N processes can each encode the shards
``i % N == I`` (``shard=(I, N)``) and whichever finishes last, or any later ``encode_dataset`` call on the
directory, writes the manifest. An interrupted encode resumes from its completed shards. Shard boundaries and the
batches inside a shard do not depend on how the work was split, so the result is the same bytes either way.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from bertkit.data.format import MANIFEST, ArrayFile, write_bytes_atomic
from bertkit.exceptions import ConfigError, DatasetExistsError, FormatError
from bertkit.locks import OutputLockedError, is_lock_file, output_lock

__all__ = ["STORE_FORMAT", "EmbeddingStore", "encode_dataset", "open_store", "verify_store"]

STORE_FORMAT = "bertkit.embeddings"
STORE_VERSION = 1
PLAN = "encode.json"
SHARD_DIR = "shards"
DTYPE = "float16"
DEFAULT_SHARD_CHUNKS = 1 << 16
# How long a `--shard` worker waits for the store's lock (held by another worker for a moment, or by a whole-store
# writer for its whole run) before it gives up.
SHARD_LOCK_WAIT = 30.0

# Plan keys that must agree between the processes and sessions writing one store.
_PLAN_KEYS = ("format", "version", "dataset_key", "encoder_key", "dtype", "shard_chunks", "shards")


def _json_bytes(obj: Any) -> bytes:
    return (json.dumps(obj, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def _npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(array), allow_pickle=False)
    return buf.getvalue()


def _write_array(root: Path, rel: str, array: np.ndarray) -> ArrayFile:
    import xxhash

    data = _npy_bytes(array)
    write_bytes_atomic(root / rel, data)
    return ArrayFile(rel, array.dtype.name, list(array.shape), len(data), xxhash.xxh3_64_hexdigest(data))


def _read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise FormatError(f"{path}: unreadable {what} ({e})") from None


# ------------------------------------------------------------------------------------------------ the reader


class EmbeddingStore:
    """An opened store: memory-mapped float16 shards, global chunk and document indexing (numpy only)."""

    def __init__(self, path: str | os.PathLike[str], *, verify_checksums: bool = False) -> None:
        root = Path(path)
        manifest = root / MANIFEST
        if not manifest.is_file():
            if not root.is_dir():
                raise FormatError(f"{root}: no such embedding store directory")
            if (root / PLAN).is_file():
                raise FormatError(
                    f"{root}: not a complete embedding store: {MANIFEST} is missing (an interrupted or partial "
                    "`bertkit encode`? run it again on this directory to resume)"
                )
            raise FormatError(f"{root}: not an embedding store (no {MANIFEST}; create one with `bertkit encode`)")
        m = _read_json(manifest, "manifest")
        if not isinstance(m, dict) or m.get("format") != STORE_FORMAT:
            got = m.get("format") if isinstance(m, dict) else None
            raise FormatError(f"{manifest}: format {got!r} is not an embedding store ({STORE_FORMAT!r})")
        if not isinstance(m.get("version"), int) or m["version"] > STORE_VERSION:
            raise FormatError(f"{manifest}: version {m.get('version')!r} is not supported (<= {STORE_VERSION})")
        self.path, self.manifest = root, m
        try:
            self.dim = int(m["dim"])
            self.encoder: dict[str, Any] = dict(m["encoder"])
            self.dataset: dict[str, Any] = dict(m["dataset"])
            records = list(m["shards"])
        except (KeyError, TypeError, ValueError) as e:
            raise FormatError(f"{manifest}: incomplete manifest ({e})") from None
        self.chunk_size = int(self.dataset.get("chunk_size", 0))
        self._embeddings: list[np.ndarray] = []
        doc_offsets = [np.zeros(1, dtype=np.int64)]
        chunk_base = 0
        for i, rec in enumerate(records):
            where = f"{manifest}: shard #{i}"
            try:
                arrays = {k: ArrayFile.from_json(v, f"{where} array {k!r}") for k, v in rec["arrays"].items()}
                emb = self._load(arrays["embeddings"], DTYPE, 2)
                offs = self._load(arrays["document_offsets"], "uint64", 1)
            except KeyError as e:
                raise FormatError(f"{where}: missing {e}") from None
            if verify_checksums:
                self._verify(rec, arrays)
            if emb.shape[1] != self.dim:
                raise FormatError(
                    f"{root / arrays['embeddings'].path}: dimension {emb.shape[1]}, manifest says {self.dim}"
                )
            if len(offs) < 1 or int(offs[0]) != 0 or int(offs[-1]) != len(emb) or bool(np.any(offs[1:] < offs[:-1])):
                raise FormatError(
                    f"{root / arrays['document_offsets'].path}: offsets do not cover the shard's rows in order "
                    "(corrupt; run bertkit verify)"
                )
            self._embeddings.append(emb)
            doc_offsets.append(offs[1:].astype(np.int64) + chunk_base)
            chunk_base += len(emb)
        self.document_offsets = np.concatenate(doc_offsets)
        """Global chunk offsets, ``num_documents + 1`` entries: document d is chunks ``[do[d], do[d+1])``."""
        self._starts = np.concatenate([[0], np.cumsum([len(e) for e in self._embeddings])]).astype(np.int64)
        totals = m.get("totals", {})
        if totals.get("chunks") != self.num_chunks or totals.get("documents") != len(self):
            raise FormatError(f"{manifest}: totals {totals} disagree with the shards")

    def _verify(self, rec: dict[str, Any], arrays: dict[str, ArrayFile]) -> None:
        from bertkit.data.dataset import file_xxh3

        for name, a in arrays.items():
            digest = file_xxh3(self.path / a.path)
            if digest != a.xxh3:
                raise FormatError(
                    f"{self.path / a.path}: shard {rec.get('name')!r} array {name!r} fails its checksum (xxh3 "
                    f"{digest}, the manifest says {a.xxh3}): the file is corrupt (run bertkit verify)"
                )

    def _load(self, rec: ArrayFile, dtype: str, ndim: int) -> np.ndarray:
        path = self.path / rec.path
        if rec.dtype != dtype or len(rec.shape) != ndim:
            raise FormatError(f"{path}: manifest records {rec.dtype}{rec.shape}, expected {dtype} with {ndim} dims")
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            raise FormatError(f"{path}: array file is missing (encode the store again with --overwrite)") from None
        if size != rec.size:
            raise FormatError(f"{path}: {size} bytes, the manifest says {rec.size} (truncated or corrupt)")
        try:
            a = np.load(path, mmap_mode="r", allow_pickle=False)
        except (ValueError, OSError, EOFError) as e:
            raise FormatError(f"{path}: not a readable .npy file: {e}") from None
        if a.dtype != np.dtype(dtype) or list(a.shape) != list(rec.shape):
            raise FormatError(f"{path}: holds {a.dtype.name}{list(a.shape)}, the manifest says {rec.dtype}{rec.shape}")
        return a.view(np.ndarray)

    def __len__(self) -> int:
        return len(self.document_offsets) - 1

    def __repr__(self) -> str:
        return f"<EmbeddingStore {self.path}: {len(self)} documents, {self.num_chunks} chunks x {self.dim}>"

    @property
    def num_chunks(self) -> int:
        return int(self._starts[-1])

    def document(self, d: int) -> np.ndarray:
        """``[n_chunks, dim]`` float16 embeddings of document d (a view when it lies in one shard)."""
        if not 0 <= d < len(self):
            raise IndexError(f"document index {d} out of range (0 <= index < {len(self)})")
        return self.slice(int(self.document_offsets[d]), int(self.document_offsets[d + 1]))

    def slice(self, start: int, stop: int) -> np.ndarray:
        """Chunks ``[start, stop)`` as float16 (a view inside one shard, a copy across shards)."""
        if not 0 <= start <= stop <= self.num_chunks:
            raise IndexError(f"chunk slice [{start}, {stop}) out of range (0 <= start <= stop <= {self.num_chunks})")
        if start == stop:
            return np.empty((0, self.dim), dtype=np.float16)
        k = int(np.searchsorted(self._starts, start, side="right")) - 1
        lo = start - int(self._starts[k])
        if stop <= int(self._starts[k + 1]):
            return self._embeddings[k][lo : lo + stop - start]
        return self.gather(np.arange(start, stop, dtype=np.int64)).astype(np.float16)

    def gather(self, indices: np.ndarray) -> np.ndarray:
        """``[len(indices), dim]`` float32 rows at global chunk ``indices`` (any order)."""
        idx = np.asarray(indices, dtype=np.int64)
        out = np.empty((idx.size, self.dim), dtype=np.float32)
        if idx.size == 0:
            return out
        if idx.min() < 0 or idx.max() >= self.num_chunks:
            raise IndexError(f"chunk index out of range (0 <= index < {self.num_chunks})")
        ks = np.searchsorted(self._starts, idx, side="right") - 1
        for k in np.unique(ks):
            sel = ks == k
            out[sel] = self._embeddings[k][idx[sel] - self._starts[k]]
        return out

    def verify(self) -> list[str]:
        return verify_store(self.path)


def open_store(path: str | os.PathLike[str], *, verify_checksums: bool = False) -> EmbeddingStore:
    """Open a complete embedding store (FormatError naming the directory when it is not one); `verify_checksums`
    hashes each shard's files against the manifest first (once per process)."""
    return EmbeddingStore(path, verify_checksums=verify_checksums)


def verify_store(path: str | os.PathLike[str]) -> list[str]:
    """Re-hash every array of a store against its manifest; one message per problem, empty when intact."""
    import xxhash

    root = Path(path)
    m = _read_json(root / MANIFEST, "manifest")
    problems = []
    for rec in m.get("shards", []):
        for name, a in rec.get("arrays", {}).items():
            p = root / a["path"]
            try:
                data = p.read_bytes()
            except OSError as e:
                problems.append(f"shard {rec.get('name')}: {p}: cannot read ({e.strerror or e})")
                continue
            if len(data) != a["size"]:
                problems.append(f"shard {rec.get('name')}: {p}: {len(data)} bytes, the manifest says {a['size']}")
            elif xxhash.xxh3_64_hexdigest(data) != a["xxh3"]:
                problems.append(f"shard {rec.get('name')}: {p}: checksum mismatch ({name}); the file is corrupt")
    return problems


# ------------------------------------------------------------------------------------------------ the writer


def _chunk_table(dataset: Path, verify_data: bool = True) -> tuple[Any, Any, np.ndarray, int]:
    """The opened dataset (shard checksums checked with `verify_data`), its chunk instances, global chunk offsets per
    document, and its chunk size."""
    from bertkit.data.dataset import open_dataset

    ds = open_dataset(dataset, verify_checksums=verify_data)
    if "chunks" not in ds.instance_kinds:
        have = ", ".join(ds.instance_kinds) or "none"
        raise ConfigError(
            f"{dataset}: the dataset has no chunk instances (it has: {have}); prepare it with "
            "`bertkit prepare ... --instances chunks --chunk-size N`"
        )
    chunks = ds.instances("chunks")
    offsets = [np.zeros(1, dtype=np.int64)]
    base = 0
    for shard in ds.manifest.shards_of("chunks"):
        local = np.load(dataset / shard.arrays["document_offsets"].path, mmap_mode="r").astype(np.int64)
        offsets.append(local[1:] + base)
        base += shard.chunks
    chunk_size = ds.manifest.config.get("chunk_size")
    if not isinstance(chunk_size, int):
        raise FormatError(f"{dataset / MANIFEST}: config.chunk_size is missing")
    return ds, chunks, np.concatenate(offsets), chunk_size


def _plan_shards(doc_offsets: np.ndarray, shard_chunks: int) -> list[list[int]]:
    """``[doc_lo, doc_hi, chunk_lo, chunk_hi]`` per shard: whole documents, about ``shard_chunks`` chunks each."""
    shards, lo, n_docs = [], 0, len(doc_offsets) - 1
    while lo < n_docs:
        target = doc_offsets[lo] + shard_chunks
        hi = int(np.searchsorted(doc_offsets, target, side="left"))
        hi = min(max(hi, lo + 1), n_docs)
        shards.append([lo, hi, int(doc_offsets[lo]), int(doc_offsets[hi])])
        lo = hi
    return shards


def _check_tokenizers(dataset: Path, data_tok: dict[str, Any], enc_tok: dict[str, Any], encoder: str) -> None:
    for key in ("vocab_sha256", "lowercase", "strip_accents"):
        if data_tok.get(key) != enc_tok.get(key):
            raise ConfigError(
                f"{dataset} was tokenized with another tokenizer than encoder {encoder!r} ({key}: "
                f"{data_tok.get(key)!r} vs {enc_tok.get(key)!r}); prepare the dataset with the encoder's "
                "tokenizer (e.g. --tokenizer ENCODER_DIR/tokenizer.json)"
            )


def _parse_shard(shard: tuple[int, int] | None) -> tuple[int, int]:
    if shard is None:
        return 0, 1
    try:
        index, count = (int(x) for x in shard)
    except (TypeError, ValueError):
        raise ConfigError(f"shard must be (index, count), got {shard!r}") from None
    if count < 1 or not 0 <= index < count:
        raise ConfigError(f"shard {index}/{count}: need 0 <= index < count")
    return index, count


def _prepare_out(out: Path, plan: dict[str, Any], overwrite: bool) -> bool:
    """Create/validate the output directory; True when the store is already complete for this plan."""
    plan_path = out / PLAN
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out}: exists and is not a directory")
    if overwrite and out.exists():
        for name in (MANIFEST, PLAN):
            (out / name).unlink(missing_ok=True)
        shutil.rmtree(out / SHARD_DIR, ignore_errors=True)
    if plan_path.is_file():
        old = _read_json(plan_path, "encode plan")
        diff = [k for k in _PLAN_KEYS if old.get(k) != plan.get(k)]
        if diff:
            raise DatasetExistsError(
                f"{out}: holds embeddings of another encode ({', '.join(diff)} differ); use --overwrite or a new --out"
            )
        return (out / MANIFEST).is_file()
    # what a concurrent `--shard` process starting on the same directory may already have created is not foreign
    foreign = (
        [
            p
            for p in out.iterdir()
            if p.name != SHARD_DIR and not p.name.startswith(f"{PLAN}.tmp-") and not is_lock_file(p)
        ]
        if out.exists()
        else []
    )
    if foreign:
        raise DatasetExistsError(f"{out}: exists and is not empty (not an embedding store); use --overwrite")
    (out / SHARD_DIR).mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(plan_path, _json_bytes(plan))
    return False


def _shard_name(i: int) -> str:
    return f"emb-{i:05d}"


def _completed(out: Path, i: int) -> dict[str, Any] | None:
    path = out / SHARD_DIR / f"{_shard_name(i)}.json"
    if not path.is_file():
        return None
    rec = _read_json(path, "shard record")
    for a in rec.get("arrays", {}).values():
        p = out / a["path"]
        if not p.is_file() or p.stat().st_size != a["size"]:
            return None
    return rec


def encode_dataset(
    dataset: str | os.PathLike[str],
    encoder: Any,
    out: str | os.PathLike[str],
    *,
    shard: tuple[int, int] | None = None,
    batch_size: int | None = None,
    device: str = "auto",
    precision: str = "auto",
    max_seq_length: int | None = None,
    shard_chunks: int = DEFAULT_SHARD_CHUNKS,
    overwrite: bool = False,
    on_progress: Callable[[int, int], None] | None = None,
    compile: bool = False,
    verify_data: bool = True,
) -> dict[str, Any]:
    """Encode every chunk of ``dataset`` (prepared with ``--instances chunks``) with ``encoder`` (a name, a
    directory or a loaded :class:`~bertkit.encode.encoder.SentenceEncoder`) into the store ``out``.

    ``shard=(I, N)`` encodes only the store shards ``i % N == I``; the manifest is written by whichever call completes
    the last shard. Completed shards are never encoded again (resume). ``verify_data=False`` skips the dataset's shard
    checksums (its values are validated either way). ``on_progress(done, total)`` counts this
    call's chunks. ``compile`` loads the encoder (when given by name) under ``torch.compile``; it does not change
    the store (the embeddings agree to float tolerance), so a job may resume with or without it. Returns a summary
    (documents, chunks, shards done now / before, ``complete``, seconds).
    """
    from bertkit.encode.encoder import SentenceEncoder, load_encoder

    t0 = time.perf_counter()
    dataset, out = Path(dataset), Path(out)
    index, count = _parse_shard(shard)
    if not isinstance(shard_chunks, int) or shard_chunks < 1:
        raise ConfigError(f"shard_chunks must be a positive integer, got {shard_chunks!r}")
    ds, chunks, doc_offsets, chunk_size = _chunk_table(dataset, verify_data)
    n_docs, n_chunks = len(doc_offsets) - 1, int(doc_offsets[-1])
    if n_docs == 0 or n_chunks == 0:
        raise ConfigError(f"{dataset}: the dataset has no chunks to encode ({n_docs} documents)")
    if isinstance(encoder, SentenceEncoder):
        enc = encoder
    else:
        enc = load_encoder(encoder, device=device, precision=precision, max_seq_length=max_seq_length, compile=compile)
    data_manifest = ds.manifest
    _check_tokenizers(dataset, data_manifest.tokenizer, enc.tokenizer_info, enc.name)
    import xxhash

    identity = enc.identity()
    dataset_identity = {
        "path": str(dataset.resolve()),
        "manifest_xxh3": xxhash.xxh3_64_hexdigest((dataset / MANIFEST).read_bytes()),
        "chunk_size": chunk_size,
        "documents": n_docs,
        "chunks": n_chunks,
        "tokenizer": {k: data_manifest.tokenizer.get(k) for k in ("vocab_sha256", "lowercase", "strip_accents")},
    }
    plan = {
        "format": STORE_FORMAT,
        "version": STORE_VERSION,
        "dataset": dataset_identity,
        "encoder": identity,
        "dataset_key": {k: v for k, v in dataset_identity.items() if k != "path"},  # a moved dataset still resumes
        "encoder_key": {k: identity[k] for k in ("checksum", "dim", "pooling", "normalize", "max_seq_length")},
        "dtype": DTYPE,
        "shard_chunks": shard_chunks,
        "shards": _plan_shards(doc_offsets, shard_chunks),
    }
    summary: dict[str, Any] = {
        "out": str(out),
        "documents": n_docs,
        "chunks": n_chunks,
        "dim": enc.dim,
        "shards": len(plan["shards"]),
        "encoded_shards": 0,
        "encoded_chunks": 0,
        "resumed_shards": 0,
        "complete": False,
        "device": str(enc.device),
    }
    with contextlib.ExitStack() as stack:
        if count == 1:  # the only writer: hold the store's lock for the whole call
            if not os.path.lexists(out):  # a call that fails before writing leaves no empty directory (runs last)
                stack.callback(_rmdir_if_empty, out)
            stack.enter_context(output_lock(out, purpose="bertkit encode"))
        return _encode_shards(out, plan, overwrite, chunks, doc_offsets, enc, (index, count), batch_size, on_progress,
                              summary, t0)  # fmt: skip


def _rmdir_if_empty(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.rmdir()


@contextlib.contextmanager
def _briefly_locked(out: Path, lock: bool) -> Iterator[None]:
    """With `lock` (one of several `--shard` workers): hold the store's lock for one short directory-level step,
    waiting up to `SHARD_LOCK_WAIT` seconds while another worker holds it (a whole-store writer: refused)."""
    if not lock:
        yield
        return
    deadline = time.monotonic() + SHARD_LOCK_WAIT
    while True:
        try:
            stack = contextlib.ExitStack()
            stack.enter_context(output_lock(out, purpose="bertkit encode --shard"))
            break
        except OutputLockedError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    with stack:
        yield


def _encode_shards(
    out: Path,
    plan: dict[str, Any],
    overwrite: bool,
    chunks: Any,
    doc_offsets: np.ndarray,
    enc: Any,
    shard: tuple[int, int],
    batch_size: int | None,
    on_progress: Callable[[int, int], None] | None,
    summary: dict[str, Any],
    t0: float,
) -> dict[str, Any]:
    """Encode this call's pending shards of `plan` into `out` (under the store's lock when it is the only writer)."""
    index, count = shard
    with _briefly_locked(out, count > 1):
        complete = _prepare_out(out, plan, overwrite)
    if complete:
        summary.update(complete=True, resumed_shards=len(plan["shards"]), seconds=time.perf_counter() - t0)
        return summary
    mine = [i for i in range(len(plan["shards"])) if i % count == index]
    pending = [i for i in mine if _completed(out, i) is None]
    summary["resumed_shards"] = len(mine) - len(pending)
    total = sum(plan["shards"][i][3] - plan["shards"][i][2] for i in pending)
    done = 0

    def on_batch(n: int) -> None:
        nonlocal done
        done += n
        if on_progress is not None:
            on_progress(done, total)

    if on_progress is not None:
        on_progress(0, total)
    for i in pending:
        d0, d1, c0, c1 = plan["shards"][i]
        ids = [np.asarray(chunks.chunk(j)) for j in range(c0, c1)]
        emb = enc.encode_ids(ids, batch_size=batch_size, on_batch=on_batch).astype(np.float16)
        name = _shard_name(i)
        arrays = {
            "embeddings": _write_array(out, f"{SHARD_DIR}/{name}.embeddings.npy", emb),
            "document_offsets": _write_array(
                out, f"{SHARD_DIR}/{name}.document_offsets.npy", (doc_offsets[d0 : d1 + 1] - c0).astype(np.uint64)
            ),
        }
        record = {
            "name": name,
            "documents": d1 - d0,
            "chunks": c1 - c0,
            "first_document": d0,
            "first_chunk": c0,
            "arrays": {k: a.to_json() for k, a in arrays.items()},
        }
        write_bytes_atomic(out / SHARD_DIR / f"{name}.json", _json_bytes(record))
        summary["encoded_shards"] += 1
        summary["encoded_chunks"] += c1 - c0
    with _briefly_locked(out, count > 1):
        summary["complete"] = _publish(out, plan)
    summary["seconds"] = time.perf_counter() - t0
    return summary


def _publish(out: Path, plan: dict[str, Any]) -> bool:
    """Write the manifest when every shard of the plan is complete; True if the store is complete."""
    records = [_completed(out, i) for i in range(len(plan["shards"]))]
    if any(r is None for r in records):
        return False
    from bertkit import __version__

    manifest = {
        "format": STORE_FORMAT,
        "version": STORE_VERSION,
        "created_by": f"bertkit {__version__}",
        "dim": plan["encoder"]["dim"],
        "dtype": plan["dtype"],
        "normalized": plan["encoder"]["normalize"],
        "encoder": plan["encoder"],
        "dataset": plan["dataset"],
        "totals": {"documents": plan["dataset"]["documents"], "chunks": plan["dataset"]["chunks"]},
        "shards": records,
    }
    write_bytes_atomic(out / MANIFEST, _json_bytes(manifest))
    return True
