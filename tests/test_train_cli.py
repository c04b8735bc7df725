"""`bertkit train`: flags → TrainConfig (patched heavy call), errors without tracebacks, one real tiny CPU run."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from bertkit_cli import app

runner = CliRunner()


@pytest.fixture
def captured(monkeypatch):
    pytest.importorskip("torch")
    import bertkit.train.trainer as trainer

    calls = []

    def fake_train(config, on_event=None, *, resume=False):
        calls.append((config, resume))
        on_event(
            {
                "event": "start",
                "run_dir": config.out,
                "parameters": 1,
                "device": "cpu",
                "world_size": 1,
                "step": 0,
                "max_steps": config.max_steps,
            }
        )
        on_event({"event": "log", "step": 1, "loss": 1.0, "lr": 1e-3, "tokens_per_s": 10.0, "mfu": 0.3})
        return trainer.TrainSummary(
            run_dir=config.out,
            step=config.max_steps,
            steps_this_session=config.max_steps,
            final_loss=1.25,
            eval=None,
            checkpoint=None,
        )

    monkeypatch.setattr(trainer, "train", fake_train)
    return calls


def test_flags_become_the_config(captured, tmp_path):
    result = runner.invoke(
        app,
        [
            "train",
            "--arch",
            "bert",
            "--preset",
            "tiny",
            "--data",
            str(tmp_path / "ds"),
            "--out",
            str(tmp_path / "r"),
            "--max-steps",
            "7",
            "--batch-size",
            "3",
            "--seq-len",
            "64",
            "--lr",
            "0.002",
            "--view",
            "nsp",
            "--compile",
            "--warmup",
            "5",
            "--resume",
            "--init-from",
            str(tmp_path / "hf"),
        ],
    )
    assert result.exit_code == 0, result.output
    ((config, resume),) = captured
    assert resume is True
    assert (config.arch, config.preset, config.max_steps) == ("bert", "tiny", 7)
    assert (config.batch_size, config.seq_len) == (3, 64)
    assert (config.lr, config.view, config.compile, config.warmup) == (0.002, "nsp", True, 5)
    assert config.data == str(tmp_path / "ds") and config.init_from == str(tmp_path / "hf")
    assert "done" in result.output and "1.2500" in result.output


def test_flags_override_the_toml_file(captured, tmp_path):
    toml = tmp_path / "run.toml"
    toml.write_text('preset = "small"\nlr = 0.5\nmax_steps = 99\nwarmup = 0.1\n')
    result = runner.invoke(app, ["train", "--data", "d", "--out", "o", "--config", str(toml), "--lr", "0.25"])
    assert result.exit_code == 0, result.output
    ((config, resume),) = captured
    assert (config.preset, config.lr, config.max_steps, config.warmup, resume) == ("small", 0.25, 99, 0.1, False)


def test_unknown_toml_key_is_a_one_line_error(captured, tmp_path):
    toml = tmp_path / "run.toml"
    toml.write_text("learning_rate = 0.1\n")
    result = runner.invoke(app, ["train", "--data", "d", "--out", "o", "--config", str(toml)])
    assert result.exit_code == 1
    assert "learning_rate" in result.output and "Traceback" not in result.output and not captured


def test_bad_choice_is_a_usage_error_listing_the_choices(captured):
    result = runner.invoke(app, ["train", "--data", "d", "--out", "o", "--optimizer", "sgd"])
    assert result.exit_code == 2 and all(w in result.output for w in ("--optimizer", "'sgd'", "'adamw'", "'lamb'"))
    assert not captured and "Traceback" not in result.output


def test_real_tiny_run_on_cpu(tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("bertkit._core")
    from conftest import random_docs, write_fixture_dataset

    ds = write_fixture_dataset(tmp_path / "ds", random_docs(200, seed=2), docs_per_shard=50)
    args = [
        "train",
        "--preset",
        "tiny",
        "--data",
        str(ds),
        "--out",
        str(tmp_path / "run"),
        "--max-steps",
        "3",
        "--batch-size",
        "4",
        "--seq-len",
        "32",
        "--device",
        "cpu",
        "--eval-every",
        "0",
        "--log-every",
        "1",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "run" / "checkpoints" / "ckpt-000003" / "COMPLETE").is_file()
    # a second run into the same directory without --resume is refused with a clear message
    again = runner.invoke(app, args)
    assert again.exit_code == 1 and "--resume" in again.output
    resumed = runner.invoke(app, [*args, "--resume"])
    assert resumed.exit_code == 0, resumed.output


def test_missing_dataset_is_a_clear_error(tmp_path):
    pytest.importorskip("torch")
    result = runner.invoke(
        app,
        [
            "train",
            "--preset",
            "tiny",
            "--data",
            str(tmp_path / "nope"),
            "--out",
            str(tmp_path / "run"),
            "--device",
            "cpu",
        ],
    )
    assert result.exit_code == 1 and "nope" in result.output and "Traceback" not in result.output
