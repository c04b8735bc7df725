"""Masked-token loss: gathered hidden rows × tied decoder (+ bias) → mean cross-entropy.

    loss = mean over rows i with labels[i] != ignore_index of
           (1 - ε) · (lse_i - z_i[y_i]) + ε · (lse_i - mean_j z_ij),   z = hidden @ weight.T + bias

which is exactly `torch.nn.functional.cross_entropy(z, labels, ignore_index=…, label_smoothing=ε)`,
except that a batch where every label is ignored gives a loss of 0.0 with zero gradients (cross_entropy
gives NaN there). Optionally returns argmax_j z_ij per row (int64), so training reports MLM accuracy free.

Three implementations share one signature (`_IMPLEMENTATIONS`):

- ``"reference"``: plain torch in fp32, materialises the [M, V] logits (and their gradient). Independently
  correct; never edited to match a kernel. Memory traffic: ~4 passes over M·V fp32 forward, as many backward.
- ``"chunked"``: pure torch, loops over V in chunks with an online log-sum-exp; forward keeps only per-row
  statistics, backward recomputes each chunk. Memory O(M·chunk + V·d): the CPU fallback for big heads.
- ``"triton"``: `bertkit.ops.triton.masked_lm_loss`, the fused kernels (no [M, V] buffer forward or backward).

`masked_lm_loss(…, impl=None)` picks Triton when triton is importable and the tensors are on CUDA or
``TRITON_INTERPRET=1`` is set; otherwise the reference when the fp32 logits would take at most
`REFERENCE_MAX_LOGITS` elements (256 MiB in fp32; it is the fastest on CPU), else the chunked variant.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import torch
import torch.nn.functional as F

__all__ = [
    "masked_lm_loss",
    "masked_lm_loss_reference",
    "masked_lm_loss_chunked",
    "default_impl",
    "REFERENCE_MAX_LOGITS",
]

# Above this many logits (M·V fp32 = 256 MiB; the reference peaks near 4× that) the CPU default switches to the
# chunked variant, which is ~1.7× slower on CPU (benchmarks/masked_lm_loss_bench.py) but needs no [M, V] buffer.
REFERENCE_MAX_LOGITS = 1 << 26
# Columns of the vocabulary per chunk in the chunked variant (a [M, chunk] fp32 block at a time).
CHUNK_SIZE = 4096

Result = torch.Tensor | tuple[torch.Tensor, torch.Tensor]


def _check_inputs(
    hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, labels: torch.Tensor, label_smoothing: float
) -> None:
    if hidden.dim() != 2 or weight.dim() != 2:
        raise ValueError(f"hidden must be [M, d], weight [V, d]; got {tuple(hidden.shape)}, {tuple(weight.shape)}")
    if hidden.shape[1] != weight.shape[1]:
        raise ValueError(f"hidden width {hidden.shape[1]} != weight width {weight.shape[1]}")
    if weight.shape[0] == 0:
        raise ValueError("weight has an empty vocabulary")
    if bias is not None and tuple(bias.shape) != (weight.shape[0],):
        raise ValueError(f"bias must be [V] = [{weight.shape[0]}]; got {tuple(bias.shape)}")
    if labels.dim() != 1 or labels.shape[0] != hidden.shape[0]:
        raise ValueError(f"labels must be [M] = [{hidden.shape[0]}]; got {tuple(labels.shape)}")
    if labels.dtype.is_floating_point or labels.dtype.is_complex or labels.dtype == torch.bool:
        raise ValueError(f"labels must be integers; got {labels.dtype}")
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1]; got {label_smoothing}")
    tensors = [hidden, weight, labels] + ([bias] if bias is not None else [])
    if len({t.device for t in tensors}) != 1:
        raise ValueError("hidden, weight, bias and labels must be on one device")


def check_label_range(labels: torch.Tensor, vocab: int, ignore_index: int) -> None:
    """Labels must be ignore_index or in [0, vocab): ValueError on CPU; an asynchronous device assert on CUDA."""
    bad = (labels != ignore_index) & ((labels < 0) | (labels >= vocab))
    if labels.is_cuda:
        torch._assert_async(~bad.any(), "masked_lm_loss: a label is outside [0, vocab) and not ignore_index")
    elif bool(bad.any()):
        index = int(bad.nonzero()[0, 0])
        raise ValueError(f"labels[{index}] = {int(labels[index])} is outside [0, {vocab}) and not {ignore_index}")


def masked_lm_loss_reference(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    labels: torch.Tensor,
    *,
    ignore_index: int = -100,
    label_smoothing: float = 0.0,
    return_predictions: bool = False,
) -> Result:
    """fp32 logits = hidden @ weight.T + bias, then F.cross_entropy (mean over non-ignored rows).

    Materialises the [M, V] logits. All-ignored labels give 0.0 (with zero gradients), not NaN.
    """
    with torch.autocast(hidden.device.type, enabled=False):
        logits = hidden.float() @ weight.float().T
        if bias is not None:
            logits = logits + bias.float()
        labels = labels.long()
        if bool((labels != ignore_index).any()):
            loss = F.cross_entropy(logits, labels, ignore_index=ignore_index, label_smoothing=label_smoothing)
        else:
            loss = logits.sum() * 0.0
    if return_predictions:
        return loss, logits.detach().argmax(dim=1)
    return loss


class _ChunkedFunction(torch.autograd.Function):
    """Online log-sum-exp over vocabulary chunks; backward recomputes each chunk's logits."""

    @staticmethod
    def forward(ctx, hidden, weight, bias, labels, ignore_index, label_smoothing, chunk_size):
        rows, vocab = hidden.shape[0], weight.shape[0]
        h = hidden.float()
        labels = labels.long()
        running_max = torch.full((rows,), float("-inf"), device=h.device)
        sum_exp = torch.zeros(rows, device=h.device)
        target = torch.zeros(rows, device=h.device)
        sum_logits = torch.zeros(rows, device=h.device)
        best = torch.full((rows,), float("-inf"), device=h.device)
        best_index = torch.zeros(rows, dtype=torch.long, device=h.device)
        for start in range(0, vocab, chunk_size):
            stop = min(start + chunk_size, vocab)
            logits = h @ weight[start:stop].float().T  # (M, C)
            if bias is not None:
                logits += bias[start:stop].float()
            chunk_max = logits.amax(dim=1)
            chunk_arg = logits.argmax(dim=1)
            better = chunk_max > best  # strict: ties keep the earlier (lower) index, as argmax does
            best_index = torch.where(better, chunk_arg + start, best_index)
            best = torch.where(better, chunk_max, best)
            new_max = torch.maximum(running_max, chunk_max)
            sum_exp = sum_exp * torch.exp(running_max - new_max) + torch.exp(logits - new_max[:, None]).sum(dim=1)
            running_max = new_max
            in_chunk = (labels >= start) & (labels < stop)
            local = (labels - start).clamp(0, stop - start - 1)
            target += torch.where(in_chunk, logits.gather(1, local[:, None]).squeeze(1), 0.0)
            sum_logits += logits.sum(dim=1)
        lse = running_max + torch.log(sum_exp)
        valid = labels != ignore_index
        per_row = lse - (1.0 - label_smoothing) * target - label_smoothing * sum_logits / vocab
        n_valid = valid.sum()
        loss = torch.where(valid, per_row, 0.0).sum() / n_valid.clamp(min=1)
        ctx.save_for_backward(hidden, weight, bias, labels, lse, n_valid)
        ctx.ignore_index, ctx.label_smoothing, ctx.chunk_size = ignore_index, label_smoothing, chunk_size
        ctx.mark_non_differentiable(best_index)
        return loss, best_index

    @staticmethod
    def backward(ctx, grad_loss, _grad_predictions):
        hidden, weight, bias, labels, lse, n_valid = ctx.saved_tensors
        eps, vocab = ctx.label_smoothing, weight.shape[0]
        h = hidden.float()
        valid = labels != ctx.ignore_index
        scale = torch.where(valid, grad_loss.float() / n_valid.clamp(min=1), 0.0)  # (M,)
        grad_h = torch.zeros_like(h)
        grad_w = torch.empty(weight.shape, dtype=torch.float32, device=weight.device)
        grad_b = torch.empty(vocab, dtype=torch.float32, device=weight.device) if bias is not None else None
        for start in range(0, vocab, ctx.chunk_size):
            stop = min(start + ctx.chunk_size, vocab)
            w = weight[start:stop].float()
            logits = h @ w.T
            if bias is not None:
                logits += bias[start:stop].float()
            g = torch.exp(logits - lse[:, None]) - eps / vocab  # softmax − smoothing target
            in_chunk = valid & (labels >= start) & (labels < stop)
            local = (labels - start).clamp(0, stop - start - 1)
            g.scatter_add_(1, local[:, None], torch.where(in_chunk, -(1.0 - eps), 0.0)[:, None])
            g *= scale[:, None]
            grad_h += g @ w
            grad_w[start:stop] = g.T @ h
            if grad_b is not None:
                grad_b[start:stop] = g.sum(dim=0)
        grad_b = grad_b.to(bias.dtype) if grad_b is not None else None
        return grad_h.to(hidden.dtype), grad_w.to(weight.dtype), grad_b, None, None, None, None


def masked_lm_loss_chunked(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    labels: torch.Tensor,
    *,
    ignore_index: int = -100,
    label_smoothing: float = 0.0,
    return_predictions: bool = False,
    chunk_size: int = CHUNK_SIZE,
) -> Result:
    """Same result as the reference, without the [M, V] logits: fp32 [M, chunk_size] blocks at a time."""
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be positive; got {chunk_size}")
    check_label_range(labels, weight.shape[0], ignore_index)
    with torch.autocast(hidden.device.type, enabled=False):
        loss, predictions = _ChunkedFunction.apply(
            hidden, weight, bias, labels, ignore_index, float(label_smoothing), chunk_size
        )
    return (loss, predictions) if return_predictions else loss


def _triton_impl(hidden, weight, bias, labels, *, ignore_index=-100, label_smoothing=0.0, return_predictions=False):
    from bertkit.ops.triton.masked_lm_loss import masked_lm_loss_triton

    return masked_lm_loss_triton(
        hidden,
        weight,
        bias,
        labels,
        ignore_index=ignore_index,
        label_smoothing=label_smoothing,
        return_predictions=return_predictions,
    )


_IMPLEMENTATIONS: dict[str, Callable[..., Result]] = {
    "reference": masked_lm_loss_reference,
    "chunked": masked_lm_loss_chunked,
    "triton": _triton_impl,
}


def default_impl(hidden: torch.Tensor, weight: torch.Tensor) -> str:
    """The implementation `masked_lm_loss(…, impl=None)` uses for these tensors."""
    from bertkit.ops.triton import triton_importable

    if (hidden.is_cuda or os.environ.get("TRITON_INTERPRET") == "1") and triton_importable():
        return "triton"
    if hidden.shape[0] * weight.shape[0] <= REFERENCE_MAX_LOGITS:
        return "reference"
    return "chunked"


def masked_lm_loss(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    labels: torch.Tensor,
    *,
    ignore_index: int = -100,
    label_smoothing: float = 0.0,
    return_predictions: bool = False,
    impl: str | None = None,
) -> Result:
    """Mean cross-entropy of `hidden [M, d] @ weight[V, d].T + bias[V]` against `labels [M]`.

    Rows whose label is `ignore_index` do not count; if every row is ignored the loss is 0.0 with zero
    gradients (F.cross_entropy would give NaN). `label_smoothing` follows F.cross_entropy. Inputs may be
    fp32/bf16/fp16 (all the same dtype; under autocast they are cast to the autocast dtype, as F.linear
    would be); the loss is fp32 and gradients come back in the input dtypes. With `return_predictions`
    returns `(loss, predictions)`, the argmax of each row's logits as int64 [M] (lowest index on ties).
    `impl` forces "reference", "chunked" or "triton"; None picks per `default_impl`.
    """
    _check_inputs(hidden, weight, bias, labels, label_smoothing)
    device_type = hidden.device.type
    if torch.is_autocast_enabled(device_type):
        dtype = torch.get_autocast_dtype(device_type)
        hidden, weight = hidden.to(dtype), weight.to(dtype)
        bias = bias.to(dtype) if bias is not None else None
    elif hidden.dtype != weight.dtype or (bias is not None and bias.dtype != weight.dtype):
        raise ValueError(
            f"hidden, weight and bias must share a dtype outside autocast; got {hidden.dtype}, {weight.dtype}"
            + (f", {bias.dtype}" if bias is not None else "")
        )
    name = impl if impl is not None else default_impl(hidden, weight)
    if name not in _IMPLEMENTATIONS:
        raise ValueError(f"unknown impl {name!r}; choose from {sorted(_IMPLEMENTATIONS)}")
    with torch.autocast(device_type, enabled=False):
        return _IMPLEMENTATIONS[name](
            hidden,
            weight,
            bias,
            labels,
            ignore_index=ignore_index,
            label_smoothing=float(label_smoothing),
            return_predictions=return_predictions,
        )
