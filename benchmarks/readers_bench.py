"""Readers (issue: data in): `prepare` of the same documents as JSONL (anchor), Parquet, a datasets.save_to_disk
folder, .jsonl.zst and a Python iterable; then `prepare --ray` on a local runtime with 1 vs 2 workers.

    python benchmarks/readers_bench.py [--mb 10] [--repeat 3] [--threads 2] [--no-ray]

Prints a markdown table: anchor, figure, ratio, target. The rate is MB of document text per second of the
library call (`prepare` end to end: read, split, tokenize, write), so a ratio below 1 is what the reader costs on
top of the JSONL path (target: >= 0.85, i.e. the reader costs at most 15 % of the end-to-end rate).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import DATA, bench_corpus, header, median, row  # noqa: E402


def documents(mb: float) -> list[str]:
    text = bench_corpus(mb).read_text(encoding="utf-8")
    docs = [d.strip() for d in text.split("\n\n") if d.strip()]
    out, size = [], 0
    for d in docs:
        out.append(d)
        size += len(d.encode())
        if size >= mb * 1e6:
            break
    return out


def timed(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mb", type=float, default=10.0)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-ray", action="store_true")
    args = ap.parse_args()

    import datasets
    import pyarrow as pa
    import pyarrow.parquet as pq

    from bertkit.data.prepare import PrepareConfig, prepare

    vocab = DATA / "vocab.txt"
    docs = documents(args.mb)
    mb = sum(len(d.encode()) for d in docs) / 1e6
    tmp = Path(tempfile.mkdtemp(prefix="readers_bench-"))
    try:
        jsonl = tmp / "c.jsonl"
        with open(jsonl, "w", encoding="utf-8") as f:
            for d in docs:
                f.write(json.dumps({"text": d}) + "\n")
        # Snappy (pyarrow's default), 16 row groups (so that --ray has row-group partitions to split).
        pq.write_table(pa.table({"text": docs}), tmp / "c.parquet", row_group_size=max(1, len(docs) // 16))
        with pa.CompressedOutputStream(str(tmp / "c.jsonl.zst"), "zstd") as f:
            f.write(jsonl.read_bytes())
        datasets.disable_progress_bars()
        datasets.Dataset.from_dict({"text": docs}).save_to_disk(str(tmp / "hf"))

        def run(inputs, documents=None) -> None:
            cfg = PrepareConfig(inputs=inputs, out=tmp / "out", tokenizer=vocab, threads=args.threads, overwrite=True)
            prepare(cfg, documents=documents() if documents else None)

        header(f"Readers: the same {len(docs):,} documents ({mb:.1f} MB of text), prepare with {args.threads} threads")
        anchor = mb / timed(lambda: run([jsonl]), args.repeat)
        cases = {
            "Parquet (snappy)": lambda: run([tmp / "c.parquet"]),
            "datasets.save_to_disk folder": lambda: run([tmp / "hf"]),
            ".jsonl.zst": lambda: run([tmp / "c.jsonl.zst"]),
            "Python iterable of dicts": lambda: run([], lambda: ({"text": d} for d in docs)),
        }
        for name, fn in cases.items():
            rate = mb / timed(fn, args.repeat)
            row(f"prepare from {name}", f"JSONL {anchor:.1f} MB/s", f"{rate:.1f} MB/s", rate / anchor, ">= 0.85x")

        if not args.no_ray:
            import ray

            from bertkit.data.ray_prepare import prepare_on_ray

            rates = {}
            for workers in (1, 2):
                ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
                try:
                    cfg = PrepareConfig(inputs=[tmp / "c.parquet"], out=tmp / "ray", tokenizer=vocab, overwrite=True)

                    def once(cfg: PrepareConfig = cfg) -> None:
                        shutil.rmtree(tmp / "ray", ignore_errors=True)
                        prepare_on_ray(cfg, partition_bytes=int((tmp / "c.parquet").stat().st_size / 4))

                    once()  # warm the workers (imports) before timing
                    rates[workers] = mb / timed(once, args.repeat)
                finally:
                    ray.shutdown()
            row(
                "prepare --ray, local runtime, 1 → 2 workers (1 CPU per task, 4+ partitions)",
                f"1 worker {rates[1]:.1f} MB/s",
                f"{rates[2]:.1f} MB/s",
                rates[2] / rates[1],
                "",
            )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
