"""Resuming and extending a run from its directory alone: the saved config, overrides, refusals by name, the
extension rule of ``--max-steps N --resume`` and ``--config RUN/config.json``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bertkit.exceptions import ConfigError
from bertkit.train.config import TrainConfig, extension_of, resume_config
from bertkit.train.schedules import lr_factor

runner = CliRunner()


def records(run: Path, kind: str) -> list[dict]:
    return [r for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if r["kind"] == kind]


# ------------------------------------------------------------------------------------ the rule, without torch


def test_extend_keeps_warmup_steps_and_phase_switches():
    phases = [{"fraction": 0.7, "seq_len": 64, "batch_size": 8}, {"fraction": 0.3, "seq_len": 128, "batch_size": 4}]
    base = TrainConfig(max_steps=100, warmup=0.1, phases=phases)
    ext = base.extend(200)
    assert ext.max_steps == 200 and ext.warmup == 10 and ext.warmup_steps() == 10
    assert ext.phase_starts() == [0, 70] and [p.seq_len for p in ext.resolved_phases()] == [64, 128]
    switched = TrainConfig(max_steps=100, batch_size=8, long_after=0.9).extend(150)
    assert switched.phase_starts() == [0, 90]
    # one-cycle without warmup rises over half the run: the peak keeps its step
    assert TrainConfig(max_steps=100, schedule="one-cycle", warmup=0).extend(300).warmup == 50
    # the decay is stretched: from the old end on, the lr is the one of a run planned for the new length
    f = [lr_factor(s, schedule="linear", warmup=ext.warmup_steps(), max_steps=200) for s in (100, 150, 199)]
    assert f == pytest.approx([1 - 90 / 190, 1 - 140 / 190, 1 - 189 / 190], rel=1e-9)


def test_extension_of_accepts_the_plain_and_the_extended_form():
    saved = TrainConfig(max_steps=40, warmup=0.25).to_dict()
    plain = TrainConfig(max_steps=80, warmup=0.25)  # the same TOML with another max_steps
    done = TrainConfig.from_dict(saved).extend(80)
    assert extension_of(saved, plain).to_dict() == done.to_dict()
    assert extension_of(saved, done).to_dict() == done.to_dict()
    assert extension_of(saved, TrainConfig(max_steps=40, warmup=0.25)) is None  # not an extension
    assert extension_of(saved, TrainConfig(max_steps=80, warmup=3)) is None  # another warmup: a real difference


def test_resume_config_reads_the_run_and_refuses_by_name(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    TrainConfig(data="ds", out=str(run), preset="tiny", lr=1e-3, max_steps=30, model={"variant": "x"}).save_json(
        run / "config.json"
    )
    cfg = resume_config(run, {"log_every": 7, "lr": 1e-3, "data": "moved/ds", "max_steps": None})
    assert (cfg.preset, cfg.lr, cfg.max_steps, cfg.log_every, cfg.data) == ("tiny", 1e-3, 30, 7, "moved/ds")
    assert resume_config(run, {"max_steps": 60}).max_steps == 60
    with pytest.raises(ConfigError) as e:
        resume_config(run, {"lr": 5e-4, "seq_len": 64, "model": {"variant": "y"}})
    text = str(e.value)
    assert "lr (saved 0.001, given 0.0005)" in text and "seq_len" in text and "model.variant" in text
    assert "config.json --out NEW" in text
    with pytest.raises(ConfigError, match="no config.json"):
        resume_config(tmp_path / "empty")


def test_config_reads_a_saved_config_json(tmp_path):
    cfg = TrainConfig(data="ds", preset="small", lr=3e-4, phases=[{"fraction": 1.0, "seq_len": 64, "batch_size": 2}])
    cfg.save_json(tmp_path / "config.json")
    again = TrainConfig.from_file(tmp_path / "config.json", {"out": "new", "lr": 1e-3})
    assert again.to_dict() == {**cfg.to_dict(), "out": "new", "lr": 1e-3}
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ConfigError, match="bad.json"):
        TrainConfig.from_file(tmp_path / "bad.json")
    (tmp_path / "odd.json").write_text('{"learning_rate": 1}')
    with pytest.raises(ConfigError, match="learning_rate"):
        TrainConfig.from_file(tmp_path / "odd.json")


# ------------------------------------------------------------------------------------------ real runs (torch)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    pytest.importorskip("torch")
    pytest.importorskip("bertkit._core")
    from conftest import random_docs, write_fixture_dataset

    return write_fixture_dataset(tmp_path_factory.mktemp("data") / "ds", random_docs(200, seed=3), docs_per_shard=50)


def _app():
    from bertkit_cli import app

    return app


def _first_run(dataset: Path, run: Path, *extra: str):
    args = ["train", "--preset", "tiny", "--data", str(dataset), "--out", str(run), "--max-steps", "6",
            "--batch-size", "4", "--seq-len", "32", "--device", "cpu", "--eval-every", "0", "--log-every", "1",
            "--lr", "2e-3", "--warmup", "0.5", "--checkpoint-every", "0", "-q", *extra]  # fmt: skip
    result = runner.invoke(_app(), args)
    assert result.exit_code == 0, result.output
    return result


def test_cli_resume_from_the_run_alone_and_extend(dataset, tmp_path):
    run = tmp_path / "run"
    _first_run(dataset, run)
    # the run alone: no --data, no architecture, no model flags
    same = runner.invoke(_app(), ["train", "--out", str(run), "--resume", "-q"])
    assert same.exit_code == 0, same.output
    refused = runner.invoke(_app(), ["train", "--out", str(run), "--resume", "--lr", "1e-2", "--seq-len", "64"])
    assert refused.exit_code == 1 and "lr (saved 0.002, given 0.01)" in refused.output and "seq_len" in refused.output
    assert "Traceback" not in refused.output
    longer = runner.invoke(_app(), ["train", "--out", str(run), "--resume", "--max-steps", "10", "--log-every", "2"])
    assert longer.exit_code == 0, longer.output
    assert "stretched" in longer.output and "10 steps" in longer.output
    recs = records(run, "train")
    lrs = {r["step"]: r["lr"] for r in recs}
    # steps 1..6 kept their lr; step 8 and 10 (the lr of the updates at steps 7 and 9) follow the stretched decay
    # with the warmup of the first session (3 steps)
    for step in (8, 10):
        expected = 2e-3 * lr_factor(step - 1, schedule="linear", warmup=3, max_steps=10)
        assert lrs[step] == pytest.approx(expected, rel=1e-6)
    saved = json.loads((run / "config.json").read_text())
    assert saved["max_steps"] == 10 and saved["warmup"] == 3 and saved["log_every"] == 2
    shorter = runner.invoke(_app(), ["train", "--out", str(run), "--resume", "--max-steps", "8"])
    assert shorter.exit_code == 1 and "below step 10" in shorter.output


def test_resumed_extension_equals_the_planned_schedule_from_there(dataset, tmp_path):
    """6 steps, then extended to 10: the learning rate of the last 4 updates equals that of a run given the
    extended config (warmup 3 steps, 10 steps) from the start."""
    run, planned = tmp_path / "run", tmp_path / "planned"
    _first_run(dataset, run)
    result = runner.invoke(_app(), ["train", "--out", str(run), "--resume", "--max-steps", "10", "-q"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(_app(), ["train", "--config", str(run / "config.json"), "--out", str(planned), "-q"])
    assert result.exit_code == 0, result.output
    a = {r["step"]: r["lr"] for r in records(run, "train")}
    b = {r["step"]: r["lr"] for r in records(planned, "train")}
    assert [a[s] for s in range(7, 11)] == pytest.approx([b[s] for s in range(7, 11)], rel=1e-9)
    assert json.loads((planned / "config.json").read_text())["warmup"] == 3


def test_resume_needs_out_and_a_run(tmp_path):
    no_out = runner.invoke(_app(), ["train", "--resume"])
    assert no_out.exit_code == 1 and "--resume needs --out" in no_out.output
