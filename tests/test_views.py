"""Views over a prepared dataset (bertkit._core): NSP pairs, packed-MLM rows, NextLevelBERT chunks.

Datasets are written here with numpy following docs/FORMAT.md, so these tests need no prepare step.
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import numpy as np
import pytest
import xxhash

core = pytest.importorskip("bertkit._core")

from bertkit.exceptions import ConfigError, FormatError  # noqa: E402

PAD, UNK, CLS, SEP, MASK = 0, 100, 101, 102, 103
SPECIAL_IDS = {"pad": PAD, "unk": UNK, "cls": CLS, "sep": SEP, "mask": MASK}


def _save(root: Path, rel: str, arr: np.ndarray) -> dict:
    path = root / rel
    np.save(path, np.ascontiguousarray(arr))
    data = path.read_bytes()
    return {
        "path": rel,
        "dtype": str(arr.dtype),
        "shape": list(arr.shape),
        "size": len(data),
        "xxh3": xxhash.xxh3_64_hexdigest(data),
    }


def write_dataset(
    root: Path,
    docs: list[list[list[int]]],
    sources: list[int] | None = None,
    docs_per_shard: int | None = None,
    vocab_size: int = 30522,
) -> Path:
    """A corpus-only dataset directory (docs/FORMAT.md): documents → sentences → token ids."""
    sources = sources if sources is not None else [0] * len(docs)
    docs_per_shard = docs_per_shard or max(1, len(docs))
    dtype = np.uint16 if vocab_size <= 65536 else np.uint32
    (root / "shards").mkdir(parents=True, exist_ok=True)
    shards = []
    for k, first in enumerate(range(0, len(docs), docs_per_shard)):
        part = docs[first : first + docs_per_shard]
        sentences = [s for d in part for s in d]
        tokens = np.array([t for s in sentences for t in s], dtype=dtype)
        so = np.zeros(len(sentences) + 1, dtype=np.uint64)
        so[1:] = np.cumsum([len(s) for s in sentences])
        do = np.zeros(len(part) + 1, dtype=np.uint64)
        do[1:] = np.cumsum([len(d) for d in part])
        name = f"corpus-{k:05d}"
        arrays = {
            "tokens": _save(root, f"shards/{name}.tokens.npy", tokens),
            "sentence_offsets": _save(root, f"shards/{name}.sentence_offsets.npy", so),
            "document_offsets": _save(root, f"shards/{name}.document_offsets.npy", do),
            "document_sources": _save(
                root,
                f"shards/{name}.document_sources.npy",
                np.array(sources[first : first + docs_per_shard], dtype=np.uint32),
            ),
        }
        shard = {
            "kind": "corpus",
            "name": name,
            "rows": len(part),
            "sentences": len(sentences),
            "tokens": int(len(tokens)),
            "chunks": 0,
            "arrays": arrays,
        }
        shards.append(shard)
    manifest = {
        "format": "bertkit.dataset",
        "version": 1,
        "kind": "corpus",
        "created_by": "bertkit tests",
        "tokenizer": {"kind": "wordpiece", "vocab_size": vocab_size, "special_ids": SPECIAL_IDS},
        "splitter": {"name": "lines", "version": "1"},
        "config": {},
        "inputs": [],
        "token_dtype": np.dtype(dtype).name,
        "totals": {
            "documents": len(docs),
            "sentences": sum(len(d) for d in docs),
            "tokens": sum(len(s) for d in docs for s in d),
        },
        "shards": shards,
    }
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root


def synthetic_docs(n_docs: int, seed: int = 0) -> list[list[list[int]]]:
    rng = np.random.default_rng(seed)
    return [
        [rng.integers(1000, 30000, size=int(rng.integers(1, 40))).tolist() for _ in range(int(rng.integers(1, 25)))]
        for _ in range(n_docs)
    ]


class Corpus:
    """The same corpus seen by numpy: global tokens and per-document token ranges."""

    def __init__(self, docs: list[list[list[int]]]):
        self.tokens = np.array([t for d in docs for s in d for t in s], dtype=np.int64)
        lens = [sum(len(s) for s in d) for d in docs]
        self.doc_start = np.concatenate([[0], np.cumsum(lens)[:-1]]).astype(np.int64)
        self.doc_end = np.cumsum(lens).astype(np.int64)
        self.docs = docs

    def doc_of(self, token: int) -> int:
        return int(np.searchsorted(self.doc_end, token, side="right"))

    def stream(self) -> np.ndarray:
        parts: list[np.ndarray] = []
        for s, e in zip(self.doc_start, self.doc_end, strict=True):
            if e == s:
                continue
            if parts:
                parts.append(np.array([SEP]))
            parts.append(self.tokens[s:e])
        return np.concatenate(parts)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    docs = synthetic_docs(200, seed=1)
    docs[17] = []  # an empty document
    sources = [0] * 100 + [1] * 100
    root = write_dataset(tmp_path_factory.mktemp("ds"), docs, sources, docs_per_shard=64)
    return root, Corpus(docs), sources


def test_nsp_view_pairs_are_valid(dataset):
    root, c, sources = dataset
    v = core.nsp_view(str(root), seq_len=128, seed=3, epoch=0)
    assert set(v) == {"a_start", "a_end", "b_start", "b_end", "labels"}
    n = len(v["labels"])
    assert n > 300
    assert all(v[k].dtype == np.uint64 for k in ("a_start", "a_end", "b_start", "b_end"))
    assert v["labels"].dtype == np.uint8
    la = v["a_end"].astype(np.int64) - v["a_start"].astype(np.int64)
    lb = v["b_end"].astype(np.int64) - v["b_start"].astype(np.int64)
    assert (la >= 1).all() and (lb >= 1).all() and (la + lb <= 125).all()
    cross_file = 0
    for i in range(n):
        d = c.doc_of(int(v["a_start"][i]))
        assert c.doc_of(int(v["a_end"][i]) - 1) == d, "A stays inside one document"
        bd = c.doc_of(int(v["b_start"][i]))
        assert c.doc_of(int(v["b_end"][i]) - 1) == bd
        if v["labels"][i] == 0:
            assert bd == d and v["b_start"][i] >= v["a_end"][i]
        else:
            cross_file += sources[bd] != sources[d]
    assert cross_file > 0, "faithful negatives come from every input file (Google's all_documents)"
    rate = v["labels"].mean()
    assert 0.5 < rate < 0.7
    # Deterministic, and a new epoch draws new pairs.
    again = core.nsp_view(str(root), seq_len=128, seed=3, epoch=0)
    assert all(np.array_equal(v[k], again[k]) for k in v)
    other = core.nsp_view(str(root), seq_len=128, seed=3, epoch=1)
    assert len(other["labels"]) != n or not np.array_equal(other["a_start"], v["a_start"])


def test_nsp_view_fixed_mode_never_uses_own_document(dataset):
    root, c, sources = dataset
    v = core.nsp_view(str(root), seq_len=64, seed=5, fix_quirks=True, short_seq_prob=0.0)
    random_next = np.flatnonzero(v["labels"] == 1)
    assert len(random_next) > 50
    cross = 0
    for i in random_next:
        d, bd = c.doc_of(int(v["a_start"][i])), c.doc_of(int(v["b_start"][i]))
        assert d != bd
        cross += sources[d] != sources[bd]
    assert cross > 0


def test_mlm_rows_cover_the_stream(dataset):
    root, c, _ = dataset
    stream = c.stream()
    seq_len = 32
    piece = seq_len - 2
    starts = core.mlm_view(str(root), seq_len=seq_len, seed=1, epoch=2)
    assert starts.dtype == np.uint64
    shift = int(starts.min())
    assert 0 <= shift < piece
    assert np.array_equal(np.sort(starts), shift + piece * np.arange((len(stream) - shift) // piece))
    rows = core.mlm_rows(str(root), starts, seq_len=seq_len)
    assert rows.shape == (len(starts), seq_len) and rows.dtype == np.uint32
    assert (rows[:, 0] == CLS).all() and (rows[:, -1] == SEP).all()
    for r, s in zip(rows[:50], starts[:50], strict=True):
        assert np.array_equal(r[1:-1], stream[int(s) : int(s) + piece])
    # Separators between documents appear inside rows, never two in a row (empty doc skipped).
    middles = rows[np.argsort(starts)][:, 1:-1].reshape(-1)
    assert np.array_equal(middles, stream[shift : shift + len(middles)])
    # A stream handle gives the same rows without reopening the dataset.
    ms = core.MlmStream(str(root))
    assert len(ms) == len(stream)
    assert np.array_equal(ms.view(seq_len=seq_len, seed=1, epoch=2), starts)
    assert np.array_equal(ms.rows(starts[:7].astype(np.int64), seq_len=seq_len), rows[:7])


def test_chunk_view(dataset):
    root, c, _ = dataset
    v = core.chunk_view(str(root), chunk_size=10)
    starts, ends, dofs = v["starts"], v["ends"], v["document_offsets"]
    assert len(dofs) == len(c.docs) + 1 and dofs[0] == 0 and dofs[-1] == len(starts)
    for d in range(len(c.docs)):
        ks = range(int(dofs[d]), int(dofs[d + 1]))
        lens = [int(ends[k] - starts[k]) for k in ks]
        assert sum(lens) == c.doc_end[d] - c.doc_start[d]
        assert all(x == 8 for x in lens[:-1]) and (not lens or 1 <= lens[-1] <= 8)
        if lens:
            assert starts[ks[0]] == c.doc_start[d]
    s = core.chunk_view(str(root), chunk_size=0)
    n_sentences = sum(1 for d in c.docs for x in d if x)
    assert len(s["starts"]) == n_sentences
    assert (s["ends"] - s["starts"] <= 254).all()


def test_views_reject_bad_arguments(dataset, tmp_path):
    root, _, _ = dataset
    with pytest.raises(ConfigError, match="seq_len"):
        core.mlm_view(str(root), seq_len=2)
    with pytest.raises(ConfigError, match="max_seq_length"):
        core.nsp_view(str(root), seq_len=4)
    with pytest.raises(ConfigError, match="chunk_size"):
        core.chunk_view(str(root), chunk_size=2)
    with pytest.raises(FormatError, match="manifest.json is missing"):
        core.nsp_view(str(tmp_path))
    broken = write_dataset(tmp_path / "broken", [[[1000, 1001]]])
    m = json.loads((broken / "manifest.json").read_text())
    del m["tokenizer"]["special_ids"]["cls"]
    (broken / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(FormatError, match="special_ids.cls"):
        core.mlm_rows(str(broken), np.array([0]), seq_len=8)
    m["tokenizer"]["special_ids"]["cls"] = CLS
    (broken / "manifest.json").write_text(json.dumps(m))
    (broken / "shards" / "corpus-00000.tokens.npy").write_bytes(b"\x93NUMPY")
    with pytest.raises(FormatError, match="corpus-00000.tokens.npy"):
        core.chunk_view(str(broken), chunk_size=0)


_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z\"'])")


def _news_dataset(data: Path, root: Path) -> tuple[Path, int]:
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(data / "tokenizer.json"))
    tok.no_padding()
    tok.no_truncation()
    text = (data / "news.txt").read_text(encoding="utf-8")
    articles = [a for a in text.split("\n\n") if a.strip()]
    # One article per line: split sentences naively (enough for the statistics checked here).
    lines = [[x for x in _SENTENCE_END.split(a) if x.strip()] for a in articles]
    flat = [ln for a in lines for ln in a]
    ids = [e.ids for e in tok.encode_batch(flat, add_special_tokens=False)]
    docs, k = [], 0
    for a in lines:
        docs.append([s for s in ids[k : k + len(a)] if s])
        k += len(a)
    return write_dataset(root, docs, docs_per_shard=1000), len(text.encode())


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("BERTKIT_DATA"), reason="BERTKIT_DATA is not set")
def test_real_news_views(tmp_path):
    root, n_bytes = _news_dataset(Path(os.environ["BERTKIT_DATA"]), tmp_path / "news")
    t = time.perf_counter()
    v = core.nsp_view(str(root), seq_len=128, seed=12345)
    elapsed = time.perf_counter() - t
    rate = float(v["labels"].mean())
    # Google's script: 56.7 % random next on real text (docs/ANCHORS.md).
    assert 0.5 < rate < 0.65, rate
    print(f"news: {len(v['labels'])} NSP pairs, random-next {rate:.3f}, {n_bytes / 1e6 / elapsed:.1f} MB/s")
    starts = core.mlm_view(str(root), seq_len=128)
    rows = core.MlmStream(str(root)).rows(starts[:256])
    assert rows.shape == (256, 128)
    assert len(core.chunk_view(str(root), chunk_size=256)["starts"]) > 0
