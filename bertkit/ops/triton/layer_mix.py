"""Layer mixing in Triton: ``Σ_i w_i · h_i`` over a [n, N] block of layer outputs, forward and backward.

Reference: `bertkit.ops.layer_mix.layer_mix_reference` (softmax in fp32, `tensordot` over a stacked fp32 copy).
ELC-BERT's eager loop reads and writes ~5 full tensors per term forward (a product, then a sum) and ~10 backward;
`torch.stack` + `tensordot` copies the n outputs first (2n passes) and autograd sums each output's gradients
with one more full tensor per term. These kernels read each output once forward (n + 1 passes in all) and, backward,
read the output gradient once and each layer output and gradient slot once (3n + 1 passes).

The layer outputs are rows of a [n, N] view (N = tokens · d flattened; the row stride is free, the elements of a
row are contiguous), as `bertkit.ops.layer_mix.LayerOutputs` keeps them in its preallocated buffer.

Kernels (fp32 arithmetic; loads and stores in the tensors' dtypes). Each program computes the softmax of the n
logits itself (a max and a sum over ≤ 64 scalars), so no weights tensor and no extra launch are needed:

- `_layer_mix_fwd_kernel`: grid (blocks of N). Each program accumulates ``Σ_i w_i · h_i[block]`` in fp32 registers
  over the n layers and stores the block once, in the input dtype.
- `_layer_mix_bwd_kernel`: grid (blocks of N). Each program loads its block of the output gradient g once, then for
  each layer i (a) writes ``Σ_block g · h_i`` into an fp32 [n, programs] partial-sum buffer and (b) updates
  gradient row i in place: ``dh_i = w_i · g`` for rows at or above `accumulate_below`, ``dh_i += w_i · g`` below
  it. The second form is how the mixes of one forward pass add their gradients into one buffer without a full
  tensor per (mix, layer) pair.
- `_layer_mix_grad_logits_kernel`: one program sums the partials over the programs (fixed order: deterministic,
  no atomics) and applies the softmax Jacobian, ``w ⊙ (dw − ⟨w, dw⟩)``, on the n scalars.

`TRITON_KERNELS` pairs the two launchers for `bertkit.ops.layer_mix.LayerMixFunction` (the autograd.Function over
a stacked tensor, shared with the torch kernels) and for `LayerOutputs`' mixes over its buffer.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from bertkit.ops.layer_mix import LayerMixFunction, MixKernels, check_inputs
from bertkit.ops.triton import launch, planned_sms, runnable_on

__all__ = [
    "TRITON_KERNELS",
    "block_n_for",
    "grad_logits_config",
    "launch_config",
    "layer_mix_backward",
    "layer_mix_forward",
    "layer_mix_triton",
]


@triton.jit
def _softmax_stats(logits_ptr, n, stride_logits, BLOCK_N: tl.constexpr):
    """(max, Σ exp(logit − max)) of the n logits, in fp32."""
    idx = tl.arange(0, BLOCK_N)
    logits = tl.load(logits_ptr + idx * stride_logits, mask=idx < n, other=float("-inf")).to(tl.float32)
    largest = tl.max(logits, axis=0)
    return largest, tl.sum(tl.exp(logits - largest), axis=0)


@triton.jit
def _layer_mix_fwd_kernel(
    h_ptr,
    logits_ptr,
    out_ptr,
    N,
    n_layers,
    stride_layer,
    stride_logits,
    BLOCK_N: tl.constexpr,
    BLOCK_SIZE: tl.constexpr,
):
    pid = tl.program_id(0)
    offsets = pid * BLOCK_SIZE + tl.arange(0, BLOCK_SIZE)
    mask = offsets < N
    largest, total = _softmax_stats(logits_ptr, n_layers, stride_logits, BLOCK_N)
    acc = tl.zeros((BLOCK_SIZE,), dtype=tl.float32)
    layer_ptr = h_ptr + offsets
    for i in range(n_layers):
        weight = tl.exp(tl.load(logits_ptr + i * stride_logits).to(tl.float32) - largest) / total
        h = tl.load(layer_ptr, mask=mask, other=0.0)
        acc += weight * h.to(tl.float32)
        layer_ptr += stride_layer  # pointer arithmetic is 64-bit: no int32 product i · stride
    tl.store(out_ptr + offsets, acc.to(out_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _layer_mix_bwd_kernel(
    g_ptr,
    h_ptr,
    logits_ptr,
    dh_ptr,
    dw_partial_ptr,
    N,
    n_layers,
    accumulate_below,
    stride_layer,
    stride_grad_layer,
    stride_logits,
    COMPUTE_DH: tl.constexpr,
    COMPUTE_DW: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_SIZE: tl.constexpr,
):
    """dw_partial[i, pid] = Σ_block g · h_i; dh_i (=|+=) w_i · g (fp32 math, stored in dh's dtype)."""
    pid = tl.program_id(0)
    programs = tl.num_programs(0)
    offsets = pid * BLOCK_SIZE + tl.arange(0, BLOCK_SIZE)
    mask = offsets < N
    g = tl.load(g_ptr + offsets, mask=mask, other=0.0).to(tl.float32)
    largest, total = _softmax_stats(logits_ptr, n_layers, stride_logits, BLOCK_N)
    layer_ptr = h_ptr + offsets
    grad_ptr = dh_ptr + offsets
    for i in range(n_layers):
        if COMPUTE_DW:
            h = tl.load(layer_ptr, mask=mask, other=0.0).to(tl.float32)
            tl.store(dw_partial_ptr + i * programs + pid, tl.sum(g * h, axis=0))
            layer_ptr += stride_layer
        if COMPUTE_DH:
            weight = tl.exp(tl.load(logits_ptr + i * stride_logits).to(tl.float32) - largest) / total
            # rows below accumulate_below already hold gradients of later mixes; a masked-off load reads nothing
            below = tl.full((BLOCK_SIZE,), i, tl.int32) < accumulate_below
            previous = tl.load(grad_ptr, mask=mask & below, other=0.0).to(tl.float32)
            tl.store(grad_ptr, (previous + weight * g).to(dh_ptr.dtype.element_ty), mask=mask)
            grad_ptr += stride_grad_layer


@triton.jit
def _layer_mix_grad_logits_kernel(
    dw_partial_ptr,
    logits_ptr,
    out_ptr,
    n_layers,
    programs,
    stride_logits,
    BLOCK_N: tl.constexpr,
    BLOCK_P: tl.constexpr,
):
    """One program: dw = Σ over programs of the partial sums, then the softmax Jacobian, w ⊙ (dw − ⟨w, dw⟩)."""
    rows = tl.arange(0, BLOCK_N)
    row_mask = rows < n_layers
    acc = tl.zeros((BLOCK_N, BLOCK_P), dtype=tl.float32)
    for p0 in range(0, programs, BLOCK_P):
        cols = p0 + tl.arange(0, BLOCK_P)
        acc += tl.load(
            dw_partial_ptr + rows[:, None] * programs + cols[None, :],
            mask=row_mask[:, None] & (cols < programs)[None, :],
            other=0.0,
        )
    grad_weights = tl.sum(acc, axis=1)
    logits = tl.load(logits_ptr + rows * stride_logits, mask=row_mask, other=float("-inf")).to(tl.float32)
    exp = tl.exp(logits - tl.max(logits, axis=0))
    weights = exp / tl.sum(exp, axis=0)
    grad_logits = weights * (grad_weights - tl.sum(weights * grad_weights, axis=0))
    tl.store(out_ptr + rows, grad_logits.to(out_ptr.dtype.element_ty), mask=row_mask)


# ---------------------------------------------------------------------------------------------- launchers


def launch_config(block_size: int | None = None, *, gpu: bool) -> tuple[int, int]:
    """(BLOCK_SIZE, num_warps) of the forward and backward kernels. GPU: 2048 elements over 128 threads, two 16-byte
    loads in flight per thread and layer (bf16). The interpreter (``gpu=False``) simulates each program in numpy, so
    there bigger blocks mean fewer Python steps. ``scripts/aot_kernels.py`` compiles exactly these for sm_80 / sm_90."""
    if block_size is not None:
        if block_size < 1 or block_size & (block_size - 1):
            raise ValueError(f"block_size must be a power of two; got {block_size}")
        return block_size, 4
    return (2048, 4) if gpu else (4096, 4)


def grad_logits_config(n: int) -> dict[str, int]:
    """BLOCK_N, BLOCK_P and num_warps of the one-program logits-gradient kernel for n layers."""
    block_n = block_n_for(n)
    return {"BLOCK_N": block_n, "BLOCK_P": max(16, 4096 // block_n), "num_warps": 4}


def _block_size(block_size: int | None, tensor: torch.Tensor) -> tuple[int, int]:
    return launch_config(block_size, gpu=planned_sms(tensor) is not None)


def _check_device(*tensors: torch.Tensor | None) -> None:
    for t in tensors:
        if t is not None and not runnable_on(t):
            raise ValueError(f"layer_mix (triton): tensors must be on CUDA (or set TRITON_INTERPRET=1); got {t.device}")


def _check_layers(name: str, layers: torch.Tensor, width: int) -> None:
    if layers.dim() != 2 or layers.shape[1] != width or (layers.shape[1] > 1 and layers.stride(1) != 1):
        raise ValueError(f"{name} must be [n, {width}] with contiguous rows; got {tuple(layers.shape)}")
    if width + (1 << 16) >= 2**31:
        raise ValueError(f"layer_mix (triton): {width} elements per layer output is too many for 32-bit offsets")


def block_n_for(n: int) -> int:
    """BLOCK_N (the softmax over the n logits, in one block) of every kernel."""
    return max(16, triton.next_power_of_2(n))


def layer_mix_forward(layers: torch.Tensor, logits: torch.Tensor, *, block_size: int | None = None) -> torch.Tensor:
    """``Σ_i softmax(logits)_i · layers[i]`` for layers [n, N] (rows contiguous) and logits [n]; returns [N] in
    the layers' dtype (fp32 softmax and accumulation)."""
    n, width = layers.shape
    _check_device(layers, logits)
    _check_layers("layers", layers, width)
    out = torch.empty(width, dtype=layers.dtype, device=layers.device)
    if width == 0:
        return out
    block, warps = _block_size(block_size, layers)
    launch(
        _layer_mix_fwd_kernel,
        (triton.cdiv(width, block),),
        layers,
        logits,
        out,
        width,
        n,
        layers.stride(0),
        logits.stride(0),
        BLOCK_N=block_n_for(n),
        BLOCK_SIZE=block,
        num_warps=warps,
    )
    return out


def layer_mix_backward(
    grad: torch.Tensor,
    layers: torch.Tensor | None,
    logits: torch.Tensor,
    grad_layers: torch.Tensor | None,
    *,
    accumulate_below: int = 0,
    block_size: int | None = None,
) -> torch.Tensor | None:
    """Backward of `layer_mix_forward` for grad [N], w = softmax(logits).

    With `grad_layers` [n, N] (rows contiguous, any dtype): writes ``w_i · grad`` into rows at or above
    `accumulate_below` and adds it to the rows below. With `layers`: returns the logits' gradient (through the
    softmax, in the logits' dtype); None without `layers`.
    """
    n = logits.shape[0]
    width = grad.numel()
    grad = grad.reshape(width)
    if width > 1 and grad.stride(0) != 1:
        grad = grad.contiguous()
    _check_device(grad, layers, logits, grad_layers)
    for name, t in (("layers", layers), ("grad_layers", grad_layers)):
        if t is not None:
            _check_layers(name, t, width)
            if t.shape[0] != n:
                raise ValueError(f"{name} has {t.shape[0]} rows for {n} logits")
    if layers is None and grad_layers is None:
        return None
    block, warps = _block_size(block_size, grad)
    programs = triton.cdiv(width, block)
    partial = torch.empty((n, programs) if layers is not None else (1, 1), dtype=torch.float32, device=grad.device)
    block_n = block_n_for(n)
    if width > 0:
        launch(
            _layer_mix_bwd_kernel,
            (programs,),
            grad,
            layers if layers is not None else grad,  # dummy pointers when COMPUTE_DW / COMPUTE_DH is off
            logits,
            grad_layers if grad_layers is not None else grad,
            partial,
            width,
            n,
            accumulate_below,
            layers.stride(0) if layers is not None else 0,
            grad_layers.stride(0) if grad_layers is not None else 0,
            logits.stride(0),
            COMPUTE_DH=grad_layers is not None,
            COMPUTE_DW=layers is not None,
            BLOCK_N=block_n,
            BLOCK_SIZE=block,
            num_warps=warps,
        )
    if layers is None:
        return None
    if width == 0:
        partial.zero_()
    grad_logits = torch.empty(n, dtype=logits.dtype, device=logits.device)
    launch(
        _layer_mix_grad_logits_kernel,
        (1,),
        partial,
        logits,
        grad_logits,
        n,
        partial.shape[1],
        logits.stride(0),
        **grad_logits_config(n),
    )
    return grad_logits


TRITON_KERNELS = MixKernels(layer_mix_forward, layer_mix_backward)


def layer_mix_triton(outputs: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """The Triton implementation behind `bertkit.ops.layer_mix(…, impl="triton")`."""
    check_inputs(outputs, logits)
    _check_device(outputs)
    with torch.autocast(outputs.device.type, enabled=False):
        return LayerMixFunction.apply(outputs, logits, TRITON_KERNELS)
