"""merge_datasets: one manifest over several datasets, without copying shard data."""

from __future__ import annotations

import json
import os

import pytest
from conftest import TINY_VOCAB, random_docs, write_fixture_dataset

from bertkit.data import merge_datasets, open_dataset, read_manifest, verify_dataset
from bertkit.exceptions import ConfigError, DatasetExistsError, FormatError

NSP = [{"a": [5], "b": [6], "label": 1, "positions": [1], "masked_ids": [5]}]


def _files(d):
    return {p: (p.stat().st_ino, p.stat().st_size, p.stat().st_mtime_ns) for p in sorted((d / "shards").iterdir())}


@pytest.fixture
def two(tmp_path):
    da, db = random_docs(5, seed=1), random_docs(4, seed=2)
    a = write_fixture_dataset(tmp_path / "a", da, inputs=["a1.txt", "a2.txt"], sources=[0, 1, 1, 0, 1], nsp=NSP)
    b = write_fixture_dataset(tmp_path / "b", db, inputs=["b1.txt"], docs_per_shard=3, nsp=NSP * 2)
    return a, b, da, db


def test_merge_concatenates_without_copying(tmp_path, two):
    a, b, da, db = two
    before = _files(a) | _files(b)
    out = tmp_path / "m"
    m = merge_datasets([a, b], out)
    assert _files(a) | _files(b) == before  # same inodes, sizes and mtimes: nothing rewritten
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "tokenizer"]
    assert m.kind == "merged"
    for s in m.shards:
        for arr in s.arrays.values():
            assert arr.path.startswith("../a/shards/") or arr.path.startswith("../b/shards/")
            assert os.path.samefile(
                out / arr.path, (a if "/a/" in arr.path else b) / "shards" / os.path.basename(arr.path)
            )
    names = [s.name for s in m.shards]
    assert len(set(names)) == len(names) and "a.corpus-00000" in names and "b.corpus-00000" in names
    ma, mb = read_manifest(a), read_manifest(b)
    assert m.totals.documents == 9 and m.totals.tokens == ma.totals.tokens + mb.totals.tokens
    assert m.totals.sentences == ma.totals.sentences + mb.totals.sentences
    assert m.totals.instances == {"nsp": 3}
    assert [x["path"] for x in m.config["merged_from"]] == ["../a", "../b"]
    assert m.config["merged_from"][1]["totals"] == mb.totals.to_json()

    ds = open_dataset(out)
    assert [[s.tolist() for s in d.sentences] for d in ds.documents] == da + db
    assert [d.source for d in ds.documents] == ["a1.txt", "a2.txt", "a2.txt", "a1.txt", "a2.txt"] + ["b1.txt"] * 4
    assert len(ds.instances("nsp")) == 3
    assert ds.decode([5, 6]) == "the cat"
    assert verify_dataset(out) == []
    assert json.loads((out / "manifest.json").read_text())["shards"][-1]["input_offset"] == 2


def test_merge_of_merged_datasets(tmp_path, two):
    a, b, da, db = two
    c = write_fixture_dataset(tmp_path / "c", random_docs(2, seed=9), inputs=["c1.txt"])
    merge_datasets([a, b], tmp_path / "ab")
    (tmp_path / "deep").mkdir()
    merge_datasets([tmp_path / "ab", c], tmp_path / "deep" / "abc")
    ds = open_dataset(tmp_path / "deep" / "abc")
    assert ds.totals.documents == 11
    assert [d.source for d in ds.documents][-3:] == ["b1.txt", "c1.txt", "c1.txt"]
    assert all(a.path.startswith("../../") for s in ds.manifest.shards for a in s.arrays.values())
    assert verify_dataset(tmp_path / "deep" / "abc") == []


def test_corruption_in_a_source_shows_in_the_merged_verify(tmp_path, two):
    a, b, *_ = two
    merge_datasets([a, b], tmp_path / "m")
    p = b / "shards" / "corpus-00001.tokens.npy"
    data = bytearray(p.read_bytes())
    data[-1] ^= 0xFF
    p.write_bytes(bytes(data))
    problems = verify_dataset(tmp_path / "m")
    assert len(problems) == 1 and "b.corpus-00001" in problems[0] and "corpus-00001.tokens.npy" in problems[0]


def test_mismatched_tokenizers_are_refused(tmp_path, two):
    a, b, *_ = two
    other = write_fixture_dataset(tmp_path / "other", random_docs(2), vocab=list(reversed(TINY_VOCAB)))
    with pytest.raises(ConfigError, match=r"a.* and .*other.*vocab_sha256"):
        merge_datasets([a, other], tmp_path / "m")
    wide = write_fixture_dataset(tmp_path / "wide", random_docs(2), token_dtype="uint32")
    with pytest.raises(ConfigError, match=r"wide.*token dtype differs \(uint16 vs uint32\)"):
        merge_datasets([a, b, wide], tmp_path / "m")
    assert not (tmp_path / "m" / "manifest.json").exists()


def test_existing_output_is_refused_unless_overwrite(tmp_path, two):
    a, b, *_ = two
    out = tmp_path / "m"
    merge_datasets([a], out)
    with pytest.raises(DatasetExistsError, match="already holds a dataset"):
        merge_datasets([a, b], out)
    assert read_manifest(out).totals.documents == 5
    m = merge_datasets([a, b], out, overwrite=True)
    assert read_manifest(out) == m and m.totals.documents == 9
    with pytest.raises(ConfigError, match="one of the inputs"):
        merge_datasets([a, b], a, overwrite=True)
    with pytest.raises(ConfigError, match="given twice"):
        merge_datasets([a, a], tmp_path / "x")


def test_incomplete_or_damaged_inputs_are_refused(tmp_path, two):
    a, *_ = two
    half = write_fixture_dataset(tmp_path / "half", random_docs(2), manifest=False)
    with pytest.raises(FormatError, match=r"half.*manifest\.json is missing"):
        merge_datasets([a, half], tmp_path / "m")
    (a / "shards" / "corpus-00001.sentence_offsets.npy").unlink()
    with pytest.raises(FileNotFoundError, match="corpus-00001.sentence_offsets.npy"):
        merge_datasets([a], tmp_path / "m")
    assert not (tmp_path / "m" / "manifest.json").exists()


def test_empty_dataset_between_others(tmp_path, two):
    a, b, da, db = two
    empty = write_fixture_dataset(tmp_path / "empty", [], inputs=["e.txt"])
    merge_datasets([a, empty, b], tmp_path / "m")
    ds = open_dataset(tmp_path / "m")
    assert [s.rows for s in ds.manifest.shards_of("corpus")] == [2, 2, 1, 0, 3, 1]
    flat = [t for d in da + db for s in d for t in s]
    assert len(ds.documents) == 9 and len(ds.tokens) == len(flat)
    assert [d.tokens.tolist() for d in ds.documents] == [[t for s in d for t in s] for d in da + db]
    n_a = sum(len(s) for d in da for s in d)
    assert ds.token_slice(n_a - 2, n_a + 2).tolist() == flat[n_a - 2 : n_a + 2]
    assert ds.documents[5].source == "b1.txt"
