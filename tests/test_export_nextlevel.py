"""`bertkit export hf` of a NextLevel run: a sentence-transformers directory that `SentenceTransformer(OUT,
trust_remote_code=True).encode(docs)` loads in a fresh process (offline, bertkit not importable) with the document
vectors of `bertkit.NextLevelBERT.from_pretrained(run).encode(docs)`; and a bert run initialised from a
sentence-transformers model keeps its modules.json and pooling."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("sentence_transformers")
pytest.importorskip("bertkit._core")

from helpers import without_bertkit  # noqa: E402

import bertkit  # noqa: E402
from bertkit.export import export_run  # noqa: E402

pytest_plugins = ["nextlevel_fixtures"]  # the nl_world / nl_run fixtures

ENCODE = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    from sentence_transformers import SentenceTransformer

    out, docs_path, result = sys.argv[1:4]
    docs = json.load(open(docs_path, encoding="utf-8"))
    model = SentenceTransformer(out, trust_remote_code=True, device="cpu")
    np.save(result, model.encode(docs, batch_size=7, convert_to_numpy=True))
    print(json.dumps({"bertkit": sorted(m for m in sys.modules if m.split(".")[0] == "bertkit"),
                      "dim": model.get_embedding_dimension()}))
    """
)


def st_encode(out: Path, docs: list[str], work: Path, *, bertkit_importable: bool = False) -> tuple[np.ndarray, dict]:
    (work / "docs.json").write_text(json.dumps(docs), encoding="utf-8")
    env = dict(os.environ) if bertkit_importable else without_bertkit(work)
    env["HF_MODULES_CACHE"] = str(work / "modules")
    proc = subprocess.run(
        [sys.executable, "-c", ENCODE, str(out), str(work / "docs.json"), str(work / "result.npy")],
        capture_output=True, text=True, timeout=300, env=env, cwd=work,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return np.load(work / "result.npy"), json.loads(proc.stdout.strip().splitlines()[-1])


def cosine_gap(a: np.ndarray, b: np.ndarray) -> float:
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    cos = (a64 * b64).sum(1) / np.linalg.norm(a64, axis=1) / np.linalg.norm(b64, axis=1)
    return float(np.max(1.0 - cos))


@pytest.mark.slow
def test_nextlevel_export_loads_in_sentence_transformers(nl_world, nl_run, tmp_path):
    encoder, _, _, corpus = nl_world
    result = export_run(nl_run, tmp_path / "st")
    out = result.out
    assert result.arch == "nextlevel"
    names = ["modules.json", "modeling_nextlevel.py", "nextlevel.safetensors", "chunk_tokenizer.json"]
    names += ["chunk_encoder/modules.json", "chunk_encoder/1_Pooling/config.json", "chunk_encoder/model.safetensors"]
    for name in names:
        assert (out / name).is_file(), name
    # the chunk encoder keeps its sentence-transformers modules and pooling
    assert (out / "chunk_encoder" / "modules.json").read_bytes() == (encoder / "modules.json").read_bytes()
    docs = corpus[:20] + ["A short one.", "x " * 400]  # a one-chunk and a many-chunk document too
    ours = bertkit.NextLevelBERT.from_pretrained(nl_run, device="cpu", precision="fp32").encode(docs)
    theirs, info = st_encode(out, docs, tmp_path)
    assert info["bertkit"] == [] and info["dim"] == ours.shape[1]
    assert theirs.shape == ours.shape
    assert cosine_gap(theirs, ours) <= 1e-5
    np.testing.assert_allclose(theirs, ours, atol=1e-4, rtol=0)


@pytest.mark.slow
def test_bert_run_from_a_sentence_transformers_model_keeps_its_pooling(data_dir, tmp_path):
    """A bert run initialised from all-MiniLM-L6-v2 exports with its modules.json and mean pooling + normalisation:
    sentence-transformers embeds with them (equal to bertkit's encoder over the exported directory)."""
    from conftest import tiny_train_config, write_fixture_dataset
    from tokenizers import Tokenizer

    from bertkit.encode.encoder import load_encoder
    from bertkit.train.trainer import train

    minilm = data_dir / "minilm"
    tok = Tokenizer.from_file(str(minilm / "tokenizer.json"))
    tok.no_padding()
    tok.no_truncation()
    lines = [line for line in (data_dir / "news.txt").read_text(encoding="utf-8").splitlines() if line.strip()][:300]
    docs = [[e.ids] for e in tok.encode_batch(lines, add_special_tokens=False) if e.ids]
    vocab = (minilm / "vocab.txt").read_text(encoding="utf-8").splitlines()
    ds = write_fixture_dataset(tmp_path / "ds", docs, docs_per_shard=100, vocab=vocab)
    run = tmp_path / "run"
    train(tiny_train_config(ds, run, init_from=str(minilm), max_steps=1, batch_size=4, seq_len=32, lr=1e-5,
                            eval_every=0, checkpoint_every=1, warmup=0))  # fmt: skip
    out = export_run(run, tmp_path / "hf").out
    assert json.loads((out / "modules.json").read_text())[1]["type"].endswith("Pooling")
    assert (out / "1_Pooling" / "config.json").read_bytes() == (minilm / "1_Pooling" / "config.json").read_bytes()
    texts = lines[:12]
    theirs, _ = st_encode(out, texts, tmp_path)
    ours = load_encoder(out, device="cpu", precision="fp32").encode_texts(texts)
    np.testing.assert_allclose(np.linalg.norm(theirs, axis=1), 1.0, atol=1e-5)  # the Normalize module is there
    assert cosine_gap(theirs, ours) <= 1e-5


@pytest.mark.slow
def test_sentence_chunk_runs_cut_texts_with_bertkits_splitter(nl_world, tmp_path):
    """chunk_size 0 (a chunk per sentence): with bertkit installed the export cuts texts with its sentence splitter
    and matches; without it, loading fails with a message that says so (no silently different chunks)."""
    from conftest import tiny_train_config
    from helpers import make_documents, write_jsonl_corpus
    from nextlevel_fixtures import prepare_chunks

    from bertkit.encode.store import encode_dataset
    from bertkit.train.trainer import train

    encoder, _, _, _ = nl_world
    docs = make_documents(40, seed=11, min_sents=2, max_sents=8)
    corpus = write_jsonl_corpus(tmp_path / "corpus.jsonl", docs)
    dataset = prepare_chunks(tmp_path / "ds", corpus, encoder / "vocab.txt", chunk_size=0)
    encode_dataset(dataset, str(encoder), tmp_path / "store", device="cpu", shard_chunks=64)
    run = tmp_path / "run"
    train(tiny_train_config(tmp_path / "store", run, arch="nextlevel", seq_len=16, batch_size=4, max_steps=2,
                            eval_every=0))  # fmt: skip
    out = export_run(run, tmp_path / "st").out
    texts = [" ".join(d) for d in docs[:10]]
    ours = bertkit.NextLevelBERT.from_pretrained(run, device="cpu", precision="fp32").encode(texts)
    theirs, _ = st_encode(out, texts, tmp_path, bertkit_importable=True)
    assert cosine_gap(theirs, ours) <= 1e-5
    (tmp_path / "docs.json").write_text(json.dumps(texts), encoding="utf-8")
    env = without_bertkit(tmp_path)
    env["HF_MODULES_CACHE"] = str(tmp_path / "modules2")
    proc = subprocess.run(
        [sys.executable, "-c", ENCODE, str(out), str(tmp_path / "docs.json"), str(tmp_path / "r.npy")],
        capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode != 0 and "needs bertkit's sentence splitter (pip install bertkit)" in proc.stderr
