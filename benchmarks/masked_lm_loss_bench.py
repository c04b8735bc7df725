"""Fused masked-token loss vs the usual heads: forward+backward time and peak memory (same-run ratios).

BERT-base MLM step shape: batch 256 × 128 tokens, 15 % masked → M = 4915 rows, d = 768, V = 30522, bf16.

    anchor (a): gather the masked rows, logits = F.linear(rows, W, b) ([M, V] bf16), F.cross_entropy
    anchor (b): the full-vocabulary head on all 256·128 positions, labels −100 off the masked ones
    bertkit   : gather the masked rows, bertkit.ops.masked_lm_loss(impl="triton") (no [M, V] buffer)

Each variant's time is the median of triton.testing.do_bench over forward+backward (gradients for the
full hidden states, W and b); peak memory is torch.cuda.max_memory_allocated above what the inputs
hold, for one forward+backward. Targets: ≥ 1.3× faster and ≤ 0.2× memory than (a); ≥ 5× faster than (b).

Needs CUDA. Without it, prints that it was skipped and times the CPU implementations (reference vs
chunked) at a smaller shape.

    python benchmarks/masked_lm_loss_bench.py [--batch 256 --seq 128 --mask 0.15 --vocab 30522 --width 768]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _common import header, row  # noqa: E402


def make_inputs(torch, batch, seq, mask, vocab, width, dtype, device):
    """Full hidden states [B·T, d], tied decoder, bias, masked positions (fixed count) and their labels."""
    positions = batch * seq
    rows = int(mask * positions)
    gen = torch.Generator(device="cpu").manual_seed(0)
    hidden = torch.randn(positions, width, generator=gen).to(device=device, dtype=dtype).requires_grad_()
    weight = (torch.randn(vocab, width, generator=gen) * 0.02).to(device=device, dtype=dtype).requires_grad_()
    bias = torch.zeros(vocab, device=device, dtype=dtype).requires_grad_()
    index = torch.randperm(positions, generator=gen)[:rows].sort().values.to(device)
    labels = torch.randint(0, vocab, (rows,), generator=gen).to(device)
    full_labels = torch.full((positions,), -100, dtype=torch.long, device=device)
    full_labels[index] = labels
    return hidden, weight, bias, index, labels, full_labels


def variants(torch, hidden, weight, bias, index, labels, full_labels):
    import torch.nn.functional as F

    from bertkit.ops import masked_lm_loss

    def gathered_head():  # (a)
        logits = F.linear(hidden.index_select(0, index), weight, bias)
        F.cross_entropy(logits, labels).backward()

    def full_head():  # (b)
        logits = F.linear(hidden, weight, bias)
        F.cross_entropy(logits, full_labels).backward()

    def fused():
        masked_lm_loss(hidden.index_select(0, index), weight, bias, labels, impl="triton").backward()

    return {"(a) gather + matmul + cross_entropy": gathered_head, "(b) full head": full_head, "bertkit": fused}


def gpu(args) -> None:
    import torch
    import triton.testing

    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[args.dtype]
    inputs = make_inputs(torch, args.batch, args.seq, args.mask, args.vocab, args.width, dtype, "cuda")
    hidden, weight, bias = inputs[:3]
    params = [hidden, weight, bias]
    runs = variants(torch, *inputs)
    times, peaks = {}, {}
    for name, fn in runs.items():
        for p in params:
            p.grad = None
        fn()  # compile / warm up
        for p in params:
            p.grad = None
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        fn()
        torch.cuda.synchronize()
        peaks[name] = torch.cuda.max_memory_allocated() - base
        times[name] = statistics.median(
            triton.testing.do_bench(fn, grad_to_none=params, return_mode="median") for _ in range(args.repeats)
        )
    rows = inputs[4].shape[0]
    print(
        f"M = {rows} masked rows of {args.batch}×{args.seq}, d = {args.width}, V = {args.vocab}, {args.dtype}; "
        f"{torch.cuda.get_device_name()}, torch {torch.__version__}, triton {triton.__version__}"
    )
    header("masked_lm_loss forward+backward")
    ours_t, ours_m = times["bertkit"], peaks["bertkit"]
    a, b = "(a) gather + matmul + cross_entropy", "(b) full head"
    row(f"time vs {a}", f"{times[a]:.3f} ms", f"{ours_t:.3f} ms", times[a] / ours_t, "≥ 1.3x faster")
    row(f"peak memory vs {a}", f"{peaks[a] / 2**20:.0f} MiB", f"{ours_m / 2**20:.0f} MiB", ours_m / peaks[a], "≤ 0.2x")
    row(f"time vs {b}", f"{times[b]:.3f} ms", f"{ours_t:.3f} ms", times[b] / ours_t, "≥ 5x faster")
    row(f"peak memory vs {b}", f"{peaks[b] / 2**20:.0f} MiB", f"{ours_m / 2**20:.0f} MiB", ours_m / peaks[b], "")
    print("\n(time ratio = anchor / bertkit, higher is better; memory ratio = bertkit / anchor, lower is better)")


def cpu(args) -> None:
    import torch

    from bertkit.ops import masked_lm_loss

    print("masked_lm_loss GPU benchmark skipped: CUDA is not available.")
    rows, vocab, width = args.cpu_rows, args.cpu_vocab, args.cpu_width
    gen = torch.Generator().manual_seed(0)
    hidden = torch.randn(rows, width, generator=gen).requires_grad_()
    weight = (torch.randn(vocab, width, generator=gen) * 0.02).requires_grad_()
    bias = torch.zeros(vocab).requires_grad_()
    labels = torch.randint(0, vocab, (rows,), generator=gen)
    timings: dict[str, list[float]] = {"reference": [], "chunked": []}
    for _ in range(args.repeats):
        for impl, samples in timings.items():  # interleaved, so machine noise hits both alike
            for p in (hidden, weight, bias):
                p.grad = None
            t0 = time.perf_counter()
            masked_lm_loss(hidden, weight, bias, labels, impl=impl).backward()
            samples.append(time.perf_counter() - t0)
    ref, chunked = statistics.median(timings["reference"]), statistics.median(timings["chunked"])
    threads = torch.get_num_threads()
    header(f"CPU masked_lm_loss forward+backward, M = {rows}, d = {width}, V = {vocab}, fp32, {threads} threads")
    logits_mib = rows * vocab * 4 / 2**20
    row(
        "time, reference (materialises logits) vs chunked",
        f"{ref * 1e3:.1f} ms",
        f"{chunked * 1e3:.1f} ms",
        ref / chunked,
    )
    print(
        f"\nmedian of {args.repeats}; the reference holds [M, V] fp32 logits and their gradient ({logits_mib:.0f} MiB)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--mask", type=float, default=0.15)
    parser.add_argument("--vocab", type=int, default=30522)
    parser.add_argument("--width", type=int, default=768)
    parser.add_argument("--dtype", choices=["bf16", "fp16", "fp32"], default="bf16")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--cpu-rows", type=int, default=512)
    parser.add_argument("--cpu-vocab", type=int, default=8192)
    parser.add_argument("--cpu-width", type=int, default=256)
    args = parser.parse_args()
    import torch

    if torch.cuda.is_available():
        gpu(args)
    else:
        cpu(args)


if __name__ == "__main__":
    main()
