"""Tokenizer throughput: bertkit's WordPiece vs HF `tokenizers` (the anchor), same lines, same vocab.

    python benchmarks/tokenize_bench.py [TEXT_FILE] [--vocab VOCAB] [--runs 3]

TEXT_FILE defaults to $BERTKIT_DATA/news.txt and the vocab to $BERTKIT_DATA/vocab.txt (or give a
tokenizer.json as --vocab, e.g. an ELC-style one; the anchor is then `Tokenizer.from_file`). Lines are
encoded without special tokens. Prints MB/s (UTF-8 bytes of the lines / wall time, median of the
runs) for 1 and 2 threads, the ratio ours/anchor measured in the same run, and the share of lines
whose ids agree.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path


def median_seconds(fn, runs: int) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    data = os.environ.get("BERTKIT_DATA")
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("text", nargs="?", default=str(Path(data) / "news.txt") if data else None)
    parser.add_argument("--vocab", default=str(Path(data) / "vocab.txt") if data else None)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    if not args.text or not args.vocab:
        parser.error("give TEXT_FILE and --vocab, or set BERTKIT_DATA")

    lines = Path(args.text).read_text(encoding="utf-8").split("\n")
    megabytes = sum(len(line.encode("utf-8")) for line in lines) / 1e6
    print(f"{args.text}: {len(lines):,} lines, {megabytes:.2f} MB; vocab {args.vocab}; median of {args.runs} runs")

    # The anchor's thread pool is fixed at import: set the 1-thread setting before importing it.
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    from tokenizers import BertWordPieceTokenizer, Tokenizer

    from bertkit._core import WordPieceTokenizer

    ours = WordPieceTokenizer(args.vocab)
    if args.vocab.endswith(".json"):
        anchor = Tokenizer.from_file(args.vocab)
        anchor.no_padding()
        anchor.no_truncation()
    else:
        anchor = BertWordPieceTokenizer(args.vocab, lowercase=True)

    ours_ids = ours.encode_batch(lines, threads=1)
    anchor_ids = [e.ids for e in anchor.encode_batch(lines, add_special_tokens=False)]
    agree = sum(a == b for a, b in zip(ours_ids, anchor_ids, strict=True))

    results = {}
    results[("anchor", 1)] = median_seconds(lambda: anchor.encode_batch(lines, add_special_tokens=False), args.runs)
    results[("ours", 1)] = median_seconds(lambda: ours.encode_batch(lines, threads=1), args.runs)
    # HF reads RAYON_RS_NUM_CPUS / TOKENIZERS_PARALLELISM per call; allow 2 threads now.
    os.environ["TOKENIZERS_PARALLELISM"] = "true"
    os.environ["RAYON_NUM_THREADS"] = "2"
    results[("anchor", 2)] = median_seconds(lambda: anchor.encode_batch(lines, add_special_tokens=False), args.runs)
    results[("ours", 2)] = median_seconds(lambda: ours.encode_batch(lines, threads=2), args.runs)

    print(f"{'threads':>7} {'anchor MB/s':>12} {'ours MB/s':>10} {'ratio':>7}")
    for threads in (1, 2):
        a = megabytes / results[("anchor", threads)]
        o = megabytes / results[("ours", threads)]
        print(f"{threads:>7} {a:>12.2f} {o:>10.2f} {o / a:>6.1f}x")
    print(f"id agreement: {100 * agree / len(lines):.3f} % of {len(lines):,} lines")


if __name__ == "__main__":
    main()
