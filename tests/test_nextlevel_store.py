"""The chunk-embedding store: round trip, checksums, atomic manifest, resume after an interruption, --shard I/N with
the merge, the encode CLI, and every bad input."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("bertkit._core")

from conftest import random_docs, write_fixture_dataset  # noqa: E402
from helpers import make_documents, run_cli, write_jsonl_corpus  # noqa: E402

pytest_plugins = ["nextlevel_fixtures"]  # the nl_world / nl_run fixtures

from bertkit.encode.encoder import load_encoder  # noqa: E402
from bertkit.encode.store import encode_dataset, open_store, verify_store  # noqa: E402
from bertkit.exceptions import ConfigError, DatasetExistsError, FormatError  # noqa: E402


@pytest.fixture(scope="module")
def encoder(nl_world):
    return load_encoder(nl_world[0], device="cpu")


def _shard_bytes(store):
    return {p.name: p.read_bytes() for p in sorted((store / "shards").glob("*.npy"))}


def test_round_trip(nl_world, encoder):
    from bertkit.data import open_dataset

    _, dataset, store, docs = nl_world
    st = open_store(store)
    chunks = open_dataset(dataset).instances("chunks")
    assert len(st) == len(docs) == 60 and st.num_chunks == chunks.num_chunks and st.dim == 32
    assert len(st.manifest["shards"]) > 1  # shard_chunks=64
    for d in (0, 17, 59):
        want = encoder.encode_ids([np.asarray(c) for c in chunks[d]]).astype(np.float16)
        np.testing.assert_array_equal(st.document(d), want)
    m = json.loads((store / "manifest.json").read_text())
    assert m["format"] == "bertkit.embeddings" and m["dtype"] == "float16" and m["normalized"] is True
    assert m["encoder"]["checksum"] == encoder.checksum and m["dataset"]["chunk_size"] == 16
    assert m["totals"] == {"documents": 60, "chunks": st.num_chunks}
    # gather across shard boundaries, slices, documents
    idx = np.array([0, st.num_chunks - 1, 63, 64, 65])
    np.testing.assert_array_equal(st.gather(idx), np.concatenate([st.slice(i, i + 1) for i in idx]).astype(np.float32))
    np.testing.assert_array_equal(st.slice(60, 70), st.gather(np.arange(60, 70)).astype(np.float16))
    assert verify_store(store) == []
    # the shards are plain .npy files
    first = m["shards"][0]["arrays"]["embeddings"]
    assert np.load(store / first["path"]).dtype == np.float16


def test_checksums_name_the_corrupt_shard(nl_world, tmp_path):
    copy = tmp_path / "store"
    shutil.copytree(nl_world[2], copy)
    path = sorted((copy / "shards").glob("emb-00001.embeddings.npy"))[0]
    data = bytearray(path.read_bytes())
    data[-3] ^= 0xFF
    path.write_bytes(bytes(data))
    problems = verify_store(copy)
    assert len(problems) == 1 and "emb-00001" in problems[0] and "checksum mismatch" in problems[0]
    path.write_bytes(bytes(data[:-10]))
    with pytest.raises(FormatError, match="truncated or corrupt"):
        open_store(copy)


def test_interrupted_encode_resumes_from_completed_shards(nl_world, encoder, tmp_path):
    _, dataset, store, _ = nl_world
    out = tmp_path / "emb"
    first = open_store(store).manifest["shards"][0]["chunks"]

    def stop_after_first_shard(done, total):
        if done > first:  # inside the second shard
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        encode_dataset(dataset, encoder, out, shard_chunks=64, batch_size=16, on_progress=stop_after_first_shard)
    assert not (out / "manifest.json").exists()
    with pytest.raises(FormatError, match="not a complete embedding store"):
        open_store(out)
    assert (out / "shards" / "emb-00000.json").is_file() and not (out / "shards" / "emb-00001.json").exists()
    assert not list((out / "shards").glob("*.tmp-*"))
    summary = encode_dataset(dataset, encoder, out, shard_chunks=64, batch_size=16)
    assert summary["complete"] and summary["resumed_shards"] == 1
    assert summary["encoded_chunks"] == open_store(store).num_chunks - first
    assert _shard_bytes(out) == _shard_bytes(store)
    again = encode_dataset(dataset, encoder, out, shard_chunks=64)
    assert again["complete"] and again["encoded_chunks"] == 0


def test_shards_of_several_processes_merge(nl_world, encoder, tmp_path):
    _, dataset, store, _ = nl_world
    out = tmp_path / "emb"
    first = encode_dataset(dataset, encoder, out, shard=(0, 2), shard_chunks=64)
    assert not first["complete"] and not (out / "manifest.json").exists()
    second = encode_dataset(dataset, encoder, out, shard=(1, 2), shard_chunks=64)
    assert second["complete"] and first["encoded_chunks"] + second["encoded_chunks"] == open_store(store).num_chunks
    assert _shard_bytes(out) == _shard_bytes(store)
    assert open_store(out).manifest["shards"] == open_store(store).manifest["shards"]


def test_bad_inputs(nl_world, encoder, tmp_path):
    from nextlevel_fixtures import write_tiny_encoder

    encoder_dir, dataset, store, _ = nl_world
    with pytest.raises(FormatError, match="no such dataset directory"):
        encode_dataset(tmp_path / "missing", encoder, tmp_path / "o1")
    corpus = write_jsonl_corpus(tmp_path / "c.jsonl", make_documents(5, seed=1))
    from bertkit.data.prepare import PrepareConfig, prepare

    plain = tmp_path / "plain"
    prepare(PrepareConfig(inputs=[str(corpus)], out=plain, tokenizer=encoder_dir / "vocab.txt", threads=1))
    with pytest.raises(ConfigError, match="no chunk instances"):
        encode_dataset(plain, encoder, tmp_path / "o2")
    other = write_tiny_encoder(tmp_path / "other")  # its own vocabulary → same files; change the casing instead
    (other / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": False}))
    with pytest.raises(ConfigError, match="another tokenizer"):
        encode_dataset(dataset, str(other), tmp_path / "o3", device="cpu")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "notes.txt").write_text("keep me")
    with pytest.raises(DatasetExistsError, match="not empty"):
        encode_dataset(dataset, encoder, tmp_path / "full")
    for shard in ((2, 2), (0, 0), ("a", 1)):
        with pytest.raises(ConfigError, match="shard"):
            encode_dataset(dataset, encoder, tmp_path / "o4", shard=shard)
    copy = tmp_path / "copy"
    shutil.copytree(store, copy)
    with pytest.raises(DatasetExistsError, match="another encode"):
        encode_dataset(dataset, encoder, copy, shard_chunks=32)
    assert encode_dataset(dataset, encoder, copy, shard_chunks=32, overwrite=True)["complete"]
    assert len(open_store(copy).manifest["shards"]) > len(open_store(store).manifest["shards"])
    with pytest.raises(FormatError, match="not an embedding store"):
        open_store(dataset)
    empty = write_fixture_dataset(tmp_path / "empty", random_docs(2), chunks=[])
    manifest = json.loads((empty / "manifest.json").read_text())
    manifest["config"]["chunk_size"] = 16
    (empty / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ConfigError, match="no chunks to encode"):
        encode_dataset(empty, encoder, tmp_path / "o5")


def test_encode_cli(nl_world, tmp_path):
    from typer.testing import CliRunner

    from bertkit_cli import app

    runner = CliRunner(env={"COLUMNS": "300"})
    encoder_dir, dataset, store, _ = nl_world
    out = tmp_path / "emb"
    common = ["--encoder", str(encoder_dir), "--out", str(out), "--shard-chunks", "64", "--device", "cpu", "-q"]
    res = run_cli("encode", str(dataset), *common, "--shard", "1/2")  # a real process: exit code, no traceback
    assert res.returncode == 0, res.stderr
    assert "partial" in res.stderr and not (out / "manifest.json").exists()
    res = runner.invoke(app, ["encode", str(dataset), *common])
    assert res.exit_code == 0, res.output
    assert "wrote" in res.output and "already done" in res.output
    assert _shard_bytes(out) == _shard_bytes(store)
    bad = runner.invoke(
        app, ["encode", str(dataset), "--encoder", str(tmp_path / "nope"), "--out", str(tmp_path / "x")]
    )
    assert bad.exit_code == 1 and "no such directory" in bad.output
    bad = runner.invoke(app, ["encode", str(dataset), "--out", str(tmp_path / "x"), "--shard", "3"])
    assert bad.exit_code == 1 and "expected I/N" in bad.output
    assert not (tmp_path / "x").exists()


@pytest.mark.skipif(shutil.which("c++") is None and shutil.which("g++") is None, reason="inductor needs a C++ compiler")
def test_encode_cli_compile_writes_the_same_store(nl_world, tmp_path):
    # `--compile`: torch.compile with dynamic shapes; ragged batches (documents end in short chunks) and a short last
    # batch run through the same compiled graph, and the store equals the eager one up to float16 rounding
    from typer.testing import CliRunner

    from bertkit_cli import app

    encoder_dir, dataset, store, _ = nl_world
    out = tmp_path / "emb"
    args = ["encode", str(dataset), "--encoder", str(encoder_dir), "--out", str(out), "--device", "cpu"]
    res = CliRunner(env={"COLUMNS": "300"}).invoke(app, [*args, "--batch-size", "7", "--compile", "-q"])
    assert res.exit_code == 0, res.output
    ours, eager = open_store(out), open_store(store)
    assert ours.num_chunks == eager.num_chunks and not verify_store(out)
    a, b = ours.slice(0, ours.num_chunks).astype(np.float32), eager.slice(0, eager.num_chunks).astype(np.float32)
    np.testing.assert_allclose(a, b, atol=2e-3)
    assert np.mean(np.abs(a - b) > 0) < 0.05  # nearly every float16 value identical


def test_a_failing_compile_is_a_clear_error(nl_world, failing_compile):
    enc = load_encoder(nl_world[0], device="cpu", compile=True)
    with pytest.raises(ConfigError, match=r"torch.compile failed \(RuntimeError: no working C\+\+ compiler found\)"):
        enc.encode_texts(["a first text", "and another one"])
