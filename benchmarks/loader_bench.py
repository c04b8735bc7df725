"""Pretraining batch rate of ``bertkit.data.loader.PretrainingData`` on a real corpus (CPU, numpy batches).

    python benchmarks/loader_bench.py [--corpus bbc.txt] [--batch-size 256] [--seq-len 128] [--batches 20]

Prepares ``$BERTKIT_DATA/<corpus>`` with the bert-base-uncased vocabulary (``bertkit prepare``, library call) into a
temporary directory, then times, per view, the set-up (opening and the first epoch's view) and the median time of one
batch of ``--batch-size`` × ``--seq-len`` after the first. Anchor for the packed-MLM view: reading the same number of
rows with ``MlmStream.rows`` alone (the Rust part of a batch), so the ratio is what the loader's assembly costs on top.
The NSP view has no such anchor (its rows are assembled in the loader from the per-epoch pairs).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import DATA, header, median, row  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpus", default="bbc.txt", help="a file of $BERTKIT_DATA (blank line between documents)")
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--batches", type=int, default=20, help="timed batches per view (after the first)")
    args = ap.parse_args()

    from bertkit.data.loader import PretrainingData
    from bertkit.data.prepare import PrepareConfig, prepare
    from bertkit.data.views import MlmStream, mlm_view

    corpus, vocab = DATA / args.corpus, DATA / "vocab.txt"
    for p in (corpus, vocab):
        if not p.exists():
            sys.exit(f"{p} not found: run `python scripts/fetch_data.py --out {DATA}` (or set BERTKIT_DATA)")
    work = Path(tempfile.mkdtemp(prefix="bertkit-loader-bench-"))
    try:
        ds = work / "ds"
        summary = prepare(PrepareConfig(inputs=[str(corpus)], tokenizer=str(vocab), out=str(ds)))
        tokens = summary["totals"]["tokens"]
        B, L = args.batch_size, args.seq_len
        header(f"PretrainingData on {corpus.name} ({tokens:,} tokens), batches of {B}×{L}")
        for view in ("mlm", "nsp"):
            t = time.perf_counter()
            data = PretrainingData(ds, view=view, seq_len=L, batch_size=B, seed=0)
            setup = time.perf_counter() - t
            it = data.batches()
            batch, _ = next(it)
            times = []
            for _ in range(args.batches):
                t = time.perf_counter()
                batch, _ = next(it)
                times.append(time.perf_counter() - t)
            per = median(times)
            assert batch["input_ids"].shape == (B, L)
            ours = (
                f"{per * 1e3:.2f} ms/batch = {B * L / per / 1e6:.2f} M tokens/s "
                f"(set-up {setup:.2f} s, {data.num_batches(0)} batches/epoch)"
            )
            if view == "mlm":
                stream = MlmStream(ds)
                starts = mlm_view(ds, seq_len=L, seed=0, epoch=0)[:B]
                reads = []
                for _ in range(args.batches):
                    t = time.perf_counter()
                    stream.rows(starts, L)
                    reads.append(time.perf_counter() - t)
                anchor = median(reads)
                row(f"{view} view batch", f"MlmStream.rows alone {anchor * 1e3:.2f} ms", ours, per / anchor)
            else:
                row(f"{view} view batch", "-", ours, None)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
