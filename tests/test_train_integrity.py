"""Run-side integrity (issue 18): the run directory's lock, checkpoints that prove themselves (checksums, fallback
to the previous intact one, NaN weights = a corrupt checkpoint, a damaged trainer state), safetensors weights with
old runs still loading, metrics.jsonl that survives kill -9 and a full disk, and clean start-up failures."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("bertkit._core")

from ckpt_helpers import flip_byte, make_legacy, rerecord  # noqa: E402
from conftest import random_docs, tiny_train_config, write_fixture_dataset  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from bertkit.exceptions import Cancelled, FormatError  # noqa: E402
from bertkit.locks import LOCK_NAME, OutputLockedError  # noqa: E402
from bertkit.train import checkpoint as ck  # noqa: E402
from bertkit.train import trainer as trainer_mod  # noqa: E402
from bertkit.train.metrics import plot_loss_curve, read_metrics  # noqa: E402
from bertkit.train.trainer import train  # noqa: E402
from bertkit_cli import app  # noqa: E402

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return write_fixture_dataset(tmp_path_factory.mktemp("data") / "ds", random_docs(300, seed=1), docs_per_shard=50)


def config(dataset: Path, out: Path, **kw):
    return tiny_train_config(
        dataset, out, **{"batch_size": 8, "max_steps": 8, "lr": 1e-3, "warmup": 2, "eval_every": 0,
                         "checkpoint_every": 3, "log_every": 1, **kw}
    )  # fmt: skip


def train_steps(run: Path) -> list[int]:
    return [r["step"] for r in read_metrics(run / "metrics.jsonl") if r["kind"] == "train"]


def train_losses(run: Path) -> list[float]:
    return [r["loss"] for r in read_metrics(run / "metrics.jsonl") if r["kind"] == "train"]


def same_weights(a: Path, b: Path) -> bool:
    x, y = ck.load_model_state(a), ck.load_model_state(b)
    return x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)


def stop_at(step: int):
    def on_event(event):
        if event["event"] == "step" and event["step"] == step:
            raise KeyboardInterrupt

    return on_event


@pytest.fixture(scope="module")
def straight(dataset, tmp_path_factory):
    """8 uninterrupted steps (checkpoints at 3, 6, 8)."""
    return train(config(dataset, tmp_path_factory.mktemp("straight") / "run"))


@pytest.fixture(scope="module")
def stopped(dataset, tmp_path_factory) -> Path:
    """The same run stopped after step 6: checkpoints ckpt-000003 and ckpt-000006 (copy it before damaging it)."""
    run = tmp_path_factory.mktemp("stopped") / "run"
    summary = train(config(dataset, run), on_event=stop_at(6))
    assert summary.interrupted and [p.name for p in ck.list_checkpoints(run)] == ["ckpt-000003", "ckpt-000006"]
    return run


def copy_run(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


# ------------------------------------------------------------------------------------------------ 1. the lock

_HOLD = textwrap.dedent(
    """
    import sys, time
    from bertkit.locks import output_lock
    with output_lock(sys.argv[1], purpose="bertkit train --out elsewhere"):
        print("held", flush=True)
        time.sleep(60)
    """
)


def test_a_second_train_into_a_running_run_dir_is_refused(dataset, tmp_path):
    """Today two `train --out SAME` both write checkpoints and metrics into one directory."""
    run = tmp_path / "run"
    refused = []

    def second_writer(event):
        if event["event"] == "step" and event["step"] == 2 and not refused:
            with pytest.raises(OutputLockedError, match=rf"{run}: another bertkit process .*pid {os.getpid()}") as e:
                train(config(dataset, run), resume=True)
            refused.append(str(e.value))

    summary = train(config(dataset, run), on_event=second_writer)
    assert refused and summary.step == 8 and train_steps(run) == list(range(1, 9))  # the first run was untouched
    assert not (run / LOCK_NAME).exists()  # released when the run ended


def test_the_cli_names_the_holders_pid_and_writes_nothing(dataset, tmp_path):
    run = tmp_path / "run"
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD, str(run)], stdout=subprocess.PIPE, text=True, env={**os.environ}, cwd=ROOT
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        args = ["train", "--preset", "tiny", "--data", str(dataset), "--out", str(run), "--max-steps", "2",
                "--batch-size", "8", "--seq-len", "32", "--device", "cpu", "-q"]  # fmt: skip
        result = runner.invoke(app, args)
        assert result.exit_code == 1 and f"pid {holder.pid}" in result.output, result.output
        assert "Traceback" not in result.output
        assert sorted(p.name for p in run.iterdir()) == [LOCK_NAME]  # nothing of the refused run
    finally:
        holder.kill()
        holder.wait()
    # the holder died without releasing: the next train takes the lock over and runs
    assert runner.invoke(app, args).exit_code == 0
    assert not (run / LOCK_NAME).exists() and ck.latest(run).name == "ckpt-000002"


def test_the_lock_is_released_when_training_fails(dataset, tmp_path, monkeypatch):
    run = tmp_path / "run"

    def explode(*a, **k):
        raise RuntimeError("boom in the loop")

    monkeypatch.setattr(trainer_mod._Batcher, "__call__", explode)
    with pytest.raises(RuntimeError, match="boom"):
        train(config(dataset, run))
    assert not (run / LOCK_NAME).exists()
    monkeypatch.undo()
    assert train(config(dataset, run, max_steps=2)).step == 2


# ------------------------------------------------------------------------------ 2. checkpoints prove themselves


def test_checkpoint_meta_records_every_file(straight):
    ckpt = straight.checkpoint
    files = ck.read_meta(ckpt)["files"]
    assert sorted(files) == ["config.json", "model.safetensors", "optimizer.pt", "trainer.pt"]
    for name, rec in files.items():
        assert rec == {"size": (ckpt / name).stat().st_size, "xxh3": ck.file_digest(ckpt / name)}
    assert ck.verify_files(ckpt) == [] and ck.check_checkpoint(ckpt) == []


@pytest.mark.parametrize("name", ["model.safetensors", "optimizer.pt", "trainer.pt"])
def test_a_flipped_byte_in_the_latest_checkpoint_falls_back_to_the_previous(stopped, straight, dataset, tmp_path, name):
    """Today a flipped byte in model.pt / optimizer.pt is loaded silently (36 of 48 tensors then differ from the
    uninterrupted run) and one in trainer.pt is an OverflowError traceback from restore_rng."""
    run = copy_run(stopped, tmp_path / "run")
    flip_byte(run / "checkpoints" / "ckpt-000006" / name, 0.6)
    problems = ck.check_checkpoint(run / "checkpoints" / "ckpt-000006")
    assert len(problems) == 1 and f"ckpt-000006/{name}: checksum mismatch" in problems[0]
    events = []
    resumed = train(config(dataset, run), on_event=events.append, resume=True)
    warnings = [e["message"] for e in events if e["event"] == "warning"]
    assert len(warnings) == 1 and "ckpt-000006 is corrupt" in warnings[0] and name in warnings[0]
    assert "ckpt-000003" in warnings[0] and any("ckpt-000006 is corrupt" in n for n in resumed.notes)
    assert next(e for e in events if e["event"] == "resumed")["step"] == 3
    # the resumed run equals the uninterrupted run from ckpt-000003 on: weights, losses, and each step logged once
    assert resumed.step == 8 and resumed.final_loss == straight.final_loss
    assert same_weights(straight.checkpoint, resumed.checkpoint)
    assert train_steps(run) == list(range(1, 9)) and train_losses(run) == train_losses(straight.run_dir)
    names = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert names == ["ckpt-000003", "ckpt-000006", "ckpt-000006.corrupt", "ckpt-000008"]  # kept for inspection
    assert ck.check_checkpoint(run / "checkpoints" / "ckpt-000006") == []  # written again, intact


def test_nan_weights_are_a_corrupt_checkpoint_not_a_learning_rate_problem(stopped, straight, tmp_path, dataset):
    """Today a NaN in the weights ends in NonFiniteLossError, 'Lower the learning rate'."""
    run = copy_run(stopped, tmp_path / "run")
    ckpt = run / "checkpoints" / "ckpt-000006"
    state = ck.load_model_state(ckpt)
    state["bert.encoder.layer.0.attention.self.query.weight"][0, 0] = float("nan")
    ck.save_model_state(state, ckpt / "model.safetensors")
    rerecord(ckpt, "model.safetensors")  # intact file, damaged weights (saved so, or a checkpoint without checksums)
    with pytest.raises(FormatError, match=r"corrupt checkpoint: .*query.weight holds 1 NaN/inf"):
        ck.load_model_state(ckpt)
    resumed = train(config(dataset, run), resume=True)
    assert any("ckpt-000006 is corrupt" in n and "NaN" in n for n in resumed.notes)
    assert same_weights(straight.checkpoint, resumed.checkpoint)
    # the readers of a run (eval, export) refuse it by name too
    from bertkit.eval import load_run

    with pytest.raises(FormatError, match="ckpt-000006.corrupt/model.safetensors: tensor .* NaN"):
        load_run(run, run / "checkpoints" / "ckpt-000006.corrupt")


def test_every_checkpoint_corrupt_refuses_the_resume(stopped, tmp_path, dataset):
    run = copy_run(stopped, tmp_path / "run")
    flip_byte(run / "checkpoints" / "ckpt-000006" / "optimizer.pt")
    flip_byte(run / "checkpoints" / "ckpt-000003" / "model.safetensors")
    before = sorted(p.name for p in run.rglob("*"))
    with pytest.raises(FormatError, match=r"cannot resume: no intact checkpoint") as e:
        train(config(dataset, run), resume=True)
    assert "ckpt-000006: " in str(e.value) and "optimizer.pt" in str(e.value)
    assert "ckpt-000003: " in str(e.value) and "model.safetensors" in str(e.value)
    assert sorted(p.name for p in run.rglob("*")) == before  # nothing renamed, nothing written
    args = ["train", "--preset", "tiny", "--data", str(dataset), "--out", str(run), "--resume", "--max-steps", "8",
            "--batch-size", "8", "--seq-len", "32", "--device", "cpu", "--checkpoint-every", "3", "--warmup", "2",
            "--lr", "1e-3", "--eval-every", "0", "--log-every", "1", "-q"]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 1 and "no intact checkpoint" in result.output and "Traceback" not in result.output


def test_a_damaged_rng_state_is_a_format_error_not_an_overflow(stopped, tmp_path):
    """A trainer.pt of a checkpoint without checksums whose numpy key word overflows uint32 (what a flipped high
    byte does): today `OverflowError: Python integer 4294967296 out of bounds for uint32` from restore_rng."""
    run = copy_run(stopped, tmp_path / "run")
    ckpt = run / "checkpoints" / "ckpt-000006"
    make_legacy(ckpt)
    state = torch.load(ckpt / "trainer.pt", weights_only=True)
    state["rng"]["numpy"][1][5] = 2**32
    torch.save(state, ckpt / "trainer.pt")
    rng_before = torch.get_rng_state()
    with pytest.raises(FormatError, match=r"ckpt-000006/trainer.pt: bad trainer state \(corrupt RNG state"):
        ck.load_checkpoint(ckpt)
    assert torch.equal(torch.get_rng_state(), rng_before)  # nothing restored half-way
    with pytest.raises(FormatError, match="corrupt RNG state"):
        ck.restore_rng(state["rng"])
    assert "corrupt RNG state" in ck.check_checkpoint(ckpt)[0]


# ------------------------------------------------------------------------------------ 3. safetensors weights


def test_weights_are_safetensors_with_tied_tensors_stored_once(straight):
    from safetensors import safe_open

    path = straight.checkpoint / "model.safetensors"
    with safe_open(str(path), framework="pt") as f:
        stored = set(f.keys())  # noqa: SIM118
    assert "bert.embeddings.word_embeddings.weight" in stored and "cls.predictions.decoder.weight" not in stored
    state = ck.load_model_state(straight.checkpoint)
    assert torch.equal(state["cls.predictions.decoder.weight"], state["bert.embeddings.word_embeddings.weight"])
    assert not (straight.checkpoint / "model.pt").exists()


def test_a_run_written_the_old_way_still_loads_and_resumes(stopped, straight, tmp_path, dataset):
    run = copy_run(stopped, tmp_path / "run")
    for ckpt in ck.list_checkpoints(run):
        make_legacy(ckpt)  # model.pt (tied tensors shared), no checksums
    old = run / "checkpoints" / "ckpt-000006"
    assert (old / "model.pt").is_file() and not (old / "model.safetensors").exists()
    assert ck.model_file(old) == old / "model.pt" and ck.check_checkpoint(old) == []
    from bertkit.eval import load_run

    loaded = load_run(run)
    assert loaded.step == 6 and loaded.checkpoint == old
    want = ck.load_model_state(stopped / "checkpoints" / "ckpt-000006")
    got = loaded.model.state_dict()
    assert all(torch.equal(want[k], got[k]) for k in want)
    resumed = train(config(dataset, run), resume=True)
    assert resumed.step == 8 and same_weights(straight.checkpoint, resumed.checkpoint)
    assert (resumed.checkpoint / "model.safetensors").is_file()  # new checkpoints in the new format
    # an old model.pt has no checksum to prove it, but a damaged file is still refused by name
    (old / "model.pt").write_bytes((old / "model.pt").read_bytes()[:5000])
    problems = ck.check_checkpoint(old)
    assert problems and "model.pt" in problems[0]


# --------------------------------------------------------------------------------------------- 4. metrics.jsonl

_KILL_AT_5 = textwrap.dedent(
    """
    import os, signal, sys
    sys.path.insert(0, "tests")
    from conftest import tiny_train_config
    from bertkit.train.trainer import train

    def on_event(event):
        if event["event"] == "step" and event["step"] == 5:
            os.kill(os.getpid(), signal.SIGKILL)

    cfg = tiny_train_config(sys.argv[1], sys.argv[2], batch_size=8, max_steps=8, lr=1e-3, warmup=2, eval_every=0,
                            checkpoint_every=3, log_every=1)
    train(cfg, on_event=on_event)
    """
)


@pytest.mark.slow
def test_kill_9_then_resume_logs_every_step_once(dataset, straight, tmp_path):
    """Today steps 4 and 5 (logged after ckpt-000003, before the kill) appear twice after the resume."""
    run = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-c", _KILL_AT_5, str(dataset), str(run)], cwd=ROOT, capture_output=True, text=True
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert train_steps(run) == [1, 2, 3, 4, 5] and ck.latest(run).name == "ckpt-000003"
    with open(run / "metrics.jsonl", "ab") as f:
        f.write(b'{"kind": "train", "step": 6, "lo')  # and the disk filled up mid-record
    resumed = train(config(dataset, run, plot=True), resume=True)
    assert any("dropped a partial last line" in n for n in resumed.notes)
    assert any("rewound to step 3" in n for n in resumed.notes)
    assert train_steps(run) == list(range(1, 9)) and train_losses(run) == train_losses(straight.run_dir)
    assert (run / "loss_curve.png").is_file() or any("matplotlib" in n for n in resumed.notes)
    assert not list(run.glob("metrics.jsonl.tmp-*"))


def test_a_partial_line_mid_run_does_not_fail_the_finished_run(dataset, tmp_path):
    """Today: training finishes, then the loss-curve plot dies with a JSONDecodeError traceback (exit 1)."""
    pytest.importorskip("matplotlib")
    run = tmp_path / "run"

    def disk_full_once(event):
        if event["event"] == "step" and event["step"] == 3:
            with open(run / "metrics.jsonl", "ab") as f:
                f.write(b'{"kind": "train", "st')  # what ENOSPC leaves of a record

    summary = train(config(dataset, run, plot=True), on_event=disk_full_once)
    assert summary.step == 8 and (run / "loss_curve.png").is_file()
    with pytest.raises(FormatError, match=r"metrics.jsonl: line \d+ is not a metrics record"):
        read_metrics(run / "metrics.jsonl")
    assert len(read_metrics(run / "metrics.jsonl", skip_bad=True)) >= 7
    assert isinstance(plot_loss_curve(run), Path)


_APPEND = textwrap.dedent(
    """
    import sys
    from bertkit.train.metrics import MetricsWriter
    w = MetricsWriter(sys.argv[1], tensorboard=False)
    for i in range(2000):
        w.write("train", i, {"loss": 1.0, "writer": sys.argv[2], "pad": "x" * 300})
    w.close()
    """
)


def test_records_of_concurrent_writers_never_interleave(tmp_path):
    procs = [
        subprocess.Popen([sys.executable, "-c", _APPEND, str(tmp_path), name], cwd=ROOT) for name in ("a", "b", "c")
    ]
    assert [p.wait() for p in procs] == [0, 0, 0]
    records = read_metrics(tmp_path / "metrics.jsonl")  # strict: every line is a whole record
    assert len(records) == 6000 and {r["writer"] for r in records} == {"a", "b", "c"}


def test_rewind_keeps_what_the_checkpoint_saw(tmp_path):
    from bertkit.train.metrics import rewind_metrics

    path = tmp_path / "metrics.jsonl"
    lines = [
        {"kind": "train", "step": 3, "loss": 1.0},
        {"kind": "eval", "step": 3, "mlm_loss": 1.0},
        {"kind": "nonfinite", "step": 3, "loss": "nan"},  # the step after 3 (logged under the steps done before it)
        {"kind": "event", "step": 3, "note": "interrupted"},
        {"kind": "train", "step": 4, "loss": 0.9},
    ]
    body = "".join(json.dumps(r) + "\n" for r in lines)
    path.write_text(body + '{"kind": "tr\n' + json.dumps({"kind": "train", "step": 5}) + "\n")
    notes = rewind_metrics(path, 3)
    assert [r["kind"] for r in read_metrics(path)] == ["train", "eval", "event"]
    assert any("1 unreadable line" in n for n in notes) and any("dropped 3 record(s)" in n for n in notes)
    before = path.read_bytes()
    assert rewind_metrics(path, 3) == [] and path.read_bytes() == before  # nothing to do: the file is not rewritten
    assert rewind_metrics(tmp_path / "none.jsonl", 3) == []


def test_safetensors_weights_round_trip_views_and_ties(tmp_path):
    base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
    state = {
        "a": base,
        "tied": base,  # the same tensor under another key: stored once
        "t": base.t(),  # a non-contiguous view of the same storage: stored as a copy
        "row": base[1],  # a contiguous slice of it
        "ids": torch.arange(5),
        "empty": torch.zeros(0),
    }
    ck.save_model_state(state, tmp_path / "w.safetensors")
    back = ck.read_model_file(tmp_path / "w.safetensors")
    assert back.keys() == state.keys() and all(torch.equal(back[k], state[k]) for k in state)
    assert back["tied"] is back["a"]


# ---------------------------------------------------------------------------------------------- 5. smaller


def test_a_non_utf8_toml_file_is_a_one_line_error(tmp_path):
    path = tmp_path / "run.toml"
    path.write_bytes('arch = "bert"\n# café\n'.encode("latin-1"))
    result = runner.invoke(app, ["train", "--config", str(path), "--data", "d", "--out", str(tmp_path / "o")])
    assert result.exit_code == 1 and "Traceback" not in result.output
    text = " ".join(result.output.split())
    assert f"{path.name}: not UTF-8 text (byte 0xe9 at offset" in text and not (tmp_path / "o").exists()


def test_an_unknown_model_key_names_the_toml_file(tmp_path, dataset):
    path = tmp_path / "run.toml"
    path.write_text('arch = "bert"\npreset = "tiny"\n[model]\nhiden_size = 64\n')
    args = ["train", "--config", str(path), "--data", str(dataset), "--out", str(tmp_path / "o")]
    result = runner.invoke(app, args)
    text = " ".join(result.output.split())
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert f"{path.name}: [model]: BertConfig: unknown option(s) hiden_size" in text
    path.write_text('arch = "bert"\npreset = "tiny"\n[model]\nhidden_size = 64\n')
    flag = runner.invoke(app, [*args, "--model", "x=1"])
    assert "the command line (--model): [model]: BertConfig: unknown option(s) x" in " ".join(flag.output.split())
    path.write_text('arch = "bert"\npreset = "tiny"\n[model]\nhidden_size = -4\n')
    bad = runner.invoke(app, args)
    assert bad.exit_code == 1 and f"{path.name}: [model]: BertConfig.hidden_size" in " ".join(bad.output.split())
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("stage", ["_open_data", "_build_model"])
def test_ctrl_c_during_start_up_exits_cleanly_and_leaves_nothing(dataset, tmp_path, monkeypatch, stage):
    real = getattr(trainer_mod, stage)

    def interrupted(*a, **k):
        real(*a, **k)
        raise KeyboardInterrupt

    monkeypatch.setattr(trainer_mod, stage, interrupted)
    run = tmp_path / "fresh"
    with pytest.raises(Cancelled, match="interrupted during start-up, before the first step; nothing was written"):
        train(config(dataset, run))
    assert not run.exists()  # the run directory this start-up created is gone again, lock included
    args = ["train", "--preset", "tiny", "--data", str(dataset), "--out", str(run), "--device", "cpu", "-q",
            "--batch-size", "8", "--seq-len", "32"]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 130 and "Traceback" not in result.output, result.output
    assert "interrupted during start-up" in " ".join(result.output.split()) and not run.exists()


def test_ctrl_c_during_a_resumes_start_up_keeps_the_run_as_it_was(stopped, dataset, tmp_path, monkeypatch):
    run = copy_run(stopped, tmp_path / "run")
    before = {p.relative_to(run): p.read_bytes() for p in run.rglob("*") if p.is_file()}

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(trainer_mod, "MetricsWriter", interrupted)  # the last step of the start-up
    with pytest.raises(Cancelled):
        train(config(dataset, run), resume=True)
    after = {p.relative_to(run): p.read_bytes() for p in run.rglob("*") if p.is_file()}
    assert after.keys() == before.keys()
    changed = {str(k) for k in after if after[k] != before[k]}
    assert changed <= {"config.json", "metrics.jsonl"}  # rewritten whole (atomically), as a resume does
    old_cfg, new_cfg = (json.loads(d[Path("config.json")]) for d in (before, after))
    assert {**old_cfg, "out": str(run)} == new_cfg  # the copy lives elsewhere; nothing else differs
    assert ck.latest(run).name == "ckpt-000006" and not list(run.rglob("*.tmp-*"))
    monkeypatch.undo()
    assert train(config(dataset, run), resume=True).step == 8


def test_ctrl_c_while_the_command_line_loads_is_not_a_traceback(tmp_path):
    """Today a SIGINT in the first second (typer assembling the commands) prints a KeyboardInterrupt traceback."""
    for delay in (0.15, 0.4):
        proc = subprocess.Popen(
            [sys.executable, "-m", "bertkit_cli", "train", "--data", str(tmp_path), "--out", str(tmp_path / "o")],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        time.sleep(delay)
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
        assert "Traceback" not in out, out
        # 1: it got as far as refusing the empty dataset directory; -SIGINT: the signal came while the interpreter
        # itself was still starting (before any bertkit code), which ends it silently by the signal
        assert proc.returncode in (130, 1, -signal.SIGINT), out
