"""BLiMP-style scoring on real text: minimal pairs made from held-out real sentences by controlled corruptions, scored
(`bertkit.eval.blimp`, PLL) by every token architecture pretrained to the quality table's budget, beside Hugging
Face BertForMaskedLM trained identically and a randomly initialised BERT (which must sit near 50 %).

    python benchmarks/minimal_pairs_bench.py --threads 1              # CPU: quality.py's budget (600 steps of 32×128)
    python benchmarks/minimal_pairs_bench.py --threads 1 --steps 200  # a smaller budget
    python benchmarks/minimal_pairs_bench.py --work /tmp/mp --json mp.json

Pretraining is quality.py's (benchmarks/train_bench.py helpers): news.txt prepared with a WordPiece vocabulary
trained on it, the same masked batches, initial weights, AdamW schedule and dropout 0 for every row; `bert` and HF
BertForMaskedLM start from the same tensors. The trained weights are cached in --work (keyed by the settings), so a
rerun only scores.

Pairs: sentences of 6-20 words from $BERTKIT_DATA/bbc.txt (BBC news; the models never saw it: they pretrain on
news.txt), each corrupted at most once per kind (seeded):

- agreement: the first of is/are, was/were, has/have, does/do flipped to its other number (`profits were` →
  `profits was`);
- det-noun: a determiner's number flipped against its noun (this ↔ these, those → this, each / every → many) when
  the next word looks like its noun (lower-case, not a function word or auxiliary, plural -s after these / those
  and not after this / each / every: "this year" → "these year", "these days" → "this days");
- swap: two adjacent words (both alphabetic, not the first word) swapped.

The good sentence is the original. Accuracy per kind and overall; ±: the binomial 95 % half-width (1.96·√(p(1−p)/n)).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import random
import re
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from _common import DATA, machine  # noqa: E402

AGREEMENT = {"is": "are", "are": "is", "was": "were", "were": "was", "has": "have", "have": "has", "does": "do"}
DETERMINERS = {"this": "these", "these": "this", "those": "this", "each": "many", "every": "many"}
KINDS = ("agreement", "det-noun", "swap")


def sentences(path: Path, limit: int) -> list[str]:
    out, seen = [], set()
    for line in path.read_text(encoding="utf-8").splitlines():
        for s in re.split(r"(?<=[.!?])\s+", line.strip()):
            words = s.split()
            if 6 <= len(words) <= 20 and s[0].isupper() and s[-1] in ".!?" and s not in seen:
                seen.add(s)
                out.append(s)
    random.Random(0).shuffle(out)
    return out[:limit]


def _recase(new: str, old: str) -> str:
    return new.capitalize() if old[:1].isupper() else new


def corrupt(sentence: str, kind: str, rng: random.Random) -> str | None:
    """The bad sentence of one kind, or None when the sentence offers no place for it."""
    words = sentence.split(" ")
    if kind == "swap":
        spots = [i for i in range(1, len(words) - 1) if words[i].isalpha() and words[i + 1].isalpha()]
        spots = [i for i in spots if words[i].lower() != words[i + 1].lower()]
        if not spots:
            return None
        i = rng.choice(spots)
        words[i], words[i + 1] = words[i + 1], words[i]
        return " ".join(words)
    for i, w in enumerate(words):
        if kind == "agreement" and w.lower() in AGREEMENT:
            words[i] = _recase(AGREEMENT[w.lower()], w)
            return " ".join(words)
        if kind == "det-noun" and w.lower() in DETERMINERS and i + 1 < len(words) and _noun_after(w, words[i + 1]):
            words[i] = _recase(DETERMINERS[w.lower()], w)
            return " ".join(words)
    return None


# Words after a determiner that are not its noun ("this would ...", "these are ..."): the determiner is then a
# pronoun and flipping its number keeps the sentence grammatical.
NOT_NOUNS = set(
    "is are was were be been has have had do does did will would can could should may might must shall "
    "of in on at to for with by from as and or but that which who than not also only so all one".split()
)


def _noun_after(determiner: str, word: str) -> bool:
    """Whether ``word`` looks like the determiner's noun: a lower-case word, plural (-s) after these / those,
    singular (no -s) after this / each / every."""
    if not word.isalpha() or not word.islower() or word in NOT_NOUNS:
        return False
    plural = word.endswith("s") and not word.endswith("ss")
    return plural if determiner.lower() in ("these", "those") else not plural


def make_pairs(n: int, seed: int) -> dict[str, list[tuple[str, str]]]:
    pool = sentences(DATA / "bbc.txt", 20_000)
    rng = random.Random(seed)
    pairs: dict[str, list[tuple[str, str]]] = {k: [] for k in KINDS}
    for s in pool:
        for kind in KINDS:
            if len(pairs[kind]) < n:
                bad = corrupt(s, kind, rng)
                if bad is not None and bad != s:
                    pairs[kind].append((s, bad))
        if all(len(v) >= n for v in pairs.values()):
            break
    return pairs


def accuracy(scorer, pairs: dict[str, list[tuple[str, str]]], batch_size: int) -> dict[str, dict[str, float]]:
    from bertkit.eval.blimp import score_sentences

    out = {}
    for kind, items in pairs.items():
        scores = score_sentences(scorer, [s for pair in items for s in pair], batch_size=batch_size)
        out[kind] = {
            v: sum(scores[2 * i][v] > scores[2 * i + 1][v] for i in range(len(items))) / len(items)
            for v in ("pll", "pll-word-l2r")
        }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=600, help="pretraining steps (quality.py's CPU budget: 600)")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--vocab-size", type=int, default=8192)
    ap.add_argument("--pairs", type=int, default=400, help="minimal pairs per corruption")
    ap.add_argument("--archs", default=None, help="comma-separated architectures (default: every token one)")
    ap.add_argument("--batch-size", type=int, default=512, help="masked copies per scoring forward")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", type=Path, default=DATA / "bench", help="cache: tokenizer, corpus, trained weights")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    import torch
    from quality import vocabulary, zero_dropout
    from train_bench import make_models, masked_inputs, prepared_news, pretrain

    from bertkit.eval.blimp import RunScorer, load_scorer
    from bertkit.eval.text import load_tokenizer
    from bertkit.models import ARCHITECTURES, build_model, get_architecture

    if args.threads:
        torch.set_num_threads(args.threads)
    for f in ("news.txt", "bbc.txt"):
        if not (DATA / f).is_file():
            sys.exit(f"no {DATA / f}: run `python scripts/fetch_data.py --out {DATA}` (or set BERTKIT_DATA)")
    archs = [a.strip() for a in args.archs.split(",")] if args.archs else None
    archs = archs or [n for n, a in ARCHITECTURES.items() if a.data_kind == "tokens"]
    for name in archs:
        get_architecture(name)
    args.work.mkdir(parents=True, exist_ok=True)

    def log(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    t_start = time.perf_counter()
    pairs = make_pairs(args.pairs, args.seed)
    log("pairs: " + ", ".join(f"{k} {len(v)}" for k, v in pairs.items()))
    for kind, items in pairs.items():
        log(f"  e.g. {kind}: {items[0][0]!r} / {items[0][1]!r}")
    vocab = vocabulary(args.work, args.vocab_size)
    ds = prepared_news(vocab, args.work, name=f"quality_news_{args.vocab_size}")
    tokenizer = load_tokenizer(vocab)
    settings = json.dumps([args.steps, args.batch, args.seq_len, args.lr, args.preset, args.vocab_size, args.seed])
    key = hashlib.sha256(settings.encode()).hexdigest()[:12]
    cache = args.work / f"minimal_pairs_{key}"
    cache.mkdir(exist_ok=True)
    inputs: list[dict] = []

    def train_inputs() -> list[dict]:
        if not inputs:
            inputs.extend(masked_inputs(ds, "train", args.steps, args.batch, args.seq_len, args.seed))
        return inputs

    def overrides(arch) -> dict:
        names = arch.config_class.field_names()
        extra = {"vocab_size": tokenizer.vocab_size, "pad_token_id": tokenizer.pad_id}
        return {**{k: v for k, v in extra.items() if k in names}, **zero_dropout(arch.config_class)}

    def trained(name: str, impl: str, model):
        path = cache / f"{name.replace(' ', '_')}.pt"
        if path.is_file():
            model.load_state_dict(torch.load(path, map_location="cpu"))
            log(f"{name}: weights from {path}")
        else:
            log(f"{name}: pretraining {args.steps} steps")
            run = pretrain(impl, model, train_inputs(), args.lr, args.seed, torch.device("cpu"))
            torch.save(model.state_dict(), path)
            log(f"{name}: {run['seconds']:.0f} s, final loss {sum(run['losses'][-20:]) / 20:.3f}")
        return model.cpu().eval()

    rows = []

    def score(name: str, scorer) -> None:
        t0 = time.perf_counter()
        acc = accuracy(scorer, pairs, args.batch_size)
        rows.append({"name": name, "accuracy": acc, "seconds": time.perf_counter() - t0})
        log(f"{name}: " + ", ".join(f"{k} {100 * v['pll']:.1f}" for k, v in acc.items()))

    for name in archs:
        arch = get_architecture(name)
        torch.manual_seed(args.seed)  # bert's initial weights equal make_models' (same seed, same constructor)
        model = trained(name, "bertkit", build_model(arch, args.preset, **overrides(arch)))
        score(f"{name} ({args.preset})", RunScorer(model, tokenizer, source=name, kind="model", arch=name, step=None))
    _, hf = make_models(
        args.preset, seed=args.seed, dropout=0.0, vocab_size=tokenizer.vocab_size, pad_token_id=tokenizer.pad_id
    )
    hf = trained("hf", "hf", hf)
    hf_dir = cache / "hf_bert"
    shutil.rmtree(hf_dir, ignore_errors=True)
    hf.save_pretrained(hf_dir)
    shutil.copy(vocab, hf_dir / "vocab.txt")
    score(f"HF BertForMaskedLM ({args.preset})", load_scorer(hf_dir, device="cpu"))
    torch.manual_seed(args.seed)
    fresh = build_model("bert", args.preset, **overrides(get_architecture("bert"))).eval()
    score(
        f"bert ({args.preset}), random init",
        RunScorer(fresh, tokenizer, source="random", kind="model", arch="bert", step=None),
    )

    n = {k: len(v) for k, v in pairs.items()}

    def cell(p: float, count: int) -> str:
        return f"{100 * p:.1f} ± {196 * math.sqrt(p * (1 - p) / count):.1f}"

    total = sum(n.values())
    lines = [
        f"machine: {machine()}; torch threads {torch.get_num_threads()}",
        f"pretraining: news.txt, {args.steps} steps of {args.batch}×{args.seq_len} "
        f"({args.steps * args.batch * args.seq_len / 1e6:.2f}M tokens), preset {args.preset}, AdamW lr {args.lr}, "
        f"dropout 0, vocabulary {tokenizer.vocab_size}; pairs from bbc.txt: "
        + ", ".join(f"{k} {v}" for k, v in n.items())
        + f"; whole run {(time.perf_counter() - t_start) / 60:.1f} min",
        "",
        "| model | " + " | ".join(f"{k} (PLL)" for k in KINDS) + " | all (PLL) | all (PLL-word-l2r) |",
        "|---|" + "---|" * (len(KINDS) + 2),
    ]
    for r in rows:
        acc = r["accuracy"]
        overall = {v: sum(acc[k][v] * n[k] for k in KINDS) / total for v in ("pll", "pll-word-l2r")}
        r["overall"] = overall
        lines.append(
            f"| {r['name']} | "
            + " | ".join(cell(acc[k]["pll"], n[k]) for k in KINDS)
            + f" | {cell(overall['pll'], total)} | {cell(overall['pll-word-l2r'], total)} |"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "pairs": pairs, "args": vars(args)}, indent=2, default=str))


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
