"""Plain progress lines when the log is not a terminal (CliRunner's streams are not): train, prepare, encode."""

from __future__ import annotations

import re

import pytest
from helpers import make_documents, make_vocab, write_text_corpus
from typer.testing import CliRunner

runner = CliRunner()


def _app():
    from bertkit_cli import app

    return app


def test_format_eta():
    from bertkit_cli._common import format_eta

    assert [format_eta(s) for s in (None, 4.4, 65, 3725, float("inf"))] == ["?", "4s", "1m05s", "1h02m", "?"]


def test_train_prints_one_plain_line_per_metrics_record(tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("bertkit._core")
    from conftest import random_docs, write_fixture_dataset

    ds = write_fixture_dataset(tmp_path / "ds", random_docs(150, seed=4), docs_per_shard=50)
    args = ["train", "--preset", "tiny", "--data", str(ds), "--out", str(tmp_path / "run"), "--max-steps", "6",
            "--batch-size", "4", "--seq-len", "32", "--device", "cpu", "--eval-every", "0",
            "--log-every", "2"]  # fmt: skip
    result = runner.invoke(_app(), args)
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("train: ")]
    assert [re.match(r"train: step (\d+)/6 ", line).group(1) for line in lines] == ["2", "4", "6"], result.output
    for line in lines:
        assert re.search(r"loss \d+\.\d{4}  lr \d\.\d\de-\d\d  [\d,]+ tok/s  ETA (\d+s|\d+m\d\ds)$", line), line
    quiet = runner.invoke(_app(), [*args, "--out", str(tmp_path / "quiet"), "-q"])
    assert quiet.exit_code == 0 and "train: step" not in quiet.output


def test_prepare_prints_plain_lines(monkeypatch):
    import bertkit_cli._common as common
    import bertkit_cli.prepare as prep

    monkeypatch.setenv("BERTKIT_PROGRESS_EVERY", "3600")
    monkeypatch.setattr(prep, "interactive", lambda: False)
    printed = []
    monkeypatch.setattr(common.console, "print", lambda text, **kw: printed.append(text))
    counters = {"bytes": 0, "total_bytes": 4_000_000, "documents": 0, "tokens": 0, "instances": 0, "stage": "tokenize"}
    with prep._PrepareProgress() as bar:
        bar.update({**counters, "bytes": 1_000_000, "documents": 10, "tokens": 2_000})
        bar.update({**counters, "bytes": 2_000_000, "documents": 20, "tokens": 4_000})  # within the interval
        bar.update({**counters, "bytes": 4_000_000, "stage": "instances", "instances": 1234})  # a new stage prints
    assert len(printed) == 2, printed
    assert re.match(r"prepare: tokenize 1\.0/4\.0 MB  [\d.,]+ MB/s  10 docs  2,000 tokens  ETA ", printed[0])
    assert printed[1] == "prepare: instances 1,234 instances"


def test_prepare_cli_runs_with_plain_progress(tmp_path, monkeypatch):
    pytest.importorskip("bertkit._core")
    monkeypatch.setenv("BERTKIT_PROGRESS_EVERY", "0")
    docs = make_documents(400)
    text = write_text_corpus(tmp_path / "c.txt", docs)
    vocab = make_vocab(tmp_path / "v.txt", docs)
    args = ["prepare", str(text), "--tokenizer", str(vocab), "--out", str(tmp_path / "o"), "--instances", "nsp",
            "--dupe-factor", "1"]  # fmt: skip
    result = runner.invoke(_app(), args)
    assert result.exit_code == 0, result.output
    # a report arrives every ~100 ms, so a fast job may print none; any that comes is a plain line
    lines = [line for line in result.output.splitlines() if line.startswith("prepare: ")]
    assert all(re.search(r"MB/s .* ETA |instances \d[\d,]* instances$", x) for x in lines), result.output
    assert "\x1b" not in result.output and "━" not in result.output  # no bar drawn into a log


def test_encode_progress_plain_lines(monkeypatch, capsys):
    import bertkit_cli._common as common
    from bertkit_cli.encode import _Progress

    monkeypatch.setenv("BERTKIT_PROGRESS_EVERY", "3600")
    monkeypatch.setattr(common, "interactive", lambda: False)
    import bertkit_cli.encode as enc

    monkeypatch.setattr(enc, "interactive", lambda: False)
    printed = []
    monkeypatch.setattr(common.console, "print", lambda text, **kw: printed.append(text))
    with _Progress("encode", "chunks") as bar:
        bar.update(100, 1000)  # a resumed job: 100 chunks were done before
        bar.update(200, 1000)  # within the interval: no line
        bar.update(1000, 1000)  # the last report always prints
    assert len(printed) == 2
    assert printed[0].startswith("encode: 100/1,000 chunks (10%)") and "ETA" in printed[0]
    assert printed[1].startswith("encode: 1,000/1,000 chunks (100%)") and printed[1].endswith("ETA 0s")
