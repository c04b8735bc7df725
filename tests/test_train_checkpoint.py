"""Atomic checkpoints: layout, COMPLETE marker, incomplete ones ignored, keep-last, compatibility, RNG."""

from __future__ import annotations

import random

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from bertkit.exceptions import ConfigError, FormatError  # noqa: E402
from bertkit.train import checkpoint as ck  # noqa: E402
from bertkit.train.config import TrainConfig  # noqa: E402


def parts(seed=0):
    torch.manual_seed(seed)
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(model.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0 / (s + 1))
    model(torch.ones(1, 3)).sum().backward()
    opt.step()
    sched.step()
    return model, opt, sched


def save(run, step, model, opt, sched, config=None, keep_last=None):
    return ck.save_checkpoint(
        run,
        step,
        model=model,
        optimizer=opt,
        scheduler=sched,
        config=(config or TrainConfig()).to_dict(),
        arch="bert",
        model_config={"hidden_size": 3},
        data_state={"phase": 0, "epoch": 1, "cursor": 7},
        keep_last=keep_last,
    )


def test_save_layout_and_load_round_trip(tmp_path):
    model, opt, sched = parts()
    path = save(tmp_path, 12, model, opt, sched)
    assert path == tmp_path / "checkpoints" / "ckpt-000012"
    assert sorted(p.name for p in path.iterdir()) == [
        "COMPLETE",
        "config.json",
        "meta.json",
        "model.safetensors",
        "optimizer.pt",
        "trainer.pt",
    ]
    assert not list((tmp_path / "checkpoints").glob("*.tmp-*"))
    assert ck.read_meta(path)["data_state"] == {"phase": 0, "epoch": 1, "cursor": 7}
    model2, opt2, sched2 = parts(seed=1)
    state = ck.load_checkpoint(path, model=model2, optimizer=opt2, scheduler=sched2)
    assert state["step"] == 12 and state["data_state"]["cursor"] == 7
    pairs = zip(model.state_dict().values(), model2.state_dict().values(), strict=True)
    assert all(torch.equal(a, b) for a, b in pairs)
    assert sched2.last_epoch == sched.last_epoch
    assert opt2.state_dict()["state"][0]["step"] == opt.state_dict()["state"][0]["step"]


def test_latest_ignores_incomplete_checkpoints(tmp_path):
    model, opt, sched = parts()
    save(tmp_path, 5, model, opt, sched)
    root = tmp_path / "checkpoints"
    (root / "ckpt-000009.tmp-4242").mkdir()  # a writer killed mid-write
    (root / "ckpt-000009.tmp-4242" / "model.pt").write_bytes(b"partial")
    (root / "ckpt-000008").mkdir()  # final name but no COMPLETE marker
    (root / "ckpt-000008" / "model.pt").write_bytes(b"partial")
    assert ck.latest(tmp_path) == root / "ckpt-000005"
    assert ck.list_checkpoints(tmp_path) == [root / "ckpt-000005"]
    with pytest.raises(FormatError, match="COMPLETE"):
        ck.load_checkpoint(root / "ckpt-000008", model=model)
    assert ck.latest(tmp_path / "elsewhere") is None


def test_keep_last_and_same_step_resave(tmp_path):
    model, opt, sched = parts()
    for step in (1, 2, 3, 4):
        save(tmp_path, step, model, opt, sched, keep_last=2)
    assert [p.name for p in ck.list_checkpoints(tmp_path)] == ["ckpt-000003", "ckpt-000004"]
    save(tmp_path, 4, model, opt, sched, keep_last=2)
    assert [p.name for p in ck.list_checkpoints(tmp_path)] == ["ckpt-000003", "ckpt-000004"]


def test_compatibility_reports_differing_keys(tmp_path):
    model, opt, sched = parts()
    path = save(tmp_path, 3, model, opt, sched, TrainConfig(lr=1e-3))
    ck.check_compatible(path, TrainConfig(lr=1e-3, log_every=1, eval_every=7).to_dict(), "bert")  # mutable keys
    with pytest.raises(ConfigError) as e:
        ck.check_compatible(path, TrainConfig(lr=2e-3, max_steps=5).to_dict(), "bert")
    assert "lr:" in str(e.value) and "max_steps:" in str(e.value)
    with pytest.raises(ConfigError, match="architecture"):
        ck.check_compatible(path, TrainConfig(lr=1e-3).to_dict(), "elcbert")
    with pytest.raises(ConfigError, match="hidden_size"):
        ck.check_compatible(path, TrainConfig(lr=1e-3).to_dict(), "bert", {"hidden_size": 4})


def test_resuming_with_another_number_of_ranks_is_refused(tmp_path):
    model, opt, sched = parts()
    path = ck.save_checkpoint(
        tmp_path,
        5,
        model=model,
        optimizer=opt,
        scheduler=sched,
        config=TrainConfig().to_dict(),
        arch="bert",
        model_config={"hidden_size": 3},
        data_state={"phase": 0, "epoch": 0, "cursor": 5, "world_size": 2},
    )
    ck.check_compatible(path, TrainConfig().to_dict(), "bert", world_size=2)
    with pytest.raises(ConfigError, match=r"written by a run of 2 rank\(s\), resumed with 1"):
        ck.check_compatible(path, TrainConfig().to_dict(), "bert", world_size=1)
    ck.check_compatible(save(tmp_path / "old", 1, model, opt, sched), TrainConfig().to_dict(), "bert", world_size=4)


def test_corrupt_checkpoint_file_is_a_format_error(tmp_path):
    model, opt, sched = parts()
    path = save(tmp_path, 2, model, opt, sched)
    (path / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(FormatError, match="model.safetensors"):
        ck.load_checkpoint(path, model=model)


def test_rng_round_trip():
    state = ck.capture_rng()
    a = (torch.rand(3), np.random.rand(3), random.random())
    ck.restore_rng(state)
    b = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and a[2] == b[2]
