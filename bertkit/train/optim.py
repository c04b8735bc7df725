"""Optimisers: torch's AdamW (fused on CUDA, foreach elsewhere) and bertkit's LAMB, with weight-decay groups.

LAMB (You et al. 2019, arXiv 1904.00962), per parameter ``w`` with gradient ``g`` at step ``t``::

    m = β1·m + (1-β1)·g            v = β2·v + (1-β2)·g²
    u = (m / (1-β1^t)) / (sqrt(v / (1-β2^t)) + eps) + wd·w
    r = ‖w‖ / ‖u‖  (1 when either norm is 0)
    w = w - lr·r·u

``trust_ratio="standard"`` applies ``r`` to every parameter, clamped to ``[0, max_trust_ratio]``.
``trust_ratio="elc-faithful"`` reproduces ltgoslo/elc-bert's ``pre_training/lamb.py``: ``r`` is used only when the
group's weight decay is > 0 (and unclamped); parameters without decay (biases, norms, embeddings there) take plain
bias-corrected Adam steps at the full learning rate (the original's quirk).

The step makes no host synchronisation (norms stay on the device; ``torch.where`` picks the ratio).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

__all__ = ["Lamb", "build_optimizer", "param_groups"]

_NO_DECAY_NAME_PARTS = ("bias", "layernorm", "layer_norm", "norm.", "prev_layer_weights")


def _is_no_decay(name: str, param: torch.nn.Parameter, module: nn.Module | None, decay_embeddings: bool) -> bool:
    lname = name.lower()
    if any(part in lname for part in _NO_DECAY_NAME_PARTS):
        return True
    if isinstance(module, (nn.LayerNorm, nn.RMSNorm)) or param.ndim < 2:
        return True  # norm weights and any other vector (scales, gains, mixing weights)
    if not decay_embeddings and (isinstance(module, nn.Embedding) or "embedding" in lname):
        return True
    return False


def param_groups(
    model: nn.Module, weight_decay: float, *, decay_embeddings: bool = True, mix_lr_scale: float = 1.0
) -> list[dict[str, Any]]:
    """Parameter groups: decayed weights and the no-decay rest; with ``mix_lr_scale`` != 1 a third, no-decay group of
    ELC-BERT's layer-mixing logits (``prev_layer_weights``) carrying ``"lr_scale"``, which :func:`build_optimizer`
    turns into that group's ``lr`` (``TrainConfig.mix_lr_scale`` says why).

    No decay for: biases, LayerNorm/RMSNorm (and any ``*norm*``-named) weights, ``prev_layer_weights`` (ELC-BERT's
    layer mixing), every 1-D parameter, and embedding tables when ``decay_embeddings`` is False. Tied parameters are
    listed once. Each group carries the parameter names under ``"names"`` (for inspection and tests).
    """
    owner: dict[int, nn.Module] = {}
    for module in model.modules():
        for p in module.parameters(recurse=False):
            owner.setdefault(id(p), module)
    decay, no_decay, decay_names, no_decay_names, mix, mix_names = [], [], [], [], [], []
    for name, p in model.named_parameters():  # named_parameters() skips tied duplicates
        if not p.requires_grad:
            continue
        if mix_lr_scale != 1.0 and "prev_layer_weights" in name:
            mix.append(p)
            mix_names.append(name)
        elif _is_no_decay(name, p, owner.get(id(p)), decay_embeddings):
            no_decay.append(p)
            no_decay_names.append(name)
        else:
            decay.append(p)
            decay_names.append(name)
    groups = []
    if decay:
        groups.append({"params": decay, "weight_decay": weight_decay, "names": decay_names})
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0, "names": no_decay_names})
    if mix:
        groups.append({"params": mix, "weight_decay": 0.0, "names": mix_names, "lr_scale": float(mix_lr_scale)})
    return groups


class Lamb(torch.optim.Optimizer):
    """LAMB with bias correction and decoupled weight decay inside the trust-ratio update (see the module doc)."""

    def __init__(
        self,
        params: Iterable[torch.nn.Parameter] | Iterable[dict[str, Any]],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-6,
        weight_decay: float = 0.0,
        *,
        trust_ratio: str = "standard",
        max_trust_ratio: float = 10.0,
    ) -> None:
        if lr < 0.0:
            raise ValueError(f"invalid learning rate {lr}")
        if eps < 0.0:
            raise ValueError(f"invalid eps {eps}")
        if not (0.0 <= betas[0] < 1.0 and 0.0 <= betas[1] < 1.0):
            raise ValueError(f"invalid betas {betas}")
        if trust_ratio not in ("standard", "elc-faithful"):
            raise ValueError(f"trust_ratio must be 'standard' or 'elc-faithful', got {trust_ratio!r}")
        if max_trust_ratio <= 0:
            raise ValueError(f"max_trust_ratio must be > 0, got {max_trust_ratio}")
        defaults = dict(
            lr=lr,
            betas=tuple(betas),
            eps=eps,
            weight_decay=weight_decay,
            trust_ratio=trust_ratio,
            max_trust_ratio=max_trust_ratio,
        )
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure=None):  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            lr, eps, wd = group["lr"], group["eps"], group["weight_decay"]
            mode, max_ratio = group["trust_ratio"], group["max_trust_ratio"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise RuntimeError("Lamb does not support sparse gradients")
                dtype = torch.promote_types(p.dtype, torch.float32)  # fp32 math (fp64 stays fp64)
                grad = p.grad.to(dtype)
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p, dtype=dtype, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, dtype=dtype, memory_format=torch.preserve_format)
                state["step"] += 1
                t = state["step"]
                exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
                exp_avg.mul_(beta1).add_(grad, alpha=1.0 - beta1)
                exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1.0 - beta2)
                denom = (exp_avg_sq / (1.0 - beta2**t)).sqrt_().add_(eps)
                update = (exp_avg / (1.0 - beta1**t)).div_(denom)
                weight = p.to(dtype)
                if wd != 0.0:
                    update.add_(weight, alpha=wd)
                if mode == "standard" or wd > 0.0:
                    w_norm = weight.norm()
                    u_norm = update.norm()
                    ratio = torch.where((w_norm > 0) & (u_norm > 0), w_norm / u_norm, torch.ones_like(w_norm))
                    if mode == "standard":
                        ratio = ratio.clamp(max=max_ratio)
                    update.mul_(ratio)
                p.add_(update.to(p.dtype), alpha=-lr)
        return loss


def build_optimizer(
    model: nn.Module,
    *,
    name: str,
    lr: float,
    betas: tuple[float, float] | list[float] = (0.9, 0.999),
    eps: float = 1e-6,
    weight_decay: float = 0.0,
    decay_embeddings: bool = True,
    trust_ratio: str = "standard",
    max_trust_ratio: float = 10.0,
    mix_lr_scale: float = 1.0,
) -> torch.optim.Optimizer:
    """AdamW (``fused=True`` when the parameters are on CUDA, ``foreach`` otherwise) or :class:`Lamb`; the groups of
    :func:`param_groups` (ELC-BERT's mixing logits at ``lr * mix_lr_scale``)."""
    groups = param_groups(model, weight_decay, decay_embeddings=decay_embeddings, mix_lr_scale=mix_lr_scale)
    for g in groups:
        g.pop("names")
        if "lr_scale" in g:
            g["lr"] = lr * g.pop("lr_scale")
    betas = (float(betas[0]), float(betas[1]))
    if name == "adamw":
        on_cuda = all(p.is_cuda for g in groups for p in g["params"])
        kwargs = {"fused": True} if on_cuda else {"foreach": True}
        return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps, **kwargs)
    if name == "lamb":
        return Lamb(groups, lr=lr, betas=betas, eps=eps, trust_ratio=trust_ratio, max_trust_ratio=max_trust_ratio)
    raise ValueError(f"unknown optimizer {name!r}")
