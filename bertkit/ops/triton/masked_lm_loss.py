"""Fused masked-token loss in Triton: hidden [M, d] × weight [V, d] (+ bias) → cross-entropy, no [M, V] buffer.

Reference: `bertkit.ops.masked_lm_loss.masked_lm_loss_reference` (fp32 logits + F.cross_entropy). That
reference reads/writes the [M, V] fp32 logits ~4 times forward and again backward (4915 × 30522 × 4 B =
600 MB per pass at BERT-base scale); here logits live only in [BLOCK_M, BLOCK_V] register tiles.

Kernels (all accumulate in fp32; tl.dot takes the input dtype, so bf16/fp16 use tensor cores):

- `_masked_lm_loss_fwd_kernel`: grid (row blocks, vocabulary splits). Each program loops over its
  vocabulary range in BLOCK_V tiles, builds each logit tile with tl.dot over d in BLOCK_D steps, and keeps
  per-row running max / sum of exp (online log-sum-exp), the target logit (column index compared with the
  label inside the tile: no pointer gather), the sum of logits (label smoothing) and the argmax. Partial
  statistics per split are merged in torch (O(splits · M)).
- `_masked_lm_loss_bwd_dh_kernel`: grid (row blocks, vocabulary splits). Recomputes each logit tile,
  g = softmax − target distribution, and accumulates g @ W into an fp32 [splits, M, d] buffer that the
  program owns (read-modify-write per d block, no atomics: deterministic).
- `_masked_lm_loss_bwd_dw_kernel`: grid (vocabulary blocks). Loops over all rows, recomputes the logit
  tiles, accumulates gᵀ @ H into an fp32 [V, d] buffer it owns and Σ g (bias gradient) in registers.

The uniform factor grad_loss / n_valid is applied in torch after the kernels (a device scalar: no host
sync), so g stays in [-1, 1] and survives the cast to bf16/fp16 for the tensor-core dot.
Memory saved for backward: hidden, weight, bias, labels and the per-row log-sum-exp: O(M + V·d).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from bertkit.ops.masked_lm_loss import check_label_range
from bertkit.ops.triton import launch, planned_sms

__all__ = [
    "MaskedLMLossFunction",
    "launch_config",
    "masked_lm_loss_forward",
    "masked_lm_loss_backward",
    "masked_lm_loss_triton",
    "num_splits",
]


@triton.jit
def _logit_tile(
    h_ptr,
    w_ptr,
    b_ptr,
    rows,
    cols,
    row_mask,
    col_mask,
    D,
    stride_hm,
    stride_hd,
    stride_wv,
    stride_wd,
    stride_b,
    HAS_BIAS: tl.constexpr,
    DOT_PRECISION: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_V: tl.constexpr,
    BLOCK_D: tl.constexpr,
):
    """fp32 [BLOCK_M, BLOCK_V] tile of hidden @ weight.T + bias; columns outside the range are -inf."""
    acc = tl.zeros((BLOCK_M, BLOCK_V), dtype=tl.float32)
    for d0 in range(0, D, BLOCK_D):
        ds = d0 + tl.arange(0, BLOCK_D)
        d_mask = ds < D
        h = tl.load(
            h_ptr + rows[:, None] * stride_hm + ds[None, :] * stride_hd,
            mask=row_mask[:, None] & d_mask[None, :],
            other=0.0,
        )
        w = tl.load(  # [BLOCK_D, BLOCK_V]: weight rows as columns
            w_ptr + cols[None, :] * stride_wv + ds[:, None] * stride_wd,
            mask=col_mask[None, :] & d_mask[:, None],
            other=0.0,
        )
        acc = tl.dot(h, w, acc, input_precision=DOT_PRECISION)
    if HAS_BIAS:
        acc += tl.load(b_ptr + cols * stride_b, mask=col_mask, other=0.0).to(tl.float32)[None, :]
    return tl.where(col_mask[None, :], acc, float("-inf"))


@triton.jit
def _grad_tile(logits, lse, labels, cols, valid, col_mask, smoothing, V):
    """softmax − ((1 − ε)·onehot(label) + ε/V) for valid rows and columns, else 0 (unscaled)."""
    g = tl.exp(logits - lse[:, None])
    g -= tl.where(cols[None, :] == labels[:, None], 1.0 - smoothing, 0.0)
    g -= smoothing / V
    return tl.where(valid[:, None] & col_mask[None, :], g, 0.0)


@triton.jit
def _masked_lm_loss_fwd_kernel(
    h_ptr,
    w_ptr,
    b_ptr,
    labels_ptr,
    max_ptr,
    sum_exp_ptr,
    target_ptr,
    sum_logits_ptr,
    best_ptr,
    best_index_ptr,
    M,
    V,
    D,
    v_per_split,
    stride_hm,
    stride_hd,
    stride_wv,
    stride_wd,
    stride_b,
    stride_l,
    HAS_BIAS: tl.constexpr,
    DOT_PRECISION: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_V: tl.constexpr,
    BLOCK_D: tl.constexpr,
):
    pid_m = tl.program_id(0)
    pid_s = tl.program_id(1)
    rows = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    row_mask = rows < M
    labels = tl.load(labels_ptr + rows * stride_l, mask=row_mask, other=-1)
    v_start = pid_s * v_per_split
    v_end = tl.minimum(v_start + v_per_split, V)

    running_max = tl.full((BLOCK_M,), float("-inf"), dtype=tl.float32)
    sum_exp = tl.zeros((BLOCK_M,), dtype=tl.float32)
    target = tl.zeros((BLOCK_M,), dtype=tl.float32)
    sum_logits = tl.zeros((BLOCK_M,), dtype=tl.float32)
    best = tl.full((BLOCK_M,), float("-inf"), dtype=tl.float32)
    best_index = tl.zeros((BLOCK_M,), dtype=tl.int32)
    for v0 in range(v_start, v_end, BLOCK_V):
        cols = v0 + tl.arange(0, BLOCK_V)
        col_mask = cols < v_end
        logits = _logit_tile(
            h_ptr,
            w_ptr,
            b_ptr,
            rows,
            cols,
            row_mask,
            col_mask,
            D,
            stride_hm,
            stride_hd,
            stride_wv,
            stride_wd,
            stride_b,
            HAS_BIAS,
            DOT_PRECISION,
            BLOCK_M,
            BLOCK_V,
            BLOCK_D,
        )
        tile_max = tl.max(logits, axis=1)
        tile_arg = tl.argmax(logits, axis=1).to(tl.int32)  # first maximum within the tile
        better = tile_max > best  # strict: ties keep the earlier tile, so the lowest index wins
        best_index = tl.where(better, v0 + tile_arg, best_index)
        best = tl.where(better, tile_max, best)
        new_max = tl.maximum(running_max, tile_max)
        sum_exp = sum_exp * tl.exp(running_max - new_max) + tl.sum(tl.exp(logits - new_max[:, None]), axis=1)
        running_max = new_max
        target += tl.sum(tl.where(cols[None, :] == labels[:, None], logits, 0.0), axis=1)
        sum_logits += tl.sum(tl.where(col_mask[None, :], logits, 0.0), axis=1)

    out = pid_s * M + rows
    tl.store(max_ptr + out, running_max, mask=row_mask)
    tl.store(sum_exp_ptr + out, sum_exp, mask=row_mask)
    tl.store(target_ptr + out, target, mask=row_mask)
    tl.store(sum_logits_ptr + out, sum_logits, mask=row_mask)
    tl.store(best_ptr + out, best, mask=row_mask)
    tl.store(best_index_ptr + out, best_index.to(tl.int64), mask=row_mask)


@triton.jit
def _masked_lm_loss_bwd_dh_kernel(
    h_ptr,
    w_ptr,
    b_ptr,
    labels_ptr,
    lse_ptr,
    dh_ptr,
    M,
    V,
    D,
    v_per_split,
    ignore_index,
    smoothing,
    stride_hm,
    stride_hd,
    stride_wv,
    stride_wd,
    stride_b,
    stride_l,
    HAS_BIAS: tl.constexpr,
    DOT_PRECISION: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_V: tl.constexpr,
    BLOCK_D: tl.constexpr,
):
    """dh[split, rows, :] = Σ over this split's vocabulary tiles of g @ W (fp32, contiguous [splits, M, D])."""
    pid_m = tl.program_id(0)
    pid_s = tl.program_id(1)
    rows = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    row_mask = rows < M
    labels = tl.load(labels_ptr + rows * stride_l, mask=row_mask, other=ignore_index)
    valid = row_mask & (labels != ignore_index)
    lse = tl.load(lse_ptr + rows, mask=row_mask, other=0.0)
    v_start = pid_s * v_per_split
    v_end = tl.minimum(v_start + v_per_split, V)
    dh_rows = dh_ptr + pid_s * M * D + rows[:, None] * D
    for v0 in range(v_start, v_end, BLOCK_V):
        cols = v0 + tl.arange(0, BLOCK_V)
        col_mask = cols < v_end
        logits = _logit_tile(
            h_ptr,
            w_ptr,
            b_ptr,
            rows,
            cols,
            row_mask,
            col_mask,
            D,
            stride_hm,
            stride_hd,
            stride_wv,
            stride_wd,
            stride_b,
            HAS_BIAS,
            DOT_PRECISION,
            BLOCK_M,
            BLOCK_V,
            BLOCK_D,
        )
        g = _grad_tile(logits, lse, labels, cols, valid, col_mask, smoothing, V).to(h_ptr.dtype.element_ty)
        for d0 in range(0, D, BLOCK_D):
            ds = d0 + tl.arange(0, BLOCK_D)
            d_mask = ds < D
            w = tl.load(  # [BLOCK_V, BLOCK_D]
                w_ptr + cols[:, None] * stride_wv + ds[None, :] * stride_wd,
                mask=col_mask[:, None] & d_mask[None, :],
                other=0.0,
            )
            tile_mask = row_mask[:, None] & d_mask[None, :]
            acc = tl.load(dh_rows + ds[None, :], mask=tile_mask, other=0.0)
            acc = tl.dot(g, w, acc, input_precision=DOT_PRECISION)
            tl.store(dh_rows + ds[None, :], acc, mask=tile_mask)


@triton.jit
def _masked_lm_loss_bwd_dw_kernel(
    h_ptr,
    w_ptr,
    b_ptr,
    labels_ptr,
    lse_ptr,
    dw_ptr,
    db_ptr,
    M,
    V,
    D,
    ignore_index,
    smoothing,
    stride_hm,
    stride_hd,
    stride_wv,
    stride_wd,
    stride_b,
    stride_l,
    HAS_BIAS: tl.constexpr,
    DOT_PRECISION: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_V: tl.constexpr,
    BLOCK_D: tl.constexpr,
):
    """dw[cols, :] = Σ over row tiles of gᵀ @ H (fp32, contiguous [V, D]); db[cols] = Σ g (fp32)."""
    pid_v = tl.program_id(0)
    cols = pid_v * BLOCK_V + tl.arange(0, BLOCK_V)
    col_mask = cols < V
    dw_cols = dw_ptr + cols[:, None] * D
    db = tl.zeros((BLOCK_V,), dtype=tl.float32)
    for m0 in range(0, M, BLOCK_M):
        rows = m0 + tl.arange(0, BLOCK_M)
        row_mask = rows < M
        labels = tl.load(labels_ptr + rows * stride_l, mask=row_mask, other=ignore_index)
        valid = row_mask & (labels != ignore_index)
        lse = tl.load(lse_ptr + rows, mask=row_mask, other=0.0)
        logits = _logit_tile(
            h_ptr,
            w_ptr,
            b_ptr,
            rows,
            cols,
            row_mask,
            col_mask,
            D,
            stride_hm,
            stride_hd,
            stride_wv,
            stride_wd,
            stride_b,
            HAS_BIAS,
            DOT_PRECISION,
            BLOCK_M,
            BLOCK_V,
            BLOCK_D,
        )
        g = _grad_tile(logits, lse, labels, cols, valid, col_mask, smoothing, V)
        if HAS_BIAS:
            db += tl.sum(g, axis=0)
        g_t = tl.trans(g.to(h_ptr.dtype.element_ty))  # [BLOCK_V, BLOCK_M]
        for d0 in range(0, D, BLOCK_D):
            ds = d0 + tl.arange(0, BLOCK_D)
            d_mask = ds < D
            h = tl.load(
                h_ptr + rows[:, None] * stride_hm + ds[None, :] * stride_hd,
                mask=row_mask[:, None] & d_mask[None, :],
                other=0.0,
            )
            tile_mask = col_mask[:, None] & d_mask[None, :]
            acc = tl.load(dw_cols + ds[None, :], mask=tile_mask, other=0.0)
            acc = tl.dot(g_t, h, acc, input_precision=DOT_PRECISION)
            tl.store(dw_cols + ds[None, :], acc, mask=tile_mask)
    if HAS_BIAS:
        tl.store(db_ptr + cols, db, mask=col_mask)


# ---------------------------------------------------------------------------------------------- launchers


def launch_config(dtype: torch.dtype, rows: int, *, gpu: bool, tf32: bool = False) -> dict[str, int]:
    """Tile sizes (BLOCK_M, BLOCK_V, BLOCK_D) and, on GPU, num_warps / num_stages of all three kernels, for hidden
    states of `dtype` with `rows` rows (`tf32`: fp32 inputs with tf32 dots). Under the interpreter (``gpu=False``)
    big tiles mean fewer simulated ops; on GPU they are tensor-core friendly and, per ``scripts/aot_kernels.py``
    (which compiles exactly these for sm_80 and sm_90), spill no register."""
    if not gpu:
        return {"BLOCK_M": 16 if rows <= 16 else 64, "BLOCK_V": 256, "BLOCK_D": 512}
    if dtype == torch.float32 and tf32:
        return {"BLOCK_M": 64, "BLOCK_V": 64, "BLOCK_D": 32, "num_warps": 4, "num_stages": 2}
    if dtype == torch.float32:
        # IEEE fp32 dots run on the FMA units, whose operand layouts need many more registers: 64 x 64 x 32 tiles
        # spilled kilobytes in the backward kernels on both targets (and 64 x 64 x 8 over 8 warps still 44 bytes).
        return {"BLOCK_M": 32, "BLOCK_V": 64, "BLOCK_D": 8, "num_warps": 4, "num_stages": 2}
    # 8 warps: with 4 the forward and dW kernels hit 255 registers and spilled on sm_80 and sm_90.
    return {"BLOCK_M": 64, "BLOCK_V": 128, "BLOCK_D": 64, "num_warps": 8, "num_stages": 3}


def _blocks(hidden: torch.Tensor) -> dict[str, int]:
    gpu = planned_sms(hidden) is not None
    return launch_config(hidden.dtype, hidden.shape[0], gpu=gpu, tf32=gpu and _dot_precision(hidden) == "tf32")


def _dot_precision(hidden: torch.Tensor) -> str:
    """fp32 inputs follow torch's matmul setting (tf32 unless 'highest'); other dtypes ignore it."""
    if planned_sms(hidden) is None:
        return "ieee"
    return "ieee" if torch.get_float32_matmul_precision() == "highest" else "tf32"


def num_splits(sms: int | None, vocab: int, row_blocks: int, block_v: int, most: int) -> int:
    """Vocabulary splits so that a small M still fills a GPU of `sms` SMs (about two programs per SM); 1 without
    one (interpreter)."""
    if sms is None:
        return 1
    return max(1, min(most, triton.cdiv(2 * sms, row_blocks), triton.cdiv(vocab, block_v)))


def _num_splits(hidden: torch.Tensor, vocab: int, row_blocks: int, block_v: int, most: int) -> int:
    return num_splits(planned_sms(hidden), vocab, row_blocks, block_v, most)


def _split_range(vocab: int, splits: int, block_v: int) -> tuple[int, int]:
    """(columns per split, a multiple of block_v; number of non-empty splits)."""
    per_split = triton.cdiv(triton.cdiv(vocab, splits), block_v) * block_v
    return per_split, triton.cdiv(vocab, per_split)


def _check_offsets(hidden: torch.Tensor, weight: torch.Tensor) -> None:
    """The kernels index with 32-bit products (rows · stride, split · M · d): refuse what would overflow."""
    span = max(
        (hidden.shape[0] - 1) * hidden.stride(0) + (hidden.shape[1] - 1) * hidden.stride(1),
        (weight.shape[0] - 1) * weight.stride(0) + (weight.shape[1] - 1) * weight.stride(1),
        4 * hidden.shape[0] * hidden.shape[1],
        weight.shape[0] * weight.shape[1],
    )
    if span >= 2**31:
        raise ValueError(f"masked_lm_loss (triton): tensors too large for 32-bit offsets ({span} elements)")


def _launch_options(blocks: dict[str, int]) -> dict[str, int]:
    return {k: v for k, v in blocks.items() if k in ("num_warps", "num_stages")}


def masked_lm_loss_forward(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    labels: torch.Tensor,
    *,
    ignore_index: int = -100,
    label_smoothing: float = 0.0,
    splits: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Run the forward kernel. Returns (loss fp32 scalar, lse fp32 [M], predictions int64 [M], n_valid).

    `splits` forces the number of vocabulary splits (tests); None picks one that fills the GPU.
    """
    rows, width = hidden.shape
    vocab = weight.shape[0]
    device = hidden.device
    valid = labels != ignore_index
    n_valid = valid.sum()
    if rows == 0:
        empty = torch.empty(0, dtype=torch.float32, device=device)
        return empty.sum(), empty, torch.empty(0, dtype=torch.int64, device=device), n_valid
    blocks = _blocks(hidden)
    row_blocks = triton.cdiv(rows, blocks["BLOCK_M"])
    if splits is None:
        splits = _num_splits(hidden, vocab, row_blocks, blocks["BLOCK_V"], most=16)
    per_split, splits = _split_range(vocab, max(1, splits), blocks["BLOCK_V"])
    stats = torch.empty((5, splits, rows), dtype=torch.float32, device=device)
    best_index = torch.empty((splits, rows), dtype=torch.int64, device=device)
    running_max, sum_exp, target, sum_logits, best = stats.unbind(0)
    launch(
        _masked_lm_loss_fwd_kernel,
        (row_blocks, splits),
        hidden,
        weight,
        bias if bias is not None else hidden,  # dummy pointer when HAS_BIAS is False
        labels,
        running_max,
        sum_exp,
        target,
        sum_logits,
        best,
        best_index,
        rows,
        vocab,
        width,
        per_split,
        hidden.stride(0),
        hidden.stride(1),
        weight.stride(0),
        weight.stride(1),
        bias.stride(0) if bias is not None else 0,
        labels.stride(0),
        HAS_BIAS=bias is not None,
        DOT_PRECISION=_dot_precision(hidden),
        BLOCK_M=blocks["BLOCK_M"],
        BLOCK_V=blocks["BLOCK_V"],
        BLOCK_D=blocks["BLOCK_D"],
        **_launch_options(blocks),
    )
    if splits == 1:
        lse = running_max[0] + torch.log(sum_exp[0])
        predictions = best_index[0]
    else:  # merge per-split statistics: O(splits · M)
        overall = running_max.amax(dim=0)
        lse = overall + torch.log((sum_exp * torch.exp(running_max - overall)).sum(dim=0))
        winner = best.argmax(dim=0)  # first split holding the maximum: lowest index on ties
        predictions = best_index.gather(0, winner[None]).squeeze(0)
    eps = label_smoothing
    per_row = lse - (1.0 - eps) * target.sum(dim=0) - eps * sum_logits.sum(dim=0) / vocab
    loss = torch.where(valid, per_row, 0.0).sum() / n_valid.clamp(min=1)
    return loss, lse, predictions, n_valid


def masked_lm_loss_backward(
    grad_loss: torch.Tensor,
    hidden: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    labels: torch.Tensor,
    lse: torch.Tensor,
    n_valid: torch.Tensor,
    *,
    ignore_index: int = -100,
    label_smoothing: float = 0.0,
    needs: tuple[bool, bool, bool] = (True, True, True),
    splits: int | None = None,
) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
    """Gradients (hidden, weight, bias) in their input dtypes; None where `needs` is False."""
    rows, width = hidden.shape
    vocab = weight.shape[0]
    need_h, need_w, need_b = needs[0], needs[1], needs[2] and bias is not None
    scale = grad_loss.float() / n_valid.clamp(min=1)  # device scalar: no host sync
    if rows == 0:
        zero_h = torch.zeros_like(hidden) if need_h else None
        zero_w = torch.zeros_like(weight) if need_w else None
        return zero_h, zero_w, torch.zeros_like(bias) if need_b else None
    blocks = _blocks(hidden)
    common = dict(
        HAS_BIAS=bias is not None,
        DOT_PRECISION=_dot_precision(hidden),
        BLOCK_M=blocks["BLOCK_M"],
        BLOCK_V=blocks["BLOCK_V"],
        BLOCK_D=blocks["BLOCK_D"],
        **_launch_options(blocks),
    )
    strides = (
        hidden.stride(0),
        hidden.stride(1),
        weight.stride(0),
        weight.stride(1),
        bias.stride(0) if bias is not None else 0,
        labels.stride(0),
    )
    bias_arg = bias if bias is not None else hidden
    grad_w = grad_b = grad_h = None
    if need_w or need_b:  # first, so its [V, d] fp32 buffer is freed before the dh buffer exists
        dw = torch.zeros((vocab, width), dtype=torch.float32, device=hidden.device)
        db = torch.empty(vocab if bias is not None else 1, dtype=torch.float32, device=hidden.device)
        launch(
            _masked_lm_loss_bwd_dw_kernel,
            (triton.cdiv(vocab, blocks["BLOCK_V"]),),
            hidden,
            weight,
            bias_arg,
            labels,
            lse,
            dw,
            db,
            rows,
            vocab,
            width,
            ignore_index,
            float(label_smoothing),
            *strides,
            **common,
        )
        if need_w:
            grad_w = dw.mul_(scale).to(weight.dtype)
        del dw
        if need_b:
            grad_b = db.mul_(scale).to(bias.dtype)
    if need_h:
        row_blocks = triton.cdiv(rows, blocks["BLOCK_M"])
        if splits is None:
            splits = _num_splits(hidden, vocab, row_blocks, blocks["BLOCK_V"], most=4)
        per_split, splits = _split_range(vocab, max(1, splits), blocks["BLOCK_V"])
        dh = torch.zeros((splits, rows, width), dtype=torch.float32, device=hidden.device)
        launch(
            _masked_lm_loss_bwd_dh_kernel,
            (row_blocks, splits),
            hidden,
            weight,
            bias_arg,
            labels,
            lse,
            dh,
            rows,
            vocab,
            width,
            per_split,
            ignore_index,
            float(label_smoothing),
            *strides,
            **common,
        )
        grad_h = (dh[0] if splits == 1 else dh.sum(dim=0)).mul_(scale).to(hidden.dtype)
    return grad_h, grad_w, grad_b


class MaskedLMLossFunction(torch.autograd.Function):
    """autograd wrapper: forward returns (loss, predictions); saves hidden, weight, bias, labels, lse."""

    @staticmethod
    def forward(ctx, hidden, weight, bias, labels, ignore_index, label_smoothing):
        loss, lse, predictions, n_valid = masked_lm_loss_forward(
            hidden, weight, bias, labels, ignore_index=ignore_index, label_smoothing=label_smoothing
        )
        ctx.save_for_backward(hidden, weight, bias, labels, lse, n_valid)
        ctx.ignore_index, ctx.label_smoothing = ignore_index, label_smoothing
        ctx.mark_non_differentiable(predictions)
        return loss, predictions

    @staticmethod
    def backward(ctx, grad_loss, _grad_predictions):
        hidden, weight, bias, labels, lse, n_valid = ctx.saved_tensors
        grad_h, grad_w, grad_b = masked_lm_loss_backward(
            grad_loss,
            hidden,
            weight,
            bias,
            labels,
            lse,
            n_valid,
            ignore_index=ctx.ignore_index,
            label_smoothing=ctx.label_smoothing,
            needs=tuple(ctx.needs_input_grad[:3]),
        )
        return grad_h, grad_w, grad_b, None, None, None


def masked_lm_loss_triton(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    labels: torch.Tensor,
    *,
    ignore_index: int = -100,
    label_smoothing: float = 0.0,
    return_predictions: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """The Triton implementation behind `bertkit.ops.masked_lm_loss(…, impl="triton")`."""
    check_label_range(labels, weight.shape[0], ignore_index)
    _check_offsets(hidden, weight)
    loss, predictions = MaskedLMLossFunction.apply(
        hidden, weight, bias, labels, int(ignore_index), float(label_smoothing)
    )
    return (loss, predictions) if return_predictions else loss
