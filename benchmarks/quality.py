"""The cross-architecture quality table: pretrain every registered architecture on the same corpus for the same
budget, fine-tune each on the real labelled tasks, beside Hugging Face BertForMaskedLM trained identically, the same
BERT without pretraining, and a bag-of-words floor.

    python benchmarks/quality.py --threads 1                # CPU: tiny presets (~35-50 min on a quiet 2-core box)
    python benchmarks/quality.py --quick                    # minutes: 40 pretraining steps, 800 examples per task
    python benchmarks/quality.py --out table.md --json results.json
    python benchmarks/quality.py --json results.json --resume  # after a stop: keep the rows already finished
    python benchmarks/quality.py --threads 1 --archs elc-bert --no-hf --no-control  # redo one architecture's row
    python benchmarks/quality.py                            # on a GPU: `small` presets, longer pretraining, bf16

Needs $BERTKIT_DATA/news.txt (pretraining corpus) and the tasks of `scripts/prepare_tasks.py` in
$BERTKIT_DATA/tasks (or --tasks): sentiment (Rotten Tomatoes snippets, SST's source text), TREC, SMS spam, BBC
(long documents, head+tail truncation to the pretraining sequence length) and WNUT-16 NER. --work caches the
tokenizer and the prepared corpus.

What is identical for every pretrained row: the corpus (news.txt), a WordPiece vocabulary trained on it
(--vocab-size, 8,192 by default: a smaller head keeps HF's full-vocabulary head affordable on CPU), the masked
batches (the trainer's masking, keyed by batch index), the initial weights where the parameters are shared (bert
and HF start from the same tensors), AdamW with the same schedule and learning rate, dropout 0 while pretraining.
Fine-tuning is the same for every row too (bertkit.eval: one hyper-parameter set per task, the state with the best
dev score scored on test). Rows:

- every token architecture in bertkit.models.ARCHITECTURES (bert, narrowbert, elc-bert, ltg-bert; nextlevel trains on
  chunk embeddings and has its own benchmark), trained with the batch contract (`model(**batch).loss`);
- `HF BertForMaskedLM`: transformers' implementation (SDPA, full-vocabulary head) on the same batches, then saved
  as a Hugging Face directory and fine-tuned through `bertkit eval`'s HF path (the baseline of the issue);
- `bert, no pretraining`: the same initial weights fine-tuned directly (what pretraining adds over nothing);
- `BoW TF-IDF + LR`: unigram+bigram TF-IDF and the multinomial logistic-regression probe (the floor a pretrained
  model must beat on sentiment; docs/ANCHORS.md gives TF-IDF + LR 77.5 % on an 80/20 split of the same snippets).

The figures of the tiny presets after a CPU budget are small-model, small-data numbers: compare rows, not papers.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from dataclasses import fields
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from _common import DATA, machine  # noqa: E402
from train_bench import make_models, masked_inputs, mlm_accuracy, prepared_news, pretrain  # noqa: E402

# task → how it is fine-tuned and which figure the table shows
TASKS = {
    "sentiment": {"kind": "classify", "max_len": 64, "metric": "accuracy", "column": "sentiment acc"},
    "trec": {"kind": "classify", "max_len": 64, "metric": "accuracy", "column": "TREC acc"},
    "sms": {"kind": "classify", "max_len": 96, "metric": "macro_f1", "column": "SMS macro-F1"},
    "bbc": {  # long documents: head + tail of the pretraining length (positions beyond it were never trained)
        "kind": "classify",
        "max_len": 512,
        "metric": "accuracy",
        "column": "BBC acc",
        "truncation": "head+tail",
        "batch_size": 16,
    },
    "wnut16": {"kind": "ner", "max_len": 64, "metric": "f1", "column": "WNUT-16 F1"},
}
BOW_ANCHOR = 0.775  # docs/ANCHORS.md: TF-IDF + LR on an 80/20 split of the movie-review snippets


def run_settings(args: argparse.Namespace) -> dict[str, str]:
    """What makes two runs' rows comparable: every argument but where the outputs go and which rows are wanted."""
    rows = ("out", "json", "resume", "archs", "no_control", "no_hf")
    return {k: str(v) for k, v in vars(args).items() if k not in rows}


def load_finished_rows(partial: Path, settings: dict[str, str]) -> dict[str, dict]:
    """The rows a stopped run with the same settings finished (by name); {} when it finished none. SystemExit with
    the file named when the file is unreadable or was written with other settings."""
    if not partial.is_file():
        return {}
    try:
        saved = json.loads(partial.read_text(encoding="utf-8"))
        rows, written_with = saved["rows"], saved["settings"]
        done = {r["name"]: r for r in rows}
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as e:
        sys.exit(f"{partial}: not a quality.py partial-results file ({type(e).__name__}: {e}); rerun without --resume")
    if written_with != settings:
        changed = sorted(k for k in settings.keys() | written_with.keys() if settings.get(k) != written_with.get(k))
        sys.exit(f"{partial}: written with other settings ({', '.join(changed)}); rerun without --resume")
    return done


def vocabulary(work: Path, size: int) -> Path:
    """A WordPiece vocabulary of `size` trained on news.txt (cached)."""
    from bertkit.tokenizers import train_tokenizer

    out = work / f"quality_tokenizer_{size}"
    if not (out / "vocab.txt").is_file():
        train_tokenizer([DATA / "news.txt"], out, vocab_size=size)
    return out / "vocab.txt"


def zero_dropout(config_class) -> dict:
    return {f.name: 0.0 for f in fields(config_class) if "dropout" in f.name and isinstance(f.default, float)}


def quick_tasks(tasks: Path, work: Path, n: int) -> Path:
    """Copies of the tasks with the first `n` training examples (the files are shuffled) and the first n/4 of dev and
    test; CoNLL files cut at sentence boundaries."""
    out = work / f"quality_quick_tasks_{n}"
    for task in TASKS:
        (out / task).mkdir(parents=True, exist_ok=True)
        for f in sorted((tasks / task).iterdir()):
            keep = n if f.stem == "train" else n // 4
            if f.suffix == ".jsonl":
                lines = f.read_text(encoding="utf-8").splitlines(keepends=True)[:keep]
                (out / task / f.name).write_text("".join(lines), encoding="utf-8")
            elif f.suffix == ".conll":
                sentences = f.read_text(encoding="utf-8").split("\n\n")[:keep]
                (out / task / f.name).write_text("\n\n".join(sentences).rstrip("\n") + "\n", encoding="utf-8")
    return out


def finetune_all(backbone, tasks: Path, args, log) -> dict:
    """Fine-tune `backbone` on every task; the test figures and the seconds."""
    from bertkit.eval.classify import CLASSIFY_CONFIG, evaluate_classify
    from bertkit.eval.ner import NER_CONFIG, evaluate_ner
    from bertkit.eval.tasks import CLASSIFY_SUFFIXES, CONLL_SUFFIXES, find_split_files

    results = {}
    for task, spec in TASKS.items():
        t0 = time.perf_counter()
        base = NER_CONFIG if spec["kind"] == "ner" else CLASSIFY_CONFIG
        config = base.replace(
            lr=args.ft_lr,
            epochs=args.ft_epochs + (2 if spec["kind"] == "ner" else 0),
            batch_size=spec.get("batch_size", 32),
            max_len=min(spec["max_len"], args.seq_len),
            truncation=spec.get("truncation", "head"),
        )
        files = find_split_files(tasks / task, CONLL_SUFFIXES if spec["kind"] == "ner" else CLASSIFY_SUFFIXES)
        if spec["kind"] == "ner":
            r = evaluate_ner(backbone, files["train"], dev=files.get("dev"), test=files.get("test"), config=config)
        else:
            r = evaluate_classify(
                files["train"],
                dev=files.get("dev"),
                test=files.get("test"),
                backbone=backbone,
                config=config,
                metric=spec["metric"],
            )
        seconds = time.perf_counter() - t0
        results[task] = {
            "test": r["median"]["test"],
            "dev": r["median"]["dev"],
            "seconds": seconds,
            "steps": r["runs"][0]["steps"],
        }
        log(f"  {task}: test {spec['metric']} {100 * r['median']['test'][spec['metric']]:.2f} ({seconds:.0f} s)")
    return results


def bow_all(tasks: Path, log) -> dict:
    from bertkit.eval.classify import evaluate_classify
    from bertkit.eval.tasks import CLASSIFY_SUFFIXES, find_split_files

    results = {}
    for task, spec in TASKS.items():
        if spec["kind"] != "classify":
            continue
        t0 = time.perf_counter()
        files = find_split_files(tasks / task, CLASSIFY_SUFFIXES)
        r = evaluate_classify(
            files["train"], dev=files.get("dev"), test=files.get("test"), mode="bow", metric=spec["metric"]
        )
        results[task] = {"test": r["median"]["test"], "dev": r["median"]["dev"], "seconds": time.perf_counter() - t0}
        log(f"  {task}: test {spec['metric']} {100 * r['median']['test'][spec['metric']]:.2f}")
    return results


def table(rows: list[dict]) -> str:
    head = ["model", "pretrain tokens/s", "pretrain wall", "held-out MLM acc"]
    head += [spec["column"] for spec in TASKS.values()] + ["fine-tune wall"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["name"]]
        p = r.get("pretrain")
        cells += (
            [f"{p['tokens_per_s']:,.0f}", f"{p['seconds'] / 60:.1f} min", f"{100 * r['mlm_accuracy']:.1f}"]
            if p
            else ["-", "-", "-"]
        )
        for task, spec in TASKS.items():
            got = r["tasks"].get(task)
            cells.append(f"{100 * got['test'][spec['metric']]:.1f}" if got else "n/a")
        ft = sum(t.get("seconds", 0) for t in r["tasks"].values())
        cells.append(f"{ft / 60:.1f} min")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="40 pretraining steps, 800 examples per task, 1 epoch")
    ap.add_argument("--preset", default=None, help="model preset (default tiny on CPU, small on CUDA)")
    ap.add_argument("--steps", type=int, default=None, help="pretraining steps (default 600 CPU, 5000 CUDA)")
    ap.add_argument("--batch", type=int, default=None, help="pretraining batch (default 32 CPU, 128 CUDA)")
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--lr", type=float, default=None, help="pretraining peak lr (default 2e-3 tiny, 1e-3 small)")
    ap.add_argument("--vocab-size", type=int, default=8192, help="WordPiece vocabulary trained on news.txt")
    ap.add_argument("--archs", default=None, help="comma-separated architectures (default: every token one)")
    ap.add_argument("--ft-lr", type=float, default=5e-4, help="fine-tuning lr (tiny models like it high)")
    ap.add_argument("--ft-epochs", type=int, default=3, help="fine-tuning epochs (NER: +2)")
    ap.add_argument("--no-control", action="store_true", help="skip the no-pretraining row")
    ap.add_argument("--no-hf", action="store_true", help="skip the HF BertForMaskedLM row (e.g. to redo one arch)")
    ap.add_argument("--tasks", type=Path, default=DATA / "tasks", help="prepare_tasks.py output")
    ap.add_argument("--work", type=Path, default=DATA / "bench", help="cache for the tokenizer and corpus")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=None, help="write the markdown table here too")
    ap.add_argument("--json", type=Path, default=None, help="write every figure as JSON")
    ap.add_argument(
        "--resume",
        action="store_true",
        help="keep the rows a stopped run with the same settings finished (JSON.partial.json, written as rows finish)",
    )
    args = ap.parse_args()

    import torch

    from bertkit.eval.finetune import Backbone, load_backbone
    from bertkit.eval.text import load_tokenizer
    from bertkit.models import ARCHITECTURES, build_model, get_architecture

    if args.threads:
        torch.set_num_threads(args.threads)
    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    preset = args.preset or ("small" if cuda else "tiny")
    steps = args.steps or (40 if args.quick else (5000 if cuda else 600))
    batch = args.batch or (128 if cuda else 32)
    lr = args.lr or (2e-3 if preset == "tiny" else 1e-3)
    if args.quick:
        args.ft_epochs = 1
    if args.resume and args.json is None:
        sys.exit("--resume needs --json (the finished rows are kept next to it, in JSON.partial.json)")
    partial = args.json.with_suffix(".partial.json") if args.json else None
    settings = run_settings(args)
    done = load_finished_rows(partial, settings) if args.resume else {}
    # every architecture that trains on tokens (nextlevel trains on chunk embeddings: benchmarks/nextlevel_bench.py)
    token_archs = [name for name, a in ARCHITECTURES.items() if a.data_kind == "tokens"]
    archs = [a.strip() for a in args.archs.split(",")] if args.archs else token_archs
    for name in archs:
        get_architecture(name)
    if not (DATA / "news.txt").is_file():
        sys.exit(f"no {DATA / 'news.txt'}: run `python scripts/fetch_data.py --out {DATA}` (or set BERTKIT_DATA)")
    missing = [t for t in TASKS if not (args.tasks / t).is_dir()]
    if missing:
        sys.exit(f"{args.tasks} lacks {', '.join(missing)}: run scripts/fetch_data.py then scripts/prepare_tasks.py")
    args.work.mkdir(parents=True, exist_ok=True)
    tasks = quick_tasks(args.tasks, args.work, 800) if args.quick else args.tasks

    def log(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    t_start = time.perf_counter()
    vocab = vocabulary(args.work, args.vocab_size)
    ds = prepared_news(vocab, args.work, name=f"quality_news_{args.vocab_size}")
    tokenizer = load_tokenizer(vocab)
    pad_id = tokenizer.pad_id
    train_inputs = masked_inputs(ds, "train", steps, batch, args.seq_len, args.seed)
    eval_inputs = masked_inputs(ds, "eval", 20, batch, args.seq_len, args.seed)
    if len(train_inputs) < steps:
        sys.exit(f"the corpus gives only {len(train_inputs)} batches of {batch}×{args.seq_len}; lower --steps")
    budget = f"{steps} steps of {batch}×{args.seq_len} = {steps * batch * args.seq_len / 1e6:.2f}M tokens"
    log(f"pretraining budget: {budget}, preset {preset}, lr {lr}, vocabulary {tokenizer.vocab_size}, {device}")

    rows = []
    if args.resume:
        log(f"resuming: {', '.join(done) or 'no rows'} kept from {partial}")

    def checkpoint_rows() -> None:
        # every finished row is on disk at once: a run stopped late keeps what it measured
        if partial is not None:
            text = json.dumps({"rows": rows, "budget": budget, "settings": settings}, indent=2) + "\n"
            tmp = partial.with_suffix(".tmp")
            tmp.write_text(text, encoding="utf-8")
            tmp.replace(partial)

    def reuse(name: str) -> bool:
        if name in done:
            rows.append(done[name])
            checkpoint_rows()
            return True
        return False

    def pretrained_row(name: str, impl: str, model, backbone_fn) -> None:
        if reuse(name):
            return
        log(f"{name}: pretraining")
        run = pretrain(impl, model, train_inputs, lr, args.seed, device)
        accuracy, masked = mlm_accuracy(impl, model, eval_inputs, device)
        model.cpu().eval()
        log(
            f"{name}: {run['tokens_per_s']:,.0f} tokens/s, {run['seconds']:.0f} s, held-out MLM acc "
            f"{100 * accuracy:.2f} % ({masked} tokens); fine-tuning"
        )
        row = {
            "name": name,
            "pretrain": {k: run[k] for k in ("tokens_per_s", "seconds")},
            "final_loss": sum(run["losses"][-20:]) / len(run["losses"][-20:]),
            "mlm_accuracy": accuracy,
        }
        row["tasks"] = finetune_all(backbone_fn(model), tasks, args, log)
        rows.append(row)
        checkpoint_rows()

    def config_overrides(arch) -> dict:
        names = arch.config_class.field_names()
        extra = {"vocab_size": tokenizer.vocab_size, "pad_token_id": pad_id}
        return {**{k: v for k, v in extra.items() if k in names}, **zero_dropout(arch.config_class)}

    for name in archs:
        arch = get_architecture(name)
        torch.manual_seed(args.seed)  # bert's initial weights equal make_models' (same seed, same constructor)
        model = build_model(arch, preset, **config_overrides(arch))
        pretrained_row(
            f"{name} ({preset})",
            "bertkit",
            model,
            lambda m, a=arch, n=name: Backbone(a, m, tokenizer, f"{n} pretrained", "model", steps),
        )

    def hf_backbone(model):
        hf_dir = args.work / "quality_hf_bert"
        shutil.rmtree(hf_dir, ignore_errors=True)
        model.save_pretrained(hf_dir)
        shutil.copy(vocab, hf_dir / "vocab.txt")
        return load_backbone(hf_dir)

    if not args.no_hf:
        _, hf = make_models(preset, seed=args.seed, dropout=0.0, vocab_size=tokenizer.vocab_size, pad_token_id=pad_id)
        pretrained_row(f"HF BertForMaskedLM ({preset})", "hf", hf, hf_backbone)

    if not args.no_control and not reuse(f"bert ({preset}), no pretraining"):
        log("bert, no pretraining: fine-tuning")
        torch.manual_seed(args.seed)
        fresh = build_model("bert", preset, **config_overrides(get_architecture("bert")))
        backbone = Backbone(get_architecture("bert"), fresh.eval(), tokenizer, "bert (no pretraining)", "model", 0)
        rows.append({"name": f"bert ({preset}), no pretraining", "tasks": finetune_all(backbone, tasks, args, log)})
        checkpoint_rows()
    log("BoW TF-IDF + LR")
    rows.append({"name": "BoW TF-IDF + LR (floor)", "tasks": bow_all(tasks, log)})

    total = time.perf_counter() - t_start
    markdown = [
        f"machine: {machine()}"
        + (f", GPU {torch.cuda.get_device_name(0)}" if cuda else "")
        + f"; torch threads {torch.get_num_threads()}",
        f"pretraining: news.txt, {budget}, AdamW lr {lr} (linear, 10 % warmup), dropout 0, vocabulary "
        f"{tokenizer.vocab_size}; fine-tuning: lr {args.ft_lr}, {args.ft_epochs} epochs (NER {args.ft_epochs + 2}), "
        f"batch 32 (BBC 16), best dev state scored on test"
        + ("; QUICK mode (800 examples per task)" if args.quick else "")
        + f"; whole run {total / 60:.1f} min",
        "",
        table(rows),
    ]
    sentiment = {r["name"]: r["tasks"]["sentiment"]["test"]["accuracy"] for r in rows if "sentiment" in r["tasks"]}
    floor = sentiment.pop("BoW TF-IDF + LR (floor)")
    markdown.append(
        f"BoW floor on sentiment: {100 * floor:.1f} % (docs/ANCHORS.md, 80/20 split: "
        f"{100 * BOW_ANCHOR:.1f} %); above it: "
        + (", ".join(n for n, v in sentiment.items() if v > floor) or "none")
        + "."
    )
    ours = next((r for r in rows if r["name"] == f"bert ({preset})"), None)
    theirs = next((r for r in rows if r["name"].startswith("HF ")), None)
    if ours is not None and theirs is not None:
        ratio = ours["pretrain"]["tokens_per_s"] / theirs["pretrain"]["tokens_per_s"]
        markdown.append(f"Pretraining tokens/s, bertkit bert / HF BertForMaskedLM: {ratio:.2f}× (same run).")
    text = "\n".join(markdown) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text, encoding="utf-8")
    if args.json:
        args.json.write_text(
            json.dumps({"rows": rows, "budget": budget, "args": {k: str(v) for k, v in vars(args).items()}}, indent=2)
            + "\n",
            encoding="utf-8",
        )


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
