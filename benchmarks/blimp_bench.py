"""PLL scoring speed (`bertkit eval blimp`): sentences/s of bertkit's scorer against the plain reference on the same
model, same run, CPU.

    anchor : transformers BertForMaskedLM, every token masked in turn, one forward per masked copy with the
             full-vocabulary head on every position, log-softmax of the original token summed (what minicons'
             MaskedLMScorer does, one copy at a time)
    bertkit: bertkit.eval.blimp on the same HF directory (AutoModelForMaskedLM: the masked copies of a batch of
             sentences in one padded forward, the head on the scored rows only), and on the bertkit model itself

The model is a randomly initialised BERT preset (speed does not depend on the weights) with the vocabulary of
$BERTKIT_DATA/vocab.txt (30,522 WordPiece tokens, BERT's size), exported with bertkit.export.hf; the sentences are
real: the first N sentences of 5-15 words of $BERTKIT_DATA/news.txt (BLiMP's sentences are this short). The scores
of the three are checked to agree (max |difference| printed). Target: >= 3x the anchor's sentences/s.

    python benchmarks/blimp_bench.py [--preset small --sentences 24 --threads 1 --batch-size 256 --repeats 3]
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _common import DATA, header, row  # noqa: E402


def real_sentences(n: int) -> list[str]:
    text = (DATA / "news.txt").read_text(encoding="utf-8")
    out = []
    for s in re.split(r"(?<=[.!?])\s+", text):
        words = s.split()
        if 5 <= len(words) <= 15 and s[0].isupper():
            out.append(s.strip())
            if len(out) == n:
                break
    return out


def reference_scores(model, tokenizer, sentences: list[str]) -> list[float]:
    import torch

    out = []
    for s in sentences:
        enc = tokenizer(s, return_tensors="pt")
        ids, words = enc["input_ids"][0], enc.word_ids(0)
        total = 0.0
        for i, w in enumerate(words):
            if w is None:
                continue
            masked = ids.clone()
            masked[i] = tokenizer.mask_token_id
            with torch.no_grad():
                logits = model(input_ids=masked[None], attention_mask=enc["attention_mask"]).logits[0]
            total += torch.log_softmax(logits[i], -1)[ids[i]].item()
        out.append(total)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="small")
    ap.add_argument("--sentences", type=int, default=24)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=3, help="median of this many interleaved timings")
    args = ap.parse_args()

    import torch
    import transformers

    from bertkit.eval.blimp import RunScorer, load_scorer, score_sentences
    from bertkit.eval.text import load_tokenizer
    from bertkit.export.hf import export_hf
    from bertkit.models import build_model

    torch.set_num_threads(args.threads)
    vocab = DATA / "vocab.txt"
    if not vocab.is_file():
        sys.exit(f"no {vocab}: run `python scripts/fetch_data.py --out {DATA}` (or set BERTKIT_DATA)")
    sentences = real_sentences(args.sentences)
    n_vocab = len(vocab.read_text(encoding="utf-8").splitlines())
    torch.manual_seed(0)
    model = build_model("bert", args.preset, vocab_size=n_vocab).eval()

    with tempfile.TemporaryDirectory() as tmp:
        tok_dir = Path(tmp) / "tok"
        tok_dir.mkdir()
        (tok_dir / "vocab.txt").write_bytes(vocab.read_bytes())
        hf_dir = export_hf(model, None, Path(tmp) / "hf", tok_dir, do_lower_case=True)
        hf_model = transformers.AutoModelForMaskedLM.from_pretrained(str(hf_dir)).eval()
        hf_tok = transformers.AutoTokenizer.from_pretrained(str(hf_dir))
        hf_scorer = load_scorer(hf_dir, device="cpu")
        run_scorer = RunScorer(
            model, load_tokenizer(tok_dir / "vocab.txt"), source="model", kind="model", arch="bert", step=None
        )
        tokens = sum(len(ids) - 2 for ids, _ in run_scorer.tokenize(sentences))

        methods = {
            "ref": lambda s: reference_scores(hf_model, hf_tok, s),
            "hf": lambda s: [x["pll"] for x in score_sentences(hf_scorer, s, ["pll"], batch_size=args.batch_size)],
            "run": lambda s: [x["pll"] for x in score_sentences(run_scorer, s, ["pll"], batch_size=args.batch_size)],
            "both": lambda s: score_sentences(run_scorer, s, batch_size=args.batch_size),
        }
        times: dict[str, list[float]] = {k: [] for k in methods}
        results = {}
        for fn in methods.values():
            fn(sentences[:4])  # warm-up
        for _ in range(args.repeats):  # interleaved, so that load from other processes hits every method alike
            for name, fn in methods.items():
                t = time.perf_counter()
                results[name] = fn(sentences)
                times[name].append(time.perf_counter() - t)
        t_ref, t_hf, t_run, t_both = (statistics.median(times[k]) for k in methods)
        ref, hf, ours = results["ref"], results["hf"], results["run"]
    diff = max(max(abs(a - b), abs(a - c)) for a, b, c in zip(ref, hf, ours, strict=True))

    n = len(sentences)
    header(
        f"PLL scoring, bert {args.preset} (V {n_vocab:,}), {n} news sentences ({tokens} tokens scored), "
        f"{args.threads} thread(s), batch {args.batch_size} copies, median of {args.repeats}; "
        f"max |score difference| {diff:.2e}"
    )
    anchor = f"{n / t_ref:.2f} sent/s"
    row("PLL, HF model dir", anchor, f"{n / t_hf:.2f} sent/s", t_ref / t_hf, ">= 3x")
    row("PLL, bertkit run model", anchor, f"{n / t_run:.2f} sent/s", t_ref / t_run, ">= 3x")
    row("PLL + PLL-word-l2r together, bertkit model", anchor, f"{n / t_both:.2f} sent/s", t_ref / t_both, "")


if __name__ == "__main__":
    main()
