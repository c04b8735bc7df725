"""Pretraining batches (bertkit.data.loader) over small datasets written with numpy (docs/FORMAT.md).

The corpus uses a distinct id per corpus position (id = position + FIRST), so every token in a batch says where in
the corpus it came from: rows can be checked against the views and the train/eval boundary exactly.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

pytest.importorskip("bertkit._core")

from conftest import write_fixture_dataset  # noqa: E402

from bertkit.data.loader import PretrainingData, StreamState  # noqa: E402
from bertkit.data.views import MlmStream, mlm_view, nsp_view  # noqa: E402
from bertkit.exceptions import ConfigError  # noqa: E402

PAD, UNK, CLS, SEP, MASK = 0, 1, 2, 3, 4
FIRST = 10  # corpus token at global position p has id FIRST + p
VOCAB_SIZE = 4000
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[PAR]", "a", "b", "c", "d"]
VOCAB += [f"##p{i}" if i % 7 == 0 else f"t{i}" for i in range(len(VOCAB), VOCAB_SIZE)]
CONTINUATION = np.array([t.startswith("##") for t in VOCAB])


def unique_docs(n_docs: int, seed: int = 0) -> list[list[list[int]]]:
    """Documents of 1-5 sentences of 1-8 tokens, every token id distinct (position + FIRST)."""
    rng = np.random.default_rng(seed)
    docs, p = [], FIRST
    for _ in range(n_docs):
        doc = []
        for _ in range(int(rng.integers(1, 6))):
            n = int(rng.integers(1, 9))
            doc.append(list(range(p, p + n)))
            p += n
        docs.append(doc)
    assert p < VOCAB_SIZE
    return docs


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    docs = unique_docs(220, seed=1)
    root = write_fixture_dataset(tmp_path_factory.mktemp("loader") / "ds", docs, docs_per_shard=40, vocab=VOCAB)
    tokens = np.array([t for d in docs for s in d for t in s], dtype=np.int64)
    stream = []
    for d in docs:
        if stream:
            stream.append(SEP)
        stream.extend(t for s in d for t in s)
    return root, tokens, np.array(stream, dtype=np.int64)


def epoch_batches(data: PretrainingData, epoch: int) -> list[dict[str, np.ndarray]]:
    return [b for b, _ in _take(data.batches(StreamState(epoch, 0)), data.num_batches(epoch))]


def _take(it, n):
    return [next(it) for _ in range(n)]


def test_mlm_rows_match_view_and_stream(corpus):
    root, _, stream = corpus
    T, B = 16, 4
    data = PretrainingData(root, view="mlm", seq_len=T, batch_size=B, seed=5, eval_fraction=0.1)
    assert (data.vocab_size, data.pad_id, data.cls_id, data.sep_id, data.mask_id) == (VOCAB_SIZE, 0, 2, 3, 4)
    assert np.array_equal(data.is_continuation, CONTINUATION)
    assert data.special_ids.tolist() == [0, 1, 2, 3, 4, 5]  # [PAR] counts as special
    boundary = int(np.floor(0.9 * len(stream)))
    assert len(MlmStream(root)) == len(stream)
    for epoch in (0, 1):
        starts = mlm_view(root, T, 5, epoch).astype(np.int64)
        starts = starts[starts + T - 2 <= boundary]
        batches = epoch_batches(data, epoch)
        assert len(batches) == len(starts) // B == data.num_batches(epoch)
        for g, batch in enumerate(batches):
            assert set(batch) == {"input_ids", "token_type_ids", "special_tokens_mask", "word_start"}
            assert batch["input_ids"].dtype == np.int64 and batch["input_ids"].shape == (B, T)
            for r, s in enumerate(starts[g * B : (g + 1) * B]):
                assert batch["input_ids"][r].tolist() == [CLS, *stream[s : s + T - 2].tolist(), SEP]
            assert not batch["token_type_ids"].any()
            ids = batch["input_ids"]
            assert np.array_equal(batch["special_tokens_mask"], np.isin(ids, [0, 1, 2, 3, 4, 5]))
            assert np.array_equal(batch["word_start"], ~CONTINUATION[ids])
    assert (~epoch_batches(data, 0)[0]["word_start"]).any()


def _decode_nsp_row(ids, types, mask):
    n = int(mask.sum())
    assert mask[:n].all() and not mask[n:].any()
    row = ids[:n]
    seps = np.flatnonzero(row == SEP)
    assert row[0] == CLS and len(seps) == 2 and seps[1] == n - 1
    assert (ids[n:] == PAD).all()
    assert not types[: seps[0] + 1].any() and types[seps[0] + 1 : n].all() and not types[n:].any()
    return row[1 : seps[0]], row[seps[0] + 1 : n - 1]


def test_nsp_rows_cover_the_view(corpus):
    root, tokens, _ = corpus
    T, B = 24, 5
    data = PretrainingData(root, view="nsp", seq_len=T, batch_size=B, seed=3, eval_fraction=0.1, drop_last=False)
    boundary = int(np.floor(0.9 * len(tokens)))
    v = nsp_view(root, seq_len=T, seed=3, epoch=1)
    keep = (v["a_end"] <= boundary) & (v["b_end"] <= boundary)
    expected = Counter(
        (tuple(tokens[a0:a1]), tuple(tokens[b0:b1]), int(lab))
        for a0, a1, b0, b1, lab in zip(
            v["a_start"][keep], v["a_end"][keep], v["b_start"][keep], v["b_end"][keep], v["labels"][keep], strict=True
        )
    )
    got = Counter()
    batches = epoch_batches(data, 1)
    assert data.num_batches(1) == -(-sum(expected.values()) // B)
    for batch in batches:
        assert {"attention_mask", "next_sentence_label"} <= set(batch)
        assert batch["next_sentence_label"].dtype == np.int64
        for r in range(len(batch["input_ids"])):
            a, b = _decode_nsp_row(batch["input_ids"][r], batch["token_type_ids"][r], batch["attention_mask"][r])
            got[(tuple(a), tuple(b), int(batch["next_sentence_label"][r]))] += 1
        specials = (batch["attention_mask"] == 0) | np.isin(batch["input_ids"], [CLS, SEP])
        assert np.array_equal(batch["special_tokens_mask"], specials)
    assert got == expected
    assert len(batches[-1]["input_ids"]) == sum(expected.values()) - (len(batches) - 1) * B


@pytest.mark.parametrize("view", ["mlm", "nsp"])
def test_train_eval_disjoint_and_eval_fixed(corpus, view):
    root, tokens, stream = corpus
    T = 16
    total = len(stream) if view == "mlm" else len(tokens)
    boundary = int(np.floor(0.85 * total))
    train = PretrainingData(root, view=view, seq_len=T, batch_size=4, seed=9, eval_fraction=0.15)
    ev = PretrainingData(root, view=view, seq_len=T, batch_size=4, seed=9, split="eval", eval_fraction=0.15)

    def positions(batch):
        ids = batch["input_ids"]
        return ids[ids >= FIRST] - FIRST  # corpus positions of the real tokens

    # Stream positions = corpus positions + the separators before them, so compare in corpus positions.
    cut = boundary if view == "nsp" else boundary - int((stream[:boundary] == SEP).sum())
    for epoch in (0, 1, 2):
        for batch in epoch_batches(train, epoch):
            assert positions(batch).max() < cut
    eval_batches = [b for b, _ in ev.batches()]
    assert len(eval_batches) == ev.num_batches() > 0
    for batch in eval_batches:
        ids = batch["input_ids"]
        first = ids[:, 1] - FIRST  # the first real token of each row (A's first token for nsp)
        if view == "mlm":
            first = np.where(ids[:, 1] == SEP, ids[:, 2] - FIRST, first)
        assert (first >= cut).all()
    again = [b for b, _ in ev.batches()]
    assert all(np.array_equal(a["input_ids"], b["input_ids"]) for a, b in zip(eval_batches, again, strict=True))
    # Eval is in corpus order and does not depend on the state's epoch.
    firsts = np.concatenate([b["input_ids"][:, 1] for b in eval_batches])
    assert (np.diff(firsts[firsts >= FIRST]) > 0).all()
    same = [b for b, _ in ev.batches(StreamState(epoch=4, cursor=0))]
    assert all(np.array_equal(a["input_ids"], b["input_ids"]) for a, b in zip(eval_batches, same, strict=True))


@pytest.mark.parametrize("view", ["mlm", "nsp"])
def test_epochs_redraw(corpus, view):
    root, _, _ = corpus
    data = PretrainingData(root, view=view, seq_len=16, batch_size=8, seed=2)
    e0, e1 = epoch_batches(data, 0), epoch_batches(data, 1)
    assert not np.array_equal(e0[0]["input_ids"], e1[0]["input_ids"])
    # Another seed gives another order too.
    other = PretrainingData(root, view=view, seq_len=16, batch_size=8, seed=3)
    assert not np.array_equal(e0[0]["input_ids"], epoch_batches(other, 0)[0]["input_ids"])


@pytest.mark.parametrize("view", ["mlm", "nsp"])
def test_resume_mid_epoch_is_exact(corpus, view):
    root, _, _ = corpus
    data = PretrainingData(root, view=view, seq_len=16, batch_size=6, seed=4)
    n0, n1 = data.num_batches(0), data.num_batches(1)
    full = _take(data.batches(), n0 + n1 + 3)
    states = [s for _, s in full]
    assert states[0] == StreamState(0, 1)
    assert states[n0 - 1] == StreamState(1, 0)  # the epoch's last batch hands over to the next epoch
    assert states[n0 + n1 - 1] == StreamState(2, 0)
    for k in (3, n0 - 1, n0 + 2):
        fresh = PretrainingData(root, view=view, seq_len=16, batch_size=6, seed=4)
        rest = _take(fresh.batches(states[k - 1]), len(full) - k)
        for (a, sa), (b, sb) in zip(full[k:], rest, strict=True):
            assert sa == sb and a.keys() == b.keys()
            assert all(np.array_equal(a[key], b[key]) for key in a)
    with pytest.raises(ConfigError, match="past the end"):
        next(data.batches(StreamState(0, n0 + 1)))


@pytest.mark.parametrize("view", ["mlm", "nsp", "static-nsp"])
def test_two_ranks_partition_each_global_batch(corpus, nsp_dataset, view):
    root = nsp_dataset if view == "static-nsp" else corpus[0]
    T = 24 if view == "static-nsp" else 16
    kw = {"view": view, "seq_len": T, "seed": 7}
    single = PretrainingData(root, batch_size=6, **kw)
    ranks = [PretrainingData(root, batch_size=3, rank=r, world_size=2, **kw) for r in (0, 1)]
    for epoch in (0, 1):
        n = single.num_batches(epoch)
        assert ranks[0].num_batches(epoch) == ranks[1].num_batches(epoch) == n > 0
        whole = epoch_batches(single, epoch)
        parts = [epoch_batches(r, epoch) for r in ranks]
        for g in range(n):
            for key in ("input_ids", "special_tokens_mask", "token_type_ids"):
                joined = np.concatenate([parts[0][g][key], parts[1][g][key]])
                assert np.array_equal(joined, whole[g][key])
    with pytest.raises(ConfigError, match="rank"):
        PretrainingData(root, batch_size=3, rank=2, world_size=2, **kw)


def _nsp_instances(n: int, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        a = rng.integers(FIRST, 500, int(rng.integers(1, 9))).tolist()
        b = rng.integers(FIRST, 500, int(rng.integers(1, 9))).tolist()
        n_tok = len(a) + len(b) + 3
        k = int(rng.integers(0, 4))
        positions = sorted(rng.choice([p for p in range(1, n_tok - 1) if p != len(a) + 1], k, replace=False).tolist())
        out.append({"a": a, "b": b, "label": int(rng.integers(0, 2)), "positions": positions, "masked_ids": []})
        out[-1]["masked_ids"] = [int(rng.integers(600, 900)) for _ in positions]  # the "original" ids
        for p in positions:  # what Google's script stores: the input already masked
            (a if p <= len(a) else b)[(p - 1) if p <= len(a) else (p - len(a) - 2)] = MASK
    return out


@pytest.fixture(scope="module")
def nsp_dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("static") / "ds"
    return write_fixture_dataset(
        root, unique_docs(20), vocab=VOCAB, nsp=_nsp_instances(90), nsp_per_shard=25, mlm=_mlm_rows(40, 16)
    )


def _mlm_rows(n: int, T: int) -> np.ndarray:
    rows = np.arange(FIRST, FIRST + n * T).reshape(n, T)
    rows[:, 0], rows[:, -1] = CLS, SEP
    return rows


def test_static_nsp_positions_and_labels(nsp_dataset):
    inst = _nsp_instances(90)
    T, B = 24, 4
    data = PretrainingData(nsp_dataset, view="static-nsp", seq_len=T, batch_size=B, seed=1, eval_fraction=0.1)
    P = data.max_predictions
    assert P == max(len(x["positions"]) for x in inst) == 3
    seen = []
    for batch in epoch_batches(data, 0):
        assert batch["mlm_positions"].shape == batch["mlm_labels"].shape == (B * P,)
        for r in range(B):
            a, b = _decode_nsp_row(batch["input_ids"][r], batch["token_type_ids"][r], batch["attention_mask"][r])
            i = next(k for k, x in enumerate(inst) if x["a"] == a.tolist() and x["b"] == b.tolist())
            seen.append(i)
            x = inst[i]
            assert batch["next_sentence_label"][r] == x["label"]
            k = len(x["positions"])
            pos, lab = batch["mlm_positions"][r * P : (r + 1) * P], batch["mlm_labels"][r * P : (r + 1) * P]
            assert pos[:k].tolist() == [r * T + p for p in x["positions"]]
            assert lab[:k].tolist() == x["masked_ids"] and (lab[k:] == -100).all() and (pos[k:] == 0).all()
            assert (batch["input_ids"].reshape(-1)[pos[:k]] == MASK).all()
    boundary = int(np.floor(0.9 * 90))
    assert len(seen) == len(set(seen)) == (boundary // B) * B and max(seen) < boundary
    ev = PretrainingData(nsp_dataset, view="static-nsp", seq_len=T, batch_size=3, split="eval", eval_fraction=0.1)
    ev_rows = [
        _decode_nsp_row(b["input_ids"][r], b["token_type_ids"][r], b["attention_mask"][r])
        for b, _ in ev.batches()
        for r in range(3)
    ]
    assert [a.tolist() for a, _ in ev_rows] == [x["a"] for x in inst[boundary:]]
    e1 = [b["next_sentence_label"] for b in epoch_batches(data, 1)]
    assert not all(
        np.array_equal(x, y)
        for x, y in zip(e1, [b["next_sentence_label"] for b in epoch_batches(data, 0)], strict=True)
    )
    with pytest.raises(ConfigError, match="seq_len"):
        PretrainingData(nsp_dataset, view="static-nsp", seq_len=12)


def test_static_mlm_rows(nsp_dataset):
    rows = _mlm_rows(40, 16)
    data = PretrainingData(nsp_dataset, view="static-mlm", seq_len=16, batch_size=5, eval_fraction=0.25, seed=2)
    got = np.concatenate([b["input_ids"] for b in epoch_batches(data, 0)])
    assert "attention_mask" not in epoch_batches(data, 0)[0]
    assert sorted(map(tuple, got.tolist())) == sorted(map(tuple, rows[:30].tolist()))
    assert not np.array_equal(got, np.concatenate([b["input_ids"] for b in epoch_batches(data, 1)]))
    with pytest.raises(ConfigError, match="seq_len 16"):
        PretrainingData(nsp_dataset, view="static-mlm", seq_len=32)


def test_config_errors(corpus, tmp_path):
    root = corpus[0]
    with pytest.raises(ConfigError, match="seq_len"):
        PretrainingData(root, seq_len=7)
    with pytest.raises(ConfigError, match="view"):
        PretrainingData(root, view="chunks")
    with pytest.raises(ConfigError, match="split"):
        PretrainingData(root, split="test")
    with pytest.raises(ConfigError, match="eval_fraction"):
        PretrainingData(root, eval_fraction=1.0)
    with pytest.raises(ConfigError, match="batch_size"):
        PretrainingData(root, batch_size=0)
    with pytest.raises(ConfigError, match=r"nsp instances.*none"):
        PretrainingData(root, view="static-nsp")
    with pytest.raises(ConfigError, match="too few"):
        PretrainingData(root, seq_len=128, batch_size=10_000)
    empty = write_fixture_dataset(tmp_path / "empty", [], vocab=VOCAB)
    with pytest.raises(ConfigError, match=f"{empty}.*no tokens"):
        PretrainingData(empty, view="nsp")


def test_eval_without_drop_last_keeps_every_sample(corpus):
    root = corpus[0]
    kw = {"view": "mlm", "seq_len": 16, "split": "eval", "eval_fraction": 0.2, "drop_last": False}
    single = PretrainingData(root, batch_size=7, **kw)
    rows = np.concatenate([b["input_ids"] for b, _ in single.batches()])
    assert len(rows) == single.num_samples()
    ranks = [PretrainingData(root, batch_size=4, rank=r, world_size=2, **kw) for r in (0, 1)]
    got = [[b["input_ids"] for b, _ in r.batches()] for r in ranks]
    assert len(got[0]) == len(got[1])  # same number of steps on every rank, the last slices may be short
    joined = np.concatenate([x for g in zip(*got, strict=True) for x in g])
    assert np.array_equal(joined, rows)


def test_batch_to_torch(corpus):
    torch = pytest.importorskip("torch")
    from bertkit.data.loader import batch_to_torch

    data = PretrainingData(corpus[0], view="nsp", seq_len=16, batch_size=4)
    batch, _ = next(data.batches())
    tensors = batch_to_torch(batch)
    assert tensors.keys() == batch.keys()
    assert tensors["input_ids"].dtype == torch.int64 and tensors["special_tokens_mask"].dtype == torch.bool
    assert all(np.array_equal(tensors[k].numpy(), batch[k]) for k in batch)
