"""Training throughput, memory and quality of bertkit's `bert` against Hugging Face `BertForMaskedLM`.

    python benchmarks/train_bench.py [--repeat 3] [--presets tiny,small] [--quality-steps 120] [--skip-quality]
    python benchmarks/train_bench.py --cuda-only        # on a GPU machine: base / seq 128 / bf16

The defaults take about 6 minutes on 2 CPU cores. The tiny preset stays at the unigram plateau (it predicts "the":
4.6 % held-out accuracy) for 120 and for 400 steps of B16 (measured), so the quality row only shows both
implementations land on the same plateau (train losses equal to 4 decimals at 120 steps); a meaningful comparison
needs thousands of steps (`--quality-steps`, `--quality-batch`), i.e. a GPU. `--work DIR` caches the prepared news
dataset (default $BERTKIT_DATA/bench).

Same config, same data, same device, one run. Each measurement runs in a fresh subprocess (peak memory of its own),
bertkit and HF alternate within every round, and the table shows medians over the rounds:

- CPU, presets tiny and small, seq 128, fp32: tokens/s (forward + backward + AdamW step) and the peak RSS increase of
  the training steps over the loaded model. bertkit `BertForPreTraining` sends only the masked rows through the
  tied LM head (`masked_lm_loss`) with SDPA attention; HF `BertForMaskedLM(attn_implementation="sdpa")` computes
  the full head on every token with labels -100 off the masked positions. Both start from the same weights and
  see the same masked batches. Target: bertkit ≥ 1.3× HF tokens/s.
- CUDA (when available), preset base, seq 128, bf16 autocast: tokens/s ratio (target ≥ 2×), MFU of bertkit from
  the model's `flops_per_token` and the H100 dense bf16 peak 989.4 TFLOP/s (target ≥ 40 %), peak memory ratio
  (`torch.cuda.max_memory_allocated`, target ≤ 0.6×).
- Quality: the tiny preset trained `--quality-steps` steps on the news corpus ($BERTKIT_DATA/news.txt prepared with
  the bert-base-uncased vocabulary) by both implementations identically (same init, data order, masks, AdamW and
  linear schedule); held-out MLM accuracy of both (target: bertkit no worse than HF).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from _common import DATA, header, median, row  # noqa: E402

H100_PEAK_BF16 = 989.4e12  # dense bf16 FLOP/s of an H100 SXM (fms-fsdp#89; docs/ANCHORS.md)
MASK_RATE = 0.15


# ------------------------------------------------------------------------------------------------ the models


def make_models(preset: str, seed: int = 0, dropout: float | None = None, **config):
    """bertkit BertForPreTraining and HF BertForMaskedLM (SDPA) with the same weights (``config``: BertConfig
    fields such as ``vocab_size``)."""
    import torch
    import transformers

    from bertkit.export.hf import hf_config_dict
    from bertkit.models import build_model

    overrides = dict(config)
    if dropout is not None:
        overrides |= {"hidden_dropout_prob": dropout, "attention_probs_dropout_prob": dropout}
    torch.manual_seed(seed)
    ours = build_model("bert", preset, **overrides)
    hf_cfg = transformers.BertConfig(**hf_config_dict(ours.config))
    hf = transformers.BertForMaskedLM._from_config(hf_cfg, attn_implementation="sdpa")
    state = {k: v for k, v in ours.state_dict().items() if not k.startswith(("bert.pooler.", "cls.seq_relationship."))}
    missing, unexpected = hf.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise RuntimeError(f"weights do not map onto BertForMaskedLM: missing {missing}, unexpected {unexpected}")
    return ours, hf


def synthetic_batch(batch: int, seq_len: int, vocab: int, generator):
    """Random ids with [CLS]/[SEP], 15 % of the inner positions masked (fixed count, as the trainer masks)."""
    import torch

    ids = torch.randint(1000, vocab, (batch, seq_len), generator=generator)
    ids[:, 0], ids[:, -1] = 101, 102
    inner = torch.arange(batch * seq_len).reshape(batch, seq_len)[:, 1:-1].reshape(-1)
    m = round(MASK_RATE * batch * seq_len)
    positions = inner[torch.randperm(inner.numel(), generator=generator)[:m]].sort().values
    labels = ids.reshape(-1)[positions].clone()
    masked = ids.clone().reshape(-1)
    masked[positions] = 103
    return masked.reshape(batch, seq_len), positions, labels


def full_labels(positions, labels, batch: int, seq_len: int):
    import torch

    out = torch.full((batch * seq_len,), -100, dtype=torch.long, device=labels.device)
    out[positions] = labels
    return out.reshape(batch, seq_len)


def step_fns(impl: str, model, device, autocast_dtype):
    """A closure doing one training step on (input_ids, positions, labels) for the given implementation."""
    import contextlib

    import torch

    from bertkit.train.optim import build_optimizer

    opt = build_optimizer(model, name="adamw", lr=1e-4, weight_decay=0.01)
    ctx = (lambda: torch.autocast(device.type, dtype=autocast_dtype)) if autocast_dtype else contextlib.nullcontext

    def step(ids, positions, labels):
        with ctx():
            if impl == "bertkit":
                loss = model(input_ids=ids, mlm_positions=positions, mlm_labels=labels).loss
            else:
                loss = model(input_ids=ids, labels=full_labels(positions, labels, *ids.shape)).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss

    return step


def _rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def measure(impl: str, preset: str, device_name: str, batch: int, seq_len: int, steps: int, warmup: int) -> dict:
    """One measurement (run in a fresh process): tokens/s and peak memory of `steps` training steps."""
    import torch

    device = torch.device(device_name)
    ours, hf = make_models(preset)
    model = (ours if impl == "bertkit" else hf).to(device).train()
    del ours, hf
    autocast = torch.bfloat16 if device.type == "cuda" else None
    step = step_fns(impl, model, device, autocast)
    g = torch.Generator().manual_seed(1)
    batches = [synthetic_batch(batch, seq_len, model.config.vocab_size, g) for _ in range(min(steps, 4))]
    batches = [tuple(t.to(device) for t in b) for b in batches]
    rss_loaded = _rss_kib("VmRSS")  # model and batches in memory; no optimiser state, no activations yet
    for i in range(warmup):
        step(*batches[i % len(batches)])
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
    t0 = time.perf_counter()
    for i in range(steps):
        loss = step(*batches[i % len(batches)])
    float(loss)
    sync()
    dt = time.perf_counter() - t0
    result = {"tokens_per_s": steps * batch * seq_len / dt, "seconds": dt}
    if device.type == "cuda":
        result["peak_bytes"] = torch.cuda.max_memory_allocated(device)
        result["step_bytes"] = result["peak_bytes"] - base
    else:
        result["peak_bytes"] = _rss_kib("VmHWM") * 1024
        result["step_bytes"] = max(0, _rss_kib("VmHWM") - rss_loaded) * 1024
    if impl == "bertkit":
        result["flops_per_token"] = model.flops_per_token(seq_len, MASK_RATE)
    return result


def measure_in_subprocess(impl, preset, device, batch, seq_len, steps, warmup) -> dict:
    cmd = [sys.executable, __file__, "--_measure", json.dumps([impl, preset, device, batch, seq_len, steps, warmup])]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"{impl} {preset} on {device} failed:\n{p.stderr[-3000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def gib(n: float) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"


def throughput(device: str, presets: list[str], batch: int, seq_len: int, steps: int, warmup: int, repeat: int):
    rows = {}
    for preset in presets:
        runs: dict[str, list[dict]] = {"bertkit": [], "hf": []}
        for r in range(repeat):
            order = ("bertkit", "hf") if r % 2 == 0 else ("hf", "bertkit")  # alternate: drifts hit both
            for impl in order:
                runs[impl].append(measure_in_subprocess(impl, preset, device, batch, seq_len, steps, warmup))
        rows[preset] = runs
    return rows


def print_throughput(device: str, rows: dict, batch: int, seq_len: int, dtype: str) -> None:
    for preset, runs in rows.items():
        ours = median([r["tokens_per_s"] for r in runs["bertkit"]])
        theirs = median([r["tokens_per_s"] for r in runs["hf"]])
        what = f"{preset}, {device}, B{batch}×{seq_len}, {dtype}"
        target = "≥ 2×" if device == "cuda" else "≥ 1.3×"
        row(f"tokens/s ({what})", f"HF BertForMaskedLM sdpa {theirs:,.0f}", f"{ours:,.0f}", ours / theirs, target)
        key = "peak_bytes" if device == "cuda" else "step_bytes"
        m_ours = median([r[key] for r in runs["bertkit"]])
        m_theirs = median([r[key] for r in runs["hf"]])
        label = "peak memory (max_memory_allocated)" if device == "cuda" else "training memory (peak RSS − model RSS)"
        target = "≤ 0.6×" if device == "cuda" else ""
        row(f"{label} ({what})", gib(m_theirs), gib(m_ours), m_ours / max(m_theirs, 1), target)
        if device == "cuda":
            flops = runs["bertkit"][0]["flops_per_token"]
            mfu = ours * flops / H100_PEAK_BF16
            row(f"MFU vs H100 989.4 TFLOP/s ({what})", f"HF {100 * theirs * flops / H100_PEAK_BF16:.1f}%",
                f"{100 * mfu:.1f}%", None, "≥ 40%")  # fmt: skip
        spread = [f"{r['tokens_per_s']:,.0f}" for r in runs["bertkit"]]
        spread_hf = [f"{r['tokens_per_s']:,.0f}" for r in runs["hf"]]
        print(f"<!-- {preset} {device} rounds: bertkit {spread}, HF {spread_hf} -->", flush=True)


# ------------------------------------------------------------------------------------------------- quality


def prepared_news(vocab: Path, work: Path, name: str = "train_bench_news") -> Path:
    """$BERTKIT_DATA/news.txt prepared with `bertkit prepare` (cached as `work/name`, default $BERTKIT_DATA/bench)."""
    out = work / name
    if (out / "manifest.json").is_file():
        return out
    news = DATA / "news.txt"
    if not news.is_file() or not vocab.is_file():
        sys.exit(f"no {news} / {vocab}: run `python scripts/fetch_data.py --out {DATA}` (or set BERTKIT_DATA)")
    out.parent.mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable,
        "-m",
        "bertkit_cli",
        "prepare",
        str(news),
        "--tokenizer",
        str(vocab),
        "--out",
        str(out),
        "-q",
    ]
    subprocess.run(cmd, check=True, cwd=Path(__file__).resolve().parent.parent)
    return out


def masked_inputs(ds: Path, split: str, batches: int, batch: int, seq_len: int, seed: int) -> list[dict]:
    """The first `batches` MLM batches of a prepared dataset's split, masked as the trainer masks them (keyed by
    the batch index): the exact inputs every implementation sees."""
    import torch

    from bertkit.data.loader import PretrainingData, StreamState
    from bertkit.train.config import TrainConfig
    from bertkit.train.trainer import _Batcher, _mask_seed

    cfg = TrainConfig(data=str(ds), seed=seed, device="cpu", eval_fraction=0.02)
    data = PretrainingData(
        ds, view="mlm", seq_len=seq_len, batch_size=batch, seed=seed, split=split, eval_fraction=0.02, drop_last=True
    )
    batcher = _Batcher(cfg, data, torch.device("cpu"))
    inputs = []
    for i, (b, _) in enumerate(data.batches(StreamState())):
        if i >= batches:
            break
        inputs.append(batcher(b, _mask_seed(seed, 1 if split == "train" else 2, i)))
    return inputs


def pretrain(impl: str, model, inputs: list[dict], lr: float, seed: int, device=None) -> dict:
    """Train on `inputs` (AdamW, wd 0.01, linear schedule with 10 % warmup, clip 1.0): `impl` "bertkit" calls the
    model with the batch contract (any registered architecture), "hf" a transformers BertForMaskedLM with labels
    -100 off the masked positions. Returns the losses, the seconds and the tokens per second."""
    import contextlib

    import torch

    from bertkit.train.config import TrainConfig
    from bertkit.train.optim import build_optimizer
    from bertkit.train.schedules import make_lr_lambda

    device = device or torch.device("cpu")
    autocast = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if device.type == "cuda" else None
    steps = len(inputs)
    torch.manual_seed(seed)
    model.to(device).train()
    # what `bertkit train --optimizer adamw` does (ELC-BERT's mixing logits at its automatic lr scale)
    mix = TrainConfig(optimizer="adamw").resolved_mix_lr_scale()
    opt = build_optimizer(model, name="adamw", lr=lr, weight_decay=0.01, mix_lr_scale=mix)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, make_lr_lambda(schedule="linear", warmup=max(1, steps // 10), max_steps=steps, min_lr_ratio=0.0)
    )
    losses = []
    tokens = 0
    t0 = time.perf_counter()
    for cpu_inputs in inputs:
        batch = {k: (v.to(device) if v is not None else None) for k, v in cpu_inputs.items()}
        with autocast() if autocast is not None else contextlib.nullcontext():
            if impl == "bertkit":
                loss = model(**batch).loss
            else:
                labels = full_labels(batch["mlm_positions"], batch["mlm_labels"], *batch["input_ids"].shape)
                loss = model(input_ids=batch["input_ids"], labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.detach())
        tokens += batch["input_ids"].numel()
    losses = [float(x) for x in losses]
    seconds = time.perf_counter() - t0
    return {"losses": losses, "seconds": seconds, "tokens_per_s": tokens / seconds}


def mlm_accuracy(impl: str, model, inputs: list[dict], device=None) -> tuple[float, int]:
    """Held-out masked-token accuracy (and the number of masked tokens) on pre-masked `inputs`."""
    import torch

    device = device or torch.device("cpu")
    model.to(device).eval()
    hits = count = 0
    with torch.no_grad():
        for cpu_inputs in inputs:
            batch = {k: (v.to(device) if v is not None else None) for k, v in cpu_inputs.items()}
            pos, lab = batch["mlm_positions"], batch["mlm_labels"]
            if impl == "bertkit":
                out = model(**batch)
                hits, count = hits + int(out.mlm_correct), count + int(out.mlm_count)
                continue
            logits = model(input_ids=batch["input_ids"]).logits.reshape(-1, model.config.vocab_size)[pos]
            valid = lab != -100
            hits += int(((logits.argmax(-1) == lab) & valid).sum())
            count += int(valid.sum())
    return hits / max(count, 1), count


def quality(
    steps: int, batch: int, seq_len: int, lr: float, eval_batches: int, dropout: float, seed: int, work: Path
) -> dict:
    """Train the tiny preset with both implementations on identical batches; held-out MLM accuracy of each."""
    import torch

    ds = prepared_news(DATA / "vocab.txt", work)
    torch.set_num_threads(os.cpu_count() or 1)
    train_inputs = masked_inputs(ds, "train", steps, batch, seq_len, seed)
    eval_inputs = masked_inputs(ds, "eval", eval_batches, batch, seq_len, seed)
    ours, hf = make_models("tiny", seed=seed, dropout=dropout)
    results = {}
    for impl, model in (("bertkit", ours), ("hf", hf)):
        run = pretrain(impl, model, train_inputs, lr, seed)
        accuracy, masked = mlm_accuracy(impl, model, eval_inputs)
        results[impl] = {
            "accuracy": accuracy,
            "masked": masked,
            "final_loss": sum(run["losses"][-10:]) / len(run["losses"][-10:]),
            "train_s": run["seconds"],
        }
    return results


# ---------------------------------------------------------------------------------------------------- main


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=3, help="rounds of bertkit/HF measurements (medians)")
    ap.add_argument("--presets", default="tiny,small", help="CPU presets")
    ap.add_argument("--cpu-batch", type=int, default=16)
    ap.add_argument("--cpu-steps", type=int, default=6, help="timed steps per CPU measurement")
    ap.add_argument("--gpu-batch", type=int, default=128)
    ap.add_argument("--gpu-steps", type=int, default=30)
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--quality-steps", type=int, default=120)
    ap.add_argument("--quality-batch", type=int, default=16)
    ap.add_argument("--quality-lr", type=float, default=2e-3)
    ap.add_argument("--quality-eval-batches", type=int, default=20)
    ap.add_argument("--quality-dropout", type=float, default=0.0)
    ap.add_argument("--work", type=Path, default=DATA / "bench", help="where the prepared news dataset is cached")
    ap.add_argument("--skip-cpu", action="store_true")
    ap.add_argument("--skip-quality", action="store_true")
    ap.add_argument("--cuda-only", action="store_true", help="only the CUDA base/bf16 measurement")
    ap.add_argument("--_measure", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args._measure:
        print(json.dumps(measure(*json.loads(args._measure))))
        return

    import torch

    header("Training: bertkit `bert` vs Hugging Face BertForMaskedLM (same weights, same batches)")
    if not args.cuda_only and not args.skip_cpu:
        presets = [p for p in args.presets.split(",") if p]
        rows = throughput("cpu", presets, args.cpu_batch, args.seq_len, args.cpu_steps, 2, args.repeat)
        print_throughput("cpu", rows, args.cpu_batch, args.seq_len, "fp32")
    if torch.cuda.is_available():
        rows = throughput("cuda", ["base"], args.gpu_batch, args.seq_len, args.gpu_steps, 5, args.repeat)
        print_throughput("cuda", rows, args.gpu_batch, args.seq_len, "bf16")
        print(f"<!-- GPU: {torch.cuda.get_device_name(0)} -->")
    else:
        print("| CUDA base/seq128/bf16 | skipped: no CUDA device | | | ≥ 2×, MFU ≥ 40%, memory ≤ 0.6× |")
    if not args.cuda_only and not args.skip_quality:
        q = quality(
            args.quality_steps,
            args.quality_batch,
            args.seq_len,
            args.quality_lr,
            args.quality_eval_batches,
            args.quality_dropout,
            seed=0,
            work=args.work,
        )
        what = f"tiny, news, {args.quality_steps} steps of B{args.quality_batch}×{args.seq_len}"
        row(f"held-out MLM accuracy ({what})", f"HF {100 * q['hf']['accuracy']:.2f}%",
            f"{100 * q['bertkit']['accuracy']:.2f}%", q["bertkit"]["accuracy"] / max(q["hf"]["accuracy"], 1e-9),
            "≥ HF")  # fmt: skip
        print(
            f"<!-- quality: {q['bertkit']['masked']} masked eval tokens; final train loss bertkit "
            f"{q['bertkit']['final_loss']:.4f} vs HF {q['hf']['final_loss']:.4f}; train time bertkit "
            f"{q['bertkit']['train_s']:.0f} s vs HF {q['hf']['train_s']:.0f} s -->",
            flush=True,
        )


if __name__ == "__main__":
    main()
