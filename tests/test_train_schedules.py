"""Learning-rate schedules: exact values at the key steps."""

from __future__ import annotations

import math

import pytest

from bertkit.train.schedules import lr_factor, make_lr_lambda


def f(step, schedule, warmup=10, max_steps=110, m=0.0):
    return lr_factor(step, schedule=schedule, warmup=warmup, max_steps=max_steps, min_lr_ratio=m)


@pytest.mark.parametrize("schedule", ["linear", "cosine", "constant"])
def test_linear_warmup(schedule):
    assert f(0, schedule) == pytest.approx(0.1)
    assert f(4, schedule) == pytest.approx(0.5)
    assert f(9, schedule) == pytest.approx(1.0)
    assert f(10, schedule) == pytest.approx(1.0)


def test_linear_decay_to_min_ratio():
    assert f(60, "linear") == pytest.approx(0.5)
    assert f(110, "linear") == pytest.approx(0.0)
    assert f(60, "linear", m=0.1) == pytest.approx(0.55)
    assert f(110, "linear", m=0.1) == pytest.approx(0.1)
    assert f(500, "linear", m=0.1) == pytest.approx(0.1)  # past the end: stays at the floor


def test_cosine_decay_to_min_ratio():
    assert f(60, "cosine") == pytest.approx(0.5)
    assert f(35, "cosine") == pytest.approx((1 + math.cos(math.pi / 4)) / 2)
    assert f(60, "cosine", m=0.1) == pytest.approx(0.55)
    assert f(110, "cosine", m=0.1) == pytest.approx(0.1)


def test_constant_after_warmup():
    assert f(50, "constant") == 1.0 and f(1000, "constant") == 1.0


def test_one_cycle():
    assert f(0, "one-cycle", m=0.04) == pytest.approx(0.04)
    assert f(5, "one-cycle", m=0.0) == pytest.approx(0.5)  # halfway up the cosine rise
    assert f(10, "one-cycle") == pytest.approx(1.0)
    assert f(60, "one-cycle") == pytest.approx(0.5)
    assert f(110, "one-cycle", m=0.04) == pytest.approx(0.04)
    # no warmup given: the peak is at half the run
    assert f(55, "one-cycle", warmup=0) == pytest.approx(1.0)


def test_no_warmup_starts_at_peak_and_lambda_matches():
    assert f(0, "linear", warmup=0, max_steps=100) == pytest.approx(1.0)
    lam = make_lr_lambda(schedule="cosine", warmup=10, max_steps=110, min_lr_ratio=0.1)
    assert [lam(s) for s in (0, 9, 60, 110)] == [f(s, "cosine", m=0.1) for s in (0, 9, 60, 110)]
    with pytest.raises(ValueError):
        make_lr_lambda(schedule="exp", warmup=0, max_steps=10)


def test_lambdalr_uses_the_factor_per_update():
    torch = pytest.importorskip("torch")
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=2.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, make_lr_lambda(schedule="linear", warmup=4, max_steps=8))
    lrs = []
    for _ in range(8):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs == pytest.approx([0.5, 1.0, 1.5, 2.0, 2.0, 1.5, 1.0, 0.5])
