"""`bertkit eval classify`: TSV / CSV / JSONL readers and their errors, the bag-of-words floor, the embeddings probe
(with a fake `bertkit.encode`), fine-tuning a run from the command line."""

from __future__ import annotations

import json
import random
import sys
import types
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("bertkit._core")

from conftest import random_docs, tiny_train_config, write_fixture_dataset  # noqa: E402
from eval_fixtures import sentence  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from bertkit.eval.classify import evaluate_classify, stratified_split  # noqa: E402
from bertkit.eval.tasks import check_labels, find_split_files, read_classification  # noqa: E402
from bertkit.exceptions import ConfigError, FormatError  # noqa: E402
from bertkit_cli import app  # noqa: E402

runner = CliRunner()


def write_task(root: Path, n: dict[str, int] | None = None, fmt: str = "jsonl", pair: bool = False) -> Path:
    """A task directory where 'dog' in the text means pos and 'cat' neg."""
    root.mkdir(parents=True, exist_ok=True)
    for seed, (split, count) in enumerate((n or {"train": 96, "dev": 24, "test": 24}).items()):
        rng = random.Random(seed)
        rows = []
        for _ in range(count):
            y = rng.randrange(2)
            rows.append({"text": sentence(rng, y), "other": sentence(rng), "label": ["neg", "pos"][y]})
        path = root / f"{split}.{fmt}"
        if fmt == "jsonl":
            path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        else:
            sep = "\t" if fmt == "tsv" else ","
            path.write_text(
                "text"
                + sep
                + "other"
                + sep
                + "label\n"
                + "".join(sep.join((r["text"], r["other"], r["label"])) + "\n" for r in rows)
            )
    return root


# ------------------------------------------------------------------------------------------------ readers


def test_readers_agree_across_formats(tmp_path):
    for fmt in ("jsonl", "tsv", "csv"):
        write_task(tmp_path / fmt, {"train": 10}, fmt)
    read = {
        fmt: read_classification(tmp_path / fmt / f"train.{fmt}", pair_field="other") for fmt in ("jsonl", "tsv", "csv")
    }
    assert [(e.text, e.pair, e.label) for e in read["jsonl"]] == [(e.text, e.pair, e.label) for e in read["tsv"]]
    assert [(e.text, e.pair, e.label) for e in read["csv"]] == [(e.text, e.pair, e.label) for e in read["tsv"]]
    assert [e.line for e in read["tsv"]][:2] == [2, 3] and read["jsonl"][0].line == 1
    # CSV with quoted multi-line fields; numbers as labels in JSONL
    (tmp_path / "m.csv").write_text('text,label\n"first line\nsecond, line",1\nplain,0\n')
    ex = read_classification(tmp_path / "m.csv")
    assert ex[0].text == "first line\nsecond, line" and [e.line for e in ex] == [2, 4] and ex[1].label == "0"
    (tmp_path / "n.jsonl").write_text('{"text": "a", "label": 3}\n\n{"text": "b", "label": 1.5}\n')
    assert [e.label for e in read_classification(tmp_path / "n.jsonl")] == ["3", "1.5"]


@pytest.mark.parametrize(
    "name, content, message",
    [
        (
            "a.jsonl",
            '{"text": "x", "label": "1"}\n{"body": "y", "label": "0"}\n',
            r"a\.jsonl:2: no field 'text' \(fields: body, label\)",
        ),
        ("b.tsv", "text\tlabel\nx\t1\ny\n", r"b\.tsv:3: 1 tab-separated fields, the header has 2"),
        ("c.csv", 'sentence,label\n"x",1\n', r"c\.csv:2: no field 'text' \(fields: sentence, label\)"),
        (
            "d.jsonl",
            '{"text": "x", "label": "1"}\n{"text": "  ", "label": "0"}\n',
            r"d\.jsonl:2: field 'text' is empty",
        ),
        ("e.jsonl", '{"text": "x", "label": ""}\n', r"e\.jsonl:1: no label in field 'label'"),
        ("f.jsonl", '{"text": "x", "label": "1"}\nnot json\n', r"f\.jsonl:2: invalid JSON"),
        ("g.jsonl", "", r"g\.jsonl: the file is empty"),
        ("h.tsv", "text\tlabel\n\n", r"h\.tsv: no examples"),
        ("i.txt", "text\tlabel\nx\t1\n", r"i\.txt: unknown file type '\.txt'"),
        ("j.jsonl", '{"text": ["x"], "label": "1"}\n', r"j\.jsonl:1: field 'text' is not text"),
    ],
)
def test_reader_errors_name_file_and_line(tmp_path, name, content, message):
    (tmp_path / name).write_text(content)
    with pytest.raises(FormatError, match=message):
        read_classification(tmp_path / name)


def test_missing_file_unknown_pair_field_and_unknown_labels(tmp_path):
    with pytest.raises(FormatError, match="file not found"):
        read_classification(tmp_path / "nope.tsv")
    write_task(tmp_path, {"train": 4}, "tsv")
    with pytest.raises(FormatError, match=r"train\.tsv:2: no field 'q2' \(fields: text, other, label\)"):
        read_classification(tmp_path / "train.tsv", pair_field="q2")
    (tmp_path / "dev.jsonl").write_text('{"text": "x", "label": "neg"}\n{"text": "y", "label": "neutral"}\n')
    examples = read_classification(tmp_path / "dev.jsonl")
    with pytest.raises(FormatError, match=r"dev\.jsonl:2: label 'neutral' is not one of the task's labels"):
        check_labels(examples, ["neg", "pos"], tmp_path / "dev.jsonl")
    with pytest.raises(FormatError, match=r"dev\.jsonl:2: label 'neutral'"):
        evaluate_classify(tmp_path / "train.tsv", dev=tmp_path / "dev.jsonl", mode="bow")


def test_split_files_and_stratified_split(tmp_path):
    write_task(tmp_path / "t", {"train": 4, "validation": 2})
    found = find_split_files(tmp_path / "t", (".jsonl",))
    assert found == {"train": tmp_path / "t" / "train.jsonl", "dev": tmp_path / "t" / "validation.jsonl"}
    (tmp_path / "t" / "dev.jsonl").write_text("{}\n")
    with pytest.raises(ConfigError, match="several dev files"):
        find_split_files(tmp_path / "t", (".jsonl",))
    with pytest.raises(ConfigError, match="no train file"):
        find_split_files(tmp_path, (".jsonl",))
    labels = ["a"] * 20 + ["b"] * 10 + ["c"]
    kept, held = stratified_split(labels, 0.1, seed=0)
    assert sorted(kept + held) == list(range(31)) and [labels[i] for i in held].count("a") == 2
    assert [labels[i] for i in held].count("b") == 1 and "c" not in [labels[i] for i in held]
    assert stratified_split(labels, 0.1, seed=0) == (kept, held) and stratified_split(labels, 0.1, seed=1) != (
        kept,
        held,
    )


# ------------------------------------------------------------------------------------------------ probes


def test_bag_of_words_floor(tmp_path):
    write_task(tmp_path / "task")
    out = tmp_path / "res" / "bow.json"
    result = evaluate_classify(
        tmp_path / "task" / "train.jsonl",
        dev=tmp_path / "task" / "dev.jsonl",
        test=tmp_path / "task" / "test.jsonl",
        mode="bow",
        out=out,
    )
    assert result["median"]["test"]["accuracy"] == 1.0 and result["headline"] == result["median"]["test"]
    assert result["labels"] == ["neg", "pos"] and result["source"]["kind"] == "bow"
    assert json.loads(out.read_text())["median"] == result["median"]
    assert len(result["l2_grid"]) == 5 and result["config"]["l2"] in [p["l2"] for p in result["l2_grid"]]
    # without --dev: a stratified tenth of train is held out
    held = evaluate_classify(tmp_path / "task" / "train.jsonl", mode="bow")
    assert sum(held["counts"]["dev"].values()) == 10 and sum(held["counts"]["train"].values()) == 86
    with pytest.raises(ConfigError, match="only one label"):
        (tmp_path / "one.jsonl").write_text('{"text": "a", "label": "x"}\n')
        evaluate_classify(tmp_path / "one.jsonl", mode="bow")


def test_embeddings_probe_with_a_fake_encoder(tmp_path, monkeypatch):
    import numpy as np

    write_task(tmp_path / "task", pair=True)
    seen = []

    def embed_documents(source, texts, *, device="auto", batch_size=None, on_progress=None):
        seen.append((source, len(texts)))
        return np.array([[t.count("dog"), t.count("cat"), len(t) / 10] for t in texts], dtype=np.float32)

    monkeypatch.setitem(sys.modules, "bertkit.encode", types.SimpleNamespace(embed_documents=embed_documents))
    task = tmp_path / "task"
    result = evaluate_classify(
        task / "train.jsonl",
        dev=task / "dev.jsonl",
        test=task / "test.jsonl",
        mode="embeddings",
        embeddings="data/minilm",
    )
    assert result["median"]["test"]["accuracy"] == 1.0 and result["source"]["dim"] == 3
    assert seen == [("data/minilm", 96), ("data/minilm", 24), ("data/minilm", 24)]
    pairs = evaluate_classify(
        task / "train.jsonl", dev=task / "dev.jsonl", mode="embeddings", embeddings="m", pair_field="other"
    )
    assert pairs["source"]["dim"] == 12  # [u, v, |u - v|, u * v]
    monkeypatch.setitem(sys.modules, "bertkit.encode", None)  # not installed / not merged yet
    with pytest.raises(ConfigError, match="needs bertkit.encode.embed_documents"):
        evaluate_classify(task / "train.jsonl", mode="embeddings", embeddings="m")


# ------------------------------------------------------------------------------------------------ fine-tuning


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    from bertkit.train.trainer import train

    root = tmp_path_factory.mktemp("clsrun")
    ds = write_fixture_dataset(root / "ds", random_docs(60, seed=4), docs_per_shard=30)
    train(
        tiny_train_config(
            ds,
            root / "run",
            batch_size=4,
            max_steps=2,
            eval_every=0,
            checkpoint_every=2,
            model={"max_position_embeddings": 64},
        )
    )
    return root / "run"


def test_cli_fine_tunes_a_run(run_dir, tmp_path):
    task = write_task(tmp_path / "sentiment", {"train": 96, "test": 24}, "tsv")
    args = [
        "eval",
        "classify",
        str(run_dir),
        "--data",
        str(task),
        "--epochs",
        "4",
        "--lr",
        "1e-3",
        "--batch-size",
        "8",
        "--max-len",
        "32",
        "--device",
        "cpu",
        "--truncation",
        "head+tail",
        "--dropout",
        "0",
    ]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    saved = json.loads((run_dir / "eval" / "classify-sentiment.json").read_text())
    assert (
        saved["mode"] == "finetune"
        and saved["source"]["kind"] == "run"
        and saved["config"]["truncation"] == ("head+tail")
    )
    assert saved["median"]["test"]["accuracy"] >= 0.9 and "dev" in saved["median"]
    assert "10% of train" in saved["files"]["dev"] and "sentiment" in r.output


def test_cli_errors(run_dir, tmp_path):
    task = write_task(tmp_path / "t", {"train": 8})
    cases = [
        (["eval", "classify", "--data", str(task)], "exactly one of"),
        (["eval", "classify", str(run_dir), "--bow", "--data", str(task)], "exactly one of"),
        (["eval", "classify", "--bow"], "no training data"),
        (["eval", "classify", "--bow", "--data", str(task), "--train", str(task / "train.jsonl")], "not both"),
        (["eval", "classify", "--bow", "--data", str(tmp_path / "none")], "task directory not found"),
        (["eval", "classify", str(run_dir), "--data", str(task), "--max-len", "128"], "exceeds the 64 positions"),
        (["eval", "classify", "--bow", "--data", str(task), "--text-field", "body"], "no field 'body'"),
        (["eval", "classify", str(tmp_path), "--data", str(task)], "no complete checkpoint"),
    ]
    for args, message in cases:
        r = runner.invoke(app, args)
        assert r.exit_code == 1, (args, r.output)
        assert message in r.output and "Traceback" not in r.output, (args, r.output)
