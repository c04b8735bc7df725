"""The dataset reader: global indexing across shards, instances, decode, verify and open-time checks."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import time

import numpy as np
import pytest
import xxhash
from conftest import TINY_VOCAB, random_docs, write_fixture_dataset

from bertkit.data import open_dataset, verify_dataset
from bertkit.data.format import Manifest, read_manifest, write_manifest
from bertkit.exceptions import ConfigError, FormatError

NSP = [
    {"a": [5, 6], "b": [7, 8, 9], "label": 0, "positions": [1, 5], "masked_ids": [5, 9]},
    {"a": [10], "b": [11], "label": 1, "positions": [], "masked_ids": []},
    {"a": [12, 13, 5], "b": [6], "label": 1, "positions": [3], "masked_ids": [5]},
]


def flat(docs):
    return [t for d in docs for s in d for t in s]


def test_documents_and_sentences_across_shards(tmp_path):
    docs = random_docs(11, seed=1)
    sources = [i % 3 for i in range(11)]
    ds = open_dataset(
        write_fixture_dataset(
            tmp_path / "d", docs, docs_per_shard=3, sources=sources, inputs=["a.txt", "b.txt", "c.gz"]
        )
    )
    assert len(ds.manifest.shards_of("corpus")) == 4
    assert len(ds.documents) == 11
    for i, doc in enumerate(docs):
        got = ds.documents[i]
        assert [s.tolist() for s in got.sentences] == doc
        assert got.tokens.tolist() == [t for s in doc for t in s]
        assert got.source == ["a.txt", "b.txt", "c.gz"][i % 3]
        assert got.index == i and len(got) == len(doc)
    sents = [s for d in docs for s in d]
    assert len(ds.sentences) == len(sents)
    assert [ds.sentences[i].tolist() for i in range(len(sents))] == sents
    assert [d.tokens.tolist() for d in ds.documents[2:5]] == [[t for s in d for t in s] for d in docs[2:5]]
    # documents are views of the memory map, not copies
    assert not ds.documents[4].tokens.flags.owndata


def test_tokens_view_and_token_slice(tmp_path):
    docs = random_docs(9, seed=2)
    ds = open_dataset(write_fixture_dataset(tmp_path / "d", docs, docs_per_shard=2))
    ref = np.array(flat(docs))
    n = len(ref)
    assert len(ds.tokens) == n == ds.totals.tokens
    assert [ds.tokens[i] for i in range(n)] == ref.tolist()
    rng = np.random.default_rng(0)
    for _ in range(200):
        a, b = sorted(rng.integers(0, n + 1, 2).tolist())
        assert ds.token_slice(a, b).tolist() == ref[a:b].tolist()
        assert ds.tokens[a:b].tolist() == ref[a:b].tolist()
    assert np.asarray(ds.tokens).tolist() == ref.tolist()
    # a slice inside the first shard is a view; one across the boundary is a copy
    first = ds.manifest.shards_of("corpus")[0].tokens
    assert not ds.token_slice(0, first).flags.owndata
    assert ds.token_slice(first - 1, first + 1).tolist() == ref[first - 1 : first + 1].tolist()
    assert ds.token_slice(3, 3).size == 0
    with pytest.raises(IndexError):
        ds.token_slice(0, n + 1)
    with pytest.raises(IndexError):
        ds.token_slice(5, 4)


def test_uint32_tokens(tmp_path):
    docs = [[[70_000, 5], [100_000]], [[65_536]]]
    vocab = TINY_VOCAB + [f"w{i}" for i in range(len(TINY_VOCAB), 100_001)]  # token ids are checked against it
    path = write_fixture_dataset(tmp_path / "d", docs, token_dtype="uint32", docs_per_shard=1, vocab=vocab)
    ds = open_dataset(path)
    assert ds.token_dtype == np.uint32
    assert ds.documents[0].tokens.tolist() == [70_000, 5, 100_000]
    assert ds.tokens[3] == 65_536


@pytest.mark.parametrize("view", ["documents", "sentences", "tokens"])
def test_negative_and_out_of_range_indices(tmp_path, view):
    ds = open_dataset(write_fixture_dataset(tmp_path / "d", random_docs(5)))
    seq = getattr(ds, view)
    seq[len(seq) - 1]
    for bad in (-1, len(seq), len(seq) + 10):
        with pytest.raises(IndexError):
            seq[bad]
    with pytest.raises(TypeError):
        seq["0"]


def test_nsp_instances(tmp_path):
    ds = open_dataset(write_fixture_dataset(tmp_path / "d", random_docs(3), nsp=NSP, nsp_per_shard=2))
    nsp = ds.instances("nsp")
    assert len(nsp) == 3 == ds.totals.instances["nsp"]
    for item, ref in zip(nsp, NSP, strict=True):
        ids = [2, *ref["a"], 3, *ref["b"], 3]
        assert item["input_ids"].tolist() == ids
        assert item["token_type_ids"].tolist() == [0] * (len(ref["a"]) + 2) + [1] * (len(ref["b"]) + 1)
        assert item["next_sentence_label"] == ref["label"]
        assert item["masked_lm_positions"].tolist() == ref["positions"]
        assert item["masked_lm_ids"].tolist() == ref["masked_ids"]
    with pytest.raises(IndexError):
        nsp[3]
    with pytest.raises(IndexError):
        nsp[-1]


def test_mlm_and_chunk_instances(tmp_path):
    rows = (np.arange(7 * 6).reshape(7, 6) % 50 + 5).astype(np.uint16)
    chunks = [[[2, 5, 6, 3], [2, 7, 3]], [[2, 8, 3]], [[2, 9, 10, 11, 3], [2, 12, 3], [2, 13, 3]]]
    ds = open_dataset(
        write_fixture_dataset(
            tmp_path / "d", random_docs(3), mlm=rows, mlm_per_shard=3, chunks=chunks, docs_per_shard=2
        )
    )
    mlm = ds.instances("mlm")
    assert len(mlm) == 7 and mlm.seq_len == 6
    assert [mlm[i].tolist() for i in range(7)] == rows.tolist()
    assert mlm.take([6, 0, 3, 3]).tolist() == rows[[6, 0, 3, 3]].tolist()
    with pytest.raises(IndexError):
        mlm.take([7])
    ch = ds.instances("chunks")
    assert len(ch) == 3 and ch.num_chunks == 6
    assert [[c.tolist() for c in ch[i]] for i in range(3)] == chunks
    assert [ch.chunk(j).tolist() for j in range(6)] == [c for d in chunks for c in d]
    with pytest.raises(IndexError):
        ch.chunk(6)


def test_missing_instance_kind_is_a_config_error(tmp_path):
    ds = open_dataset(write_fixture_dataset(tmp_path / "plain", random_docs(2)))
    with pytest.raises(ConfigError, match=r"plain.*no nsp instances"):
        ds.instances("nsp")
    with pytest.raises(ConfigError, match="unknown instance kind"):
        ds.instances("span")


def test_decode_glues_wordpieces(tmp_path):
    v = {t: i for i, t in enumerate(TINY_VOCAB)}
    docs = [[[v["the"], v["dog"], v["##s"], v["run"], v["."]]]]
    ds = open_dataset(write_fixture_dataset(tmp_path / "d", docs))
    assert ds.decode(ds.documents[0].tokens) == "the dogs run ."
    assert ds.decode([v["[CLS]"], v["cat"], v["[SEP]"]]) == "[CLS] cat [SEP]"
    with pytest.raises(FormatError, match="outside the vocabulary"):
        ds.decode([len(TINY_VOCAB)])


def test_decode_without_vocab_names_the_file(tmp_path):
    ds = open_dataset(write_fixture_dataset(tmp_path / "d", random_docs(2), vocab=None))
    with pytest.raises(FileNotFoundError, match=r"tokenizer/vocab\.txt"):
        ds.decode([5])


def test_decode_refuses_a_different_vocab(tmp_path):
    d = write_fixture_dataset(tmp_path / "d", random_docs(2))
    (d / "tokenizer" / "vocab.txt").write_text("\n".join(reversed(TINY_VOCAB)) + "\n")
    with pytest.raises(FormatError, match="sha256"):
        open_dataset(d).decode([5])


def test_missing_manifest_means_incomplete(tmp_path):
    d = write_fixture_dataset(tmp_path / "half", random_docs(2), manifest=False)
    with pytest.raises(FormatError, match=r"half.*manifest\.json is missing"):
        open_dataset(d)
    with pytest.raises(FormatError, match="no such dataset directory"):
        open_dataset(tmp_path / "nowhere")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"version": 2}, "newer than this bertkit"),
        ({"format": "other.thing"}, "unknown format"),
        ({"token_dtype": "int8"}, "token_dtype"),
        ({"shards": "nope"}, "shards"),
    ],
)
def test_bad_manifest_is_a_format_error(tmp_path, change, message):
    d = write_fixture_dataset(tmp_path / "d", random_docs(2))
    m = json.loads((d / "manifest.json").read_text())
    (d / "manifest.json").write_text(json.dumps(m | change))
    with pytest.raises(FormatError, match=message):
        open_dataset(d)


def test_manifest_roundtrip_and_atomic_write(tmp_path):
    d = write_fixture_dataset(tmp_path / "d", random_docs(4), nsp=NSP)
    raw = json.loads((d / "manifest.json").read_text())
    m = read_manifest(d)
    assert m.to_json() == raw
    assert Manifest.from_json(m.to_json()) == m
    m.totals.skipped["long_lines"] = 3
    write_manifest(d, m)
    assert read_manifest(d).totals.skipped == {"empty_documents": 0, "long_lines": 3}
    assert sorted(p.name for p in d.iterdir()) == ["manifest.json", "shards", "tokenizer"]


def _array_path(d, shard_kind="corpus", array="tokens", index=0):
    m = read_manifest(d)
    shard = m.shards_of(shard_kind)[index]
    return shard, d / shard.arrays[array].path


def test_open_checks_files_against_the_manifest(tmp_path):
    d = write_fixture_dataset(tmp_path / "d", random_docs(6))
    shard, p = _array_path(d, index=1)
    data = p.read_bytes()
    p.write_bytes(data[:-2])
    with pytest.raises(FormatError, match=rf"{p.name}.*bytes, the manifest says"):
        open_dataset(d)
    p.unlink()
    with pytest.raises(FileNotFoundError, match=p.name):
        open_dataset(d)
    # same size, different dtype in the header: the manifest says uint16
    np.save(p, np.frombuffer(data[128:], dtype=np.uint16).astype(np.int16))
    assert p.stat().st_size == len(data)
    with pytest.raises(FormatError, match=rf"{p.name}.*int16"):
        open_dataset(d)


def test_inconsistent_offsets_are_reported(tmp_path):
    d = write_fixture_dataset(tmp_path / "d", random_docs(4))
    m = json.loads((d / "manifest.json").read_text())
    m["shards"][0]["sentences"] += 1
    m["totals"]["sentences"] += 1
    (d / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(FormatError, match="corpus-00000.*sentence_offsets"):
        open_dataset(d)


def test_verify_reports_flipped_truncated_and_missing_files(tmp_path):
    d = write_fixture_dataset(tmp_path / "d", random_docs(8), nsp=NSP)
    ds = open_dataset(d)
    assert ds.verify() == []
    shard, p = _array_path(d, index=2)
    data = bytearray(p.read_bytes())
    data[-1] ^= 0x01
    p.write_bytes(bytes(data))
    problems = verify_dataset(d)
    assert len(problems) == 1
    assert shard.name in problems[0] and str(p) in problems[0] and "checksum" in problems[0]
    nsp_shard, q = _array_path(d, "nsp", "masked_offsets")
    q.write_bytes(q.read_bytes()[:100])
    os.remove(d / read_manifest(d).shards[0].arrays["document_sources"].path)
    problems = verify_dataset(d)
    assert len(problems) == 3
    assert any(nsp_shard.name in x and str(q) in x and "size 100 bytes" in x for x in problems)
    assert any("corpus-00000" in x and "document_sources" in x and "missing" in x for x in problems)


def test_verify_progress_and_vocab_check(tmp_path):
    d = write_fixture_dataset(tmp_path / "d", random_docs(4))
    seen = []
    assert verify_dataset(d, on_progress=lambda done, total: seen.append((done, total))) == []
    total = sum(a.size for s in read_manifest(d).shards for a in s.arrays.values())
    assert seen[-1] == (total, total)
    (d / "tokenizer" / "vocab.txt").write_text("[PAD]\n")
    assert any("vocab_sha256" in p for p in verify_dataset(d))


def test_fixture_checksums_are_xxh3_of_whole_files(tmp_path):
    d = write_fixture_dataset(tmp_path / "d", random_docs(2))
    for s in read_manifest(d).shards:
        for a in s.arrays.values():
            data = (d / a.path).read_bytes()
            assert (len(data), xxhash.xxh3_64_hexdigest(data)) == (a.size, a.xxh3)
            assert len(a.xxh3) == 16


def test_summary(tmp_path):
    ds = open_dataset(write_fixture_dataset(tmp_path / "d", random_docs(5), nsp=NSP))
    s = ds.summary()
    assert s["totals"]["documents"] == 5 and s["totals"]["instances"] == {"nsp": 3}
    assert s["token_dtype"] == "uint16"
    assert s["shards"]["by_kind"]["corpus"]["shards"] == 3 and s["shards"]["by_kind"]["nsp"]["rows"] == 3
    assert s["bytes"] == sum(p.stat().st_size for p in (ds.path / "shards").glob("*.npy"))
    assert s["instance_kinds"] == ["nsp"]
    json.dumps(s)


def test_pickles_by_path(tmp_path):
    ds = open_dataset(write_fixture_dataset(tmp_path / "d", random_docs(40, seed=4), nsp=NSP))
    blob = pickle.dumps(ds)
    assert len(blob) < 200  # the path, not the arrays
    back = pickle.loads(blob)
    assert back.path == ds.path and back.documents[39].tokens.tolist() == ds.documents[39].tokens.tolist()
    assert back.instances("nsp")[2]["input_ids"].tolist() == ds.instances("nsp")[2]["input_ids"].tolist()


def test_library_imports_no_cli_or_torch():
    code = (
        "import sys, bertkit, bertkit.data, bertkit.tokenizers\n"
        "bad = [m for m in ('typer', 'rich', 'torch', 'click') if m in sys.modules]\n"
        "print(','.join(bad))\n"
    )
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [os.getcwd(), env.get("PYTHONPATH")]))
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert res.stdout.strip() == ""


@pytest.mark.slow
def test_real_corpus_roundtrip(tmp_path, data_dir):
    """Tokenize news.txt with HF tokenizers, store it in the format, read it back and decode."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(data_dir / "tokenizer.json"))
    tok.no_padding()
    tok.no_truncation()
    articles = [a for a in (data_dir / "news.txt").read_text(encoding="utf-8").split("\n\n") if a.strip()][:600]
    docs = [
        [e.ids for e in tok.encode_batch([s for s in a.split("\n") if s.strip()], add_special_tokens=False)]
        for a in articles
    ]
    vocab = (data_dir / "vocab.txt").read_text(encoding="utf-8").splitlines()
    d = write_fixture_dataset(tmp_path / "news", docs, docs_per_shard=100, vocab=vocab)
    t0 = time.perf_counter()
    ds = open_dataset(d)
    opened = time.perf_counter() - t0
    assert opened < 1.0
    rng = np.random.default_rng(0)
    for i in rng.integers(0, len(docs), 50).tolist():
        assert [s.tolist() for s in ds.documents[i].sentences] == docs[i]
    first = " ".join(articles[0].split("\n")[0].split()).lower()
    assert ds.decode(ds.sentences[0]).replace(" ", "") == first.replace(" ", "")
    assert verify_dataset(d) == []
