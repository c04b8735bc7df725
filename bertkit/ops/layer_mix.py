"""Layer mixing (ELC-BERT, DenseFormer): a softmax-weighted sum over the outputs of the earlier layers.

    x = Σ_{i < n} softmax(w)_i · h_i,   w ∈ ℝⁿ (a layer's own logits), h_0 … h_{n-1} the earlier outputs

Models use :class:`LayerOutputs`: it collects the outputs of one forward pass (``append``) in a preallocated
``[capacity, *S]`` buffer and mixes the first ``len(logits)`` of them (``mix``) without stacking them, forward or
backward (see its docstring for how the gradients are gathered). The functional ``layer_mix(outputs, logits)`` mixes
an already stacked ``[L, *S]`` tensor. Three implementations share one signature (`_IMPLEMENTATIONS`):

- ``"reference"``: `layer_mix_reference`, plain torch over a stacked tensor (fp32 arithmetic; independently correct,
  never edited to match a kernel). ``LayerOutputs(impl="reference")`` keeps a list and stacks it on every mix.
- ``"torch"``: `torch_mix_forward` / `torch_mix_backward` on rows of the buffer (`mv`, `addcmul`), no stacks.
- ``"triton"``: `bertkit.ops.triton.layer_mix`, one kernel forward and one backward per mix.

`layer_mix(…, impl=None)` and ``LayerOutputs(…, impl=None)`` pick Triton when triton imports and the tensors are on
CUDA or ``TRITON_INTERPRET=1`` is set, otherwise the torch path.
"""

from __future__ import annotations

import operator
import os
from collections.abc import Callable
from typing import NamedTuple

import torch

__all__ = [
    "LayerMixFunction",
    "LayerOutputs",
    "MixKernels",
    "default_impl",
    "layer_mix",
    "layer_mix_reference",
    "layer_mix_torch",
    "softmax_backward",
    "torch_mix_backward",
    "torch_mix_forward",
]

IMPLS = ("reference", "torch", "triton")


def _check(outputs_count: int, logits: torch.Tensor) -> None:
    if logits.dim() != 1 or logits.shape[0] < 1:
        raise ValueError(f"logits must be a non-empty vector [n]; got shape {tuple(logits.shape)}")
    if logits.shape[0] > outputs_count:
        raise ValueError(f"{logits.shape[0]} mixing logits but only {outputs_count} layer outputs")


def layer_mix_reference(outputs: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """``Σ_i softmax(logits)_i · outputs[i]`` over the first ``len(logits)`` entries of ``outputs [L, *S]``.

    Computed in fp32, returned in ``outputs.dtype``. Gradients flow to ``outputs`` and ``logits``.
    """
    _check(outputs.shape[0], logits)
    n = logits.shape[0]
    weights = torch.softmax(logits.float(), dim=0)  # [n]
    mixed = torch.tensordot(weights, outputs[:n].float(), dims=([0], [0]))  # [*S]
    return mixed.to(outputs.dtype)


def check_inputs(outputs: torch.Tensor, logits: torch.Tensor) -> None:
    """The checks every implementation makes first: shapes, floating dtypes, one device."""
    if not isinstance(outputs, torch.Tensor) or not isinstance(logits, torch.Tensor):
        raise ValueError("outputs and logits must be tensors")
    if outputs.dim() < 1:
        raise ValueError("outputs must be stacked layer outputs [L, *S]; got a scalar")
    _check(outputs.shape[0], logits)
    if not outputs.dtype.is_floating_point or not logits.dtype.is_floating_point:
        raise ValueError(f"outputs and logits must be floating point; got {outputs.dtype} and {logits.dtype}")
    if outputs.device != logits.device:
        raise ValueError(f"outputs are on {outputs.device} but logits on {logits.device}")


def softmax_backward(weights: torch.Tensor, grad_weights: torch.Tensor) -> torch.Tensor:
    """Gradient of the logits from that of ``weights = softmax(logits)`` (fp32 [n]): ``w ⊙ (g − ⟨w, g⟩)``."""
    return weights * (grad_weights - (weights * grad_weights).sum())


# ------------------------------------------------------------------------------------ torch kernels ("torch")


def torch_mix_forward(layers: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """``Σ_i softmax(logits)_i · layers[i]`` for layers [n, N] (fp32 softmax): [N] in the layers' dtype.

    fp32/fp64: one matrix-vector product straight off the rows (`mv` of the transposed rows: the `tensordot`
    contraction without its [1, n] @ [n, N] matrix product, which is 2× slower on CPU). Half dtypes: `addcmul` into
    an fp32 accumulator, one row at a time, so neither the weights nor the partial sums are rounded to 8 mantissa bits.
    """
    weights = torch.softmax(logits.float(), dim=0)
    if layers.dtype in (torch.float32, torch.float64):
        return torch.mv(layers.t(), weights.to(layers.dtype))
    acc = torch.zeros(layers.shape[1], dtype=torch.float32, device=layers.device)
    for i in range(layers.shape[0]):
        acc.addcmul_(layers[i], weights[i])
    return acc.to(layers.dtype)


def torch_mix_backward(
    grad: torch.Tensor,
    layers: torch.Tensor | None,
    logits: torch.Tensor,
    grad_layers: torch.Tensor | None,
    *,
    accumulate_below: int = 0,
) -> torch.Tensor | None:
    """Backward of `torch_mix_forward` for grad [N], with the contract of the Triton launcher.

    With `grad_layers` [n, N]: writes ``w_i · grad`` into rows ``i ≥ accumulate_below`` and adds it to the rows
    below (in their dtype; one broadcasting `mul`/`addcmul` each), w = softmax(logits). With `layers`: returns the
    logits' gradient (through the softmax, in the logits' dtype), else None.
    """
    weights = torch.softmax(logits.float(), dim=0)
    g = grad.reshape(-1)
    if grad_layers is not None:
        n, below = weights.shape[0], accumulate_below
        w = weights.view(n, 1)
        if below > 0:
            grad_layers[:below].addcmul_(w[:below], g)
        if below < n:
            torch.mul(w[below:], g, out=grad_layers[below:])
    if layers is None:
        return None
    if layers.dtype in (torch.float32, torch.float64):
        grad_weights = torch.mv(layers, g.to(layers.dtype)).float()
    else:
        g32 = g.float()  # half dtypes: fp32 dot products, one row at a time
        grad_weights = torch.empty(layers.shape[0], dtype=torch.float32, device=layers.device)
        for i in range(layers.shape[0]):
            grad_weights[i] = torch.dot(layers[i].float(), g32)
    return softmax_backward(weights, grad_weights).to(logits.dtype)


class MixKernels(NamedTuple):
    """A forward and a backward launcher with the signatures of `torch_mix_forward` and `torch_mix_backward`."""

    forward: Callable[..., torch.Tensor]
    backward: Callable[..., torch.Tensor | None]


TORCH_KERNELS = MixKernels(torch_mix_forward, torch_mix_backward)


def _kernels(impl: str) -> MixKernels:
    if impl == "triton":
        from bertkit.ops.triton.layer_mix import TRITON_KERNELS

        return TRITON_KERNELS
    return TORCH_KERNELS


def _rows(outputs: torch.Tensor, n: int) -> torch.Tensor:
    """The first n outputs as [n, N] with contiguous rows (a view when the trailing dims are contiguous)."""
    rows = outputs[:n].reshape(n, -1)
    return rows if rows.shape[1] <= 1 or rows.stride(1) == 1 else rows.contiguous()


class LayerMixFunction(torch.autograd.Function):
    """``layer_mix`` over stacked outputs [L, *S] with a kernel pair (`MixKernels`): saves the logits and (only when
    the logits need a gradient) the outputs; the outputs' gradient is [L, *S], zero past n."""

    @staticmethod
    def forward(ctx, outputs, logits, kernels):
        n = logits.shape[0]
        mixed = kernels.forward(_rows(outputs, n), logits).view(outputs.shape[1:])
        ctx.save_for_backward(outputs if ctx.needs_input_grad[1] else None, logits)
        ctx.kernels = kernels
        ctx.outputs_meta = (outputs.shape, outputs.dtype, outputs.device)
        return mixed

    @staticmethod
    def backward(ctx, grad_mixed):
        outputs, logits = ctx.saved_tensors
        need_outputs, need_logits = ctx.needs_input_grad[:2]
        n = logits.shape[0]
        shape, dtype, device = ctx.outputs_meta
        grad_outputs = None
        if need_outputs:
            grad_outputs = torch.empty(shape, dtype=dtype, device=device)
            grad_outputs[n:].zero_()
        grad_logits = ctx.kernels.backward(
            grad_mixed,
            _rows(outputs, n) if need_logits else None,
            logits,
            grad_outputs[:n].view(n, -1) if need_outputs else None,
        )
        return grad_outputs, grad_logits, None


def layer_mix_torch(outputs: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """The torch kernels over a stacked tensor: same result as the reference, no fp32 copy of half outputs."""
    check_inputs(outputs, logits)
    with torch.autocast(outputs.device.type, enabled=False):
        return LayerMixFunction.apply(outputs, logits, TORCH_KERNELS)


def _triton_impl(outputs: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    from bertkit.ops.triton.layer_mix import layer_mix_triton

    return layer_mix_triton(outputs, logits)


_IMPLEMENTATIONS: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "reference": layer_mix_reference,
    "torch": layer_mix_torch,
    "triton": _triton_impl,
}


def _default_for(device: torch.device) -> str:
    from bertkit.ops.triton import triton_importable

    if (device.type == "cuda" or os.environ.get("TRITON_INTERPRET") == "1") and triton_importable():
        return "triton"
    return "torch"


def default_impl(outputs: torch.Tensor) -> str:
    """The implementation `layer_mix(…, impl=None)` (and ``LayerOutputs(impl=None)``) uses for these tensors."""
    return _default_for(outputs.device)


def layer_mix(outputs: torch.Tensor, logits: torch.Tensor, *, impl: str | None = None) -> torch.Tensor:
    """``Σ_i softmax(logits)_i · outputs[i]`` over the first ``len(logits)`` of stacked ``outputs [L, *S]``.

    fp32 softmax and accumulation; the result has the outputs' dtype (also under autocast, which it ignores).
    Differentiable in `outputs` and `logits` (the logits' gradient has their dtype). Models should keep their
    outputs in a :class:`LayerOutputs` instead of stacking them. `impl` forces "reference", "torch" or "triton";
    None picks per `default_impl`.
    """
    check_inputs(outputs, logits)
    name = impl if impl is not None else default_impl(outputs)
    if name not in _IMPLEMENTATIONS:
        raise ValueError(f"unknown impl {name!r}; choose from {sorted(_IMPLEMENTATIONS)}")
    return _IMPLEMENTATIONS[name](outputs, logits)


# ------------------------------------------------------------------------------------------- LayerOutputs


def _graph_task() -> int:
    """Id of the backward pass (graph task) running this code; -1 outside backward."""
    return torch._C._current_graph_task_id()


class _GradSlots:
    """The gradient buffer [count, N] that the backward nodes of one LayerOutputs share.

    Within one backward pass, mixes (and reads) write or add their gradients into the rows of their outputs; the
    append node of output k runs after every node that consumed it (autograd orders nodes by their inputs) and
    takes row k. Rows are tracked per backward pass (graph task): a new pass, e.g. a second ``backward`` with
    ``retain_graph=True``, starts from a fresh buffer, so stale rows of an earlier (or partial) pass never leak
    in. The buffer is dropped once every row written in the pass has been taken.
    """

    def __init__(self, width: int, dtype: torch.dtype, device: torch.device) -> None:
        self.width, self.dtype, self.device = width, dtype, device
        self.count = 0  # outputs appended so far
        self.grad: torch.Tensor | None = None
        self.task = -2
        self.written: list[bool] = []
        self.pending = 0  # rows written in this pass and not yet taken
        self.no_grad_token = torch.empty(0, dtype=dtype, device=device)  # the (empty) gradient of a token

    def _current(self) -> torch.Tensor:
        task = _graph_task()
        if self.grad is None or task != self.task:
            self.grad = torch.empty((self.count, self.width), dtype=self.dtype, device=self.device)
            self.task, self.written, self.pending = task, [False] * self.count, 0
        return self.grad

    def rows_for_mix(self, n: int) -> tuple[torch.Tensor, int]:
        """Rows [n, N] for a mix's kernel and ``accumulate_below``: rows below it hold gradients already."""
        grad = self._current()
        written = self.written[:n]
        below = max((i + 1 for i, w in enumerate(written) if w), default=0)
        for i in range(below):
            if not written[i]:  # only when a read wrote a row above an untouched one
                grad[i].zero_()
        self.pending += n - sum(written)
        self.written[:n] = [True] * n
        return grad[:n], below

    def add_to_row(self, k: int, g: torch.Tensor) -> None:
        grad = self._current()
        if self.written[k]:
            grad[k].add_(g.reshape(-1))
        else:
            grad[k].copy_(g.reshape(-1))
            self.written[k] = True
            self.pending += 1

    def take(self, k: int) -> torch.Tensor | None:
        """Row k's gradient (a view of the buffer), or None when nothing in this pass wrote it."""
        if self.grad is None or self.task != _graph_task() or not self.written[k]:
            return None
        row = self.grad[k]
        self.written[k] = False
        self.pending -= 1
        if self.pending == 0:
            self.grad = None
        return row


class _AppendFunction(torch.autograd.Function):
    """Links output k into the graph: returns an empty token that mixes and reads of row k take as an input, so
    this node's backward runs after all of theirs; it hands h the gradient gathered in row k (a view; a copy when h
    is a leaf, whose ``.grad`` would otherwise keep the whole gradient buffer alive)."""

    @staticmethod
    def forward(ctx, h, slots, k):
        ctx.slots, ctx.k, ctx.shape, ctx.leaf = slots, k, h.shape, h.is_leaf
        return slots.no_grad_token.new_empty(0)

    @staticmethod
    def backward(ctx, _grad_token):
        row = ctx.slots.take(ctx.k)
        if row is None:
            return None, None, None
        return (row.clone() if ctx.leaf else row).view(ctx.shape), None, None


class _MixFunction(torch.autograd.Function):
    """One mix over rows [n, N] of the buffer (passed as an alias that later appends cannot invalidate)."""

    @staticmethod
    def forward(ctx, logits, layers, slots, kernels, shape, *tokens):
        ctx.save_for_backward(layers if ctx.needs_input_grad[0] else None, logits)
        ctx.slots, ctx.kernels = slots, kernels
        return kernels.forward(layers, logits).view(shape)

    @staticmethod
    def backward(ctx, grad_mixed):
        layers, logits = ctx.saved_tensors
        token_needs = ctx.needs_input_grad[5:]
        grad_rows, below = ctx.slots.rows_for_mix(logits.shape[0]) if any(token_needs) else (None, 0)
        grad_logits = ctx.kernels.backward(grad_mixed, layers, logits, grad_rows, accumulate_below=below)
        tokens = [ctx.slots.no_grad_token if need else None for need in token_needs]
        return grad_logits, None, None, None, None, *tokens


class _ReadFunction(torch.autograd.Function):
    """A copy of row k; backward adds the copy's gradient into row k of the gradient buffer."""

    @staticmethod
    def forward(ctx, row, slots, k, token):
        ctx.slots, ctx.k = slots, k
        return row.clone()

    @staticmethod
    def backward(ctx, grad):
        ctx.slots.add_to_row(ctx.k, grad)
        return None, None, None, ctx.slots.no_grad_token


def _alias(rows: torch.Tensor) -> torch.Tensor:
    """A tensor on the same memory as `rows` with its own version counter. Appends write through the buffer; mixes
    read (and autograd saves) slices of this alias, so the in-place check never sees those writes. Rows that a mix
    reads never change afterwards (appends only fill rows past them)."""
    alias = torch.empty(0, dtype=rows.dtype, device=rows.device)
    return alias.set_(rows.untyped_storage(), rows.storage_offset(), rows.shape, rows.stride())


class LayerOutputs:
    """The outputs ``h_0, h_1, …`` of one forward pass of a layer-mixing network, all of one shape, dtype, device.

    ``append(h)`` adds the next output; ``mix(logits)`` returns the softmax(logits)-weighted sum of the first
    ``len(logits)`` outputs (differentiable in the outputs and the logits); ``outputs[i]`` is output i (a
    differentiable copy on the buffer path); ``len(outputs)`` counts them. ``capacity`` is the most outputs the
    pass will append. Use one LayerOutputs per forward pass.

    Buffer path (``impl`` "torch" or "triton"; None picks Triton on CUDA or under ``TRITON_INTERPRET=1``, else
    torch): the outputs live in one ``[capacity, *S]`` buffer, allocated at the first append (or here when `shape`
    is given, with `dtype`, default the default dtype, and `device`, default CPU). ``append`` copies h into its row;
    ``mix`` reads rows ``[:n]`` in place. Backward, the gradients of all mixes and reads add up in one gradient buffer
    of the same shape, and each append's backward hands its row to its h (autograd runs it after every mix that read
    that row). ``impl="reference"`` keeps the tensors in a list and stacks them for `layer_mix_reference` on every
    mix (the independent path the tests compare against).

    ``append``, ``mix`` and ``outputs[i]`` are excluded from torch.compile (`torch.compiler.disable`): a compiled
    model graph-breaks around them and they run eagerly (traced, the buffer writes would silently drop gradients).
    Not supported: double backward; recomputing appends under activation checkpointing. In-place changes to an
    appended h after ``append`` are not seen (the buffer holds a copy).
    """

    def __init__(
        self,
        capacity: int,
        *,
        shape: tuple[int, ...] | torch.Size | None = None,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
        impl: str | None = None,
    ) -> None:
        if not isinstance(capacity, int) or isinstance(capacity, bool) or capacity < 1:
            raise ValueError(f"capacity must be a positive integer, got {capacity!r}")
        if impl is not None and impl not in IMPLS:
            raise ValueError(f"unknown impl {impl!r}; choose from {list(IMPLS)}")
        if shape is None and (dtype is not None or device is not None):
            raise ValueError("dtype and device are given with shape (otherwise the first append sets all three)")
        self.capacity = capacity
        self._requested = impl
        self.impl: str | None = impl  # resolved when the shape, dtype and device are known
        self._count = 0
        self._meta: tuple[torch.Size, torch.dtype, torch.device] | None = None
        self._outputs: list[torch.Tensor] = []  # reference path
        self._buffer: torch.Tensor | None = None  # buffer path: [capacity, *S] and its [capacity, N] rows
        self._rows: torch.Tensor | None = None
        self._read_rows: torch.Tensor | None = None  # `_alias(self._rows)`
        self._tokens: list[torch.Tensor | None] = []
        self._slots: _GradSlots | None = None
        self._kernels: MixKernels | None = None
        if shape is not None:
            self._setup(torch.Size(shape), dtype or torch.get_default_dtype(), torch.device(device or "cpu"))

    def _setup(self, shape: torch.Size, dtype: torch.dtype, device: torch.device) -> None:
        if not dtype.is_floating_point:
            raise ValueError(f"layer outputs must be floating point; got {dtype}")
        self.impl = self._requested or _default_for(device)
        if self.impl == "triton":
            from bertkit.ops.triton import triton_importable

            if not triton_importable():
                raise ValueError("LayerOutputs(impl='triton'): triton is not installed")
            if device.type != "cuda" and os.environ.get("TRITON_INTERPRET") != "1":
                raise ValueError(f"LayerOutputs(impl='triton') needs CUDA tensors or TRITON_INTERPRET=1; got {device}")
        self._meta = (shape, dtype, device)
        if self.impl != "reference":
            self._buffer = torch.empty((self.capacity, *shape), dtype=dtype, device=device)
            self._rows = self._buffer.view(self.capacity, -1)
            self._read_rows = _alias(self._rows)
            self._kernels = _kernels(self.impl)
            self._slots = _GradSlots(self._rows.shape[1], dtype, device)

    def __len__(self) -> int:
        return self._count

    @torch.compiler.disable
    def __getitem__(self, i: int) -> torch.Tensor:
        i = operator.index(i)
        if not -self._count <= i < self._count:
            raise IndexError(f"layer output {i} out of range ({self._count} appended)")
        k = i % self._count
        if self.impl == "reference":
            return self._outputs[k]
        token = self._tokens[k]
        if token is not None and torch.is_grad_enabled():
            return _ReadFunction.apply(self._buffer[k], self._slots, k, token)
        return self._buffer[k].clone()

    @torch.compiler.disable
    def append(self, h: torch.Tensor) -> None:
        """Add the next layer output (same shape, dtype and device as the first)."""
        if not isinstance(h, torch.Tensor):
            raise ValueError(f"a layer output must be a tensor; got {type(h).__name__}")
        if self._count >= self.capacity:
            raise ValueError(f"LayerOutputs is full ({self.capacity} outputs)")
        if self._meta is None:
            self._setup(h.shape, h.dtype, h.device)
        shape, dtype, device = self._meta
        if h.shape != shape or h.dtype != dtype or h.device != device:
            raise ValueError(
                f"layer output {self._count} is {tuple(h.shape)} {h.dtype} on {h.device}; expected "
                f"{tuple(shape)} {dtype} on {device}"
            )
        k = self._count
        if self.impl == "reference":
            self._outputs.append(h)
        else:
            self._buffer[k].copy_(h.detach())
            linked = h.requires_grad and torch.is_grad_enabled()
            self._tokens.append(_AppendFunction.apply(h, self._slots, k) if linked else None)
            self._slots.count = k + 1
        self._count = k + 1

    @torch.compiler.disable
    def mix(self, logits: torch.Tensor) -> torch.Tensor:
        """``Σ_{i < n} softmax(logits)_i · h_i`` with n = len(logits) ≤ len(self); fp32 softmax and accumulation,
        the result in the outputs' dtype (autocast is ignored)."""
        if not isinstance(logits, torch.Tensor):
            raise ValueError(f"logits must be a tensor; got {type(logits).__name__}")
        _check(self._count, logits)
        shape, _, device = self._meta
        if not logits.dtype.is_floating_point:
            raise ValueError(f"logits must be floating point; got {logits.dtype}")
        if logits.device != device:
            raise ValueError(f"logits are on {logits.device} but the layer outputs on {device}")
        n = logits.shape[0]
        if self.impl == "reference":
            return layer_mix_reference(torch.stack(self._outputs[:n]), logits)
        kernels = self._kernels
        tokens = self._tokens[:n]
        if torch.is_autocast_enabled(device.type):  # the torch kernels would run in the autocast dtype
            with torch.autocast(device.type, enabled=False):
                return self._mix(logits, n, shape, kernels, tokens)
        return self._mix(logits, n, shape, kernels, tokens)

    def _mix(self, logits, n, shape, kernels, tokens) -> torch.Tensor:
        if torch.is_grad_enabled() and (logits.requires_grad or any(t is not None for t in tokens)):
            return _MixFunction.apply(logits, self._read_rows[:n], self._slots, kernels, shape, *tokens)
        return kernels.forward(self._read_rows[:n], logits.detach()).view(shape)
