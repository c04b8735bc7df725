"""ELC-BERT layer mixing: one whole mixing pass, forward+backward, bertkit against two PyTorch forms (same-run ratios).

A pass as in an ELC-BERT forward/backward with 12 layers: h_0 is appended; layer n = 1 … 12 mixes the first n outputs
with its own logits w_n (softmax), a stand-in layer turns the mix into h_n (one elementwise scale, the same in every
variant) and h_n is appended; backward runs from h_12 through all 12 mixes to h_0 and every w_n.

    anchor (a): the eager Python loop of ltgoslo/elc-bert (`x = w[0]·h[0]; x = x + w[i]·h[i] …` over a list)
    anchor (b): one `torch.tensordot` over `torch.stack`ed outputs per layer (DenseFormer-style)
    bertkit   : `bertkit.ops.LayerOutputs` (preallocated buffer, no stacks; Triton on CUDA, torch kernels on CPU)

GPU (targets): base width d = 768 over 256×128 tokens in bf16; time = median of `triton.testing.do_bench` over the
pass, peak memory = `torch.cuda.max_memory_allocated` above the inputs for one pass. Targets: ≥ 3× faster than (a),
≥ 1.3× faster than (b). Without CUDA: the same pass at a smaller token count in fp32 (torch kernels), median wall
time of interleaved repeats; memory = peak RSS of one pass in a fresh process minus that of building the inputs.

    python benchmarks/layer_mix_bench.py [--layers 12 --batch 256 --seq 128 --width 768 --dtype bf16]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _common import header, peak_rss_of, row  # noqa: E402

VARIANTS = {"a": "(a) eager loop (ELC-BERT)", "b": "(b) stack + tensordot", "bertkit": "bertkit"}


def make_inputs(torch, layers, tokens, width, dtype, device):
    """h_0 [tokens, d], the per-layer logits w_n [n] (leaves) and the gradient that seeds backward at h_L."""
    gen = torch.Generator(device="cpu").manual_seed(0)
    h0 = torch.randn(tokens, width, generator=gen).to(device=device, dtype=dtype).requires_grad_()
    logits = [(torch.randn(n, generator=gen) * 0.5).to(device).requires_grad_() for n in range(1, layers + 1)]
    seed = torch.randn(tokens, width, generator=gen).to(device=device, dtype=dtype)
    return h0, logits, seed


def layer(x, n):
    """The stand-in for layer n (same in every variant): a new tensor computed from the mix."""
    return x * (1.0 + 0.01 * n)


def variants(torch, h0, logits, seed, impl=None):
    from bertkit.ops import LayerOutputs

    def eager_loop():  # (a) models/model_elc_bert_base.py, Encoder + EncoderLayer.forward
        hidden_states = [h0]
        for n, w in enumerate(logits, start=1):
            weights = torch.softmax(w, dim=-1)
            x = weights[0] * hidden_states[0]
            for i, hidden_state in enumerate(hidden_states[1:]):
                x = x + weights[i + 1] * hidden_state
            hidden_states.append(layer(x, n))
        hidden_states[-1].backward(seed)

    def stacked_tensordot():  # (b)
        hidden_states = [h0]
        for n, w in enumerate(logits, start=1):
            weights = torch.softmax(w, dim=-1).to(h0.dtype)
            x = torch.tensordot(weights, torch.stack(hidden_states), dims=1)
            hidden_states.append(layer(x, n))
        hidden_states[-1].backward(seed)

    def bertkit():
        outputs = LayerOutputs(len(logits) + 1, impl=impl)
        outputs.append(h0)
        h = h0
        for n, w in enumerate(logits, start=1):
            h = layer(outputs.mix(w), n)
            outputs.append(h)
        h.backward(seed)

    return {"(a) eager loop (ELC-BERT)": eager_loop, "(b) stack + tensordot": stacked_tensordot, "bertkit": bertkit}


def check_agreement(torch, runs, params):
    """Every variant's gradients against the eager loop's: printed, and a gross difference (a variant computing
    something else) stops the benchmark. The logits' gradients lose relative precision to cancellation in the
    softmax Jacobian (w ⊙ (g − ⟨w, g⟩) with g a sum over all tokens), more so in bf16, so they are only printed."""
    grads = {}
    for name, fn in runs.items():
        for p in params:
            p.grad = None
        fn()
        grads[name] = [p.grad.double().clone() for p in params]
    ref = grads["(a) eager loop (ELC-BERT)"]

    def relative(a, b):
        return float((a - b).abs().max()) / max(float(b.abs().max()), 1e-30)

    for name, gs in grads.items():
        h0_err = relative(gs[0], ref[0])
        logits_err = max(relative(g, r) for g, r in zip(gs[1:], ref[1:], strict=True))
        print(f"{name}: max relative difference from the eager loop: h0 {h0_err:.1e}, logits {logits_err:.1e}")
        if h0_err > 0.1 or logits_err > 0.5:
            raise SystemExit(f"{name}: gradients differ from the eager loop")


def report(title, times, peaks, *, on_gpu):
    header(title)
    ours = times["bertkit"]
    for name, target in (("(a) eager loop (ELC-BERT)", "≥ 3x faster"), ("(b) stack + tensordot", "≥ 1.3x faster")):
        target = target if on_gpu else f"(GPU target {target})"
        row(f"time vs {name}", f"{times[name]:.2f} ms", f"{ours:.2f} ms", times[name] / ours, target)
        if peaks:
            mib = 2**20
            row(f"peak memory vs {name}", f"{peaks[name] / mib:.0f} MiB", f"{peaks['bertkit'] / mib:.0f} MiB",
                peaks["bertkit"] / peaks[name])  # fmt: skip
    memory = "; memory ratio = bertkit / anchor, lower is better" if peaks else ""
    print(f"\n(time ratio = anchor / bertkit, higher is better{memory})")


def gpu(args) -> None:
    import torch
    import triton
    import triton.testing

    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[args.dtype]
    tokens = args.batch * args.seq
    h0, logits, seed = make_inputs(torch, args.layers, tokens, args.width, dtype, "cuda")
    params = [h0, *logits]
    runs = variants(torch, h0, logits, seed)
    check_agreement(torch, runs, params)
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
    print(
        f"{args.layers} layers, {args.batch}×{args.seq} tokens, d = {args.width}, {args.dtype}; "
        f"{torch.cuda.get_device_name()}, torch {torch.__version__}, triton {triton.__version__}"
    )
    report(f"layer mixing pass forward+backward ({args.layers} mixes + appends)", times, peaks, on_gpu=True)


def cpu(args) -> None:
    import torch

    print("layer_mix GPU benchmark skipped: CUDA is not available; CPU figures (torch kernels, fp32) follow.")
    tokens = args.cpu_batch * args.seq
    h0, logits, seed = make_inputs(torch, args.layers, tokens, args.width, torch.float32, "cpu")
    params = [h0, *logits]
    runs = variants(torch, h0, logits, seed, impl="torch")
    check_agreement(torch, runs, params)
    samples: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(args.repeats):
        for name, fn in runs.items():  # interleaved, so machine noise hits all alike
            for p in params:
                p.grad = None
            t0 = time.perf_counter()
            fn()
            samples[name].append((time.perf_counter() - t0) * 1e3)
    times = {name: statistics.median(s) for name, s in samples.items()}
    # peak memory: each variant's pass in a fresh process, peak RSS minus that of a process that only builds inputs
    command = [sys.executable, __file__, "--layers", str(args.layers), "--seq", str(args.seq)]
    command += ["--width", str(args.width), "--cpu-batch", str(args.cpu_batch), "--only"]
    baseline = peak_rss_of([*command, "none"])[1]
    peaks = {name: peak_rss_of([*command, key])[1] - baseline for key, name in VARIANTS.items()}
    threads = torch.get_num_threads()
    title = f"CPU layer mixing pass, {args.layers} layers, {args.cpu_batch}×{args.seq} tokens, d = {args.width}, fp32"
    report(f"{title}, {threads} threads (median of {args.repeats}; memory: peak RSS above inputs)", times, peaks,
           on_gpu=False)  # fmt: skip


def only(args) -> None:
    """One pass of one variant on CPU (or none: inputs only), for the peak-RSS measurement."""
    import torch

    tokens = args.cpu_batch * args.seq
    h0, logits, seed = make_inputs(torch, args.layers, tokens, args.width, torch.float32, "cpu")
    if args.only != "none":
        variants(torch, h0, logits, seed, impl="torch")[VARIANTS[args.only]]()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--width", type=int, default=768)
    parser.add_argument("--dtype", choices=["bf16", "fp16", "fp32"], default="bf16")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--cpu-batch", type=int, default=16, help="batch on CPU (tokens = cpu_batch × seq)")
    parser.add_argument("--only", choices=[*VARIANTS, "none"], help=argparse.SUPPRESS)  # internal: peak RSS runs
    args = parser.parse_args()
    import torch

    if args.only:
        only(args)
    elif torch.cuda.is_available():
        gpu(args)
    else:
        cpu(args)


if __name__ == "__main__":
    main()
