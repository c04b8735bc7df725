"""Data in from where users keep it: the same documents as JSONL, Parquet, a `datasets.save_to_disk`
folder, .jsonl.zst/.bz2/.xz, standard input, a FIFO and a Python iterable give the same dataset;
bad input is one clear error naming the file, with no dataset left behind."""

from __future__ import annotations

import bz2
import json
import lzma
import os
import subprocess
import sys
import threading
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from helpers import make_documents, make_vocab, manifest, run_cli, write_jsonl_corpus

from bertkit.data.prepare import PrepareConfig, prepare
from bertkit.exceptions import ConfigError, FormatError, InputError


@pytest.fixture(scope="module")
def docs():
    return make_documents(400, seed=7)


@pytest.fixture(scope="module")
def texts(docs):
    return [" ".join(d) for d in docs]


@pytest.fixture(scope="module")
def vocab(tmp_path_factory, docs):
    return make_vocab(tmp_path_factory.mktemp("vocab") / "vocab.txt", docs)


def fingerprint(dataset: Path, sources: bool = True) -> tuple:
    """What must not depend on the container: totals and every array's checksum and shape (document_sources,
    the input file index of each document, only where the container is one file too)."""
    m = manifest(dataset)
    arrays = [
        (s["name"], name, a["xxh3"], a["shape"])
        for s in m["shards"]
        for name, a in sorted(s["arrays"].items())
        if sources or name != "document_sources"
    ]
    return m["totals"], arrays


def write_zst(path: Path, data: bytes) -> Path:
    with pa.CompressedOutputStream(str(path), "zstd") as f:
        f.write(data)
    return path


def small_shards(**kw):
    return {"shard_size": 8 << 10, **kw}


def test_every_container_gives_the_same_dataset(tmp_path, docs, texts, vocab):
    import datasets

    jsonl = write_jsonl_corpus(tmp_path / "c.jsonl", docs)
    ref = tmp_path / "ref"
    prepare(PrepareConfig(inputs=[jsonl], out=ref, tokenizer=vocab, instances=["mlm"], **small_shards()))
    expected = fingerprint(ref)
    assert expected[0]["documents"] == len(texts)

    table = pa.table({"id": list(range(len(texts))), "text": texts})
    pq.write_table(table, tmp_path / "c.parquet", row_group_size=37)
    assert pq.ParquetFile(tmp_path / "c.parquet").num_row_groups > 5
    ds = datasets.Dataset.from_dict({"text": texts, "n": list(range(len(texts)))})
    ds.save_to_disk(str(tmp_path / "hf"), max_shard_size="20KB")
    assert len(list((tmp_path / "hf").glob("*.arrow"))) > 1  # several Arrow files, read in order
    raw = jsonl.read_bytes()
    containers = {
        "parquet": [tmp_path / "c.parquet"],
        "datasets": [tmp_path / "hf"],
        "zst": [write_zst(tmp_path / "c.jsonl.zst", raw)],
        "bz2": [tmp_path / "c.jsonl.bz2"],
        "xz": [tmp_path / "c.jsonl.xz"],
    }
    (tmp_path / "c.jsonl.bz2").write_bytes(bz2.compress(raw))
    (tmp_path / "c.jsonl.xz").write_bytes(lzma.compress(raw))
    for name, inputs in containers.items():
        out = tmp_path / name
        prepare(PrepareConfig(inputs=inputs, out=out, tokenizer=vocab, instances=["mlm"], **small_shards()))
        if name == "datasets":  # 13 Arrow files: 13 input indices
            assert fingerprint(out, sources=False) == fingerprint(ref, sources=False)
        else:
            assert fingerprint(out) == expected, name

    # A Python iterable: str, dicts, a datasets IterableDataset; the manifest names it.
    for name, documents in {
        "strs": iter(texts),
        "dicts": ({"text": t, "id": i} for i, t in enumerate(texts)),
        "iterable_dataset": ds.to_iterable_dataset(num_shards=3),
    }.items():
        out = tmp_path / name
        prepare(PrepareConfig(out=out, tokenizer=vocab, instances=["mlm"], **small_shards()), documents=documents)
        assert fingerprint(out) == expected, name
        assert [i["path"] for i in manifest(out)["inputs"]] == ["<documents>"]

    # Standard input (zstd-compressed JSON Lines, found by its magic number), in a real process.
    res = run_cli(
        "prepare", "-", "--tokenizer", str(vocab), "--out", str(tmp_path / "stdin"), "--instances", "mlm",
        "--shard-size-mb", str((8 << 10) / (1 << 20)), "-q",
        input=None, stdin=open(tmp_path / "c.jsonl.zst", "rb"),
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert fingerprint(tmp_path / "stdin") == expected
    entry = manifest(tmp_path / "stdin")["inputs"][0]
    assert entry["path"] == "-" and entry["size"] == (tmp_path / "c.jsonl.zst").stat().st_size and entry["xxh3"]


def test_cat_into_dev_stdin_and_a_fifo(tmp_path, docs, vocab):
    jsonl = write_jsonl_corpus(tmp_path / "c.jsonl", docs[:50])
    ref = tmp_path / "ref"
    prepare(PrepareConfig(inputs=[jsonl], out=ref, tokenizer=vocab))
    env = dict(os.environ)
    out = tmp_path / "dev"
    cmd = f"cat {jsonl} | {sys.executable} -m bertkit_cli prepare /dev/stdin --tokenizer {vocab} --out {out} -q"
    res = subprocess.run(cmd, shell=True, capture_output=True, text=True, env=env, timeout=120)
    assert res.returncode == 0, res.stderr
    assert fingerprint(tmp_path / "dev") == fingerprint(ref)

    # A regular file redirected to /dev/stdin: JSON Lines found by its content, not by the name "stdin".
    with open(jsonl, "rb") as f:
        res = run_cli(
            "prepare", "/dev/stdin", "--tokenizer", str(vocab), "--out", str(tmp_path / "redir"), "-q", stdin=f
        )
    assert res.returncode == 0, res.stderr
    assert fingerprint(tmp_path / "redir") == fingerprint(ref)

    fifo = tmp_path / "in.fifo"
    os.mkfifo(fifo)
    writer = threading.Thread(target=lambda: fifo.write_bytes(jsonl.read_bytes()))
    writer.start()
    res = run_cli("prepare", str(fifo), "--tokenizer", str(vocab), "--out", str(tmp_path / "fifo"), "-q", timeout=120)
    writer.join(timeout=60)
    assert res.returncode == 0, res.stderr
    assert fingerprint(tmp_path / "fifo") == fingerprint(ref)


def test_resume_is_refused_for_streams(tmp_path, vocab):
    res = run_cli("prepare", "-", "--tokenizer", str(vocab), "--out", str(tmp_path / "o"), "--resume", input="a b\n")
    assert res.returncode != 0
    assert "--resume cannot be used with -" in res.stderr and "Traceback" not in res.stderr
    assert not (tmp_path / "o").exists()
    with pytest.raises(ConfigError, match="--resume cannot be used with <documents>"):
        prepare(PrepareConfig(out=tmp_path / "o", tokenizer=vocab, resume=True), documents=["a b"])


def test_parquet_bad_input_is_named_and_leaves_nothing(tmp_path, texts, vocab):
    p = tmp_path / "d.parquet"
    pq.write_table(pa.table({"body": texts[:5], "n": list(range(5))}), p)
    out = tmp_path / "o"
    with pytest.raises(FormatError, match=r'd\.parquet: Parquet file has no column "text" \(columns: body'):
        prepare(PrepareConfig(inputs=[p], out=out, tokenizer=vocab))
    assert not out.exists()
    with pytest.raises(FormatError, match='column "n" of this Parquet file is Int64, expected a string'):
        prepare(PrepareConfig(inputs=[p], out=out, tokenizer=vocab, text_field="n"))
    assert prepare(PrepareConfig(inputs=[p], out=out, tokenizer=vocab, text_field="body"))["totals"]["documents"] == 5
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(p.read_bytes()[:-20] + b"\0" * 12 + b"PAR1")
    res = run_cli("prepare", str(bad), "--tokenizer", str(vocab), "--out", str(tmp_path / "o2"))
    assert res.returncode != 0 and "bad.parquet" in res.stderr and "Traceback" not in res.stderr
    assert not (tmp_path / "o2").exists()


def test_datasets_folder_without_its_arrow_files(tmp_path, texts, vocab):
    import datasets

    folder = tmp_path / "hf"
    datasets.Dataset.from_dict({"text": texts[:10]}).save_to_disk(str(folder))
    for f in folder.glob("*.arrow"):
        f.unlink()
    res = run_cli("prepare", str(folder), "--tokenizer", str(vocab), "--out", str(tmp_path / "o"))
    assert res.returncode != 0 and "Traceback" not in res.stderr
    assert "data-00000-of-00001.arrow" in res.stderr and "missing" in res.stderr
    assert not (tmp_path / "o").exists()
    dd = tmp_path / "dd"
    datasets.DatasetDict({"train": datasets.Dataset.from_dict({"text": texts[:3]})}).save_to_disk(str(dd))
    with pytest.raises(FormatError, match="DatasetDict folder .splits: train.; give the folder of one split"):
        prepare(PrepareConfig(inputs=[dd], out=tmp_path / "o", tokenizer=vocab))
    summary = prepare(PrepareConfig(inputs=[dd / "train"], out=tmp_path / "o", tokenizer=vocab))
    assert summary["totals"]["documents"] == 3


def test_truncated_zst_is_named(tmp_path, docs, vocab):
    raw = write_jsonl_corpus(tmp_path / "c.jsonl", docs).read_bytes()
    z = write_zst(tmp_path / "full.jsonl.zst", raw).read_bytes()
    (tmp_path / "cut.jsonl.zst").write_bytes(z[: len(z) // 2])
    with pytest.raises(FormatError, match=r"cut\.jsonl\.zst: corrupt or truncated zstd data"):
        prepare(PrepareConfig(inputs=[tmp_path / "cut.jsonl.zst"], out=tmp_path / "o", tokenizer=vocab))
    assert not (tmp_path / "o").exists()


def test_iterable_errors(tmp_path, vocab):
    out = tmp_path / "o"

    def broken():
        yield "first document here"
        raise ValueError("the stream broke")

    with pytest.raises(ValueError, match="the stream broke"):
        prepare(PrepareConfig(out=out, tokenizer=vocab), documents=broken())
    assert not out.exists()
    with pytest.raises(InputError, match=r"<documents>:2: item 2 is int, expected a str or a mapping"):
        prepare(PrepareConfig(out=out, tokenizer=vocab), documents=["a b", 5])
    with pytest.raises(InputError, match=r'item 1 has no field "text"'):
        prepare(PrepareConfig(out=out, tokenizer=vocab), documents=[{"body": "x"}])
    with pytest.raises(InputError, match=r'field "text" of item 1 is int'):
        prepare(PrepareConfig(out=out, tokenizer=vocab), documents=[{"text": 3}])
    with pytest.raises(TypeError, match="documents must be an iterable"):
        prepare(PrepareConfig(out=out, tokenizer=vocab), documents=5)
    assert not out.exists()
    # Files first, then the iterable: both are inputs of the manifest.
    (tmp_path / "a.txt").write_text("from the file\n")
    s = prepare(PrepareConfig(inputs=[tmp_path / "a.txt"], out=out, tokenizer=vocab), documents=["from python"])
    assert s["totals"]["documents"] == 2
    assert [i["path"] for i in manifest(out)["inputs"]] == [str(tmp_path / "a.txt"), "<documents>"]


def test_iterable_memory_stays_bounded(tmp_path, vocab):
    """A generator of ~60 MB of text is consumed as the pipeline goes, never held whole."""
    import resource

    line = "the market report of the village river mountain computer language " * 15
    n = 60_000

    def gen():
        for i in range(n):
            yield {"text": f"{i} {line}"}

    code = f"""
import resource, sys
sys.path.insert(0, {str(Path(__file__).parent)!r})
from bertkit.data.prepare import PrepareConfig, prepare
line = {line!r}
def gen():
    for i in range({n}):
        yield {{"text": f"{{i}} {{line}}"}}
s = prepare(PrepareConfig(out={str(tmp_path / "o")!r}, tokenizer={str(vocab)!r}, splitter="none",
            shard_size=4 << 20), documents=gen())
print(s["totals"]["documents"], resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)
"""
    del gen, resource
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    documents, peak_mb = map(int, res.stdout.split())
    assert documents == n
    base = subprocess.run(
        [sys.executable, "-c", "import resource, bertkit._core, bertkit.data.prepare;"
         "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)"],
        capture_output=True, text=True,
    )  # fmt: skip
    # 60 MB of text held at once would add at least 60 MB (plus Python's per-str overhead).
    assert peak_mb - int(base.stdout) < 55, (peak_mb, base.stdout)


def test_cli_reads_parquet_with_text_field(tmp_path, texts, vocab):
    pq.write_table(pa.table({"content": texts[:20]}), tmp_path / "d.parquet")
    res = run_cli(
        "prepare", str(tmp_path / "*.parquet"), "--text-field", "content", "--tokenizer", str(vocab),
        "--out", str(tmp_path / "o"), "-q",
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert json.loads((tmp_path / "o" / "manifest.json").read_text())["totals"]["documents"] == 20
