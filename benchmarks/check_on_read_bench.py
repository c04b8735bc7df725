"""The cost of checking data on read: value validation on open + each shard's xxh3 before its first read.

    python benchmarks/check_on_read_bench.py [--mb 12] [--steps 40] [--repeat 3]

Prepares `--mb` of $BERTKIT_DATA/news.txt with the MiniLM (bert-base-uncased) vocabulary into a temporary
directory, then measures, each in a fresh subprocess, median over `--repeat` rounds:

- anchor: the wall time of a tiny CPU training run (`bertkit train --preset tiny`, `--steps` steps, B16, seq 128,
  one evaluation at the end) with `--no-verify-data`;
- figure: what the checks cost inside that run: the two dataset opens `train` does (train and eval split) with the
  checks (the first hashes every shard, the second finds them in the per-process cache) minus the same opens that
  only map the arrays and compare dtypes and shapes (what opening did before the checks);
- ratio: figure / anchor (target <= 5 %). The whole-run difference (default vs `--no-verify-data`) is printed too;
  on a shared 2-core box it is within the noise.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from _common import DATA, header, median, row  # noqa: E402

_OPENS = """
import sys, time
import bertkit.data.dataset as d
if sys.argv[2] == "bare":
    d._check_monotone = d._check_below = d._check_nsp_values = lambda *a, **k: None
t = time.perf_counter()
d.open_dataset(sys.argv[1], verify_checksums=sys.argv[2] == "checked")  # the train split
d.open_dataset(sys.argv[1], verify_checksums=sys.argv[2] == "checked")  # the eval split (checksums cached)
print(time.perf_counter() - t)
"""


def _opens(ds: Path, mode: str) -> float:
    r = subprocess.run([sys.executable, "-c", _OPENS, str(ds), mode], capture_output=True, text=True, check=True)
    return float(r.stdout.split()[-1])


def _train(ds: Path, out: Path, steps: int, *extra: str) -> float:
    cmd = [sys.executable, "-m", "bertkit_cli", "train", "--preset", "tiny", "--data", str(ds), "--out", str(out),
           "--max-steps", str(steps), "--batch-size", "16", "--seq-len", "128", "--device", "cpu", "--eval-every",
           str(steps), "--log-every", "10", "-q", *extra]  # fmt: skip
    t = time.perf_counter()
    subprocess.run(cmd, capture_output=True, text=True, check=True)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mb", type=float, default=12.0, help="MB of news.txt to prepare")
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()

    from bertkit.data.prepare import PrepareConfig, prepare

    vocab = DATA / "minilm" / "vocab.txt"
    news = DATA / "news.txt"
    if not vocab.is_file() or not news.is_file():
        sys.exit(f"needs {news} and {vocab} (python scripts/fetch_data.py --out {DATA})")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        src = tmp / "news.txt"
        src.write_bytes(news.read_bytes()[: int(args.mb * 1e6)])
        ds = tmp / "ds"
        summary = prepare(PrepareConfig(inputs=[str(src)], out=ds, tokenizer=vocab, shard_size=1 << 20))
        tokens = summary["totals"]["tokens"]
        anchors, defaults, checked, bare = [], [], [], []
        for i in range(args.repeat):
            anchors.append(_train(ds, tmp / f"skip{i}", args.steps, "--no-verify-data"))
            defaults.append(_train(ds, tmp / f"check{i}", args.steps))
            checked.append(_opens(ds, "checked"))
            bare.append(_opens(ds, "bare"))
        anchor, cost = median(anchors), median(checked) - median(bare)
        header(f"checking on read ({tokens:,} tokens in {summary['shards']} shards, {args.mb:g} MB of news)")
        row(
            "checking on read (validate + xxh3, train's two opens) vs a tiny CPU run",
            f"tiny run {args.steps} steps B16x128 {anchor:.2f} s",
            f"{cost * 1000:.0f} ms ({median(checked) * 1000:.0f} - {median(bare) * 1000:.0f} ms bare) = "
            f"{100 * cost / anchor:.2f} % of the run",
            None,
            "<= 5 %",
        )
        row(
            "whole run, default (checked) vs --no-verify-data",
            f"{anchor:.2f} s",
            f"{median(defaults):.2f} s",
            median(defaults) / anchor,
            "(noise on a shared box)",
        )


if __name__ == "__main__":
    main()
