"""Document embeddings: `bertkit.NextLevelBERT.from_pretrained(RUN).encode(texts)`, `bertkit.encode.embed_documents`
for runs and for encoders (the mean-pooled baseline), `bertkit embed`, and their bad inputs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("bertkit._core")

pytest_plugins = ["nextlevel_fixtures"]  # the nl_world / nl_run fixtures

import bertkit  # noqa: E402
from bertkit.encode import embed_documents, open_store  # noqa: E402
from bertkit.exceptions import ConfigError, FormatError  # noqa: E402


@pytest.fixture(scope="module")
def model(nl_run):
    return bertkit.NextLevelBERT.from_pretrained(nl_run, device="cpu")


def test_from_pretrained_encode(model, nl_world):
    _, _, store, docs = nl_world
    assert model.step == 6 and model.config.chunk_size == 16 and model.dim == 32
    vectors = model.encode(docs[:5] + ["A short market report."], batch_size=2, encoder_batch_size=7)
    assert vectors.shape == (6, 32) and vectors.dtype == np.float32 and np.isfinite(vectors).all()
    np.testing.assert_allclose(model.encode(docs[:5]), vectors[:5], atol=1e-6)  # batch composition does not matter
    # the texts are chunked and encoded exactly as the training documents were (store: float16)
    st = open_store(store)
    from_store = model.embed_chunks([np.asarray(st.document(d), dtype=np.float32) for d in range(5)])
    np.testing.assert_allclose(from_store, vectors[:5], atol=2e-3)


def test_long_documents_are_truncated_to_the_positions(model):
    long_text = " ".join(["The market report of the village river was long."] * 700)
    assert len(model.chunker.chunk([long_text])[0]) > model.max_chunks
    head = model.chunker.chunk([long_text])[0][: model.max_chunks]
    vectors = model.encoder.encode_ids(head)
    np.testing.assert_allclose(model.encode([long_text])[0], model.embed_chunks([vectors])[0], atol=1e-5)


def test_embed_documents_for_runs_and_encoders(model, nl_run, nl_world):
    encoder_dir, _, store, docs = nl_world
    progress = []
    from_run = embed_documents(nl_run, docs[:4], device="cpu", on_progress=lambda d, t: progress.append((d, t)))
    np.testing.assert_allclose(from_run, model.encode(docs[:4]), atol=1e-6)
    assert progress[-1] == (4, 4)
    baseline = embed_documents(str(encoder_dir), docs[:4], device="cpu", chunk_size=16, batch_size=5)
    st = open_store(store)
    want = np.stack([np.asarray(st.document(d), dtype=np.float32).mean(0) for d in range(4)])
    np.testing.assert_allclose(baseline, want, atol=2e-3)
    assert baseline.shape == (4, 32)
    sentences = embed_documents(str(encoder_dir), docs[:2], device="cpu", chunk_size=0)
    assert sentences.shape == (2, 32) and not np.allclose(sentences, baseline[:2])
    with pytest.raises(ConfigError, match="trained on 16-token chunks, not 32"):
        embed_documents(nl_run, docs[:1], chunk_size=32)


def test_bad_inputs(nl_run, nl_world, tmp_path):
    from nextlevel_fixtures import write_tiny_encoder

    encoder_dir = nl_world[0]
    with pytest.raises(ConfigError, match="the list is empty"):
        embed_documents(nl_run, [])
    with pytest.raises(ConfigError, match="not one string"):
        embed_documents(nl_run, "one text")
    with pytest.raises(ConfigError, match="document 1 has no tokens.*shorter than one chunk"):
        embed_documents(str(encoder_dir), ["fine text", "   \n "], device="cpu")
    with pytest.raises(ConfigError, match="document 0 is a int"):
        embed_documents(str(encoder_dir), [3], device="cpu")
    with pytest.raises(ConfigError, match="no such directory, and not a known name"):
        embed_documents(tmp_path / "nothing", ["text"])
    other = write_tiny_encoder(tmp_path / "other", seed=9)  # same shape and vocabulary, other weights
    with pytest.raises(ConfigError, match="other weights"):
        bertkit.NextLevelBERT.from_pretrained(nl_run, encoder=str(other), device="cpu")
    wide = tmp_path / "wide"
    from bertkit.export.hf import export_hf
    from bertkit.models.bert import BertConfig, BertForPreTraining

    n_vocab = len((encoder_dir / "vocab.txt").read_text().splitlines())
    export_hf(
        BertForPreTraining(
            BertConfig(
                vocab_size=n_vocab, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32
            )
        ),
        None,
        wide,
        encoder_dir,
    )
    with pytest.raises(ConfigError, match="16-dimensional embeddings, the run was trained on 32"):
        bertkit.NextLevelBERT.from_pretrained(nl_run, encoder=str(wide), device="cpu")
    with pytest.raises(FormatError, match="no complete checkpoint"):
        bertkit.NextLevelBERT.from_pretrained(tmp_path, device="cpu")


def test_a_bert_run_is_not_a_nextlevel_run(tmp_path):
    from conftest import random_docs, tiny_train_config, write_fixture_dataset

    from bertkit.train.trainer import train

    data = write_fixture_dataset(tmp_path / "ds", random_docs(30))
    run = train(tiny_train_config(data, tmp_path / "bert", max_steps=1, batch_size=2, eval_every=0)).run_dir
    with pytest.raises(ConfigError, match="a 'bert' checkpoint, not a NextLevelBERT one"):
        bertkit.NextLevelBERT.from_pretrained(run, device="cpu")


def test_import_bertkit_stays_light():
    code = (
        "import sys, bertkit\n"
        "assert 'torch' not in sys.modules, 'torch at import'\n"
        "import bertkit.encode\n"
        "assert 'torch' not in sys.modules and 'numpy' not in sys.modules, 'bertkit.encode imports heavy modules'\n"
        "print(bertkit.NextLevelBERT.__module__)\n"
    )
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [os.getcwd(), env.get("PYTHONPATH")]))
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "bertkit.encode.documents"


def test_embed_cli(nl_run, nl_world, tmp_path):
    from typer.testing import CliRunner

    from bertkit_cli import app

    docs = nl_world[3]
    (tmp_path / "a.txt").write_text(docs[0])
    (tmp_path / "b.txt").write_text(docs[1] + "\n\n" + docs[2])
    with open(tmp_path / "c.jsonl", "w") as f:
        for d in docs[3:5]:
            f.write(json.dumps({"body": d}) + "\n")
    runner = CliRunner(env={"COLUMNS": "300"})
    out = tmp_path / "x.npy"
    files = [str(tmp_path / n) for n in ("a.txt", "b.txt", "c.jsonl")]
    res = runner.invoke(
        app, ["embed", str(nl_run), *files, "--out", str(out), "--text-field", "body", "--device", "cpu", "-q"]
    )
    assert res.exit_code == 0, res.output
    vectors = np.load(out)
    index = json.loads((tmp_path / "x.json").read_text())
    assert vectors.shape == (4, 32) and index["documents"] == 4 and index["dim"] == 32
    assert [(os.path.basename(r["file"]), r["index"]) for r in index["rows"]] == [
        ("a.txt", 0),
        ("b.txt", 0),
        ("c.jsonl", 0),
        ("c.jsonl", 1),
    ]
    want = embed_documents(nl_run, [docs[0], docs[1] + "\n\n" + docs[2], docs[3], docs[4]], device="cpu")
    np.testing.assert_allclose(vectors, want, atol=1e-6)
    res = runner.invoke(
        app,
        [
            "embed",
            str(nl_run),
            files[1],
            "--doc-mode",
            "blank-line",
            "--out",
            str(tmp_path / "y.npy"),
            "--device",
            "cpu",
            "-q",
        ],
    )
    assert res.exit_code == 0, res.output and np.load(tmp_path / "y.npy").shape == (2, 32)
    for args, message in (
        ([str(tmp_path / "missing.txt")], "no such file"),
        ([files[0], "--doc-mode", "pages"], "doc_mode 'pages'"),
        ([files[2]], "no string field 'text'"),
    ):
        res = runner.invoke(app, ["embed", str(nl_run), *args, "--out", str(tmp_path / "z.npy"), "-q"])
        assert res.exit_code == 1 and message in res.output, res.output
    res = runner.invoke(app, ["embed", str(nl_run), files[0], "--out", str(tmp_path / "z.txt")])
    assert res.exit_code == 1 and "is a .npy file" in res.output
    assert not (tmp_path / "z.npy").exists()


@pytest.mark.skipif(shutil.which("c++") is None and shutil.which("g++") is None, reason="inductor needs a C++ compiler")
def test_embed_cli_compile_gives_the_eager_vectors(nl_run, nl_world, tmp_path):
    # `bertkit embed --compile` compiles the chunk encoder (dynamic shapes: documents of different chunk counts and
    # a short last batch share one graph); the document vectors equal the eager ones within float32 reordering
    from typer.testing import CliRunner

    from bertkit_cli import app

    docs = nl_world[3][:7]
    with open(tmp_path / "d.jsonl", "w") as f:
        for d in docs:
            f.write(json.dumps({"text": d}) + "\n")
    out = tmp_path / "x.npy"
    args = ["embed", str(nl_run), str(tmp_path / "d.jsonl"), "--out", str(out), "--device", "cpu", "-q"]
    res = CliRunner(env={"COLUMNS": "300"}).invoke(app, [*args, "--batch-size", "5", "--compile"])
    assert res.exit_code == 0, res.output
    np.testing.assert_allclose(np.load(out), embed_documents(nl_run, docs, device="cpu"), atol=1e-5)


def test_from_pretrained_compile_failure_is_a_clear_error(nl_run, failing_compile):
    model = bertkit.NextLevelBERT.from_pretrained(nl_run, device="cpu", compile=True)
    with pytest.raises(ConfigError, match=r"torch.compile failed .*run without --compile"):
        model.encode(["A short market report."])
    eager = bertkit.NextLevelBERT.from_pretrained(nl_run, device="cpu")
    assert np.isfinite(eager.encode(["A short market report."])).all()
