"""`bertkit eval msgs`: MSGS-style probing on handmade tasks in both layouts (the MSGS release and BabyLM's filtered
copies): fine-tuned through the shared classification path, Matthews correlations on the unambiguous test set
against the label and each feature, resumption, and clear errors for bad files."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from eval_fixtures import tiny_backbone  # noqa: E402

from bertkit.eval.metrics import matthews_corrcoef  # noqa: E402
from bertkit.eval.msgs import MSGS_CONFIG, evaluate_msgs, find_msgs_tasks, read_msgs_task  # noqa: E402
from bertkit.exceptions import ConfigError, FormatError  # noqa: E402

DATA = Path(__file__).parent / "data"
MSGS = DATA / "msgs"
BABYLM = DATA / "msgs_babylm"
QUICK = {"epochs": 3, "batch_size": 8, "lr": 1e-3, "device": "cpu", "max_len": 32}


def vocab() -> list[str]:
    words = set()
    for path in list(MSGS.rglob("*.jsonl")) + list(BABYLM.glob("*.json")):
        for line in path.read_text().splitlines():
            words.update(re.findall(r"\w+", json.loads(line)["sentence"]))
    return ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *sorted(words)]


@pytest.fixture
def backbone(tmp_path):
    return tiny_backbone(seed=0, vocab=vocab(), tmp=tmp_path)


def test_both_layouts_are_found():
    tasks = find_msgs_tasks(MSGS)
    assert list(tasks) == ["main_verb_control", "main_verb_lexical_content_the"]
    assert tasks["main_verb_control"].test.name == "test.jsonl"
    babylm = find_msgs_tasks(BABYLM)
    assert list(babylm) == ["lexical_content_the_control"]
    assert babylm["lexical_content_the_control"].test.name == "lexical_content_the_control.validation.json"
    sets = read_msgs_task(tasks["main_verb_lexical_content_the"])
    assert len(sets["train"]) == 16 and len(sets["test"]) == 8
    assert set(sets["features"]) == {"mcc_linguistic", "mcc_surface"}
    assert read_msgs_task(babylm["lexical_content_the_control"])["features"] == {}


def test_fine_tunes_and_scores_the_test_set(backbone, tmp_path):
    out = tmp_path / "msgs.json"
    result = evaluate_msgs(backbone, MSGS, out=out, overrides=QUICK)
    saved = json.loads(out.read_text())
    assert saved["tasks"].keys() == {"main_verb_control", "main_verb_lexical_content_the"}
    amb = saved["tasks"]["main_verb_lexical_content_the"]
    med = amb["median"]
    assert amb["status"] == "done" and amb["train_examples"] == 16 and amb["test_examples"] == 8
    # the test label is the linguistic feature; the surface feature disagrees with it on every test row, so the
    # correlation with it is exactly the opposite
    assert med["linguistic"]["mcc"] == med["test"]["mcc"]
    assert med["surface"]["mcc"] == pytest.approx(-med["test"]["mcc"])
    assert -1 <= med["test"]["mcc"] <= 1 and 0 <= med["test"]["accuracy"] <= 1
    # accuracy and MCC of the same predictions: on a balanced binary test set, MCC = 0 iff accuracy = 0.5
    assert (abs(med["test"]["accuracy"] - 0.5) < 1e-9) == (abs(med["test"]["mcc"]) < 1e-9)
    mccs = [t["median"]["test"]["mcc"] for t in saved["tasks"].values()]
    assert saved["average"] == pytest.approx(sum(mccs) / 2) == result["average"]
    assert amb["runs"][0]["config"]["lr"] == 1e-3 and amb["runs"][0]["config"]["seed"] == MSGS_CONFIG.seed
    md = out.with_suffix(".md").read_text()
    assert "| main_verb_lexical_content_the | 16 | 8 |" in md and "Mean test MCC" in md


def test_the_surface_control_in_babylm_layout_is_learnable(tmp_path):
    """A control task is unambiguous in training: with enough steps the tiny model learns 'contains the'."""
    backbone = tiny_backbone(seed=0, vocab=vocab(), tmp=tmp_path)
    result = evaluate_msgs(
        backbone, BABYLM, out=tmp_path / "r.json", overrides={**QUICK, "epochs": 30, "lr": 2e-3, "dropout": 0.0}
    )
    entry = result["tasks"]["lexical_content_the_control"]
    assert entry["median"]["test"]["mcc"] > 0.5, entry["median"]
    assert "linguistic" not in entry["median"]  # no feature columns in BabyLM's filtered files


def test_mcc_is_the_shared_metric():
    assert matthews_corrcoef([1, 1, 0, 0], [1, 1, 0, 0]) == 1.0
    assert matthews_corrcoef([1, 1, 0, 0], [0, 0, 1, 1]) == -1.0


def test_resume_keeps_finished_tasks(backbone, tmp_path, monkeypatch):
    import bertkit.eval.finetune as ft

    out = tmp_path / "msgs.json"
    real = ft.finetune
    calls: list[int] = []

    def interrupted(*args, **kwargs):
        if calls:
            raise KeyboardInterrupt
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(ft, "finetune", interrupted)
    with pytest.raises(KeyboardInterrupt):
        evaluate_msgs(backbone, MSGS, out=out, seeds=2, overrides=QUICK)
    partial = json.loads(out.read_text())
    assert partial["tasks"]["main_verb_control"]["status"] == "partial"
    assert len(partial["tasks"]["main_verb_control"]["runs"]) == 1
    assert partial["tasks"]["main_verb_lexical_content_the"]["status"] == "pending"
    monkeypatch.setattr(ft, "finetune", real)
    events: list[dict] = []
    result = evaluate_msgs(backbone, MSGS, out=out, seeds=2, overrides=QUICK, on_progress=events.append)
    assert all(t["status"] == "done" and len(t["runs"]) == 2 for t in result["tasks"].values())
    assert sum(e.get("event") == "run" for e in events) == 3  # of 4: the interrupted task's finished run was reused
    events.clear()
    evaluate_msgs(backbone, MSGS, out=out, seeds=2, overrides=QUICK, on_progress=events.append)
    assert [e["status"] for e in events if e.get("event") == "task"] == ["skipped", "skipped"]


def test_bad_input(backbone, tmp_path):
    with pytest.raises(ConfigError, match="max_len 128 exceeds the 64 positions of tiny-bert"):
        evaluate_msgs(backbone, MSGS, out=tmp_path / "r.json")  # checked before any file is read
    with pytest.raises(ConfigError, match="no MSGS tasks"):
        evaluate_msgs(backbone, tmp_path, out=tmp_path / "r.json", overrides=QUICK)
    with pytest.raises(ConfigError, match="MSGS directory not found"):
        evaluate_msgs(backbone, tmp_path / "none", out=tmp_path / "r.json", overrides=QUICK)
    with pytest.raises(ConfigError, match=r"unknown MSGS task\(s\) nope"):
        evaluate_msgs(backbone, MSGS, tasks="nope", out=tmp_path / "r.json", overrides=QUICK)
    with pytest.raises(ConfigError, match="would choose on the test set"):
        evaluate_msgs(backbone, MSGS, out=tmp_path / "r.json", overrides={**QUICK, "select": "best"})

    data = tmp_path / "msgs"
    shutil.copytree(MSGS, data)
    (data / "main_verb_control" / "test.jsonl").unlink()
    with pytest.raises(FormatError, match=r"main_verb_control: train\.jsonl but no test\.jsonl"):
        evaluate_msgs(backbone, data, out=tmp_path / "r.json", overrides=QUICK)
    shutil.rmtree(data / "main_verb_control")
    path = data / "main_verb_lexical_content_the" / "test.jsonl"
    lines = path.read_text().splitlines()
    path.write_text("\n".join([lines[0], lines[1].replace('"label": 1', '"label": 2')]) + "\n")
    with pytest.raises(FormatError, match=r"test\.jsonl:2: label '2' is not 0 or 1"):
        evaluate_msgs(backbone, data, out=tmp_path / "r.json", overrides=QUICK)
    row = json.loads(lines[1])
    del row["surface_feature_label"]
    path.write_text("\n".join([lines[0], json.dumps(row)]) + "\n")
    with pytest.raises(FormatError, match=r"test\.jsonl:2: no 'surface_feature_label'"):
        evaluate_msgs(backbone, data, out=tmp_path / "r.json", overrides=QUICK)
    path.write_text("\n".join([lines[0], '{"sentence": "", "label": 1}']) + "\n")
    with pytest.raises(FormatError, match=r"test\.jsonl:2: field 'sentence' is empty"):
        evaluate_msgs(backbone, data, out=tmp_path / "r.json", overrides=QUICK)
    assert not (tmp_path / "r.json").exists()


def test_cli_on_an_hf_directory(backbone, tmp_path):
    from typer.testing import CliRunner

    from bertkit.export.hf import export_hf
    from bertkit_cli import app

    tok = tmp_path / "tok"
    tok.mkdir()
    (tok / "vocab.txt").write_text("\n".join(vocab()) + "\n")
    hf = export_hf(backbone.model, None, tmp_path / "hf", tok)
    args = ["eval", "msgs", str(hf), "--data", str(MSGS), "--tasks", "main_verb_lexical_content_the"]
    result = CliRunner().invoke(app, [*args, "--epochs", "1", "--max-len", "32", "--device", "cpu", "-q"])
    assert result.exit_code == 0, result.output
    saved = json.loads((hf / "eval" / "msgs.json").read_text())
    assert list(saved["tasks"]) == ["main_verb_lexical_content_the"] and saved["source"]["kind"] == "hf"
    assert "Mean test MCC" in result.output
    bad = CliRunner().invoke(app, [*args, "--epochs", "0"])
    assert bad.exit_code == 1 and "epochs must be a positive integer" in bad.output


def test_json_files_are_json_lines_or_an_array(tmp_path):
    """BabyLM's `.json` files are JSON Lines (what `datasets.load_dataset("json")` reads); an array works too."""
    from bertkit.eval.tasks import read_classification

    lines = tmp_path / "a.json"
    lines.write_text('{"sentence": "the cat", "label": 1}\n{"sentence": "a dog", "label": 0}\n')
    array = tmp_path / "b.json"
    array.write_text('[{"sentence": "the cat", "label": 1},\n {"sentence": "a dog", "label": 0}]\n')
    for path in (lines, array):
        examples = read_classification(path, text_field="sentence")
        assert [(e.text, e.label, e.line) for e in examples] == [("the cat", "1", 1), ("a dog", "0", 2)]
    array.write_text('[{"sentence": "the cat", "label": 1}, 3]')
    with pytest.raises(FormatError, match=r"b\.json: record 2: expected a JSON object"):
        read_classification(array, text_field="sentence")
