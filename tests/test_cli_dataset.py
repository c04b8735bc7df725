"""The inspect / verify / merge / tokenizer train commands, through typer's CliRunner."""

from __future__ import annotations

import json

import pytest
from conftest import TINY_VOCAB, random_docs, write_fixture_dataset
from typer.testing import CliRunner

from bertkit_cli import app

NSP = [{"a": [5, 6], "b": [7], "label": 1, "positions": [1], "masked_ids": [5]}]


@pytest.fixture
def runner():
    return CliRunner(env={"COLUMNS": "300"})  # no wrapping of long temporary paths


def test_inspect(tmp_path, runner):
    v = {t: i for i, t in enumerate(TINY_VOCAB)}
    docs = [[[v["the"], v["cat"], v["sat"]]], [[v["dog"], v["##s"], v["run"]]], *random_docs(3)]
    d = write_fixture_dataset(tmp_path / "ds", docs, nsp=NSP)
    r = runner.invoke(app, ["inspect", str(d), "--sample", "2"])
    assert r.exit_code == 0, r.output
    assert "documents" in r.output and "Shards" in r.output and "uint16" in r.output
    assert "the cat sat" in r.output  # document 0, decoded
    assert "[CLS] the cat [SEP] sat [SEP]" in r.output  # the nsp instance, decoded, markup escaped
    r = runner.invoke(app, ["inspect", str(d), "--json", "--sample", "5"])
    assert r.exit_code == 0, r.output
    j = json.loads(r.stdout)
    assert j["totals"]["documents"] == 5 and j["totals"]["instances"] == {"nsp": 1}
    assert [x["index"] for x in j["samples"]["documents"]] == [0, 1, 2, 3, 4]
    assert j["samples"]["documents"][1]["text"] == "dogs run"
    assert j["samples"]["instances"]["nsp"]["next_sentence_label"] == 1


def test_inspect_without_vocab_still_works(tmp_path, runner):
    d = write_fixture_dataset(tmp_path / "ds", random_docs(2), vocab=None)
    r = runner.invoke(app, ["inspect", str(d)])
    assert r.exit_code == 0, r.output
    assert "cannot decode" in r.output and "vocab.txt" in r.output


def test_inspect_incomplete_dataset_is_one_error_line(tmp_path, runner):
    d = write_fixture_dataset(tmp_path / "half", random_docs(2), manifest=False)
    r = runner.invoke(app, ["inspect", str(d)])
    assert r.exit_code == 1
    assert str(d) in r.output and "manifest.json is missing" in r.output
    assert "Traceback" not in r.output and len(r.output.strip().splitlines()) == 1


def test_verify(tmp_path, runner):
    d = write_fixture_dataset(tmp_path / "ds", random_docs(5), nsp=NSP)
    r = runner.invoke(app, ["verify", str(d)])
    assert r.exit_code == 0, r.output
    assert "OK: 19 files verified" in r.output  # 3 corpus shards x 4 arrays + 1 nsp shard x 7
    p = d / "shards" / "corpus-00001.tokens.npy"
    data = bytearray(p.read_bytes())
    data[200 if len(data) > 200 else -1] ^= 0x40
    p.write_bytes(bytes(data))
    (d / "shards" / "nsp-00000.offsets.npy").unlink()
    r = runner.invoke(app, ["verify", str(d)])
    assert r.exit_code == 1
    assert "corpus-00001" in r.output and str(p) in r.output and "checksum mismatch" in r.output
    assert "nsp-00000" in r.output and "nsp-00000.offsets.npy: file is missing" in r.output
    assert "2 problem(s)" in r.output


def test_verify_not_a_dataset(tmp_path, runner):
    r = runner.invoke(app, ["verify", str(tmp_path / "nope")])
    assert r.exit_code == 1 and "no such dataset directory" in r.output and "Traceback" not in r.output


def test_merge(tmp_path, runner):
    a = write_fixture_dataset(tmp_path / "a", random_docs(3, seed=1))
    b = write_fixture_dataset(tmp_path / "b", random_docs(4, seed=2))
    out = tmp_path / "m"
    r = runner.invoke(app, ["merge", str(a), str(b), "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert "7 documents" in r.output
    assert runner.invoke(app, ["verify", str(out)]).exit_code == 0
    r = runner.invoke(app, ["inspect", str(out), "--sample", "0"])
    assert r.exit_code == 0, r.output
    assert "../a: 3 documents" in r.output and "../b: 4 documents" in r.output and "merged dataset" in r.output
    r = runner.invoke(app, ["merge", str(a), str(b), "--out", str(out)])
    assert r.exit_code == 1 and "already holds a dataset" in r.output and str(out) in r.output
    r = runner.invoke(app, ["merge", str(a), "--out", str(out), "--overwrite"])
    assert r.exit_code == 0, r.output
    other = write_fixture_dataset(tmp_path / "other", random_docs(2), token_dtype="uint32")
    r = runner.invoke(app, ["merge", str(a), str(other), "--out", str(tmp_path / "m2")])
    assert r.exit_code == 1 and str(other) in r.output and "token dtype" in r.output


def test_tokenizer_train(tmp_path, runner):
    corpus = tmp_path / "c.txt"
    corpus.write_text("the cat sat on the mat\nthe dogs ran to the market\n" * 40)
    out = tmp_path / "tok"
    r = runner.invoke(app, ["tokenizer", "train", str(corpus), "--vocab-size", "60", "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert (out / "tokenizer.json").is_file() and (out / "vocab.txt").is_file()
    assert "[PAD]=0" in r.output
    r = runner.invoke(
        app, ["tokenizer", "train", str(corpus), "--vocab-size", "80", "--out", str(tmp_path / "e"), "--style", "elc"]
    )
    assert r.exit_code == 0, r.output
    assert (tmp_path / "e" / "vocab.txt").read_text().splitlines()[:2] == ["[UNK]", "[CLS]"]
    r = runner.invoke(
        app, ["tokenizer", "train", str(tmp_path / "missing.txt"), "--vocab-size", "60", "--out", str(out)]
    )
    assert r.exit_code == 1 and "missing.txt" in r.output and "Traceback" not in r.output
    r = runner.invoke(app, ["tokenizer", "train", str(corpus), "--vocab-size", "60", "--out", str(out), "--style", "x"])
    assert r.exit_code != 0
