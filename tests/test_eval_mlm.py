"""`bertkit eval mlm`: a tiny CPU run evaluated from its checkpoint (the trainer's figures reproduced), predictions
rendered beside the original text, and clear errors for runs without checkpoints and foreign datasets."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("bertkit._core")

from conftest import TINY_VOCAB, random_docs, tiny_train_config, write_fixture_dataset  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from bertkit.eval import evaluate_mlm, format_predictions  # noqa: E402
from bertkit.exceptions import ConfigError, FormatError  # noqa: E402
from bertkit.train.config import TrainConfig  # noqa: E402
from bertkit.train.trainer import train  # noqa: E402
from bertkit_cli import app  # noqa: E402

runner = CliRunner()


def run_config(dataset: Path, out: Path, **kw) -> TrainConfig:
    return tiny_train_config(
        dataset,
        out,
        **{
            "batch_size": 8,
            "max_steps": 8,
            "lr": 2e-3,
            "warmup": 2,
            "eval_every": 8,
            "eval_batches": 3,
            "checkpoint_every": 4,
            "log_every": 4,
            "model": {"hidden_dropout_prob": 0.0},
            **kw,
        },
    )


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A dataset of about 2,600 tokens and an 8-step tiny run on it (checkpoints at steps 4 and 8)."""
    root = tmp_path_factory.mktemp("evalmlm")
    ds = write_fixture_dataset(root / "ds", random_docs(300, seed=1), docs_per_shard=50)
    summary = train(run_config(ds, root / "run"))
    return ds, root / "run", summary


def test_reproduces_the_trainers_last_evaluation(trained):
    ds, run, summary = trained
    result = evaluate_mlm(run, ds, batches=3)
    assert result["step"] == 8 and result["checkpoint"].endswith("ckpt-000008")
    for key in ("mlm_loss", "mlm_accuracy", "masked_tokens", "perplexity"):
        assert result[key] == pytest.approx(summary.eval[key], rel=1e-6), key
    assert result["perplexity"] == pytest.approx(torch.tensor(result["mlm_loss"]).exp().item(), rel=1e-6)
    saved = json.loads((run / "eval_mlm.json").read_text())
    assert saved["mlm_loss"] == result["mlm_loss"] and saved["split"] == "eval" and saved["view"] == "mlm"


def test_whole_split_seed_and_train_split(trained):
    ds, run, _ = trained
    whole = evaluate_mlm(run, ds, write=False)
    one = evaluate_mlm(run, ds, batches=1, write=False)
    assert whole["batches"] >= 2 and one["batches"] == 1 and whole["masked_tokens"] > one["masked_tokens"]
    other = evaluate_mlm(run, ds, seed=7, write=False)
    assert other["seed"] == 7 and other["mlm_loss"] != whole["mlm_loss"]  # other masks
    assert evaluate_mlm(run, ds, seed=7, write=False)["mlm_loss"] == other["mlm_loss"]  # deterministic
    on_train = evaluate_mlm(run, ds, split="train", batches=2, write=False)
    assert on_train["split"] == "train" and on_train["batches"] == 2 and on_train["masked_tokens"] > 0


def test_an_older_checkpoint(trained):
    ds, run, _ = trained
    ckpt4 = run / "checkpoints" / "ckpt-000004"
    old = evaluate_mlm(run, ds, checkpoint=ckpt4, write=False)
    new = evaluate_mlm(run, ds, write=False)
    assert old["step"] == 4 and old["mlm_loss"] != new["mlm_loss"]


def test_shown_examples_match_the_masks(trained):
    ds, run, _ = trained
    result = evaluate_mlm(run, ds, batches=1, show=3, write=False)
    examples = result["examples"]
    assert len(examples) == 3
    marks = [m for e in examples for m in __import__("re").findall(r"\[[^\[\]]+→[^\[\]]+\]", e)]
    # 15 % of the 8·32 tokens of the batch, minus specials; the first 3 rows hold about 3/8 of them
    assert 3 <= len(marks) <= 30
    for m in marks:
        assert ("✓" in m) != ("✗" in m)
    assert all(e.startswith("[CLS] ") and e.endswith("[SEP]") for e in examples)


def test_format_predictions_marks_hits_and_misses():
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "cat", "sat", "on", "mat", "rug", "wood", "##burn"]
    ids = [2, 5, 4, 7, 8, 5, 4, 3, 0, 0]  # [CLS] the [MASK] sat on the [MASK] [SEP] [PAD] [PAD]
    line = format_predictions(vocab, ids, [2, 6], [6, 9], [6, 10])
    assert line == "[CLS] the [MASK→cat ✓] sat on the [MASK→rug ✗ mat] [SEP]"
    # a random replacement is shown as the model saw it; continuation pieces glue to their word
    ids = [2, 11, 4, 5, 10, 12, 3]  # [CLS] wood [MASK] the rug ##burn [SEP]
    line = format_predictions(vocab, ids, [2, 4], [12, 9], [12, 9])
    assert line == "[CLS] wood[MASK→##burn ✓] the [rug→mat ✓]burn [SEP]"
    coloured = format_predictions(vocab, [5, 4], [1], [6], [7], markup=True)
    assert coloured == "the [red]\\[MASK→sat ✗ cat][/red]"
    with pytest.raises(ValueError):
        format_predictions(vocab, ids, [1], [], [])


def test_cli_prints_the_table_and_examples(trained):
    ds, run, _ = trained
    result = runner.invoke(app, ["eval", "mlm", str(run), "--data", str(ds), "--show", "2", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    out = result.output
    for needle in ("MLM loss", "perplexity", "MLM accuracy", "example 1", "example 2", "→", "eval_mlm.json"):
        assert needle in out, needle
    saved = json.loads((run / "eval_mlm.json").read_text())
    assert len(saved["examples"]) == 2 and f"{saved['mlm_loss']:.4f}" in out
    as_json = runner.invoke(app, ["eval", "mlm", str(run), "--batches", "1", "--json", "--device", "cpu"])
    assert as_json.exit_code == 0, as_json.output
    assert '"mlm_accuracy"' in as_json.output  # the run's own dataset by default


def test_nsp_view_reports_nsp_accuracy(tmp_path):
    docs = random_docs(120, seed=4)
    ds = write_fixture_dataset(tmp_path / "ds", [d + d for d in docs], docs_per_shard=40)
    train(run_config(ds, tmp_path / "run", view="nsp", max_steps=3, eval_every=0, checkpoint_every=0))
    result = evaluate_mlm(tmp_path / "run", ds, show=1)
    assert 0.0 <= result["nsp_accuracy"] <= 1.0 and result["nsp_loss"] > 0 and result["view"] == "nsp"
    assert "[PAD]" not in result["examples"][0]


def test_run_without_a_checkpoint_is_a_clear_error(trained, tmp_path):
    ds, _, _ = trained
    empty = tmp_path / "empty-run"
    (empty / "checkpoints" / "ckpt-000003").mkdir(parents=True)  # interrupted mid-write: no COMPLETE marker
    with pytest.raises(ConfigError, match="no complete checkpoint") as e:
        evaluate_mlm(empty, ds)
    assert str(empty) in str(e.value)
    with pytest.raises(ConfigError, match="run directory not found"):
        evaluate_mlm(tmp_path / "nope", ds)
    with pytest.raises(ConfigError, match="not a complete checkpoint"):
        evaluate_mlm(empty, ds, checkpoint=empty / "checkpoints" / "ckpt-000003")
    result = runner.invoke(app, ["eval", "mlm", str(empty), "--data", str(ds)])
    assert result.exit_code == 1 and "no complete checkpoint" in result.output and "Traceback" not in result.output


def test_dataset_with_another_vocabulary(trained, tmp_path):
    ds, run, _ = trained
    vocab = TINY_VOCAB[:5] + [f"x{i}" for i in range(5, 64)]  # same size, other tokens
    other = write_fixture_dataset(tmp_path / "other", random_docs(300, seed=1), docs_per_shard=50, vocab=vocab)
    with pytest.raises(FormatError, match="vocabulary") as e:
        evaluate_mlm(run, other)
    assert str(other) in str(e.value) and str(ds) in str(e.value)
    bigger = TINY_VOCAB + [f"y{i}" for i in range(40)]
    big = write_fixture_dataset(tmp_path / "big", random_docs(300, seed=1), docs_per_shard=50, vocab=bigger)
    result = runner.invoke(app, ["eval", "mlm", str(run), "--data", str(big)])
    assert result.exit_code == 1 and "vocab" in result.output and str(big) in result.output


def test_moved_training_data_falls_back_to_the_size_check(trained, tmp_path):
    ds, run, _ = trained
    copy = tmp_path / "run-copy"
    shutil.copytree(run, copy)
    cfg_path = next((copy / "checkpoints").glob("ckpt-000008")) / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["data"] = str(tmp_path / "gone")
    cfg_path.write_text(json.dumps(cfg))
    assert evaluate_mlm(copy, ds, batches=1, write=False)["masked_tokens"] > 0
    with pytest.raises(ConfigError, match="dataset directory not found"):
        evaluate_mlm(copy)  # no --data and the run's dataset is gone
    small = write_fixture_dataset(tmp_path / "small", random_docs(300, seed=1, vocab_size=40), vocab=TINY_VOCAB[:40])
    with pytest.raises(FormatError, match="vocab_size 40"):
        evaluate_mlm(copy, small)
