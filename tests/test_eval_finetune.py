"""The fine-tuning engine: tokenization into BERT inputs, truncation, word-start positions, the trainer
(determinism per seed, selection, early stopping), seeds/grid medians, backbones from run directories, and a fake
architecture registered for the test (nothing is bert-specific; a missing head is a clear error)."""

from __future__ import annotations

import dataclasses
import json
import random
import shutil

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("bertkit._core")

from conftest import TINY_VOCAB, random_docs, tiny_train_config, write_fixture_dataset  # noqa: E402
from eval_fixtures import fake_architecture, sentence, tiny_backbone  # noqa: E402

from bertkit.eval.finetune import (  # noqa: E402
    Backbone,
    FinetuneConfig,
    _head_config,
    encode_sequences,
    encode_token_sentences,
    finetune,
    load_backbone,
    predict,
    run_grid,
)
from bertkit.eval.metrics import accuracy  # noqa: E402
from bertkit.eval.text import load_tokenizer  # noqa: E402
from bertkit.exceptions import ConfigError, FormatError  # noqa: E402
from bertkit.models import ARCHITECTURES  # noqa: E402

CPU = {"device": "cpu", "max_len": 32}


@pytest.fixture
def tokenizer(tmp_path):
    path = tmp_path / "vocab.txt"
    path.write_text("\n".join(TINY_VOCAB) + "\n")
    return load_tokenizer(path)


def _classification(n: int, seed: int) -> tuple[list[str], list[int]]:
    rng = random.Random(seed)
    labels = [rng.randrange(2) for _ in range(n)]
    return [sentence(rng, y) for y in labels], labels


def _score(predictions, data):
    return {"accuracy": accuracy(data.labels, predictions)}


# ------------------------------------------------------------------------------------------------ inputs


def test_sequences_single_pair_and_truncation(tokenizer):
    cat, dog, mat = (tokenizer.tokenizer.token_to_id(w) for w in ("cat", "dog", "mat"))
    single = tokenizer.sequence([cat, dog], None, 8)
    assert single.input_ids == [2, cat, dog, 3] and single.token_type_ids == [0] * 4
    pair = tokenizer.sequence([cat], [dog, mat], 8)
    assert pair.input_ids == [2, cat, 3, dog, mat, 3] and pair.token_type_ids == [0, 0, 0, 1, 1, 1]
    long = list(range(20, 40))
    assert tokenizer.sequence(long, None, 10).input_ids == [2, *range(20, 28), 3]
    # head+tail keeps the first quarter and the last three quarters of the 8-token budget
    assert tokenizer.sequence(long, None, 10, "head+tail").input_ids == [2, 20, 21, *range(34, 40), 3]
    # pairs: the longer side loses tokens first
    a, b = list(range(20, 30)), list(range(40, 43))
    truncated = tokenizer.sequence(a, b, 10)
    assert truncated.input_ids == [2, *range(20, 24), 3, 40, 41, 42, 3]
    data = encode_sequences(tokenizer, ["the cats", "the dog"], ["on the mat", "run"], [0, 1], 16)
    assert data.rows[0].input_ids == [2, 5, 6, 11, 3, 8, 5, 9, 3]  # "cats" → cat ##s


def test_word_start_positions_and_windows(tokenizer):
    words = ["the", "cats", "sat", "\u200b", "dogs"]  # a zero-width space yields no token
    data = encode_token_sentences(tokenizer, [words], [[0, 1, 0, 0, 1]], 32)
    assert data.rows[0].input_ids == [2, 5, 6, 11, 7, 10, 11, 3]
    assert data.positions == [[1, 2, 4, 5]] and data.words == [[0, 1, 2, 4]] and data.untokenized_words == 1
    # a budget of 4 tokens cuts the sentence at word boundaries into rows
    windows = encode_token_sentences(tokenizer, [words, ["mat"]], [[0, 1, 0, 0, 1], [1]], 6)
    assert [r.input_ids for r in windows.rows] == [[2, 5, 6, 11, 7, 3], [2, 10, 11, 3], [2, 9, 3]]
    assert windows.sentence == [0, 0, 1] and windows.words == [[0, 1, 2], [4], [0]]
    assert windows.positions == [[1, 2, 4], [1], [1]]


def test_predict_reassembles_sentences(tmp_path):
    backbone = tiny_backbone(tmp=tmp_path)
    from bertkit.eval.finetune import build_head

    model = build_head(backbone, "token", 3, 0.0)
    words = ["the", "cats", "sat", "\u200b", "dogs", "on", "the", "mat"]
    data = encode_token_sentences(backbone.tokenizer, [words, ["run"]], [[0] * 8, [0]], 6)
    tags = predict(model, data, backbone.tokenizer.pad_id, 2, torch.device("cpu"))
    assert [len(t) for t in tags] == [8, 1] and tags[0][3] == -1 and all(0 <= t < 3 for t in tags[0] if t != -1)


# ------------------------------------------------------------------------------------------------ the trainer


def test_same_seed_same_run_other_seed_other_run(tmp_path):
    backbone = tiny_backbone(tmp=tmp_path)
    texts, labels = _classification(64, 0)
    train = encode_sequences(backbone.tokenizer, texts, None, labels, 32)
    dev = encode_sequences(backbone.tokenizer, *(_classification(16, 1)[0], None, _classification(16, 1)[1]), 32)
    config = FinetuneConfig(lr=1e-3, batch_size=8, epochs=2, **CPU)
    events_a: list[dict] = []
    events_c: list[dict] = []
    a = finetune(backbone, "sequence", 2, train, {"dev": dev}, _score, "accuracy", config, on_progress=events_a.append)
    b = finetune(backbone, "sequence", 2, train, {"dev": dev}, _score, "accuracy", config)
    c = finetune(
        backbone,
        "sequence",
        2,
        train,
        {"dev": dev},
        _score,
        "accuracy",
        config.replace(seed=1),
        on_progress=events_c.append,
    )
    assert a["history"] == b["history"] and a["metrics"] == b["metrics"] and a["steps"] == 16
    losses = [[e["loss"] for e in events if e["event"] == "step"] for events in (events_a, events_c)]
    assert len(losses[0]) == 16 and losses[0] != losses[1]
    assert c["steps"] == 16
    # the pretrained model itself is never modified
    assert all(p.grad is None for p in backbone.model.parameters())


def test_selection_early_stopping_and_regression(tmp_path):
    backbone = tiny_backbone(tmp=tmp_path)
    texts, labels = _classification(32, 0)
    train = encode_sequences(backbone.tokenizer, texts, None, labels, 32)
    scripted = iter([0.5, 0.7, 0.6, 0.4, 0.3, 0.2])

    def score(predictions, data):
        return {"accuracy": next(scripted)}

    config = FinetuneConfig(lr=1e-3, batch_size=8, epochs=10, eval_every=2, patience=2, select="best", **CPU)
    r = finetune(backbone, "sequence", 2, train, {"dev": train}, score, "accuracy", config)
    assert [h["accuracy"] for h in r["history"]] == [0.5, 0.7, 0.6, 0.4]  # two evaluations without improvement
    assert r["steps"] == 8 and r["selected_step"] == 4 and r["metrics"]["dev"]["accuracy"] == 0.7
    # regression (one output): float labels, MSE
    floats = encode_sequences(backbone.tokenizer, texts, None, [float(y) * 5 for y in labels], 32)
    reg = finetune(
        backbone,
        "sequence",
        1,
        floats,
        {"dev": floats},
        lambda p, d: {"mse": -sum((a - b) ** 2 for a, b in zip(p, d.labels, strict=True)) / len(p)},
        "mse",
        FinetuneConfig(lr=1e-3, batch_size=8, epochs=3, **CPU),
    )
    assert reg["history"][-1]["mse"] > reg["history"][0]["mse"]  # the error shrinks


def test_config_validation():
    for bad in (
        {"lr": 0},
        {"batch_size": 0},
        {"epochs": 1.5},
        {"dropout": 1.0},
        {"schedule": "step"},
        {"select": "first"},
        {"truncation": "tail"},
        {"device": "tpu"},
        {"warmup": -1},
    ):
        with pytest.raises(ConfigError):
            FinetuneConfig(**bad)
    with pytest.raises(ConfigError, match="unknown fine-tuning option"):
        FinetuneConfig().replace(learning_rate=1)


def test_dropout_sets_every_dropout_field(tmp_path):
    backbone = tiny_backbone(tmp=tmp_path)
    config = _head_config(backbone, 0.0)
    assert config.hidden_dropout_prob == 0.0 and config.attention_probs_dropout_prob == 0.0
    assert _head_config(backbone, None) is backbone.config


def test_run_grid_medians_and_reuse():
    calls = []

    def run_one(config):
        calls.append((config.lr, config.seed))
        value = {1e-3: 0.6, 1e-4: 0.8}[config.lr] + 0.01 * config.seed
        return {"metrics": {"dev": {"acc": value}, "test": {"acc": value - 0.1}}}

    base = FinetuneConfig(lr=1e-3, seed=10)
    out = run_grid(run_one, base, seeds=3, grid=[{"lr": 1e-3}, {"lr": 1e-4}], select_set="dev", primary="acc")
    assert out["config"]["lr"] == 1e-4 and out["seeds"] == [10, 11, 12]
    assert out["median"]["dev"]["acc"] == pytest.approx(0.8 + 0.11) and len(out["runs"]) == 6
    assert out["median"]["test"]["acc"] == pytest.approx(0.8 + 0.11 - 0.1)
    calls.clear()
    again = run_grid(
        run_one, base, seeds=3, grid=[{"lr": 1e-3}, {"lr": 1e-4}], select_set="dev", primary="acc", done=out["runs"][:4]
    )
    assert calls == [(1e-4, 11), (1e-4, 12)] and again["median"] == out["median"]
    with pytest.raises(ConfigError, match="seeds"):
        run_grid(run_one, base, seeds=0, select_set="dev", primary="acc")


# ------------------------------------------------------------------------------------------------ backbones


@pytest.fixture(scope="module")
def bert_run(tmp_path_factory):
    from bertkit.train.trainer import train

    root = tmp_path_factory.mktemp("ftrun")
    ds = write_fixture_dataset(root / "ds", random_docs(60, seed=2), docs_per_shard=30)
    train(tiny_train_config(ds, root / "run", batch_size=4, max_steps=2, eval_every=0, checkpoint_every=2))
    return ds, root / "run"


def test_backbone_from_a_run_directory(bert_run, tmp_path):
    ds, run = bert_run
    backbone = load_backbone(run)
    assert backbone.kind == "run" and backbone.arch.name == "bert" and backbone.step == 2
    assert backbone.tokenizer.source == str(ds / "tokenizer" / "vocab.txt")
    # the tokenizer can be given when the dataset is gone; a tokenizer larger than the embeddings is refused
    moved = tmp_path / "ds-moved"
    shutil.copytree(ds, moved)
    shutil.rmtree(ds)
    try:
        with pytest.raises(ConfigError, match="pass --tokenizer"):
            load_backbone(run)
        assert load_backbone(run, tokenizer=moved / "tokenizer").tokenizer.vocab_size == 64
        big = tmp_path / "big.txt"
        big.write_text("\n".join(TINY_VOCAB + [f"x{i}" for i in range(100)]) + "\n")
        with pytest.raises(FormatError, match="164 tokens but the model .* has vocab_size 64"):
            load_backbone(run, tokenizer=big)
    finally:
        shutil.copytree(moved, ds)
    with pytest.raises(ConfigError, match="not found"):
        load_backbone(tmp_path / "nothing")
    with pytest.raises(ConfigError, match="no complete checkpoint"):
        load_backbone(tmp_path)


@pytest.fixture
def fake_arch(monkeypatch):
    arch = fake_architecture()
    monkeypatch.setitem(ARCHITECTURES, arch.name, arch)
    return arch


def test_a_fake_architecture_fine_tunes_through_the_contract(fake_arch, tmp_path):
    from bertkit.eval.classify import evaluate_classify

    path = tmp_path / "vocab.txt"
    path.write_text("\n".join(TINY_VOCAB) + "\n")
    torch.manual_seed(0)
    backbone = Backbone(
        fake_arch, fake_arch.pretraining_class(fake_arch.make_config("tiny")), load_tokenizer(path), "fake", "model"
    )
    rows = []
    for split, n, seed in (("train", 96, 0), ("dev", 24, 1)):
        texts, labels = _classification(n, seed)
        with open(tmp_path / f"{split}.jsonl", "w") as f:
            for t, y in zip(texts, labels, strict=True):
                f.write(json.dumps({"text": t, "label": ["neg", "pos"][y]}) + "\n")
        rows.append(n)
    config = FinetuneConfig(lr=5e-3, batch_size=8, epochs=4, select="best", **CPU)
    result = evaluate_classify(tmp_path / "train.jsonl", dev=tmp_path / "dev.jsonl", backbone=backbone, config=config)
    assert result["median"]["dev"]["accuracy"] >= 0.9 and result["source"]["arch"] == "fakebag"
    # the config's dropout field was found by name (no BERT field names assumed)
    assert _head_config(backbone, 0.3).embedding_dropout == 0.3


def test_an_architecture_without_a_token_head_is_a_clear_error(fake_arch, tmp_path):
    from bertkit.eval.ner import evaluate_ner
    from bertkit.train.trainer import train

    ds = write_fixture_dataset(tmp_path / "ds", random_docs(40, seed=3), docs_per_shard=20)
    train(
        tiny_train_config(
            ds, tmp_path / "run", arch="fakebag", batch_size=4, max_steps=2, eval_every=0, checkpoint_every=2
        )
    )
    backbone = load_backbone(tmp_path / "run")
    assert backbone.arch is fake_arch and backbone.step == 2
    # raised before the (missing) data is read
    with pytest.raises(
        ConfigError,
        match=r"run: architecture 'fakebag' has no token-classification head .* "
        r"it offers: sequence-classification",
    ):
        evaluate_ner(backbone, tmp_path / "no-such-file.conll")


# ------------------------------------------------------------------------------------------- every architecture

TOKEN_ARCHS = [name for name, arch in ARCHITECTURES.items() if arch.data_kind == "tokens"]


@pytest.mark.parametrize("name", TOKEN_ARCHS)
def test_every_token_architecture_fine_tunes_sequences_and_tokens(name, tmp_path):
    """Each registered token architecture learns the fixture task through its own heads (NarrowBERT through its
    [CLS] / word-start queries): a sentence label marked by one word, and a tag on that word."""
    from bertkit.eval.classify import evaluate_classify
    from bertkit.eval.ner import evaluate_ner
    from bertkit.models import build_model

    arch = ARCHITECTURES[name]
    assert arch.sequence_classification_class is not None and arch.token_classification_class is not None, name
    path = tmp_path / "vocab.txt"
    path.write_text("\n".join(TINY_VOCAB) + "\n")
    torch.manual_seed(0)
    # pretrained without dropout (as benchmarks/quality.py does), fine-tuned with FinetuneConfig's 0.1: dropout
    # rates are not shapes, every head must load the encoder anyway
    no_dropout = {f.name: 0.0 for f in dataclasses.fields(arch.config_class) if f.name.endswith("dropout_prob")}
    assert no_dropout, name
    model = build_model(name, "tiny", vocab_size=len(TINY_VOCAB), **no_dropout)
    backbone = Backbone(arch, model.eval(), load_tokenizer(path), f"tiny-{name}", "model")
    for split, n, seed in (("train", 96, 0), ("dev", 32, 1)):
        texts, labels = _classification(n, seed)
        with open(tmp_path / f"{split}.jsonl", "w") as f:
            for t, y in zip(texts, labels, strict=True):
                f.write(json.dumps({"text": t, "label": ["neg", "pos"][y]}) + "\n")
        with open(tmp_path / f"{split}.conll", "w") as f:
            for t in texts:
                for word in t.split():
                    f.write(f"{word}\t{'B-ANIMAL' if word in ('cat', 'dog') else 'O'}\n")
                f.write("\n")
    config = FinetuneConfig(lr=2e-3, batch_size=8, epochs=4, select="best", **CPU)
    result = evaluate_classify(tmp_path / "train.jsonl", dev=tmp_path / "dev.jsonl", backbone=backbone, config=config)
    assert result["source"]["arch"] == name
    assert result["median"]["dev"]["accuracy"] >= 0.9, (name, result["median"])
    result = evaluate_ner(backbone, tmp_path / "train.conll", dev=tmp_path / "dev.conll", config=config)
    assert result["median"]["dev"]["f1"] >= 0.9, (name, result["median"])
