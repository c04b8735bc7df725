"""Data-side integrity: output locks, checked resume, validated reading, `verify` that recomputes the manifest."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from helpers import make_documents, make_vocab, manifest, run_cli, write_text_corpus

from bertkit.data.dataset import verify_dataset
from bertkit.data.merge import merge_datasets
from bertkit.data.prepare import PrepareConfig, prepare
from bertkit.exceptions import ConfigError, FormatError
from bertkit.locks import LOCK_NAME, OutputLockedError, output_lock


@pytest.fixture(scope="module")
def docs():
    return make_documents(300, seed=3)


@pytest.fixture(scope="module")
def vocab(tmp_path_factory, docs):
    return make_vocab(tmp_path_factory.mktemp("vocab") / "vocab.txt", docs)


@pytest.fixture(scope="module")
def big_corpus(tmp_path_factory):
    return write_text_corpus(tmp_path_factory.mktemp("corpus") / "big.txt", make_documents(3000, seed=4))


# A prepare whose progress callback announces itself and then waits: the run (and its lock) is certainly in
# progress while the test starts a second writer.
_SLOW_PREPARE = textwrap.dedent(
    """
    import sys, time
    from bertkit.data.prepare import PrepareConfig, prepare
    state = {"said": False}
    def cb(c):
        if not state["said"]:
            state["said"] = True
            print("running", flush=True)
            time.sleep(3)
    prepare(PrepareConfig(inputs=[sys.argv[1]], out=sys.argv[2], tokenizer=sys.argv[3], threads=1,
                          shard_size=16384, overwrite=sys.argv[4] == "1"), cb)
    print("done", flush=True)
    """
)


@pytest.mark.parametrize("overwrite", [False, True])
def test_two_concurrent_prepares_the_second_is_refused_naming_the_holder(tmp_path, vocab, big_corpus, overwrite):
    out = tmp_path / "ds"
    if overwrite:  # both replace an existing dataset
        prepare(PrepareConfig(inputs=[str(big_corpus)], out=out, tokenizer=vocab))
    first = subprocess.Popen(
        [sys.executable, "-c", _SLOW_PREPARE, str(big_corpus), str(out), str(vocab), "1" if overwrite else "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert first.stdout.readline().strip() == "running", first.stderr.read()
        args = ["prepare", str(big_corpus), "--tokenizer", str(vocab), "--out", str(out), "-q"]
        r = run_cli(*args, *(["--overwrite"] if overwrite else []))
        assert r.returncode == 1
        assert f"pid {first.pid}" in r.stderr and "bertkit prepare" in r.stderr and "Traceback" not in r.stderr
        out_first, err_first = first.communicate(timeout=120)
    finally:
        first.kill()
        first.wait()
    assert first.returncode == 0, err_first
    assert "done" in out_first
    # the first writer's dataset is complete and intact; the lock file is gone
    assert verify_dataset(out) == []
    assert not (out / LOCK_NAME).exists()
    m = manifest(out)
    assert all((out / a["path"]).is_file() for s in m["shards"] for a in s["arrays"].values())


def test_prepare_into_a_directory_holding_only_a_stale_lock_file(tmp_path, vocab, docs):
    src = write_text_corpus(tmp_path / "c.txt", docs)
    out = tmp_path / "ds"
    out.mkdir()
    (out / LOCK_NAME).write_text(json.dumps({"pid": 999999, "purpose": "bertkit prepare"}))  # a dead holder
    prepare(PrepareConfig(inputs=[str(src)], out=out, tokenizer=vocab))
    assert verify_dataset(out) == [] and not (out / LOCK_NAME).exists()


def test_a_failed_prepare_leaves_no_directory(tmp_path, vocab):
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    with pytest.raises(Exception, match="no documents"):
        prepare(PrepareConfig(inputs=[str(empty)], out=tmp_path / "new", tokenizer=vocab))
    assert not (tmp_path / "new").exists()


def test_merge_is_locked_and_ignores_a_lock_file(tmp_path, vocab, docs):
    src = write_text_corpus(tmp_path / "c.txt", docs)
    a, b = tmp_path / "a", tmp_path / "b"
    prepare(PrepareConfig(inputs=[str(src)], out=a, tokenizer=vocab))
    prepare(PrepareConfig(inputs=[str(src)], out=b, tokenizer=vocab))
    out = tmp_path / "m"
    with output_lock(out, purpose="someone else"):
        with pytest.raises(OutputLockedError, match="someone else"):
            merge_datasets([a, b], out)
        assert not (out / "manifest.json").exists()
    with output_lock(a, purpose="reader test"):  # a lock file inside an input does not disturb merge or verify
        merge_datasets([a, b], out)
        assert verify_dataset(a) == []
    assert verify_dataset(out) == [] and not (out / LOCK_NAME).exists()


def test_cli_merge_of_a_locked_output_is_one_line(tmp_path, vocab, docs):
    src = write_text_corpus(tmp_path / "c.txt", docs)
    a = tmp_path / "a"
    prepare(PrepareConfig(inputs=[str(src)], out=a, tokenizer=vocab))
    with output_lock(tmp_path / "m", purpose="holder"):
        r = run_cli("merge", str(a), "--out", str(tmp_path / "m"))
    assert r.returncode == 1 and "holder" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.slow
def test_encode_store_is_locked_and_a_lock_file_is_not_foreign(tmp_path):
    pytest.importorskip("torch")
    from nextlevel_fixtures import prepare_chunks, texts, write_tiny_encoder

    from bertkit.encode.store import encode_dataset, verify_store

    corpus = tmp_path / "c.txt"
    corpus.write_text("\n\n".join(texts(12)) + "\n")
    enc_dir = write_tiny_encoder(tmp_path / "enc")
    dataset = prepare_chunks(tmp_path / "ds", corpus, enc_dir / "vocab.txt")
    out = tmp_path / "emb"
    with output_lock(out, purpose="another encode"):
        with pytest.raises(OutputLockedError, match="another encode"):
            encode_dataset(dataset, str(enc_dir), out, device="cpu")
        with pytest.MonkeyPatch.context() as mp:  # a --shard worker waits for the lock a moment, then gives up
            mp.setattr("bertkit.encode.store.SHARD_LOCK_WAIT", 0.2)
            with pytest.raises(OutputLockedError, match="another encode"):
                encode_dataset(dataset, str(enc_dir), out, device="cpu", shard=(0, 2))
        assert not (out / "encode.json").exists()
    summary = encode_dataset(dataset, str(enc_dir), out, device="cpu")
    assert summary["complete"] and verify_store(out) == [] and not (out / LOCK_NAME).exists()

    # NextLevel training reads the store: a flipped embedding byte is named by its checksum before the first read
    from bertkit.encode.blocks import ChunkBlocks

    rec = json.loads((out / "manifest.json").read_text())["shards"][0]
    path = out / rec["arrays"]["embeddings"]["path"]
    data = bytearray(path.read_bytes())
    data[-3] ^= 0x40
    path.write_bytes(bytes(data))
    with pytest.raises(FormatError, match=rf"{rec['name']}.*'embeddings' fails its checksum"):
        ChunkBlocks(out, seq_len=8, batch_size=1)
    ChunkBlocks(out, seq_len=8, batch_size=1, verify_data=False)  # skipping is the caller's choice


# ------------------------------------------------------------------------------------------------ checked resume


def _interrupt_after(shards: int, out: Path):
    """A progress callback that stops the run (as Ctrl-C does) once `shards` shard records are published."""

    def cb(_counters):
        if len(list((out / "shards").glob("*.json"))) >= shards:
            raise KeyboardInterrupt

    return cb


def _interrupted(tmp_path, src, vocab, name="ds", **kw) -> tuple[Path, PrepareConfig]:
    out = tmp_path / name
    cfg = PrepareConfig(inputs=[str(src)], out=out, tokenizer=vocab, threads=1, shard_size=16384, **kw)
    with pytest.raises(KeyboardInterrupt):
        prepare(cfg, _interrupt_after(2, out))
    assert not (out / "manifest.json").exists() and list((out / "shards").glob("*.json"))
    return out, cfg


def _resume(cfg: PrepareConfig, **changes):
    import dataclasses

    return prepare(dataclasses.replace(cfg, resume=True, **changes))


def test_resume_after_an_input_edit_is_refused_naming_the_file(tmp_path, vocab):
    src = write_text_corpus(tmp_path / "c.txt", make_documents(3000, seed=5))
    out, cfg = _interrupted(tmp_path, src, vocab)
    text = src.read_bytes()
    write_text_corpus(src, make_documents(3000, seed=6))  # other text (another size)
    with pytest.raises(ConfigError, match=r"cannot resume.*input .*c\.txt changed.*--overwrite"):
        _resume(cfg)
    # the same size, one byte different
    src.write_bytes(text[:100] + (b"x" if text[100:101] != b"x" else b"y") + text[101:])
    with pytest.raises(ConfigError, match=r"c\.txt changed \(same size, xxh3"):
        _resume(cfg)
    assert not (out / "manifest.json").exists()
    # --overwrite starts again and gives the dataset of the edited input
    _resume(cfg, overwrite=True)
    assert verify_dataset(out) == []


def test_resume_after_a_vocab_change_or_other_options_is_refused(tmp_path, docs, vocab):
    src = write_text_corpus(tmp_path / "c.txt", make_documents(3000, seed=5))
    out, cfg = _interrupted(tmp_path, src, vocab)
    other = tmp_path / "vocab.txt"
    lines = vocab.read_text().splitlines()
    other.write_text("\n".join(lines[:5] + lines[5:][::-1]) + "\n")  # the same words under other ids
    import shutil

    backup = tmp_path / "orig-vocab.txt"
    shutil.copy(vocab, backup)
    try:
        shutil.copy(other, vocab)
        with pytest.raises(ConfigError, match=r"tokenizer vocab_sha256"):
            _resume(cfg)
    finally:
        shutil.copy(backup, vocab)
    with pytest.raises(ConfigError, match=r"option seed: 12345 then, 7 now"):
        _resume(cfg, seed=7)
    with pytest.raises(ConfigError, match=r"input .*d\.txt is new"):
        _resume(cfg, inputs=[str(src), str(write_text_corpus(tmp_path / "d.txt", docs))])
    # unchanged: the resume finishes and equals an uninterrupted run
    summary = _resume(cfg)
    ref_out = tmp_path / "ref"
    prepare(PrepareConfig(inputs=[str(src)], out=ref_out, tokenizer=vocab, threads=1, shard_size=16384))
    strip = lambda m: [(s["name"], {k: v["xxh3"] for k, v in s["arrays"].items()}) for s in m["shards"]]  # noqa: E731
    assert strip(manifest(out)) == strip(manifest(ref_out))
    assert summary["resumed_shards"] >= 2
    assert manifest(out)["totals"] == manifest(ref_out)["totals"]


@pytest.mark.slow
def test_resume_removes_leftover_temporaries_and_counts_do_not_underflow(tmp_path, vocab):
    src = write_text_corpus(tmp_path / "c.txt", make_documents(3000, seed=5))
    out, cfg = _interrupted(tmp_path, src, vocab, instances=["nsp"], dupe_factor=1)
    leftovers = [out / "shards" / "nsp-00003.input_ids.npy.tmp-4242", out / "manifest.json.tmp-77"]
    for p in leftovers:
        p.write_bytes(b"partial")
    keep = out / "shards" / "notes.tmp-abc"  # not a writer's temporary name: left alone
    keep.write_text("mine")
    summary = _resume(cfg)
    assert not any(p.exists() for p in leftovers) and keep.exists()
    skipped = summary["totals"]["skipped"]
    assert all(0 <= n < 3000 for n in skipped.values()), skipped
    assert verify_dataset(out) == []


def test_a_shard_record_with_more_documents_than_the_input_is_refused(tmp_path, vocab):
    # If a record disagrees with the (proven unchanged) input, the resume stops instead of underflowing a counter.
    src = write_text_corpus(tmp_path / "c.txt", make_documents(3000, seed=5))
    out, cfg = _interrupted(tmp_path, src, vocab)
    rec = out / "shards" / "corpus-00000.json"
    r = json.loads(rec.read_text())
    r["rows"] += 10**6
    rec.write_text(json.dumps(r))
    with pytest.raises(FormatError, match=r"corpus-00000\.json.*inputs changed"):
        _resume(cfg)


# ------------------------------------------------------------------------------------------------ checked reading


@pytest.fixture(scope="module")
def full_ds(tmp_path_factory, vocab):
    """A prepared dataset with every shard kind (corpus, nsp, mlm, chunks), several shards each."""
    root = tmp_path_factory.mktemp("full")
    src = write_text_corpus(root / "c.txt", make_documents(400, seed=8))
    out = root / "ds"
    prepare(
        PrepareConfig(
            inputs=[str(src)],
            out=out,
            tokenizer=vocab,
            instances=["nsp", "mlm", "chunks"],
            dupe_factor=1,
            max_seq_length=32,
            chunk_size=16,
            shard_size=32768,
            threads=1,
        )
    )
    return out


def _copy(ds: Path, tmp_path: Path) -> Path:
    import shutil

    dst = tmp_path / "copy"
    shutil.copytree(ds, dst)
    return dst


def _poke(ds: Path, kind: str, array: str, index: int, value: int, shard: int = 0) -> tuple[str, Path]:
    """Write `value` at `index` (negative: from the end) of array `array` of the `shard`-th shard of `kind`."""
    m = manifest(ds)
    sh = [s for s in m["shards"] if s["kind"] == kind][shard]
    path = ds / sh["arrays"][array]["path"]
    a = np.load(path, mmap_mode="r+")
    flat = a.reshape(-1)
    flat[index] = value
    a.flush()
    del a
    return sh["name"], path


# (kind, array, index, value): each breaks the structure or a value range the readers rely on.
CORRUPTIONS = [
    ("corpus", "tokens", 5, 65535),  # token id beyond the vocabulary (was: torch IndexError)
    ("corpus", "sentence_offsets", 3, 2**62),  # huge offset (was: nsp_pairs spinning)
    ("corpus", "document_offsets", 1, 10**6),  # flipped byte (was: Rust PanicException)
    ("corpus", "document_offsets", 2, 0),  # decreasing
    ("corpus", "document_sources", 0, 7),  # an input that does not exist
    ("nsp", "input_ids", 3, 65535),
    ("nsp", "offsets", 1, 10**9),
    ("nsp", "segment_a_lengths", 0, 60000),
    ("nsp", "next_sentence_labels", 0, 7),
    ("nsp", "masked_positions", 0, 60000),
    ("nsp", "masked_lm_ids", 0, 65535),
    ("nsp", "masked_offsets", 1, 10**9),
    ("mlm", "input_ids", 7, 65535),
    ("chunks", "input_ids", 2, 65535),
    ("chunks", "offsets", 1, 10**9),
    ("chunks", "document_offsets", 1, 10**9),
]


@pytest.mark.parametrize("kind,array,index,value", CORRUPTIONS, ids=[f"{k}-{a}-{v}" for k, a, _, v in CORRUPTIONS])
def test_each_corrupt_array_is_named_on_open(full_ds, tmp_path, kind, array, index, value):
    from bertkit.data.dataset import open_dataset

    ds = _copy(full_ds, tmp_path)
    name, path = _poke(ds, kind, array, index, value)
    with pytest.raises(FormatError) as e:  # without checksums: the value checks alone catch it
        open_dataset(ds)
    msg = str(e.value)
    assert str(path) in msg and repr(name) in msg and repr(array) in msg and "corrupt" in msg, msg
    with pytest.raises(FormatError, match=rf"{name}.*{array}.*checksum"):  # with checksums: caught before reading
        open_dataset(ds, verify_checksums=True)


def test_a_plausible_flip_is_caught_by_the_checksum_only(full_ds, tmp_path):
    from bertkit.data.dataset import open_dataset

    ds = _copy(full_ds, tmp_path)
    tokens = np.load(ds / manifest(ds)["shards"][0]["arrays"]["tokens"]["path"])
    name, _ = _poke(ds, "corpus", "tokens", 4, int(tokens[4]) ^ 1)  # still a valid id
    open_dataset(ds)  # structurally fine: values alone cannot tell
    with pytest.raises(FormatError, match=rf"shard '{name}' \(corpus\) array 'tokens' fails its checksum"):
        open_dataset(ds, verify_checksums=True)


@pytest.mark.parametrize("array,value", [("sentence_offsets", 2**62), ("document_offsets", 10**6)])
def test_rust_views_refuse_corrupt_offsets_instead_of_panicking_or_spinning(full_ds, tmp_path, array, value):
    from bertkit.data.views import MlmStream, chunk_view, mlm_view, nsp_view

    ds = _copy(full_ds, tmp_path)
    name, path = _poke(ds, "corpus", array, 2, value)
    for call in (lambda: nsp_view(ds, seq_len=32), lambda: mlm_view(ds, 32), lambda: MlmStream(ds),
                 lambda: chunk_view(ds, 16)):  # fmt: skip
        with pytest.raises(FormatError, match=rf"{path.name}.*{name}.*{array}.*corrupt"):
            call()


def _train_args(ds: Path, out: Path, *extra: str) -> list[str]:
    return ["train", "--preset", "tiny", "--data", str(ds), "--out", str(out), "--max-steps", "2", "--batch-size",
            "4", "--seq-len", "32", "--device", "cpu", "--eval-every", "0", "-q", *extra]  # fmt: skip


@pytest.mark.slow
def test_train_on_corrupt_shards_is_a_one_line_error(full_ds, tmp_path):
    ds = _copy(full_ds, tmp_path)
    _poke(ds, "corpus", "document_offsets", 1, 10**6)
    for view in ("mlm", "nsp"):
        r = run_cli(*_train_args(ds, tmp_path / f"run-{view}", "--view", view, "--no-verify-data"))
        assert r.returncode == 1 and "document_offsets" in r.stderr, r.stderr
        assert "Traceback" not in r.stderr and "Panic" not in r.stderr
    # a plausible flip trains silently without checksums, and is refused with them (the default)
    ds2 = _copy(full_ds, tmp_path / "b")
    tokens = np.load(ds2 / manifest(ds2)["shards"][0]["arrays"]["tokens"]["path"])
    _poke(ds2, "corpus", "tokens", 4, int(tokens[4]) ^ 1)
    r = run_cli(*_train_args(ds2, tmp_path / "run-sum"))
    assert r.returncode == 1 and "checksum" in r.stderr and "'tokens'" in r.stderr, r.stderr
    r = run_cli(*_train_args(ds2, tmp_path / "run-skip", "--no-verify-data"))
    assert r.returncode == 0, r.stderr


# ------------------------------------------------------------------------------------------------ verify recounts


def _first(m: dict, kind: str) -> dict:
    return next(s for s in m["shards"] if s["kind"] == kind)


# Each edit of a manifest field that `verify` used to accept (it only compared hashes), and a phrase of its report.
EDITS = {
    "totals.documents": (
        lambda m: m["totals"].__setitem__("documents", m["totals"]["documents"] + 1),
        "totals.documents",
    ),
    "totals.sentences": (lambda m: m["totals"].__setitem__("sentences", 1), "totals.sentences"),
    "totals.tokens": (lambda m: m["totals"].__setitem__("tokens", 5), "totals.tokens"),
    "shard rows": (lambda m: _first(m, "corpus").__setitem__("rows", _first(m, "corpus")["rows"] - 1), "rows"),
    "shard sentences": (lambda m: _first(m, "corpus").__setitem__("sentences", 3), "sentences 3"),
    "shard tokens": (lambda m: _first(m, "nsp").__setitem__("tokens", 3), "tokens 3"),
    "shard chunks": (lambda m: _first(m, "chunks").__setitem__("chunks", 3), "chunks 3"),
    "token_dtype": (lambda m: m.__setitem__("token_dtype", "uint32"), "uint32"),
    "array dtype": (
        lambda m: _first(m, "corpus")["arrays"]["sentence_offsets"].__setitem__("dtype", "uint32"),
        "sentence_offsets",
    ),  # fmt: skip
    "array shape": (lambda m: _first(m, "nsp")["arrays"]["offsets"].__setitem__("shape", [2]), "offsets"),
    "totals.instances.nsp": (lambda m: m["totals"]["instances"].__setitem__("nsp", 12345), "totals.instances.nsp"),
    "totals.instances.mlm": (lambda m: m["totals"]["instances"].__setitem__("mlm", 0), "totals.instances.mlm"),
    "an instance kind without shards": (lambda m: m["totals"]["instances"].__setitem__("other", 4), "instances.other"),
}


@pytest.mark.parametrize("field", list(EDITS))
def test_verify_recomputes_each_manifest_field(full_ds, tmp_path, field):
    edit, phrase = EDITS[field]
    assert verify_dataset(full_ds) == []
    ds = _copy(full_ds, tmp_path)
    m = manifest(ds)
    edit(m)
    (ds / "manifest.json").write_text(json.dumps(m, indent=2))
    problems = verify_dataset(ds)
    assert problems and any(phrase in p for p in problems), problems


def test_verify_reports_corrupt_values_with_matching_checksums(full_ds, tmp_path):
    # A writer bug (or an edit that also rewrote the checksum) gives a file that hashes right but holds bad offsets.
    import xxhash

    ds = _copy(full_ds, tmp_path)
    name, path = _poke(ds, "corpus", "document_offsets", 1, 10**6)
    m = manifest(ds)
    _first(m, "corpus")["arrays"]["document_offsets"]["xxh3"] = xxhash.xxh3_64_hexdigest(path.read_bytes())
    (ds / "manifest.json").write_text(json.dumps(m, indent=2))
    problems = verify_dataset(ds)
    assert len(problems) == 1 and "document_offsets" in problems[0] and name in problems[0], problems
    r = run_cli("verify", str(ds))
    assert r.returncode != 0 and "document_offsets" in r.stdout + r.stderr


def test_verify_and_inspect_ignore_a_lock_file(full_ds, tmp_path):
    ds = _copy(full_ds, tmp_path)
    (ds / LOCK_NAME).write_text(json.dumps({"pid": 1}))
    assert verify_dataset(ds) == []
    r = run_cli("inspect", str(ds))
    assert r.returncode == 0, r.stderr


# ------------------------------------------------------------------------------------------------ smaller messages


def test_negative_integer_option_names_the_option(tmp_path, vocab, docs):
    src = write_text_corpus(tmp_path / "c.txt", docs)
    r = run_cli("prepare", str(src), "--tokenizer", str(vocab), "--out", str(tmp_path / "o"), "--max-seq-length", "-5")
    assert r.returncode == 1 and "--max-seq-length" in r.stderr and "-5" in r.stderr, r.stderr
    assert "expected usize" not in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "o").exists()
    for name in ("dupe_factor", "chunk_size", "seed", "shard_size"):
        with pytest.raises(ConfigError, match=rf"{name} \(--"):
            PrepareConfig(inputs=[str(src)], out=tmp_path / "o", tokenizer=vocab, **{name: -1})


def test_tokenizer_json_without_mask_names_mask(tmp_path, vocab, docs):
    from tokenizers import BertWordPieceTokenizer

    path = tmp_path / "tokenizer.json"
    BertWordPieceTokenizer(str(vocab), lowercase=True).save(str(path))
    d = json.loads(path.read_text())
    del d["model"]["vocab"]["[MASK]"]  # as a user editing the file would: the ids now have a gap
    d["added_tokens"] = [a for a in d["added_tokens"] if a["content"] != "[MASK]"]
    path.write_text(json.dumps(d))
    src = write_text_corpus(tmp_path / "c.txt", docs)
    with pytest.raises(FormatError, match=r"tokenizer\.json: missing special token \[MASK\]"):
        prepare(PrepareConfig(inputs=[str(src)], out=tmp_path / "o", tokenizer=path))
    assert not (tmp_path / "o").exists()


def test_embed_of_an_empty_file_names_it(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("  \n")
    r = run_cli("embed", str(tmp_path / "no-such-run"), str(empty), "--out", str(tmp_path / "e.npy"))
    assert r.returncode == 1 and f"{empty}: the file is empty" in r.stderr and "Traceback" not in r.stderr


def test_the_same_input_twice_or_by_an_alias_is_read_once_with_a_note(tmp_path, vocab, docs):
    src = write_text_corpus(tmp_path / "c.txt", docs)
    alias = tmp_path / "alias.txt"
    alias.symlink_to(src)
    out = tmp_path / "ds"
    summary = prepare(PrepareConfig(inputs=[str(src), str(src), str(alias)], out=out, tokenizer=vocab))
    assert len(manifest(out)["inputs"]) == 1
    notes = summary["notes"]
    assert len(notes) == 2 and "given more than once" in notes[0] and "read once" in notes[0]
    assert f"{alias} is the same file as {src}" in notes[1]
    ref = tmp_path / "ref"
    prepare(PrepareConfig(inputs=[str(src)], out=ref, tokenizer=vocab))
    assert manifest(out)["totals"] == manifest(ref)["totals"]
    r = run_cli("prepare", str(src), str(alias), "--tokenizer", str(vocab), "--out", str(tmp_path / "c2"), "-q")
    assert r.returncode == 0 and f"note: {alias} is the same file as {src}: it is read once" in r.stderr, r.stderr


def test_verify_data_is_a_checked_config_key_that_may_change_on_resume(tmp_path):
    from bertkit.train.config import RESUME_MUTABLE, TrainConfig

    toml = tmp_path / "run.toml"
    toml.write_text('data = "d"\nout = "o"\nverify_data = false\n')
    assert TrainConfig.from_toml(toml).verify_data is False
    assert TrainConfig(data="d", out="o").verify_data is True
    with pytest.raises(ConfigError, match="verify_data"):
        TrainConfig(data="d", out="o", verify_data="no")
    assert "verify_data" in RESUME_MUTABLE
