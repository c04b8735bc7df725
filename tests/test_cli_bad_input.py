"""Bad resource options are one-line errors naming the option, before any work; thread counts are capped."""

from __future__ import annotations

import pytest
from helpers import make_documents, make_vocab, write_text_corpus
from typer.testing import CliRunner

from bertkit.exceptions import ConfigError
from bertkit.resources import THREADS_CEILING, cap_threads, logical_cpus

runner = CliRunner()


def _app():
    from bertkit_cli import app

    return app


def one_line_error(result, *needles: str) -> None:
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    for needle in needles:
        assert needle in lines[0], result.output


def test_cap_threads():
    cpus = logical_cpus()
    assert cap_threads(None) == (None, None)
    assert cap_threads(cpus) == (cpus, None)
    n, note = cap_threads(cpus + 5, option="--threads")
    assert n == cpus and note and f"--threads {cpus + 5} capped to the {cpus} logical CPUs" in note
    for bad in (0, -1, THREADS_CEILING + 1):
        with pytest.raises(ConfigError, match=f"--workers {bad}"):
            cap_threads(bad, option="--workers")


@pytest.fixture
def corpus(tmp_path):
    docs = make_documents(30)
    return write_text_corpus(tmp_path / "c.txt", docs), make_vocab(tmp_path / "v.txt", docs)


@pytest.mark.parametrize(("threads", "needle"), [("0", "--threads 0: must be >= 1"), ("100000", "ceiling")])
def test_prepare_threads_refused_before_any_work(corpus, tmp_path, threads, needle):
    text, vocab = corpus
    result = runner.invoke(_app(), ["prepare", str(text), "--tokenizer", str(vocab), "--out", str(tmp_path / "o"),
                                    "--threads", threads, "-q"])  # fmt: skip
    one_line_error(result, needle)
    assert not (tmp_path / "o").exists()


def test_prepare_threads_above_the_cpus_are_capped_with_a_note(corpus, tmp_path):
    pytest.importorskip("bertkit._core")
    text, vocab = corpus
    result = runner.invoke(_app(), ["prepare", str(text), "--tokenizer", str(vocab), "--out", str(tmp_path / "o"),
                                    "--threads", str(logical_cpus() + 30), "-q"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert f"capped to the {logical_cpus()} logical CPUs" in result.output
    assert (tmp_path / "o" / "manifest.json").is_file()


def test_encode_threads_zero_refused(tmp_path):
    result = runner.invoke(_app(), ["encode", str(tmp_path / "ds"), "--out", str(tmp_path / "o"), "--threads", "0"])
    one_line_error(result, "--threads 0")


@pytest.mark.parametrize(
    ("flags", "needle"),
    [
        (["--max-steps", "0"], "max_steps = 0 must be an integer >= 1"),
        (["--batch-size", "0"], "batch_size = 0 must be an integer >= 1"),
        (["--lr", "-1"], "lr = -1.0 must be in (0.0"),
        (["--grad-accum", "0"], "grad_accum = 0"),
        (["--seq-len", "4"], "seq_len = 4"),
    ],
)
def test_train_bad_numbers_before_any_work(tmp_path, flags, needle):
    result = runner.invoke(_app(), ["train", "--data", str(tmp_path / "ds"), "--out", str(tmp_path / "r"), *flags])
    one_line_error(result, needle)
    assert not (tmp_path / "r").exists()


def test_train_seq_len_beyond_the_positions_before_the_data(tmp_path):
    pytest.importorskip("torch")
    # the dataset does not exist: the position check comes first, and nothing is created
    result = runner.invoke(_app(), ["train", "--preset", "tiny", "--data", str(tmp_path / "ds"), "--out",
                                    str(tmp_path / "r"), "--seq-len", "100000", "--device", "cpu"])  # fmt: skip
    one_line_error(result, "seq_len 100000 is above the model's max_position_embeddings")
    assert not (tmp_path / "r").exists()
