"""NarrowBERT (2 full + 10 narrow layers, SparseQueries) against bertkit BERT of the same shape.

    python benchmarks/narrow_bench.py [--repeat 3] [--threads 1] [--work /tmp/nb] [--skip-quality]  # CPU
    python benchmarks/narrow_bench.py --cuda-only                                                  # GPU: base, bf16

Both models are bertkit's and both send only the masked rows through the tied MLM head (`masked_lm_loss`), so the
ratio is the narrow layers' alone (the paper's baseline ran a full-vocabulary head on every token). Same weights for
the shared parameters (NarrowBERT's narrow layer j = BERT layer 2 + j), same batches, same device, one run; each
measurement runs in a fresh subprocess, the two alternate within every round, and the table shows medians (of the
rounds, each the median of its timed steps).

- Pretraining step (forward + backward + AdamW), MLM-only, 15 % of the tokens masked (a fixed count per batch, as
  the trainer masks). CPU: 12 layers at width 256 (4 heads, FFN 1024), B8 × 128, fp32. CUDA: base (768/12/3072),
  B32 × 512, bf16 autocast. Targets: ≥ 1.3× on CPU, ≥ 1.5× on GPU.
- Sequence-classification inference at seq 512 (no gradients; NarrowBERT's narrow layers query [CLS] alone).
  CPU: the same 12-layer width-256 shape, B4; CUDA: base, B64, bf16. Target ≥ 2.5×.
- Quality (CPU): the tiny presets of `bert` (2 layers) and `narrowbert` (1 full + 1 narrow), identical init of the
  shared weights, data order, masks (the trainer's keyed masking), AdamW and linear schedule, dropout 0, on the news
  corpus prepared with the bert-base-uncased vocabulary (`--work` caches it; default a temporary directory);
  held-out MLM accuracy side by side. Target: NarrowBERT within 2 points of BERT. The defaults are
  `train_bench.py`'s BERT quality check (120 steps of B16 × 128, lr 2e-3), where the tiny preset is still on the
  unigram plateau; `--quality-steps 1500 --quality-lr 5e-3 --quality-checks 4` trains past it (about 25 minutes
  on one core) and prints the accuracy at four earlier steps too.

`--threads 1` gives steadier CPU figures on a shared machine (a 2-thread GEMM stalls whenever another job takes
one of the cores).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from _common import DATA, header, median, row  # noqa: E402
from train_bench import prepared_news, synthetic_batch  # noqa: E402

CPU_SHAPE = {"hidden_size": 256, "num_hidden_layers": 12, "num_attention_heads": 4, "intermediate_size": 1024}
FULL_LAYERS = 2
VARIANT = "sparse-queries"
IMPLS = ("bert", "narrowbert")


# ------------------------------------------------------------------------------------------------ the models


def make_pair(
    shape: dict, seed: int = 0, heads: str = "pretraining", full_layers: int = FULL_LAYERS, variant: str = VARIANT
):
    """bertkit BERT and NarrowBERT of the same shape (BertConfig fields) with the same values in their shared
    parameters: NarrowBERT's narrow layer j is BERT's layer full_layers + j."""
    import torch

    from bertkit.models import bert, narrowbert

    config = narrowbert.NarrowBertConfig(**shape, full_layers=full_layers, variant=variant)
    torch.manual_seed(seed)
    if heads == "pretraining":
        ours = narrowbert.NarrowBertForPreTraining(config)
        theirs = bert.BertForPreTraining(config.bert_config())
    else:
        ours = narrowbert.NarrowBertForSequenceClassification(config, 2)
        theirs = bert.BertForSequenceClassification(config.bert_config(), 2)
    state = {}
    for key, value in ours.state_dict().items():
        if key.startswith("bert.encoder_narrow.layer."):
            j, rest = key.removeprefix("bert.encoder_narrow.layer.").split(".", 1)
            key = f"bert.encoder.layer.{full_layers + int(j)}.{rest}"
        state[key] = value
    theirs.load_state_dict(state, strict=True)
    return theirs, ours


def measure(
    task: str,
    impl: str,
    device_name: str,
    shape: dict,
    batch: int,
    seq_len: int,
    steps: int,
    threads: int,
    variant: str,
) -> dict:
    """One measurement in a fresh process: median seconds per pretraining step or per inference batch."""
    import contextlib

    import torch

    from bertkit.train.optim import build_optimizer

    if threads:
        torch.set_num_threads(threads)
    device = torch.device(device_name)
    pair = make_pair(shape, heads="pretraining" if task == "pretrain" else "classify", variant=variant)
    model = pair[IMPLS.index(impl)].to(device)
    del pair
    cuda = device.type == "cuda"
    autocast = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if cuda else contextlib.nullcontext
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    g = torch.Generator().manual_seed(1)
    batches = [tuple(t.to(device) for t in synthetic_batch(batch, seq_len, model.config.vocab_size, g))
               for _ in range(4)]  # fmt: skip
    if task == "pretrain":
        model.train()
        opt = build_optimizer(model, name="adamw", lr=1e-4, weight_decay=0.01)

        def run(ids, positions, labels):
            with autocast():
                loss = model(input_ids=ids, mlm_positions=positions, mlm_labels=labels).loss
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
    else:
        model.eval()

        def run(ids, positions, labels):
            with torch.inference_mode(), autocast():
                model(input_ids=ids)

    warmup = 5 if cuda else 2
    for i in range(warmup):
        run(*batches[i % 4])
    times = []
    for i in range(steps):
        sync()
        t0 = time.perf_counter()
        run(*batches[i % 4])
        sync()
        times.append(time.perf_counter() - t0)
    times.sort()
    return {"seconds": times[len(times) // 2], "tokens": batch * seq_len}


def measure_in_subprocess(*args) -> dict:
    cmd = [sys.executable, __file__, "--_measure", json.dumps(list(args))]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"{args} failed:\n{p.stderr[-3000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def speed(
    task: str, device: str, shape: dict, batch: int, seq_len: int, steps: int, repeat: int, threads: int, variant: str
) -> dict:
    runs: dict[str, list[float]] = {impl: [] for impl in IMPLS}
    for r in range(repeat):
        for impl in IMPLS if r % 2 == 0 else IMPLS[::-1]:  # alternate: drifts of the machine hit both
            result = measure_in_subprocess(task, impl, device, shape, batch, seq_len, steps, threads, variant)
            runs[impl].append(result["seconds"])
    return runs


def print_speed(task: str, device: str, runs: dict, shape: dict, batch: int, seq_len: int, dtype: str) -> None:
    bert, narrow = median(runs["bert"]), median(runs["narrowbert"])
    width = f"d{shape['hidden_size']}"
    what = (
        "pretraining step (fwd+bwd+AdamW)" if task == "pretrain" else "seq-classification inference"
    ) + f", {device}, 12 layers {width}, B{batch}×{seq_len}, {dtype}"
    if task == "pretrain":
        target = "≥ 1.5×" if device == "cuda" else "≥ 1.3×"
    else:
        target = "≥ 2.5×"
    tok = batch * seq_len
    anchor = f"BERT {1e3 * bert:.1f} ms ({tok / bert:,.0f} tok/s)"
    row(what, anchor, f"{1e3 * narrow:.1f} ms ({tok / narrow:,.0f} tok/s)", bert / narrow, target)
    spread = {k: [f"{1e3 * s:.1f}" for s in v] for k, v in runs.items()}
    print(f"<!-- {task} {device} rounds (ms): BERT {spread['bert']}, NarrowBERT {spread['narrowbert']} -->", flush=True)


# ------------------------------------------------------------------------------------------------- quality


def quality(
    steps: int, batch: int, seq_len: int, lr: float, eval_batches: int, seed: int, work: Path, checks: int, threads: int
) -> dict:
    """Train the tiny presets of bert and narrowbert on identical batches; held-out MLM accuracy of each after
    `steps` (and at `checks` evenly spaced earlier steps)."""
    import torch

    from bertkit.data.loader import PretrainingData, StreamState
    from bertkit.models import build_config
    from bertkit.train.config import TrainConfig
    from bertkit.train.optim import build_optimizer
    from bertkit.train.schedules import make_lr_lambda
    from bertkit.train.trainer import _Batcher, _mask_seed

    ds = prepared_news(DATA / "vocab.txt", work)
    torch.set_num_threads(threads or os.cpu_count() or 1)
    cfg = TrainConfig(data=str(ds), seed=seed, device="cpu", eval_fraction=0.02)
    train_data = PretrainingData(ds, view="mlm", seq_len=seq_len, batch_size=batch, seed=seed, eval_fraction=0.02)
    eval_data = PretrainingData(
        ds, view="mlm", seq_len=seq_len, batch_size=batch, seed=seed, split="eval", eval_fraction=0.02, drop_last=True
    )
    batcher = _Batcher(cfg, train_data, torch.device("cpu"))
    eval_inputs = []
    for i, (b, _) in enumerate(eval_data.batches(StreamState())):
        if i >= eval_batches:
            break
        eval_inputs.append(batcher(b, _mask_seed(seed, 2, i)))

    tiny = build_config("narrowbert", "tiny", vocab_size=int(train_data.vocab_size), hidden_dropout_prob=0.0,
                        attention_probs_dropout_prob=0.0)  # fmt: skip
    bert_model, narrow_model = make_pair(tiny.bert_config().to_dict(), seed=seed, full_layers=tiny.full_layers)

    @torch.no_grad()
    def accuracy(model) -> tuple[float, int]:
        was_training = model.training
        model.eval()
        hits = count = 0
        for inputs in eval_inputs:
            pos, lab = inputs["mlm_positions"], inputs["mlm_labels"]
            logits = model.mlm_logits(inputs["input_ids"], inputs["attention_mask"], None, pos)
            valid = lab != -100
            hits += int(((logits.argmax(-1) == lab) & valid).sum())
            count += int(valid.sum())
        model.train(was_training)
        return hits / max(count, 1), count

    check_steps = {steps * (k + 1) // (checks + 1) for k in range(checks)}
    results = {}
    for impl, model in (("bert", bert_model), ("narrowbert", narrow_model)):
        torch.manual_seed(seed)
        model.train()
        opt = build_optimizer(model, name="adamw", lr=lr, weight_decay=0.01)
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, make_lr_lambda(schedule="linear", warmup=max(1, steps // 10), max_steps=steps, min_lr_ratio=0.0)
        )
        t0 = time.perf_counter()
        losses, curve = [], []
        for i, (b, _) in enumerate(train_data.batches(StreamState())):
            if i >= steps:
                break
            loss = model(**batcher(b, _mask_seed(seed, 1, i))).loss  # the trainer's keyed masks: identical for both
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            losses.append(float(loss.detach()))
            if i + 1 in check_steps:
                curve.append((i + 1, accuracy(model)[0]))
        train_s = time.perf_counter() - t0
        acc, count = accuracy(model)
        results[impl] = {
            "accuracy": acc,
            "curve": curve,
            "masked": count,
            "final_loss": sum(losses[-20:]) / len(losses[-20:]),
            "train_s": train_s,
        }
    return results


# ---------------------------------------------------------------------------------------------------- main


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=3, help="rounds of alternating measurements (medians)")
    ap.add_argument("--cpu-batch", type=int, default=8)
    ap.add_argument("--cpu-seq-len", type=int, default=128)
    ap.add_argument("--cpu-steps", type=int, default=5, help="timed steps per CPU measurement (median)")
    ap.add_argument("--cpu-infer-batch", type=int, default=4)
    ap.add_argument("--threads", type=int, default=0, help="CPU threads per measurement (0 = torch's default)")
    ap.add_argument(
        "--variant", default=VARIANT, help="NarrowBERT variant of the speed rows: sparse-queries | context-first"
    )
    ap.add_argument("--gpu-batch", type=int, default=32)
    ap.add_argument("--gpu-seq-len", type=int, default=512)
    ap.add_argument("--gpu-infer-batch", type=int, default=64)
    ap.add_argument("--gpu-steps", type=int, default=20)
    ap.add_argument("--quality-steps", type=int, default=120)
    ap.add_argument("--quality-batch", type=int, default=16)
    ap.add_argument("--quality-seq-len", type=int, default=128)
    ap.add_argument("--quality-lr", type=float, default=2e-3)
    ap.add_argument("--quality-eval-batches", type=int, default=20)
    ap.add_argument("--quality-checks", type=int, default=0, help="also evaluate at this many earlier steps")
    ap.add_argument("--work", type=Path, default=None, help="where the prepared news dataset is cached")
    ap.add_argument("--skip-cpu", action="store_true")
    ap.add_argument("--skip-quality", action="store_true")
    ap.add_argument("--cuda-only", action="store_true", help="only the CUDA base/bf16 measurements")
    ap.add_argument("--_measure", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args._measure:
        print(json.dumps(measure(*json.loads(args._measure))))
        return

    import torch

    header(f"NarrowBERT (2 full + 10 narrow, {args.variant}) vs bertkit BERT (same shape, masked-only heads)")
    if not args.cuda_only and not args.skip_cpu:
        for task, batch, seq in (
            ("pretrain", args.cpu_batch, args.cpu_seq_len),
            ("classify", args.cpu_infer_batch, 512),
        ):
            runs = speed(task, "cpu", CPU_SHAPE, batch, seq, args.cpu_steps, args.repeat, args.threads, args.variant)
            print_speed(task, "cpu", runs, CPU_SHAPE, batch, seq, "fp32")
    if torch.cuda.is_available():
        from bertkit.models.bert import PRESETS

        base = PRESETS["base"]
        for task, batch in (("pretrain", args.gpu_batch), ("classify", args.gpu_infer_batch)):
            runs = speed(task, "cuda", base, batch, args.gpu_seq_len, args.gpu_steps, args.repeat, 0, args.variant)
            print_speed(task, "cuda", runs, base, batch, args.gpu_seq_len, "bf16")
        print(f"<!-- GPU: {torch.cuda.get_device_name(0)} -->")
    else:
        print("| CUDA base/bf16 pretraining and inference | skipped: no CUDA device | | | ≥ 1.5×, ≥ 2.5× |")
    if not args.cuda_only and not args.skip_quality:
        with tempfile.TemporaryDirectory() as tmp:
            work = args.work or Path(tmp)
            q = quality(args.quality_steps, args.quality_batch, args.quality_seq_len, args.quality_lr,
                        args.quality_eval_batches, seed=0, work=work, checks=args.quality_checks,
                        threads=args.threads)  # fmt: skip
        what = f"tiny, news, {args.quality_steps} steps of B{args.quality_batch}×{args.quality_seq_len}"
        bert_acc, narrow_acc = q["bert"]["accuracy"], q["narrowbert"]["accuracy"]
        row(f"held-out MLM accuracy ({what})", f"BERT {100 * bert_acc:.2f}%", f"{100 * narrow_acc:.2f}%",
            narrow_acc / max(bert_acc, 1e-9), "within 2 points")  # fmt: skip
        print(
            f"<!-- quality: {q['bert']['masked']} masked eval tokens; final train loss BERT "
            f"{q['bert']['final_loss']:.4f} vs NarrowBERT {q['narrowbert']['final_loss']:.4f}; train time BERT "
            f"{q['bert']['train_s']:.0f} s vs NarrowBERT {q['narrowbert']['train_s']:.0f} s -->",
            flush=True,
        )
        if args.quality_checks:
            for impl in IMPLS:
                points = ", ".join(f"{s}: {100 * a:.2f}%" for s, a in q[impl]["curve"])
                print(f"<!-- {impl} held-out accuracy by step: {points} -->", flush=True)


if __name__ == "__main__":
    main()
