"""LAMB against a hand-written scalar reference; weight-decay groups; AdamW construction."""

from __future__ import annotations

import copy
import math

import pytest

torch = pytest.importorskip("torch")

from bertkit.train.optim import Lamb, build_optimizer, param_groups  # noqa: E402


def lamb_reference(w, grads, *, lr, betas, eps, wd, mode, max_ratio=10.0):
    """LAMB on a list of floats, written out with plain Python arithmetic (no torch)."""
    b1, b2 = betas
    m = [0.0] * len(w)
    v = [0.0] * len(w)
    w = list(w)
    for t, g in enumerate(grads, start=1):
        m = [b1 * mi + (1 - b1) * gi for mi, gi in zip(m, g, strict=True)]
        v = [b2 * vi + (1 - b2) * gi * gi for vi, gi in zip(v, g, strict=True)]
        u = [
            (mi / (1 - b1**t)) / (math.sqrt(vi / (1 - b2**t)) + eps) + wd * wi
            for mi, vi, wi in zip(m, v, w, strict=True)
        ]
        ratio = 1.0
        if mode == "standard" or wd > 0:
            wn = math.sqrt(sum(x * x for x in w))
            un = math.sqrt(sum(x * x for x in u))
            ratio = wn / un if wn > 0 and un > 0 else 1.0
            if mode == "standard":
                ratio = min(ratio, max_ratio)
        w = [wi - lr * ratio * ui for wi, ui in zip(w, u, strict=True)]
    return w


GRADS = [[0.5, -1.0, 0.25], [0.1, 0.3, -0.2], [-0.4, 0.2, 0.6]]


@pytest.mark.parametrize("mode", ["standard", "elc-faithful"])
@pytest.mark.parametrize("wd", [0.0, 0.1])
def test_lamb_matches_reference(mode, wd):
    w0 = [1.0, 2.0, -0.5]
    p = torch.nn.Parameter(torch.tensor(w0, dtype=torch.float64))
    opt = Lamb([p], lr=0.1, betas=(0.9, 0.99), eps=1e-6, weight_decay=wd, trust_ratio=mode)
    for g in GRADS:
        p.grad = torch.tensor(g, dtype=torch.float64)
        opt.step()
    expected = lamb_reference(w0, GRADS, lr=0.1, betas=(0.9, 0.99), eps=1e-6, wd=wd, mode=mode)
    assert p.detach().tolist() == pytest.approx(expected, rel=1e-6, abs=1e-9)


def test_first_step_by_hand():
    # w = [1, 2], g = [0.5, -1], wd 0.1, standard: Adam's bias-corrected step is g/(|g| + eps) ≈ sign(g)
    p = torch.nn.Parameter(torch.tensor([1.0, 2.0], dtype=torch.float64))
    p.grad = torch.tensor([0.5, -1.0], dtype=torch.float64)
    Lamb([p], lr=0.1, betas=(0.9, 0.99), eps=0.0, weight_decay=0.1).step()
    u = [1.0 + 0.1, -1.0 + 0.2]
    ratio = math.sqrt(5.0) / math.sqrt(u[0] ** 2 + u[1] ** 2)
    assert p.detach().tolist() == pytest.approx([1.0 - 0.1 * ratio * u[0], 2.0 - 0.1 * ratio * u[1]], rel=1e-12)


def test_elc_faithful_without_decay_is_a_plain_adam_step():
    # wd = 0 in elc-faithful mode: no trust ratio, so the first step moves each weight by lr·sign(g)
    p = torch.nn.Parameter(torch.tensor([100.0, -3.0], dtype=torch.float64))
    p.grad = torch.tensor([2.0, -0.5], dtype=torch.float64)
    Lamb([p], lr=0.01, eps=0.0, weight_decay=0.0, trust_ratio="elc-faithful").step()
    assert p.detach().tolist() == pytest.approx([99.99, -2.99])


def test_standard_trust_ratio_is_clamped_and_zero_weights_use_one():
    p = torch.nn.Parameter(torch.tensor([1000.0, 0.0], dtype=torch.float64))
    p.grad = torch.tensor([1.0, 1.0], dtype=torch.float64)
    Lamb([p], lr=0.01, eps=0.0, max_trust_ratio=10.0).step()  # ‖w‖/‖u‖ ≈ 707 → clamped to 10
    assert p.detach().tolist() == pytest.approx([1000.0 - 0.1, -0.1])
    z = torch.nn.Parameter(torch.zeros(2, dtype=torch.float64))
    z.grad = torch.tensor([1.0, -1.0], dtype=torch.float64)
    Lamb([z], lr=0.01, eps=0.0).step()  # ‖w‖ = 0: ratio 1
    assert z.detach().tolist() == pytest.approx([-0.01, 0.01])


def test_lamb_state_dict_round_trip():
    p = torch.nn.Parameter(torch.tensor([1.0, 2.0]))
    opt = Lamb([p], lr=0.1, weight_decay=0.1)
    p.grad = torch.tensor([0.3, 0.1])
    opt.step()
    q = torch.nn.Parameter(p.detach().clone())
    opt2 = Lamb([q], lr=0.1, weight_decay=0.1)
    opt2.load_state_dict(copy.deepcopy(opt.state_dict()))  # as torch.load would give: no shared tensors
    p.grad = q.grad = torch.tensor([-0.2, 0.5])
    opt.step()
    opt2.step()
    assert torch.equal(p, q)


class Toy(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.word_embeddings = torch.nn.Embedding(10, 4)
        self.dense = torch.nn.Linear(4, 4)
        self.LayerNorm = torch.nn.LayerNorm(4)
        self.prev_layer_weights = torch.nn.Parameter(torch.zeros(3, 3))
        self.decoder = torch.nn.Linear(4, 10)
        self.decoder.weight = self.word_embeddings.weight  # tied


def test_param_groups_exclusions():
    groups = param_groups(Toy(), 0.1)
    decay, no_decay = groups
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert decay["names"] == ["word_embeddings.weight", "dense.weight"]
    assert set(no_decay["names"]) == {
        "dense.bias",
        "LayerNorm.weight",
        "LayerNorm.bias",
        "prev_layer_weights",
        "decoder.bias",
    }
    decay2, no_decay2 = param_groups(Toy(), 0.1, decay_embeddings=False)
    assert decay2["names"] == ["dense.weight"] and "word_embeddings.weight" in no_decay2["names"]
    n_params = sum(len(g["params"]) for g in groups)
    assert n_params == len(list(Toy().parameters()))  # the tied weight is listed once


def test_mixing_logits_get_their_own_group_and_lr():
    decay, no_decay, mix = param_groups(Toy(), 0.1, mix_lr_scale=10.0)
    assert mix["names"] == ["prev_layer_weights"] and mix["weight_decay"] == 0.0 and mix["lr_scale"] == 10.0
    assert "prev_layer_weights" not in no_decay["names"] and "lr_scale" not in no_decay
    assert len(param_groups(Toy(), 0.1, mix_lr_scale=1.0)) == 2  # scale 1: the logits stay in the no-decay group
    for name in ("adamw", "lamb"):
        opt = build_optimizer(Toy(), name=name, lr=2e-3, weight_decay=0.01, mix_lr_scale=10.0)
        assert [g["lr"] for g in opt.param_groups] == [2e-3, 2e-3, pytest.approx(2e-2)]
        assert all("lr_scale" not in g for g in opt.param_groups)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 0.5)
        assert [g["lr"] for g in opt.param_groups] == [1e-3, 1e-3, pytest.approx(1e-2)]  # the schedule scales both
        del sched
    assert len(build_optimizer(torch.nn.Linear(2, 2), name="adamw", lr=1.0, mix_lr_scale=10.0).param_groups) == 2


def test_build_optimizer_choices():
    adamw = build_optimizer(Toy(), name="adamw", lr=1e-3, weight_decay=0.01)
    assert isinstance(adamw, torch.optim.AdamW) and adamw.defaults["foreach"] is True
    assert [g["weight_decay"] for g in adamw.param_groups] == [0.01, 0.0]
    lamb = build_optimizer(Toy(), name="lamb", lr=1e-2, weight_decay=0.1, trust_ratio="elc-faithful")
    assert isinstance(lamb, Lamb) and lamb.param_groups[0]["trust_ratio"] == "elc-faithful"
    with pytest.raises(ValueError):
        build_optimizer(Toy(), name="sgd", lr=1.0)
