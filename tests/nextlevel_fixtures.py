"""Tiny NextLevelBERT fixtures: a sentence-transformers-layout encoder, a chunked dataset, its embedding store, a run.

Everything is built from seeded random weights and the synthetic prose of tests/helpers.py in a few seconds on CPU.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import make_documents, make_vocab, write_jsonl_corpus

ENCODER_DIM = 32
CHUNK_SIZE = 16


def write_tiny_encoder(root: Path, *, seed: int = 0, normalize: bool = True, max_seq_length: int = 48) -> Path:
    """A sentence-transformers directory (modules.json, 1_Pooling, config.json, model.safetensors, vocab.txt) holding
    a 2-layer, 32-dimensional BERT with random weights."""
    import torch

    from bertkit.export.hf import export_hf
    from bertkit.models.bert import BertConfig, BertForPreTraining

    vocab_dir = root.parent / f"{root.name}-vocab"
    vocab_dir.mkdir(parents=True, exist_ok=True)
    vocab = make_vocab(vocab_dir / "vocab.txt", make_documents(200, seed=123), size=600)
    n_vocab = len(vocab.read_text(encoding="utf-8").splitlines())
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=n_vocab,
        hidden_size=ENCODER_DIM,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    export_hf(BertForPreTraining(config), None, root, vocab_dir)
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    ]
    if normalize:
        modules.append({"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"})
    (root / "modules.json").write_text(json.dumps(modules))
    (root / "1_Pooling").mkdir(exist_ok=True)
    pooling = {
        "word_embedding_dimension": ENCODER_DIM,
        "pooling_mode_cls_token": False,
        "pooling_mode_mean_tokens": True,
        "pooling_mode_max_tokens": False,
        "pooling_mode_mean_sqrt_len_tokens": False,
    }
    (root / "1_Pooling" / "config.json").write_text(json.dumps(pooling))
    (root / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": max_seq_length}))
    return root


def texts(n: int, seed: int = 0) -> list[str]:
    return [" ".join(d) for d in make_documents(n, seed=seed, min_sents=2, max_sents=10)]


def prepare_chunks(out: Path, corpus: Path, vocab: Path, chunk_size: int = CHUNK_SIZE) -> Path:
    from bertkit.data.prepare import PrepareConfig, prepare

    prepare(
        PrepareConfig(
            inputs=[str(corpus)], out=out, tokenizer=vocab, instances=["chunks"], chunk_size=chunk_size, threads=1
        )
    )
    return out


@pytest.fixture
def failing_compile(monkeypatch):
    """``torch.compile`` replaced by one whose compiled model raises on its first call, as inductor does without a
    C++ toolchain."""
    import torch

    def broken(model, **kwargs):
        def run(*args):
            raise RuntimeError("no working C++ compiler found\nlong backend traceback")

        return run

    monkeypatch.setattr(torch, "compile", broken)


@pytest.fixture(scope="session")
def nl_world(tmp_path_factory):
    """(encoder dir, dataset dir, store dir, corpus texts): 60 documents chunked at 16 tokens, encoded."""
    from bertkit.encode.store import encode_dataset

    root = tmp_path_factory.mktemp("nextlevel")
    encoder = write_tiny_encoder(root / "encoder")
    docs = make_documents(60, seed=7, min_sents=2, max_sents=12)
    corpus = write_jsonl_corpus(root / "corpus.jsonl", docs)
    dataset = prepare_chunks(root / "dataset", corpus, encoder / "vocab.txt")
    store = root / "store"
    encode_dataset(dataset, str(encoder), store, device="cpu", shard_chunks=64)
    return encoder, dataset, store, [" ".join(d) for d in docs]


@pytest.fixture(scope="session")
def nl_run(nl_world, tmp_path_factory):
    """A NextLevel run trained for a few steps on the tiny store (tiny preset)."""
    from conftest import tiny_train_config

    from bertkit.train.trainer import train

    _, _, store, _ = nl_world
    out = tmp_path_factory.mktemp("nl-run") / "run"
    train(tiny_train_config(store, out, arch="nextlevel", seq_len=16, batch_size=4, max_steps=6, eval_every=3))
    return out
