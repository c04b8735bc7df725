"""Shared test fixtures: a tiny vocabulary and a writer of small datasets exactly per docs/FORMAT.md."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import xxhash

# A tiny WordPiece vocabulary: specials at BERT's usual small ids, then words and ## pieces.
TINY_VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "cat", "sat", "on", "mat", "dog", "##s", "run", "."]
TINY_VOCAB += [f"w{i}" for i in range(len(TINY_VOCAB), 64)]


def tokenizer_info(vocab: list[str], prefix: str = "##", source: str = "vocab.txt") -> dict[str, Any]:
    specials = {t: vocab.index(t) for t in ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")}
    return {
        "kind": "wordpiece",
        "source": source,
        "vocab_sha256": hashlib.sha256(("\n".join(vocab) + "\n").encode()).hexdigest(),
        "vocab_size": len(vocab),
        "lowercase": True,
        "strip_accents": None,
        "continuing_subword_prefix": prefix,
        "special_tokens": specials,
        "special_ids": {k.strip("[]").lower(): v for k, v in specials.items()},
    }


def _write_npy(root: Path, rel: str, arr: np.ndarray) -> dict[str, Any]:
    path = root / rel
    np.save(path, np.ascontiguousarray(arr))
    data = path.read_bytes()
    assert data[:8] == b"\x93NUMPY\x01\x00" and (10 + int.from_bytes(data[8:10], "little")) % 64 == 0
    return {
        "path": rel,
        "dtype": arr.dtype.name,
        "shape": list(arr.shape),
        "size": len(data),
        "xxh3": xxhash.xxh3_64_hexdigest(data),
    }


def _shard(root: Path, kind: str, index: int, arrays: dict[str, np.ndarray], **counts: int) -> dict[str, Any]:
    name = f"{kind}-{index:05d}"
    rec = {
        "kind": kind,
        "name": name,
        "rows": 0,
        "sentences": 0,
        "tokens": 0,
        "chunks": 0,
        **counts,
        "arrays": {k: _write_npy(root, f"shards/{name}.{k}.npy", v) for k, v in sorted(arrays.items())},
    }
    (root / "shards" / f"{name}.json").write_text(json.dumps(rec, indent=2))
    return rec


def _chunked(items: list, n: int) -> list[list]:
    return [items[i : i + n] for i in range(0, len(items), n)] or [[]]


def write_fixture_dataset(
    root: str | os.PathLike[str],
    docs: list[list[list[int]]],
    *,
    docs_per_shard: int = 2,
    token_dtype: str = "uint16",
    vocab: list[str] | None = TINY_VOCAB,
    nsp: list[dict[str, Any]] | None = None,
    nsp_per_shard: int = 2,
    mlm: np.ndarray | None = None,
    mlm_per_shard: int = 3,
    chunks: list[list[list[int]]] | None = None,
    sources: list[int] | None = None,
    inputs: list[str] | None = None,
    prefix: str = "##",
    manifest: bool = True,
) -> Path:
    """Write a dataset: `docs` is a list of documents, each a list of sentences (lists of ids).

    `nsp` items: dicts with `a`, `b` (id lists), `label`, `positions`, `masked_ids`; `[CLS] a [SEP] b [SEP]` is
    stored. `mlm`: a `[n, seq_len]` array. `chunks`: per document, a list of chunks (id lists, stored as is).
    `sources[d]` is the input index of document d. Returns the directory.
    """
    root = Path(root)
    (root / "shards").mkdir(parents=True, exist_ok=True)
    tdt = np.dtype(token_dtype)
    inputs = inputs or ["corpus.txt"]
    sources = sources or [0] * len(docs)
    shards = []
    for k, part in enumerate(_chunked(list(range(len(docs))), docs_per_shard)):
        sents = [s for d in part for s in docs[d]]
        tokens = np.array([t for s in sents for t in s], dtype=tdt)
        so = np.concatenate([[0], np.cumsum([len(s) for s in sents])]).astype(np.uint64)
        do = np.concatenate([[0], np.cumsum([len(docs[d]) for d in part])]).astype(np.uint64)
        src = np.array([sources[d] for d in part], dtype=np.uint32)
        arrays = {"tokens": tokens, "sentence_offsets": so, "document_offsets": do, "document_sources": src}
        shards.append(_shard(root, "corpus", k, arrays, rows=len(part), sentences=len(sents), tokens=len(tokens)))
    instances: dict[str, int] = {}
    if nsp is not None:
        instances["nsp"] = len(nsp)
        for k, part in enumerate(_chunked(nsp, nsp_per_shard)):
            seqs = [[2, *x["a"], 3, *x["b"], 3] for x in part]
            arrays = {
                "input_ids": np.array([t for s in seqs for t in s], dtype=tdt),
                "offsets": np.concatenate([[0], np.cumsum([len(s) for s in seqs])]).astype(np.uint64),
                "segment_a_lengths": np.array([len(x["a"]) + 2 for x in part], dtype=np.uint16),
                "next_sentence_labels": np.array([x["label"] for x in part], dtype=np.uint8),
                "masked_positions": np.array([p for x in part for p in x["positions"]], dtype=np.uint16),
                "masked_lm_ids": np.array([t for x in part for t in x["masked_ids"]], dtype=tdt),
                "masked_offsets": np.concatenate([[0], np.cumsum([len(x["positions"]) for x in part])]).astype(
                    np.uint64
                ),
            }
            shards.append(_shard(root, "nsp", k, arrays, rows=len(part), tokens=sum(map(len, seqs))))
    if mlm is not None:
        instances["mlm"] = len(mlm)
        for k, start in enumerate(range(0, max(len(mlm), 1), mlm_per_shard)):
            rows = np.asarray(mlm[start : start + mlm_per_shard], dtype=tdt)
            shards.append(_shard(root, "mlm", k, {"input_ids": rows}, rows=len(rows), tokens=rows.size))
    if chunks is not None:
        instances["chunks"] = sum(len(c) for c in chunks)
        for k, part in enumerate(_chunked(chunks, docs_per_shard)):
            flat = [c for d in part for c in d]
            arrays = {
                "input_ids": np.array([t for c in flat for t in c], dtype=tdt),
                "offsets": np.concatenate([[0], np.cumsum([len(c) for c in flat])]).astype(np.uint64),
                "document_offsets": np.concatenate([[0], np.cumsum([len(d) for d in part])]).astype(np.uint64),
            }
            n_tok = sum(len(c) for c in flat)
            shards.append(_shard(root, "chunks", k, arrays, rows=len(part), chunks=len(flat), tokens=n_tok))
    tok = tokenizer_info(vocab or TINY_VOCAB, prefix)
    if vocab is not None:
        (root / "tokenizer").mkdir(exist_ok=True)
        (root / "tokenizer" / "vocab.txt").write_text("\n".join(vocab) + "\n")
    m = {
        "format": "bertkit.dataset",
        "version": 1,
        "kind": "corpus",
        "created_by": "bertkit 0.1.0",
        "tokenizer": tok,
        "splitter": {"name": "lines", "version": "1"},
        "config": {"seed": 12345, "fixture": True},
        "inputs": [{"path": p, "size": 100 + i, "xxh3": f"{i:016x}"} for i, p in enumerate(inputs)],
        "token_dtype": token_dtype,
        "totals": {
            "documents": len(docs),
            "sentences": sum(len(d) for d in docs),
            "tokens": sum(len(s) for d in docs for s in d),
            "instances": instances,
            "skipped": {"empty_documents": 0},
        },
        "shards": shards,
    }
    if manifest:
        (root / "manifest.json").write_text(json.dumps(m, indent=2))
    return root


def random_docs(n_docs: int, seed: int = 0, vocab_size: int = 64) -> list[list[list[int]]]:
    """Documents of 1-4 sentences of 1-6 ids in [5, vocab_size) (some documents can be short)."""
    rng = np.random.default_rng(seed)
    return [
        [rng.integers(5, vocab_size, rng.integers(1, 7)).tolist() for _ in range(rng.integers(1, 5))]
        for _ in range(n_docs)
    ]


@pytest.fixture
def make_dataset(tmp_path):
    """`make_dataset(name, docs, **kw)` writes a fixture dataset under tmp_path and returns its path."""

    def make(name: str = "ds", docs: list[list[list[int]]] | None = None, **kw: Any) -> Path:
        return write_fixture_dataset(tmp_path / name, docs if docs is not None else random_docs(7), **kw)

    return make


@pytest.fixture
def data_dir() -> Path:
    """The real corpora directory ($BERTKIT_DATA, from scripts/fetch_data.py); skips when unset."""
    d = os.environ.get("BERTKIT_DATA")
    if not d:
        pytest.skip("BERTKIT_DATA is not set (run scripts/fetch_data.py)")
    return Path(d)


def tiny_train_config(dataset, out, **overrides):
    """A `TrainConfig` for a seconds-long CPU run of the tiny preset (tests override what they need)."""
    from bertkit.train.config import TrainConfig

    base = dict(
        data=str(dataset),
        out=str(out),
        preset="tiny",
        seq_len=32,
        eval_fraction=0.1,
        tensorboard=False,
        plot=False,
        device="cpu",
    )
    base.update(overrides)
    return TrainConfig(**base)
