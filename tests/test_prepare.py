"""`bertkit prepare` end to end: output layout, fidelity to HF tokenizers, determinism, bad input."""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import (
    corpus_arrays,
    make_documents,
    make_vocab,
    manifest,
    run_cli,
    write_jsonl_corpus,
    write_text_corpus,
)

from bertkit.data.prepare import PrepareConfig, prepare
from bertkit.exceptions import ConfigError, DatasetExistsError, FormatError, InputError


@pytest.fixture(scope="module")
def docs():
    return make_documents(300, seed=1)


@pytest.fixture(scope="module")
def vocab(tmp_path_factory, docs):
    return make_vocab(tmp_path_factory.mktemp("vocab") / "vocab.txt", docs)


@pytest.fixture(scope="module")
def hf(vocab):
    from tokenizers import BertWordPieceTokenizer

    return BertWordPieceTokenizer(str(vocab), lowercase=True)


def expected_corpus(hf, docs):
    """What prepare must produce: per document, per sentence, HF ids without specials."""
    return [[hf.encode(s, add_special_tokens=False).ids for s in d] for d in docs]


def run(tmp_path, inputs, vocab, name="ds", **kw):
    out = tmp_path / name
    summary = prepare(PrepareConfig(inputs=[str(p) for p in inputs], out=out, tokenizer=vocab, **kw))
    return out, summary


def as_nested(dataset: Path):
    tokens, so, do, _ = corpus_arrays(dataset)
    return [[tokens[so[s] : so[s + 1]].tolist() for s in range(int(do[d]), int(do[d + 1]))] for d in range(len(do) - 1)]


def test_prepare_matches_hf_tokenizers_and_numpy_reads_it(tmp_path, docs, vocab, hf):
    src = write_text_corpus(tmp_path / "corpus.txt", docs)
    out, summary = run(tmp_path, [src], vocab, shard_size=8192)
    m = manifest(out)
    assert m["format"] == "bertkit.dataset" and m["version"] == 1
    assert m["token_dtype"] == "uint16"
    assert len([s for s in m["shards"] if s["kind"] == "corpus"]) > 3  # several shards at 8 KiB
    assert m["totals"]["documents"] == len(docs) == summary["totals"]["documents"]
    assert m["totals"]["sentences"] == sum(len(d) for d in docs)
    assert as_nested(out) == expected_corpus(hf, docs)
    assert m["tokenizer"]["special_ids"]["cls"] == hf.token_to_id("[CLS]")
    assert (out / "tokenizer" / "vocab.txt").read_text() == Path(vocab).read_text()
    assert not (out / "prepare.json").exists()
    # Every array is a plain .npy that numpy memory-maps, with the checksum the manifest records.
    import xxhash

    for s in m["shards"]:
        for a in s["arrays"].values():
            arr = np.load(out / a["path"], mmap_mode="r")
            assert list(arr.shape) == a["shape"] and str(arr.dtype) == a["dtype"]
            assert xxhash.xxh3_64_hexdigest((out / a["path"]).read_bytes()) == a["xxh3"]


def test_output_is_identical_for_any_thread_count(tmp_path, docs, vocab):
    src = write_text_corpus(tmp_path / "corpus.txt", docs)
    kw = dict(shard_size=4096, instances=["nsp", "mlm", "chunks"], dupe_factor=2)
    a, _ = run(tmp_path, [src], vocab, name="t1", threads=1, **kw)
    b, _ = run(tmp_path, [src], vocab, name="t2", threads=2, **kw)
    ha = [(s["name"], sorted((k, v["xxh3"]) for k, v in s["arrays"].items())) for s in manifest(a)["shards"]]
    hb = [(s["name"], sorted((k, v["xxh3"]) for k, v in s["arrays"].items())) for s in manifest(b)["shards"]]
    assert ha == hb
    assert manifest(a)["totals"]["instances"]["nsp"] > len(docs)


def test_nsp_negatives_come_from_every_input_file(tmp_path, docs, vocab):
    # One document per file (books, the BBC folders): Google pools every document of the run, so a
    # random-next B segment is (almost) never taken from A's own document; any thread count agrees.
    files = [write_text_corpus(tmp_path / f"doc{i:03d}.txt", [d]) for i, d in enumerate(docs[:120])]
    kw = dict(instances=["nsp"], dupe_factor=2, shard_size=2048)
    a, _ = run(tmp_path, files, vocab, name="t1", threads=1, **kw)
    b, _ = run(tmp_path, files, vocab, name="t2", threads=2, **kw)
    hashes = lambda m: [sorted((k, v["xxh3"]) for k, v in s["arrays"].items()) for s in m["shards"]]  # noqa: E731
    assert hashes(manifest(a)) == hashes(manifest(b))
    from bertkit.data.views import nsp_view

    _, so, do, sources = corpus_arrays(a)
    assert len(set(sources.tolist())) == len(files)
    doc_end = np.asarray(so)[np.asarray(do[1:], dtype=np.int64)]
    own = n = 0
    for epoch in range(2):
        v = nsp_view(a, seq_len=128, seed=12345, epoch=epoch)
        rn = np.flatnonzero(v["labels"] == 1)
        da = np.searchsorted(doc_end, v["a_start"][rn], side="right")
        db = np.searchsorted(doc_end, v["b_start"][rn], side="right")
        own += int((da == db).sum())
        n += len(rn)
    assert n > 100
    assert own == 0, f"{own} of {n} random-next B segments came from A's own document"


def test_nanobert_text_filter_drops_what_the_original_drops(tmp_path, vocab, hf):
    # my-best-day/medium scripts/tokenize_text.py: re.sub(r'[^a-zA-Z0-9\s,.!?\'"-]+', '', text) before tokenizing
    import re

    text = 'The café costs 50% more (honestly) — "really"?\tYes: it\'s 3-4 times #1 & ünique…\n\nSecond doc ¡ok!'
    src = tmp_path / "c.txt"
    src.write_text(text + "\n", encoding="utf-8")
    out, _ = run(tmp_path, [src], vocab, text_filter="nanobert", splitter="none")
    kept = re.sub(r'[^a-zA-Z0-9\s,.!?\'"-]+', "", text)
    expected = [[hf.encode(d.strip(), add_special_tokens=False).ids] for d in kept.split("\n\n")]
    assert as_nested(out) == expected
    plain, _ = run(tmp_path, [src], vocab, name="plain", splitter="none")
    assert as_nested(plain) != expected
    with pytest.raises(ConfigError, match="text filter"):
        run(tmp_path, [src], vocab, name="bad", text_filter="ascii")


def test_jsonl_gzip_and_document_modes_agree(tmp_path, docs, vocab, hf):
    expected = expected_corpus(hf, docs)
    j = write_jsonl_corpus(tmp_path / "c.jsonl", docs, field="body")
    gz = tmp_path / "c.jsonl.gz"
    gz.write_bytes(gzip.compress(j.read_bytes()))
    out, _ = run(tmp_path, [gz], vocab, name="gz", text_field="body")
    assert as_nested(out) == expected
    lines = tmp_path / "lines.txt"
    lines.write_text("".join(" ".join(d) + "\n" for d in docs))
    out, _ = run(tmp_path, [lines], vocab, name="odpl", doc_mode="one-doc-per-line")
    assert as_nested(out) == expected
    spl = tmp_path / "google.txt"
    spl.write_text("\n".join("\n".join(d) + "\n" for d in docs))
    out, _ = run(tmp_path, [spl], vocab, name="spl", doc_mode="sentences-per-line")
    assert as_nested(out) == expected
    assert manifest(out)["splitter"]["name"] == "lines"


def test_directories_and_globs_read_in_sorted_order(tmp_path, docs, vocab, hf):
    d = tmp_path / "in"
    d.mkdir()
    write_text_corpus(d / "b.txt", docs[100:])
    write_text_corpus(d / "a.txt", docs[:100])
    out, _ = run(tmp_path, [d], vocab, name="dir")
    assert as_nested(out) == expected_corpus(hf, docs)
    m = manifest(out)
    assert [Path(f["path"]).name for f in m["inputs"]] == ["a.txt", "b.txt"]
    _, _, _, src = corpus_arrays(out)
    assert src.tolist() == [0] * 100 + [1] * (len(docs) - 100)
    out2, _ = run(tmp_path, [str(d / "*.txt")], vocab, name="glob")
    assert as_nested(out2) == as_nested(out)


# ---------------------------------------------------------------------------------------------- bad input


def test_crlf_and_mixed_newlines_give_the_same_tokens(tmp_path, docs, vocab):
    lf, _ = run(tmp_path, [write_text_corpus(tmp_path / "lf.txt", docs[:50])], vocab, name="lf")
    crlf, _ = run(tmp_path, [write_text_corpus(tmp_path / "crlf.txt", docs[:50], newline="\r\n")], vocab, name="crlf")
    mixed = tmp_path / "mixed.txt"
    parts = [" ".join(d) for d in docs[:50]]
    seps = ["\n\n", "\r\n\r\n", "\r\r", "\n\r\n"]
    mixed.write_bytes("".join(p + seps[i % 4] for i, p in enumerate(parts)).encode())
    mx, _ = run(tmp_path, [mixed], vocab, name="mixed")
    assert as_nested(lf) == as_nested(crlf) == as_nested(mx)


def test_nul_and_control_characters_are_removed_like_bert(tmp_path, vocab, hf):
    text = "The river\x00 was\x07 cold.\tThe\x1b market opened \x0bearly.\n"
    src = tmp_path / "ctrl.txt"
    src.write_text(text)
    out, _ = run(tmp_path, [src], vocab, name="ctrl", splitter="none")
    tokens, _, _, _ = corpus_arrays(out)
    assert tokens.tolist() == hf.encode(text, add_special_tokens=False).ids


def test_empty_file_and_empty_documents_are_counted(tmp_path, docs, vocab):
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    blanks = tmp_path / "blanks.txt"
    blanks.write_text("\n\n   \n\t\n\n" + " ".join(docs[0]) + "\n\n \n\n" + " ".join(docs[1]) + "\n")
    records = tmp_path / "records.jsonl"
    texts = ["", "  \n ", "\x00\x07\x1b", " ".join(docs[2])]
    records.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    out, summary = run(tmp_path, [empty, blanks, records], vocab)
    assert summary["totals"]["documents"] == 3
    skipped = manifest(out)["totals"]["skipped"]
    assert skipped["empty_files"] == 1
    assert skipped["empty_documents"] == 2  # the two blank JSONL records
    assert skipped["documents_without_tokens"] == 1  # only control characters: nothing left to tokenize


def test_only_empty_input_is_an_error_and_leaves_nothing(tmp_path, vocab):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    with pytest.raises(InputError, match="no documents"):
        run(tmp_path, [empty], vocab, name="none")
    assert not (tmp_path / "none").exists()


def test_invalid_utf8_policies(tmp_path, vocab):
    src = tmp_path / "bad.txt"
    good = b"The market opened early.\n\n"
    src.write_bytes(good + b"The river was \xff\xfe cold.\n\nThe doctor came home.\n")
    with pytest.raises(InputError) as e:
        run(tmp_path, [src], vocab, name="err")
    assert "bad.txt" in str(e.value) and f"byte offset {len(good) + 14}" in str(e.value)
    assert not (tmp_path / "err" / "manifest.json").exists()
    out, s = run(tmp_path, [src], vocab, name="replace", on_invalid_utf8="replace")
    assert s["totals"]["documents"] == 3
    out, s = run(tmp_path, [src], vocab, name="skip", on_invalid_utf8="skip")
    assert s["totals"]["documents"] == 2
    assert manifest(out)["totals"]["skipped"]["invalid_utf8_lines"] == 1


def test_binary_file_is_refused(tmp_path, vocab):
    src = tmp_path / "image.bin"
    src.write_bytes(bytes(range(256)) * 64)
    with pytest.raises((InputError, FormatError), match="image.bin"):
        run(tmp_path, [src], vocab, name="bin")


def test_missing_and_unreadable_inputs(tmp_path, vocab):
    with pytest.raises(FileNotFoundError, match="nope.txt"):
        run(tmp_path, [tmp_path / "nope.txt"], vocab, name="missing")
    if Path("/proc/self/mem").exists():  # a regular file whose read fails with EIO, even for root
        with pytest.raises(OSError, match="/proc/self/mem"):
            run(tmp_path, ["/proc/self/mem"], vocab, name="unreadable")
    r = run_cli("prepare", str(tmp_path / "nope.txt"), "--tokenizer", str(vocab), "--out", str(tmp_path / "x"))
    assert r.returncode == 1 and "nope.txt" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize("missing", ["[CLS]", "[SEP]", "[MASK]", "[UNK]"])
def test_vocab_without_a_special_token_is_named(tmp_path, docs, vocab, missing):
    src = write_text_corpus(tmp_path / "c.txt", docs[:5])
    bad = tmp_path / "vocab-bad.txt"
    bad.write_text("".join(t + "\n" for t in Path(vocab).read_text().splitlines() if t != missing))
    with pytest.raises(FormatError) as e:
        run(tmp_path, [src], bad)
    assert missing in str(e.value) and "vocab-bad.txt" in str(e.value)


def test_vocab_over_65535_entries_uses_uint32(tmp_path, docs, vocab, hf):
    big = tmp_path / "vocab-big.txt"
    big.write_text(Path(vocab).read_text() + "".join(f"zzfiller{i}\n" for i in range(70_000)))
    src = write_text_corpus(tmp_path / "c.txt", docs[:20])
    out, _ = run(tmp_path, [src], big, instances=["nsp"], dupe_factor=1)
    m = manifest(out)
    assert m["token_dtype"] == "uint32"
    assert m["tokenizer"]["vocab_size"] == 70_000 + len(Path(vocab).read_text().split())
    assert as_nested(out) == expected_corpus(hf, docs[:20])
    nsp = next(s for s in m["shards"] if s["kind"] == "nsp")
    assert nsp["arrays"]["input_ids"]["dtype"] == "uint32"


def test_existing_dataset_is_refused_unless_overwrite(tmp_path, docs, vocab):
    src = write_text_corpus(tmp_path / "c.txt", docs[:20])
    out, _ = run(tmp_path, [src], vocab)
    before = (out / "manifest.json").read_bytes()
    with pytest.raises(DatasetExistsError, match="--overwrite"):
        run(tmp_path, [src], vocab)
    assert (out / "manifest.json").read_bytes() == before
    run(tmp_path, [src], vocab, overwrite=True)
    assert (out / "manifest.json").exists()
    other = tmp_path / "notadataset"
    other.mkdir()
    (other / "precious.txt").write_text("keep me")
    with pytest.raises(DatasetExistsError, match="not a bertkit dataset"):
        run(tmp_path, [src], vocab, name="notadataset")
    assert (other / "precious.txt").read_text() == "keep me"


def test_bad_options_are_config_errors(tmp_path, vocab):
    with pytest.raises(ConfigError):
        PrepareConfig(inputs=["x"], out="o", tokenizer=vocab, instances=["nope"])
    with pytest.raises(ConfigError):
        PrepareConfig(inputs=["x"], out="o", tokenizer=vocab, splitter="magic")
    r = run_cli("prepare", "x.txt", "--tokenizer", str(vocab), "--out", str(tmp_path / "o"), "--splitter", "magic")
    assert r.returncode == 1 and "magic" in r.stderr and "Traceback" not in r.stderr


_FULL_DISK_SCRIPT = r"""
import resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
limit = int(sys.argv[1])
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
from bertkit_cli import main
sys.argv = ["bertkit", *sys.argv[2:]]
main()
"""


def test_disk_full_leaves_no_manifest(tmp_path, docs, vocab):
    # Writes beyond RLIMIT_FSIZE fail (EFBIG) exactly where a full disk fails (ENOSPC): mid-shard.
    src = write_text_corpus(tmp_path / "c.txt", docs * 4)
    out = tmp_path / "full"
    r = subprocess.run(
        [sys.executable, "-c", _FULL_DISK_SCRIPT, "20000", "prepare", str(src), "--tokenizer", str(vocab),
         "--out", str(out), "--instances", "nsp", "--dupe-factor", "3", "-q"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert r.returncode == 1, r.stderr
    assert "Traceback" not in r.stderr and str(out) in r.stderr
    assert not (out / "manifest.json").exists()
    assert not list(out.glob("shards/*.tmp-*")), "temporary files were left behind"


def _count_records(out: Path) -> int:
    return len(list((out / "shards").glob("*.json"))) if (out / "shards").exists() else 0


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGINT])
def test_interrupted_run_is_incomplete_and_resume_finishes_it(tmp_path, docs, vocab, how):
    src = write_text_corpus(tmp_path / "c.txt", make_documents(6000, seed=9))
    args = ["prepare", str(src), "--tokenizer", str(vocab), "--shard-size-mb", "0.01", "--instances", "nsp",
            "--dupe-factor", "2", "-q", "--threads", "1"]  # fmt: skip
    ref = tmp_path / "ref"
    assert run_cli(*args, "--out", str(ref)).returncode == 0
    out = tmp_path / "killed"
    p = subprocess.Popen(
        [sys.executable, "-m", "bertkit_cli", *args, "--out", str(out)], stderr=subprocess.PIPE, text=True
    )
    deadline = time.time() + 60
    while _count_records(out) < 3 and time.time() < deadline and p.poll() is None:
        time.sleep(0.01)
    p.send_signal(how)
    _, err = p.communicate(timeout=60)
    if _count_records(out) >= _count_records(ref):
        pytest.skip("the run finished before it could be interrupted")
    assert not (out / "manifest.json").exists()
    if how == signal.SIGINT:
        assert p.returncode == 130 and "interrupted" in err and "Traceback" not in err
    # Without --resume the incomplete directory is refused, with it the run completes identically.
    r = run_cli(*args, "--out", str(out))
    assert r.returncode == 1 and "--resume" in r.stderr
    r = run_cli(*args, "--out", str(out), "--resume")
    assert r.returncode == 0, r.stderr
    strip = lambda m: [(s["name"], {k: v["xxh3"] for k, v in s["arrays"].items()}) for s in m["shards"]]  # noqa: E731
    assert strip(manifest(out)) == strip(manifest(ref))


def test_resume_with_different_options_is_refused(tmp_path, docs, vocab):
    src = write_text_corpus(tmp_path / "c.txt", docs)
    out = tmp_path / "ds"
    out.mkdir()
    (out / "prepare.json").write_text(json.dumps({"config": {"seed": 1}}))
    with pytest.raises(ConfigError, match="different options"):
        run(tmp_path, [src], vocab, resume=True)


@pytest.mark.slow
def test_a_200_mb_single_line(tmp_path, vocab):
    src = tmp_path / "huge.txt"
    sentence = b"The teacher and the student read a report about the river economy. "
    n = 200 * 1024 * 1024 // len(sentence)
    with open(src, "wb") as f:
        for _ in range(n // 10_000):
            f.write(sentence * 10_000)
    out, s = run(tmp_path, [src], vocab, name="huge", doc_mode="one-doc-per-line")
    assert s["totals"]["documents"] == 1
    assert s["totals"]["sentences"] == (n // 10_000) * 10_000
    os.remove(src)
