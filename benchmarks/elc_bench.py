"""ELC-BERT against its LTG-BERT backbone: training-step cost of the layer mixing, and held-out MLM quality.

    python benchmarks/elc_bench.py [--repeat 3] [--quality-steps 120] [--skip-quality] [--work DIR]
    python benchmarks/elc_bench.py --cuda-only          # on a GPU machine: base / seq 128 / bf16

Same run, same machine; the models' steps interleave one by one (the order alternates), and the table shows the
median over rounds of each round's median step.

- Step time: one training step (forward, backward, AdamW step) of `elc-bert` in each variant (base, zero,
  normalized, weighted_output) against `ltg-bert` of the same shape, built from the same seed, on the same masked
  batches. CPU: 12 layers at width 192 (3 heads, d_ff 512, V 6144), B4×128, fp32, timed in process CPU seconds on
  one thread (`time.process_time`: other jobs on a shared machine barely move it). CUDA (when available): the
  `base` preset (768, 12 layers, V 16384), B128×128, bf16 autocast, fused AdamW. Target: ELC ≤ 1.15× LTG.
  The mixing runs through `bertkit.ops.layer_mix.LayerOutputs` (the plain-PyTorch reference on CPU).
- Quality: the `tiny` presets of `elc-bert` (variant zero) and `ltg-bert` trained identically on the news corpus
  ($BERTKIT_DATA/news.txt prepared with the bert-base-uncased vocabulary, cached under `--work`): same data order,
  same masks (the trainer's token masking), no dropout, AdamW with linear warmup/decay as benchmarks/train_bench.py
  trains BERT (`--quality-recipe bert`) or the original's LAMB recipe (`--quality-recipe elc`); held-out MLM
  accuracy side by side. The mixing logits train at `bertkit train`'s automatic `mix_lr_scale` (10× the lr under
  AdamW, 1× under the elc recipe; `--mix-lr-scale` overrides). Target: ELC-BERT not below LTG-BERT.

Figures on the shared 2-core CI machine are noisy (other jobs run beside them): quote the medians and the ratio
measured in the same run, never a single timing. CPU work runs on `--threads` threads (default 1: on a loaded
machine two OpenMP threads per process oversubscribe the cores and steps slow down tenfold).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from _common import DATA, header, median, row  # noqa: E402

VARIANTS = ("base", "zero", "normalized", "weighted_output")
CPU_SHAPE = {
    "hidden_size": 192,
    "num_attention_heads": 3,
    "intermediate_size": 512,
    "num_hidden_layers": 12,
    "vocab_size": 6144,
}
MASK_RATE = 0.15


def build(arch: str, variant: str | None, preset: str, overrides: dict, seed: int = 0):
    """A pretraining model of ``arch`` (ELC-BERT: ``variant``) initialised from ``seed``."""
    import torch

    from bertkit.models import build_model

    torch.manual_seed(seed)
    extra = {"variant": variant} if variant else {}
    return build_model(arch, preset, **overrides, **extra)


def synthetic_batches(n: int, batch: int, seq_len: int, vocab: int, seed: int = 1):
    """Random ids (above 7) with 15 % of the positions masked, a fixed count per batch as the trainer masks."""
    import torch

    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        ids = torch.randint(7, vocab, (batch, seq_len), generator=g)
        m = round(MASK_RATE * batch * seq_len)
        positions = torch.randperm(batch * seq_len, generator=g)[:m].sort().values
        labels = ids.reshape(-1)[positions].clone()
        masked = ids.clone().reshape(-1)
        masked[positions] = 4
        out.append((masked.reshape(batch, seq_len), positions, labels))
    return out


def step_times(
    device_name: str, preset: str, overrides: dict, batch: int, seq_len: int, steps: int, warmup: int, repeat: int
) -> dict[str, list[float]]:
    """Median seconds per training step of every model in every round (models alternate within a round)."""
    import contextlib

    import torch

    from bertkit.train.optim import build_optimizer

    device = torch.device(device_name)
    names = ["ltg-bert", *(f"elc-bert/{v}" for v in VARIANTS)]
    models, optimizers = {}, {}
    for name in names:
        arch, _, variant = name.partition("/")
        models[name] = build(arch, variant or None, preset, overrides).to(device).train()
        optimizers[name] = build_optimizer(models[name], name="adamw", lr=1e-4, weight_decay=0.01)
    vocab = models["ltg-bert"].config.vocab_size
    batches = [tuple(t.to(device) for t in b) for b in synthetic_batches(4, batch, seq_len, vocab)]
    cuda = device.type == "cuda"
    autocast = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if cuda else contextlib.nullcontext
    sync = torch.cuda.synchronize if cuda else (lambda: None)

    def one_step(name: str, i: int) -> None:
        ids, positions, labels = batches[i % len(batches)]
        with autocast():
            loss = models[name](ids, mlm_positions=positions, mlm_labels=labels).loss
        loss.backward()
        optimizers[name].step()
        optimizers[name].zero_grad(set_to_none=True)

    # CPU: the process's CPU time (one thread), which other jobs on the machine barely disturb; CUDA: wall time.
    clock = time.perf_counter if cuda else time.process_time
    times: dict[str, list[float]] = {name: [] for name in names}
    for name in names:
        for i in range(warmup):
            one_step(name, i)
    for r in range(repeat):
        per_step: dict[str, list[float]] = {name: [] for name in names}
        for i in range(steps):  # interleaved step by step: a slow spell of the machine hits every model
            order = names if (r + i) % 2 == 0 else names[::-1]
            for name in order:
                sync()
                t0 = clock()
                one_step(name, i)
                sync()
                per_step[name].append(clock() - t0)
        for name in names:
            times[name].append(median(per_step[name]))
    return times


def print_step_times(times: dict[str, list[float]], what: str) -> None:
    ltg = median(times["ltg-bert"])
    for variant in VARIANTS:
        elc = median(times[f"elc-bert/{variant}"])
        row(
            f"step time, ELC-BERT {variant} ({what})",
            f"LTG-BERT {1e3 * ltg:.1f} ms",
            f"{1e3 * elc:.1f} ms",
            elc / ltg,
            "≤ 1.15×",
        )
    rounds = {name: [f"{1e3 * t:.1f}" for t in ts] for name, ts in times.items()}
    print(f"<!-- {what} rounds (ms): {rounds} -->", flush=True)


# ------------------------------------------------------------------------------------------------- quality


def quality(
    steps: int,
    batch: int,
    seq_len: int,
    lr: float | None,
    eval_batches: int,
    seed: int,
    work: Path,
    recipe: str,
    mix_lr_scale: float | None = None,
) -> dict:
    """Tiny ELC-BERT (zero) and tiny LTG-BERT trained on identical batches; held-out MLM accuracy of each.

    ``recipe``: ``bert`` (train_bench's BERT check: AdamW 2e-3, wd 0.01, linear, 10 % warmup, clip 1.0) or ``elc``
    (the original's optimiser: LAMB 1e-2 with its trust-ratio quirk, betas (0.9, 0.98), wd 0.1 without decay on
    embeddings, cosine to 10 % after 1.6 % warmup, clip 2.0)."""
    import torch
    from train_bench import prepared_news

    from bertkit.data.loader import PretrainingData, StreamState
    from bertkit.train.config import TrainConfig
    from bertkit.train.optim import build_optimizer
    from bertkit.train.schedules import make_lr_lambda
    from bertkit.train.trainer import _Batcher, _mask_seed

    ds = prepared_news(DATA / "vocab.txt", work)
    cfg = TrainConfig(data=str(ds), seed=seed, device="cpu", eval_fraction=0.02)
    train_data = PretrainingData(ds, view="mlm", seq_len=seq_len, batch_size=batch, seed=seed, eval_fraction=0.02)
    eval_data = PretrainingData(
        ds, view="mlm", seq_len=seq_len, batch_size=batch, seed=seed, split="eval", eval_fraction=0.02, drop_last=True
    )
    batcher = _Batcher(cfg, train_data, torch.device("cpu"))
    train_inputs, eval_inputs = [], []
    for i, (b, _) in enumerate(train_data.batches(StreamState())):
        if i >= steps:
            break
        train_inputs.append(batcher(b, _mask_seed(seed, 1, i)))
    for i, (b, _) in enumerate(eval_data.batches(StreamState())):
        if i >= eval_batches:
            break
        eval_inputs.append(batcher(b, _mask_seed(seed, 2, i)))

    no_dropout = {"hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0, "vocab_size": train_data.vocab_size}
    results = {}
    if mix_lr_scale is None:  # what `bertkit train` would use with this recipe's optimiser
        elc = recipe == "elc"
        mix_lr_scale = TrainConfig(
            optimizer="lamb" if elc else "adamw", lamb_trust_ratio="elc-faithful" if elc else "standard"
        ).resolved_mix_lr_scale()
    for name, arch, variant in (("ltg-bert", "ltg-bert", None), ("elc-bert zero", "elc-bert", "zero")):
        model = build(arch, variant, "tiny", no_dropout, seed=seed).train()
        if recipe == "elc":
            opt = build_optimizer(
                model,
                name="lamb",
                lr=lr or 1e-2,
                betas=(0.9, 0.98),
                eps=1e-6,
                weight_decay=0.1,
                decay_embeddings=False,
                trust_ratio="elc-faithful",
                mix_lr_scale=mix_lr_scale,
            )
            schedule = make_lr_lambda(
                schedule="cosine", warmup=max(1, round(0.016 * steps)), max_steps=steps, min_lr_ratio=0.1
            )
            clip = 2.0
        else:
            opt = build_optimizer(model, name="adamw", lr=lr or 2e-3, weight_decay=0.01, mix_lr_scale=mix_lr_scale)
            schedule = make_lr_lambda(schedule="linear", warmup=max(1, steps // 10), max_steps=steps, min_lr_ratio=0.0)
            clip = 1.0
        sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule)
        torch.manual_seed(seed)
        t0 = time.perf_counter()
        losses = []
        for inputs in train_inputs:
            loss = model(**inputs).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            losses.append(float(loss.detach()))
        train_s = time.perf_counter() - t0
        model.eval()
        hits = count = 0
        with torch.no_grad():
            for inputs in eval_inputs:
                out = model(**inputs)
                hits += int(out.mlm_correct)
                count += int(out.mlm_count)
        results[name] = {
            "accuracy": hits / max(count, 1),
            "masked": count,
            "final_loss": sum(losses[-10:]) / len(losses[-10:]),
            "train_s": train_s,
        }
        if variant == "zero":
            weights = [torch.softmax(layer.prev_layer_weights.detach(), 0) for layer in model.transformer.layers]
            results[name]["mixing"] = [[round(float(w), 2) for w in ws] for ws in weights]
    return results


# ---------------------------------------------------------------------------------------------------- main


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=3, help="rounds of step-time measurements (medians)")
    ap.add_argument("--cpu-batch", type=int, default=4)
    ap.add_argument("--cpu-steps", type=int, default=3, help="timed steps per model and round (CPU)")
    ap.add_argument("--gpu-batch", type=int, default=128)
    ap.add_argument("--gpu-steps", type=int, default=20)
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--quality-steps", type=int, default=120)
    ap.add_argument("--quality-batch", type=int, default=16)
    ap.add_argument("--quality-lr", type=float, default=None, help="default: 2e-3 (bert recipe), 1e-2 (elc)")
    ap.add_argument(
        "--quality-recipe",
        choices=("bert", "elc"),
        default="bert",
        help="bert: as train_bench trains BERT (AdamW); elc: the original's LAMB recipe",
    )
    ap.add_argument("--quality-eval-batches", type=int, default=20)
    ap.add_argument(
        "--mix-lr-scale",
        type=float,
        default=None,
        help="lr multiplier of ELC-BERT's mixing logits (default: bertkit train's automatic value, 10 for AdamW, "
        "1 for the elc recipe)",
    )
    ap.add_argument(
        "--work",
        type=Path,
        default=Path(tempfile.gettempdir()) / "bertkit-elc-bench",
        help="where the prepared news dataset is cached",
    )
    ap.add_argument("--threads", type=int, default=1, help="CPU threads (torch.set_num_threads)")
    ap.add_argument("--skip-cpu", action="store_true")
    ap.add_argument("--skip-quality", action="store_true")
    ap.add_argument("--cuda-only", action="store_true", help="only the CUDA base/bf16 step times")
    args = ap.parse_args()

    import torch

    header("ELC-BERT vs LTG-BERT (same shape, same init seed, same batches)")
    torch.set_num_threads(args.threads)
    if not args.cuda_only and not args.skip_cpu:
        times = step_times("cpu", "tiny", CPU_SHAPE, args.cpu_batch, args.seq_len, args.cpu_steps, 1, args.repeat)
        print_step_times(
            times, f"CPU, 12 layers × 192, B{args.cpu_batch}×{args.seq_len}, fp32, {args.threads} thread(s)"
        )
    if torch.cuda.is_available():
        times = step_times("cuda", "base", {}, args.gpu_batch, args.seq_len, args.gpu_steps, 5, args.repeat)
        print_step_times(times, f"CUDA, base, B{args.gpu_batch}×{args.seq_len}, bf16")
        print(f"<!-- GPU: {torch.cuda.get_device_name(0)} -->")
    else:
        print("| step time, CUDA base/seq128/bf16 | skipped: no CUDA device | | | ≤ 1.15× |")
    if not args.cuda_only and not args.skip_quality:
        q = quality(
            args.quality_steps,
            args.quality_batch,
            args.seq_len,
            args.quality_lr,
            args.quality_eval_batches,
            seed=0,
            work=args.work,
            recipe=args.quality_recipe,
            mix_lr_scale=args.mix_lr_scale,
        )
        ltg, elc = q["ltg-bert"], q["elc-bert zero"]
        what = f"tiny, news, {args.quality_steps} steps of B{args.quality_batch}×{args.seq_len}"
        what += f", {args.quality_recipe} recipe"
        row(
            f"held-out MLM accuracy ({what})",
            f"LTG-BERT {100 * ltg['accuracy']:.2f}%",
            f"ELC-BERT zero {100 * elc['accuracy']:.2f}%",
            elc["accuracy"] / max(ltg["accuracy"], 1e-9),
            "≥ LTG-BERT",
        )
        print(
            f"<!-- quality: {elc['masked']} masked eval tokens; final train loss ELC {elc['final_loss']:.4f} vs LTG "
            f"{ltg['final_loss']:.4f}; train time ELC {elc['train_s']:.0f} s vs LTG {ltg['train_s']:.0f} s; "
            f"ELC mixing weights per layer {elc['mixing']} -->",
            flush=True,
        )


if __name__ == "__main__":
    main()
