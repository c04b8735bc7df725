"""ELC-BERT's own data path: `[PAR]` at paragraph ends (ltgoslo/elc-bert preprocess/segment.py), its per-document
sentence-aligned rows (pre_training/cache_dataset.py) as the `elc` view, the 128→512 switch on it, its masking
options, and the refusals."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
from helpers import make_documents

from bertkit import _core
from bertkit.data.loader import PretrainingData, StreamState
from bertkit.data.prepare import PrepareConfig, prepare
from bertkit.data.views import elc_view
from bertkit.exceptions import ConfigError
from bertkit.tokenizers import train_tokenizer


def paragraphs_corpus(n_docs: int, seed: int) -> list[list[str]]:
    """Documents as lists of paragraphs (each a few sentences on one line)."""
    rng = random.Random(seed)
    sentences = [" ".join(d) for d in make_documents(n_docs * 3, seed=seed, min_sents=1, max_sents=6)]
    docs = []
    for _ in range(n_docs):
        docs.append([rng.choice(sentences) for _ in range(rng.randint(1, 5))])
    return docs


@pytest.fixture(scope="module")
def elc(tmp_path_factory):
    root = tmp_path_factory.mktemp("elc")
    docs = paragraphs_corpus(120, seed=3)
    src = root / "corpus.txt"
    src.write_text("\n\n".join("\n".join(d) for d in docs) + "\n", encoding="utf-8")
    train_tokenizer([src], root / "tok", vocab_size=400, style="elc", min_frequency=2)
    tok = root / "tok" / "tokenizer.json"
    ds = root / "ds"
    prepare(PrepareConfig(inputs=[str(src)], out=ds, tokenizer=tok, paragraph_token="[PAR]", threads=1))
    return root, docs, tok, ds


def original_rows(docs: list[list[str]], tok: Path, seq_len: int) -> list[list[int]]:
    """The original's two scripts on the same sentences: segment.py writes one sentence per line with "[PAR]" glued
    to each paragraph's last one and a blank line between documents; cache_dataset.py packs the encoded lines."""
    from tokenizers import Tokenizer

    lines: list[str] = []
    for d in docs:
        for par in d:
            sents = _core.split_sentences(par, "rules")
            lines.extend(sents[:-1])
            lines.append(sents[-1] + "[PAR]")
        lines.append("")
    tokenizer = Tokenizer.from_file(str(tok))
    documents: list[list[list[int]]] = [[]]
    for line in lines:
        line = line.strip()
        if not line:
            if documents[-1]:
                documents.append([])
            continue
        documents[-1].append(tokenizer.encode(line, add_special_tokens=False).ids)
    room = seq_len - 2
    rows = []
    for document in documents:
        segment: list[int] = []
        for sentence in document:
            segment += sentence
            if len(segment) > room:
                rows.append(segment[:room])
                segment = list(sentence)
        if segment:
            rows.append(segment[:room])
    return rows


@pytest.mark.parametrize("seq_len", [16, 32, 128])
def test_rows_equal_the_original_cache(elc, seq_len):
    _, docs, tok, ds = elc
    tokens = np.load(ds / json.loads((ds / "manifest.json").read_text())["shards"][0]["arrays"]["tokens"]["path"])
    v = elc_view(ds, seq_len=seq_len)
    ours = [tokens[int(s) : int(e)].tolist() for s, e in zip(v["starts"], v["ends"], strict=True)]
    assert ours == original_rows(docs, tok, seq_len)
    assert len(v["document_offsets"]) == len(docs) + 1


def test_paragraph_token_ends_every_paragraph(elc):
    _, docs, tok, ds = elc
    from tokenizers import Tokenizer

    par = Tokenizer.from_file(str(tok)).token_to_id("[PAR]")
    m = json.loads((ds / "manifest.json").read_text())
    a = m["shards"][0]["arrays"]
    tokens = np.load(ds / a["tokens"]["path"])
    so = np.load(ds / a["sentence_offsets"]["path"])
    assert int((tokens == par).sum()) == sum(len(d) for d in docs)
    sentence_ends = tokens[so[1:].astype(np.int64) - 1]
    assert int((sentence_ends == par).sum()) == sum(len(d) for d in docs), "[PAR] closes a sentence"


def test_paragraph_token_missing_from_the_tokenizer(tmp_path, elc):
    root, _, _, _ = elc
    from helpers import make_vocab

    vocab = make_vocab(tmp_path / "vocab.txt")
    out = tmp_path / "ds"
    with pytest.raises(ConfigError, match=r"no token \"\[PAR\]\""):
        prepare(PrepareConfig(inputs=[str(root / "corpus.txt")], out=out, tokenizer=vocab, paragraph_token="[PAR]"))
    assert not out.exists()


def test_elc_batches_pad_the_short_rows_and_cut_with_short_p(elc):
    _, _, _, ds = elc
    data = PretrainingData(ds, view="elc", seq_len=32, batch_size=16, seed=1, short_p=0.5)
    batch, _ = next(iter(data.batches(StreamState())))
    ids, mask = batch["input_ids"], batch["attention_mask"]
    assert ids.shape == (16, 32) and (ids[:, 0] == data.cls_id).all()
    lengths = mask.sum(axis=1)
    assert (ids[np.arange(16), lengths - 1] == data.sep_id).all()
    assert ((ids == data.pad_id) == (mask == 0)).all()
    assert (lengths < 32).any()
    # the same rows every epoch (the original caches them), a new order
    e1 = data._compute_samples(1)
    assert sorted(e1.tolist()) == sorted(data._compute_samples(0).tolist()) and not np.array_equal(e1, data._samples(0))


def test_view_refused_without_sentence_boundaries(tmp_path, elc):
    root, _, tok, _ = elc
    ds = tmp_path / "nosplit"
    prepare(PrepareConfig(inputs=[str(root / "corpus.txt")], out=ds, tokenizer=tok, splitter="none", threads=1))
    with pytest.raises(ConfigError, match="--splitter none"):
        PretrainingData(ds, view="elc", seq_len=32, batch_size=4)


torch = pytest.importorskip("torch")


def test_long_after_switch_and_elc_masking_options(elc, tmp_path):
    from bertkit.train.config import TrainConfig
    from bertkit.train.trainer import _Batcher, train

    _, _, _, ds = elc
    run = tmp_path / "run"
    cfg = TrainConfig(data=str(ds), out=str(run), arch="elc-bert", preset="tiny", view="elc", seq_len=16,
                      batch_size=8, long_after=0.5, max_steps=4, log_every=1, eval_every=0, checkpoint_every=0,
                      masking="span", mask_count="binomial", random_ids_low=5, maskable_specials=["[TAB]"],
                      short_p=0.1, tensorboard=False, plot=False, device="cpu", lr=1e-3, warmup=1)  # fmt: skip
    train(cfg)
    recs = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["seq_len"] for r in recs if r["kind"] == "train"] == [16, 16, 64, 64]
    # [TAB] is masked like text, [PAR] (id 5) never; random ids come from [5, V)
    data = PretrainingData(ds, view="elc", seq_len=16, batch_size=64, seed=1)
    tab, par = data.special_token_id("[TAB]"), data.special_token_id("[PAR]")
    assert (tab, par) == (6, 5)
    batch, _ = next(iter(data.batches(StreamState())))
    batch["input_ids"][:, 3] = tab
    c = TrainConfig(view="elc", seq_len=16, mask_rate=0.5, random_p=1.0, mask_p=0.0, random_ids_low=5,
                    maskable_specials=["[TAB]"])  # fmt: skip
    out = _Batcher(c, data, torch.device("cpu"))(batch, seed=3)
    pos, labels = out["mlm_positions"], out["mlm_labels"]
    chosen = labels[labels != -100]
    assert (chosen == tab).any() and not (chosen == par).any()
    replaced = out["input_ids"].reshape(-1)[pos[labels != -100]]
    assert int(replaced.min()) >= 5
    with pytest.raises(ConfigError, match=r"no special token '\[NOPE\]'"):
        _Batcher(TrainConfig(view="elc", maskable_specials=["[NOPE]"]), data, torch.device("cpu"))
    with pytest.raises(ConfigError, match="random_ids_low = 400 must be below the dataset's vocab_size 400"):
        _Batcher(TrainConfig(view="elc", random_ids_low=400), data, torch.device("cpu"))
    with pytest.raises(ConfigError, match="maskable_specials"):
        TrainConfig(view="elc", maskable_specials="[TAB]")
