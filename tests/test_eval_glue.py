"""`bertkit eval glue`: readers of the official TSV layout and of Hugging Face parquet / save_to_disk copies on
handmade fixtures, label checks, missing tasks, the results files, resumption, and a fixture model that learns."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from eval_fixtures import hf_splits, hf_table, tiny_backbone, write_glue_parquet, write_glue_tsv  # noqa: E402

from bertkit.eval import finetune as finetune_module  # noqa: E402
from bertkit.eval.glue import GLUE_TASKS, evaluate_glue, find_glue_tasks, read_glue_task  # noqa: E402
from bertkit.exceptions import ConfigError, FormatError  # noqa: E402

QUICK = {"epochs": 1, "max_len": 32, "device": "cpu", "lr": 1e-3, "batch_size": 8}


@pytest.fixture(scope="module")
def glue_tsv(tmp_path_factory) -> Path:
    return write_glue_tsv(tmp_path_factory.mktemp("glue") / "glue_data")


def test_reads_every_task_of_the_official_layout(glue_tsv):
    found, missing = find_glue_tasks(glue_tsv, list(GLUE_TASKS))
    assert not missing and set(found) == set(GLUE_TASKS)
    for name, d in found.items():
        task = GLUE_TASKS[name]
        splits, layout = read_glue_task(d, name)
        assert layout == "tsv"
        assert set(splits) == {"train", *task.eval_sets}
        assert len(splits["train"]) == 24 and all(len(splits[s]) == 8 for s in task.eval_sets)
        first = splits["train"][0]
        assert (first.pair is None) == (name in ("cola", "sst2")), name
        if task.labels is None:
            assert isinstance(first.label, float) and 0 <= first.label <= 5
        else:
            assert first.label in task.labels
    cola, _ = read_glue_task(found["cola"], "cola")  # no header: the first line is an example
    assert cola["train"][0].line == 1 and "cat" in cola["train"][0].text or "dog" in cola["train"][0].text
    mnli, _ = read_glue_task(found["mnli"], "mnli")
    assert set(mnli) == {"train", "matched", "mismatched"} and mnli["train"][0].label in GLUE_TASKS["mnli"].labels


def test_mrpc_from_the_msr_files(tmp_path):
    header = "\ufeffQuality\t#1 ID\t#2 ID\t#1 String\t#2 String\n"
    rows = [f"{i % 2}\t{100 + i}\t{200 + i}\tthe cat sat {i}\tthe dog ran {i}\n" for i in range(6)]
    d = tmp_path / "MRPC"
    d.mkdir()
    (d / "msr_paraphrase_train.txt").write_text(header + "".join(rows), encoding="utf-8")
    (d / "msr_paraphrase_test.txt").write_text(header + rows[0], encoding="utf-8")
    splits, _ = read_glue_task(d, "mrpc")  # without dev_ids.tsv the MSR test file is evaluated
    assert len(splits["train"]) == 6 and len(splits["dev"]) == 1
    (d / "dev_ids.tsv").write_text("101\t201\n104\t204\n", encoding="utf-8")
    splits, _ = read_glue_task(d, "mrpc")  # GLUE's dev set carved out of the training file
    assert [e.text for e in splits["dev"]] == ["the cat sat 1", "the cat sat 4"]
    assert len(splits["train"]) == 4 and all(e.text not in ("the cat sat 1", "the cat sat 4") for e in splits["train"])


def test_parquet_and_save_to_disk_copies_read_the_same(tmp_path):
    write_glue_parquet(tmp_path / "parquet", ["sst2", "stsb", "mnli"])
    datasets = pytest.importorskip("datasets")
    for task in ("sst2", "stsb", "mnli"):
        dd = datasets.DatasetDict(
            {split: datasets.Dataset.from_dict(hf_table(task, 16, seed)) for seed, split in enumerate(hf_splits(task))}
        )
        dd.save_to_disk(str(tmp_path / "arrow" / task))
    for task in ("sst2", "stsb", "mnli"):
        a, layout_a = read_glue_task(tmp_path / "parquet" / task, task)
        b, layout_b = read_glue_task(tmp_path / "arrow" / task, task)
        assert (layout_a, layout_b) == ("parquet", "arrow")
        assert set(a) == {"train", *GLUE_TASKS[task].eval_sets}
        for split in a:
            assert [(e.text, e.pair, e.label) for e in a[split]] == [(e.text, e.pair, e.label) for e in b[split]]
    sst2, _ = read_glue_task(tmp_path / "parquet" / "sst2", "sst2")
    assert {e.label for e in sst2["train"]} <= {"0", "1"}  # class indices map to the task's label strings


def test_labels_that_do_not_match_the_task(tmp_path):
    d = tmp_path / "SST-2"
    d.mkdir()
    (d / "train.tsv").write_text("sentence\tlabel\nthe cat\t1\nthe dog\tpositive\n", encoding="utf-8")
    (d / "dev.tsv").write_text("sentence\tlabel\nthe cat\t0\n", encoding="utf-8")
    with pytest.raises(FormatError, match=r"SST-2/train\.tsv:3: label 'positive' does not match task sst2"):
        read_glue_task(d, "sst2")
    # an RTE directory handed to MNLI: the labels tell
    write_glue_tsv(tmp_path / "g", ["RTE"])
    (tmp_path / "g" / "RTE" / "dev_matched.tsv").write_text("x\n")
    with pytest.raises(FormatError, match="no column 'gold_label'"):
        read_glue_task(tmp_path / "g" / "RTE", "mnli")
    # STS-B scores are numbers in [0, 5]
    write_glue_tsv(tmp_path / "s", ["STS-B"])
    lines = (tmp_path / "s" / "STS-B" / "train.tsv").read_text().splitlines()
    lines[4] = lines[4].rsplit("\t", 1)[0] + "\tseven"
    (tmp_path / "s" / "STS-B" / "train.tsv").write_text("\n".join(lines) + "\n")
    with pytest.raises(FormatError, match=r"train\.tsv:5: STS-B score 'seven' is not a number"):
        read_glue_task(tmp_path / "s" / "STS-B", "stsb")


def test_hf_labels_out_of_range_and_test_splits(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    d = tmp_path / "rte"
    d.mkdir()
    pq.write_table(pa.table(hf_table("rte", 6, 0, label_offset=1)), d / "train-00000-of-00001.parquet")
    pq.write_table(pa.table(hf_table("rte", 6, 1)), d / "validation-00000-of-00001.parquet")
    with pytest.raises(FormatError, match=r"train-00000-of-00001\.parquet: row \d+: label 2 does not match task rte"):
        read_glue_task(d, "rte")
    table = hf_table("rte", 4, 0)
    table["label"] = [-1] * 4
    pq.write_table(pa.table(table), d / "train-00000-of-00001.parquet")
    with pytest.raises(FormatError, match="unlabelled test split"):
        read_glue_task(d, "rte")


def test_parquet_without_pyarrow_is_a_clear_error(tmp_path, monkeypatch):
    pytest.importorskip("pyarrow")
    write_glue_parquet(tmp_path, ["sst2"])
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # import pyarrow now raises ImportError
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    with pytest.raises(ConfigError, match=r"sst2.*needs pyarrow \(pip install 'bertkit\[eval\]'\)"):
        read_glue_task(tmp_path / "sst2", "sst2")


def test_malformed_tsv_rows(tmp_path):
    write_glue_tsv(tmp_path, ["QNLI"])
    path = tmp_path / "QNLI" / "train.tsv"
    lines = path.read_text().splitlines()
    lines[3] = "\t".join(lines[3].split("\t")[:3])
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(FormatError, match=r"QNLI/train\.tsv:4: 3 tab-separated columns, expected 4"):
        read_glue_task(tmp_path / "QNLI", "qnli")
    path.write_text("")
    with pytest.raises(FormatError, match="empty"):
        read_glue_task(tmp_path / "QNLI", "qnli")


def test_missing_tasks_are_listed_and_the_rest_evaluated(tmp_path, monkeypatch):
    root = write_glue_tsv(tmp_path / "glue", ["SST-2", "RTE", "QNLI"], n_train=8, n_dev=4)
    (root / "QNLI" / "dev.tsv").unlink()  # an incomplete task directory counts as missing
    calls = []

    def fake_finetune(backbone, head, num_labels, train, evals, score, primary, config, **kw):
        calls.append(num_labels)
        return {"metrics": {n: score([0] * len(d), d) for n, d in evals.items()}, "history": [], "steps": 1}

    monkeypatch.setattr(finetune_module, "finetune", fake_finetune)
    backbone = tiny_backbone(tmp=tmp_path)
    result = evaluate_glue(backbone, root, out=tmp_path / "r" / "glue.json", overrides=QUICK)
    assert [k for k, v in result["tasks"].items() if v["status"] == "done"] == ["sst2", "rte"]
    assert set(result["missing"]) == set(GLUE_TASKS) - {"sst2", "rte"}
    assert "dev.tsv: not found" in result["missing"]["qnli"] and "no MNLI/" in result["missing"]["mnli"]
    md = (tmp_path / "r" / "glue.md").read_text()
    assert "| model | SST-2 | RTE | avg | avg w/o WNLI |" in md
    assert "Missing: cola" in md
    with pytest.raises(ConfigError, match="unknown GLUE task"):
        evaluate_glue(backbone, root, tasks="sst2,imdb", overrides=QUICK)
    with pytest.raises(ConfigError, match="none of the requested GLUE tasks"):
        evaluate_glue(backbone, root, tasks="cola,mrpc", overrides=QUICK)
    with pytest.raises(ConfigError, match="GLUE directory not found"):
        evaluate_glue(backbone, tmp_path / "nowhere", overrides=QUICK)
    with pytest.raises(ConfigError, match="unknown fine-tuning option"):
        evaluate_glue(backbone, root, overrides={"learning_rate": 1e-3})
    with pytest.raises(ConfigError, match="exceeds the 64 positions"):
        evaluate_glue(backbone, root, overrides={**QUICK, "max_len": 128})
    assert calls == [2, 2]  # no training happened for any of the bad calls


def _fake_metrics(monkeypatch, fail_at: int | None = None) -> list[int]:
    calls: list[int] = []

    def fake(backbone, head, num_labels, train, evals, score, primary, config, **kw):
        calls.append(config.seed)
        if fail_at is not None and len(calls) == fail_at:
            raise KeyboardInterrupt
        preds = [(i + config.seed) % max(num_labels, 2) for i in range(len(next(iter(evals.values()))))]
        if num_labels == 1:
            preds = [float(p) for p in preds]
        return {"metrics": {n: score(preds[: len(d)], d) for n, d in evals.items()}, "history": [], "steps": 1}

    monkeypatch.setattr(finetune_module, "finetune", fake)
    return calls


def test_results_resume_across_tasks_and_runs(tmp_path, monkeypatch):
    root = write_glue_tsv(tmp_path / "glue", ["SST-2", "STS-B", "MNLI"], n_train=8, n_dev=6)
    out = tmp_path / "res" / "glue.json"
    backbone = tiny_backbone(tmp=tmp_path)
    _fake_metrics(monkeypatch, fail_at=4)  # sst2 seeds 0-2 done, interrupted in the first run of stsb
    with pytest.raises(KeyboardInterrupt):
        evaluate_glue(backbone, root, out=out, seeds=3, overrides=QUICK)
    saved = json.loads(out.read_text())
    assert saved["tasks"]["sst2"]["status"] == "done" and "stsb" not in saved["tasks"]
    calls = _fake_metrics(monkeypatch)
    result = evaluate_glue(backbone, root, out=out, seeds=3, overrides=QUICK)
    assert calls == [0, 1, 2, 0, 1, 2]  # sst2 skipped; stsb and mnli with three seeds each
    mnli = result["tasks"]["mnli"]
    assert set(mnli["median"]) == {"matched", "mismatched"} and len(mnli["runs"]) == 3
    assert mnli["score"] == pytest.approx(
        (mnli["median"]["matched"]["accuracy"] + mnli["median"]["mismatched"]["accuracy"]) / 2
    )
    accs = sorted(r["metrics"]["matched"]["accuracy"] for r in mnli["runs"])
    assert mnli["median"]["matched"]["accuracy"] == accs[1]  # the median of three seeds
    scores = [result["tasks"][t]["score"] for t in ("sst2", "stsb", "mnli")]
    assert result["average"] == pytest.approx(sum(scores) / 3)

    # an interrupted task keeps its finished seeds: only the missing ones run again
    _fake_metrics(monkeypatch, fail_at=2)
    with pytest.raises(KeyboardInterrupt):
        evaluate_glue(backbone, root, out=out, tasks="rte,sst2", seeds=3, overrides={**QUICK, "epochs": 2})
    with pytest.raises(ConfigError):
        evaluate_glue(backbone, root, out=out, tasks="rte")  # not in the directory: nothing to do
    saved = json.loads(out.read_text())
    assert saved["tasks"]["sst2"]["status"] == "partial" and len(saved["tasks"]["sst2"]["runs"]) == 1
    calls = _fake_metrics(monkeypatch)
    again = evaluate_glue(backbone, root, out=out, tasks="sst2", seeds=3, overrides={**QUICK, "epochs": 2})
    assert calls == [1, 2]
    assert {k for k, v in again["tasks"].items() if v["status"] == "done"} == {"sst2", "stsb", "mnli"}  # one table
    # another model: the old results are not mixed in
    other = tiny_backbone(seed=1, tmp=tmp_path)
    other.source = "another-model"
    calls = _fake_metrics(monkeypatch)
    evaluate_glue(other, root, out=out, tasks="sst2", overrides=QUICK)
    assert calls == [0]


def test_grid_keeps_the_best_median_point(tmp_path, monkeypatch):
    root = write_glue_tsv(tmp_path / "glue", ["RTE"], n_train=8, n_dev=6)

    def fake(backbone, head, num_labels, train, evals, score, primary, config, **kw):
        good = config.lr == 2e-5 and config.batch_size == 32
        return {"metrics": {n: {"accuracy": 0.9 if good else 0.5, "score": 0.9 if good else 0.5} for n in evals}}

    monkeypatch.setattr(finetune_module, "finetune", fake)
    result = evaluate_glue(
        tiny_backbone(tmp=tmp_path),
        root,
        out=tmp_path / "g.json",
        grid=True,
        seeds=2,
        overrides={"device": "cpu", "max_len": 32},
    )
    rte = result["tasks"]["rte"]
    assert rte["config"]["lr"] == 2e-5 and rte["config"]["batch_size"] == 32 and rte["score"] == 0.9
    assert len(rte["grid"]) == 6 and len(rte["runs"]) == 12


def test_a_fixture_model_learns_sst2_and_results_are_deterministic(tmp_path):
    root = write_glue_tsv(tmp_path / "glue", ["SST-2"], n_train=128, n_dev=16)
    backbone = tiny_backbone(tmp=tmp_path)
    options = {**QUICK, "epochs": 4, "dropout": 0.0}
    a = evaluate_glue(backbone, root, out=tmp_path / "a" / "glue.json", overrides=options)
    b = evaluate_glue(backbone, root, out=tmp_path / "b" / "glue.json", overrides=options)
    sst2 = a["tasks"]["sst2"]
    assert sst2["median"]["dev"]["accuracy"] >= 0.9  # 'cat' vs 'dog' decides the label
    assert sst2["runs"][0]["metrics"] == b["tasks"]["sst2"]["runs"][0]["metrics"]
    history = sst2["runs"][0]["history"]
    assert [h["epoch"] for h in history] == [1, 2, 3, 4]  # one dev evaluation per epoch
    assert sst2["config"]["batch_size"] == 8 and sst2["train_examples"] == 128


def test_hf_directory_as_backbone(tmp_path):
    from bertkit.eval.finetune import load_backbone
    from bertkit.export.hf import export_hf

    backbone = tiny_backbone(tmp=tmp_path)
    tok_dir = tmp_path / "tok"
    tok_dir.mkdir()
    shutil.copy(tmp_path / "vocab.txt", tok_dir / "vocab.txt")
    export_hf(backbone.model, None, tmp_path / "hf", tok_dir)
    loaded = load_backbone(tmp_path / "hf")
    assert loaded.kind == "hf" and loaded.arch.name == "bert" and loaded.tokenizer.vocab_size == 64
    root = write_glue_tsv(tmp_path / "glue", ["WNLI"], n_train=8, n_dev=4)
    result = evaluate_glue(loaded, root, overrides=QUICK)
    assert result["out"] == str(tmp_path / "hf" / "eval" / "glue.json") and result["tasks"]["wnli"]["status"] == "done"
    with pytest.raises(ConfigError, match="--checkpoint applies to run directories"):
        load_backbone(tmp_path / "hf", checkpoint=tmp_path)


def test_cli_glue_on_a_run(tmp_path):
    from conftest import random_docs, tiny_train_config, write_fixture_dataset
    from typer.testing import CliRunner

    from bertkit.train.trainer import train
    from bertkit_cli import app

    ds = write_fixture_dataset(tmp_path / "ds", random_docs(40, seed=6), docs_per_shard=20)
    train(tiny_train_config(ds, tmp_path / "run", batch_size=4, max_steps=2, eval_every=0, checkpoint_every=2))
    root = write_glue_tsv(tmp_path / "glue", ["SST-2", "STS-B"], n_train=8, n_dev=4)
    runner = CliRunner()
    args = [
        "eval",
        "glue",
        str(tmp_path / "run"),
        "--data",
        str(root),
        "--tasks",
        "sst2,stsb,rte",
        "--max-len",
        "32",
        "--epochs",
        "1",
        "--device",
        "cpu",
        "--seeds",
        "2",
    ]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    saved = json.loads((tmp_path / "run" / "eval" / "glue.json").read_text())
    assert saved["source"]["kind"] == "run" and saved["source"]["step"] == 2 and list(saved["missing"]) == ["rte"]
    assert len(saved["tasks"]["stsb"]["runs"]) == 2 and "missing rte" in r.output
    assert "| model | SST-2 | STS-B | avg | avg w/o WNLI |" in (tmp_path / "run" / "eval" / "glue.md").read_text()
    r = runner.invoke(app, args)  # resumed: nothing to do
    assert r.exit_code == 0 and "done earlier, kept" in r.output
    (root / "SST-2" / "dev.tsv").write_text("sentence\tlabel\nthe cat\tnegative\n")
    r = runner.invoke(app, [*args, "--out", str(tmp_path / "other.json")])
    assert r.exit_code == 1 and "SST-2/dev.tsv:2: label 'negative' does not match task sst2" in r.output
    assert "Traceback" not in r.output and not (tmp_path / "other.json").exists()
