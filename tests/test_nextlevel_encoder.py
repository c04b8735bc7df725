"""The chunk encoder: offline name resolution, sentence-transformers layouts, equality with sentence-transformers'
own embeddings, length-sorted batching, chunking identical to `bertkit prepare`, and bad encoders."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("bertkit._core")

pytest_plugins = ["nextlevel_fixtures"]  # the nl_world / nl_run fixtures

from bertkit.encode.chunking import Chunker, check_chunk_size  # noqa: E402
from bertkit.encode.encoder import load_encoder, resolve_encoder  # noqa: E402
from bertkit.exceptions import ConfigError, FormatError  # noqa: E402


@pytest.fixture(scope="module")
def tiny_encoder(tmp_path_factory):
    from nextlevel_fixtures import write_tiny_encoder

    return write_tiny_encoder(tmp_path_factory.mktemp("enc") / "st")


@pytest.mark.slow  # importing sentence-transformers takes ~15 s here
def test_equals_sentence_transformers_on_tiny_model(tiny_encoder):
    from nextlevel_fixtures import texts

    st = pytest.importorskip("sentence_transformers")
    sample = texts(6, seed=3) + ["Short.", "x"]
    ours = load_encoder(tiny_encoder, device="cpu").encode_texts(sample, batch_size=3)
    theirs = st.SentenceTransformer(str(tiny_encoder), device="cpu").encode(sample)
    assert ours.shape == theirs.shape == (8, 32)
    np.testing.assert_allclose(ours, theirs, atol=2e-6)
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-6)


@pytest.mark.slow
def test_equals_sentence_transformers_on_minilm(data_dir):
    st = pytest.importorskip("sentence_transformers")
    sample = ["Hello world.", "The cat sat on the mat " * 80, "Café déjà vu, naïve façade!", "Quarterly profits rose."]
    enc = load_encoder("all-MiniLM-L6-v2", device="cpu")
    assert enc.root.resolve() == (data_dir / "minilm").resolve() and enc.max_seq_length == 256
    theirs = st.SentenceTransformer(str(data_dir / "minilm"), device="cpu").encode(sample)
    np.testing.assert_allclose(enc.encode_texts(sample), theirs, atol=1e-5)


def test_batching_and_order_do_not_change_results(tiny_encoder):
    from nextlevel_fixtures import texts

    enc = load_encoder(tiny_encoder, device="cpu")
    chunks = enc.tokenize(texts(9, seed=5))
    assert len({len(c) for c in chunks}) > 1  # ragged: some batches need a mask
    one_by_one = np.stack([enc.encode_ids([c])[0] for c in chunks])
    np.testing.assert_allclose(enc.encode_ids(chunks, batch_size=4), one_by_one, atol=1e-5)
    seen = []
    enc.encode_ids(chunks, batch_size=4, on_batch=seen.append)
    assert seen == [4, 4, 1]


def test_long_chunks_are_truncated_like_sentence_transformers(tiny_encoder):
    enc = load_encoder(tiny_encoder, device="cpu")  # max_seq_length 48
    long = enc.tokenize(["the market " * 100])[0]
    assert len(long) == 48 and long[0] == enc.cls_id and long[-1] == enc.sep_id
    raw = np.concatenate([[enc.cls_id], enc.tokenizer.encode("the market " * 100), [enc.sep_id]])
    np.testing.assert_allclose(enc.encode_ids([raw]), enc.encode_ids([long]), atol=1e-6)


def test_plain_bert_directory_uses_mean_pooling_without_normalisation(tiny_encoder, tmp_path):
    plain = tmp_path / "plain"
    shutil.copytree(tiny_encoder, plain)
    for name in ("modules.json", "sentence_bert_config.json"):
        (plain / name).unlink()
    shutil.rmtree(plain / "1_Pooling")
    enc = load_encoder(plain, device="cpu")
    assert (enc.pooling, enc.normalize, enc.max_seq_length) == ("mean", False, 64)
    v = enc.encode_texts(["a market report"])[0]
    st = load_encoder(tiny_encoder, device="cpu").encode_texts(["a market report"])[0]
    np.testing.assert_allclose(v / np.linalg.norm(v), st, atol=1e-6)


def test_identity_records_checksum_and_tokenizer(tiny_encoder):
    ident = load_encoder(tiny_encoder, device="cpu").identity()
    assert ident["dim"] == 32 and ident["normalize"] is True and len(ident["checksum"]) == 16
    assert ident["tokenizer"]["vocab_sha256"] and ident["config"]["num_hidden_layers"] == 2
    json.dumps(ident)


def test_known_name_resolves_offline(monkeypatch, tmp_path, tiny_encoder):
    monkeypatch.setenv("BERTKIT_DATA", str(tmp_path))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "no-cache"))
    shutil.copytree(tiny_encoder, tmp_path / "minilm")
    assert resolve_encoder("all-MiniLM-L6-v2") == tmp_path / "minilm"
    assert resolve_encoder("sentence-transformers/all-minilm-l6-v2") == tmp_path / "minilm"


def test_bad_encoders(tmp_path, tiny_encoder, monkeypatch):
    with pytest.raises(ConfigError, match="no such directory, and not a known name"):
        load_encoder(tmp_path / "missing")
    (tmp_path / "file.bin").write_bytes(b"x")
    with pytest.raises(ConfigError, match="is a directory"):
        load_encoder(tmp_path / "file.bin")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FormatError, match="not a sentence-transformers or Hugging Face BERT directory"):
        load_encoder(tmp_path / "empty")
    gpt = tmp_path / "gpt"
    shutil.copytree(tiny_encoder, gpt)
    (gpt / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    with pytest.raises(FormatError, match="model_type is 'gpt2', not 'bert'"):
        load_encoder(gpt)
    dense = tmp_path / "dense"
    shutil.copytree(tiny_encoder, dense)
    modules = json.loads((dense / "modules.json").read_text())
    modules.append({"idx": 3, "name": "3", "path": "3_Dense", "type": "sentence_transformers.models.Dense"})
    (dense / "modules.json").write_text(json.dumps(modules))
    with pytest.raises(FormatError, match="unsupported pipeline"):
        load_encoder(dense)
    monkeypatch.setenv("BERTKIT_DATA", str(tmp_path / "nowhere"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "no-cache"))
    with pytest.raises(ConfigError, match="not available offline"):
        resolve_encoder("all-MiniLM-L6-v2")


def test_chunker_matches_prepared_chunks(nl_world):
    from bertkit import _core
    from bertkit.data import open_dataset

    encoder, dataset, _, docs = nl_world
    chunker = Chunker(_core.WordPieceTokenizer(encoder / "vocab.txt"), 16)
    prepared = open_dataset(dataset).instances("chunks")
    got = chunker.chunk(docs)
    assert len(prepared) == len(got) == len(docs)
    for d in range(len(docs)):
        assert [c.tolist() for c in got[d]] == [c.tolist() for c in prepared[d]]
    assert all(len(c) <= 16 for doc in got for c in doc)


def test_sentence_chunks(nl_world):
    from bertkit import _core

    encoder, *_ = nl_world
    tok = _core.WordPieceTokenizer(encoder / "vocab.txt")
    chunks = Chunker(tok, 0).chunk(["The market rose. The river fell!", "   "])
    assert len(chunks[0]) == 2 and chunks[1] == []
    assert chunks[0][0].tolist() == [tok.info()["special_ids"]["cls"], *tok.encode("The market rose."), 3]
    for bad in (1, 2, -1, 2.5, True):
        with pytest.raises(ConfigError, match="chunk_size"):
            check_chunk_size(bad)
