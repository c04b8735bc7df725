"""`bertkit prepare` against its anchors, measured in the same run (issue: foundation).

    python benchmarks/prepare_bench.py [--mb 20] [--repeat 3] [--google-python PY] [--google-mb 2]

Prints a markdown table: anchor, bertkit, ratio, target. Needs the real corpora
(`python scripts/fetch_data.py --out data`, or BERTKIT_DATA). Optional baselines:
- Hugging Face (`pip install transformers datasets`): BertTokenizerFast + datasets.map + group_texts to 128.
- Google's create_pretraining_data.py from PyPI `bert-tensorflow==1.0.4` + `tensorflow-cpu`, in its own
  environment (`--google-python`); `make bench-google-env` builds one in .venv-google.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import DATA, bench_corpus, header, median, peak_rss_of, row, scaled_corpus  # noqa: E402

BERTKIT = [sys.executable, "-m", "bertkit_cli"]
# The library call alone (no CLI start-up): prints the summary, whose `seconds` is prepare's own time.
DRIVER = (
    "import json,sys;from bertkit.data.prepare import PrepareConfig,prepare;"
    "print(json.dumps(prepare(PrepareConfig(**json.loads(sys.argv[1])))))"
)
GOOGLE_TFRECORD_BYTES_PER_INSTANCE = 833  # docs/ANCHORS.md (L 128, dupe 5, measured on 10.2 MB)


def prepare_cmd(corpus: Path, out: Path, vocab: Path, threads: int, *extra: str) -> list[str]:
    return [*BERTKIT, "prepare", str(corpus), "--tokenizer", str(vocab), "--out", str(out), "--threads",
            str(threads), "--overwrite", "-q", *extra]  # fmt: skip


def timed(cmd, repeat):
    """Median wall seconds and max peak RSS of a command over `repeat` runs."""
    runs = [peak_rss_of(cmd) for _ in range(repeat)]
    return median([r[0] for r in runs]), max(r[1] for r in runs)


def library_seconds(corpus: Path, out: Path, vocab: Path, threads: int, repeat: int, **cfg) -> float:
    """Median of prepare's own time (the `seconds` of its summary), without interpreter start-up."""
    conf = dict(inputs=[str(corpus)], out=str(out), tokenizer=str(vocab), threads=threads, overwrite=True, **cfg)
    runs = [json.loads(peak_rss_of([sys.executable, "-c", DRIVER, json.dumps(conf)])[2])["seconds"]
            for _ in range(repeat)]  # fmt: skip
    return median(runs)


def nsp_bytes_per_instance(out: Path) -> tuple[float, int]:
    m = json.loads((out / "manifest.json").read_text())
    n = m["totals"]["instances"]["nsp"]
    size = sum(a["size"] for s in m["shards"] if s["kind"] == "nsp" for a in s["arrays"].values())
    return size / n, n


HF_SCRIPT = r"""
import os, sys, time
os.environ["TOKENIZERS_PARALLELISM"] = "false" if int(sys.argv[3]) == 1 else "true"
import datasets
from transformers import BertTokenizerFast
datasets.disable_caching()
datasets.utils.logging.disable_progress_bar()
t0 = time.perf_counter()
tok = BertTokenizerFast(vocab_file=sys.argv[2], do_lower_case=True)
raw = datasets.load_dataset("text", data_files=sys.argv[1], split="train", keep_in_memory=True)
def tokenize(batch):
    return tok(batch["text"], return_special_tokens_mask=True)
from itertools import chain
def group_texts(examples, block=128):  # as transformers' examples/pytorch/language-modeling/run_mlm.py
    concat = {k: list(chain(*examples[k])) for k in examples}
    total = (len(concat["input_ids"]) // block) * block
    return {k: [t[i:i + block] for i in range(0, total, block)] for k, t in concat.items()}
nproc = int(sys.argv[3])
toks = raw.map(tokenize, batched=True, num_proc=nproc if nproc > 1 else None, remove_columns=["text"],
               keep_in_memory=True)
packed = toks.map(group_texts, batched=True, num_proc=nproc if nproc > 1 else None, keep_in_memory=True)
print(time.perf_counter() - t0, len(packed))
"""

GOOGLE_SHIM = r"""
import sys
import tensorflow.compat.v1 as tf
tf.disable_v2_behavior()
sys.modules["tensorflow"] = tf
from bert import create_pretraining_data as cpd
sys.argv = ["create_pretraining_data.py", *sys.argv[1:]]
tf.app.run(cpd.main)
"""


def sentences_per_line(src: Path, out: Path, mb: float) -> Path:
    """Google's input format from the first `mb` MB of a blank-line corpus, split by bertkit's splitter."""
    from bertkit import _core

    budget = int(mb * 1e6)
    with open(src, encoding="utf-8") as f, open(out, "w", encoding="utf-8") as g:
        used = 0
        for para in f.read(budget * 2).split("\n\n"):
            if used >= budget:
                break
            sents = _core.split_sentences(para, "rules")
            if sents:
                g.write("\n".join(s.replace("\n", " ") for s in sents) + "\n\n")
                used += len(para.encode())
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mb", type=float, default=20.0, help="corpus size for the main measurements")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--dupe-factor", type=int, default=5)
    ap.add_argument("--google-python", default=os.environ.get("GOOGLE_PYTHON", ".venv-google/bin/python"))
    ap.add_argument("--google-mb", type=float, default=10.0, help="input for Google's script (anchor: 10.2 MB)")
    ap.add_argument("--skip-hf", action="store_true")
    ap.add_argument("--memory-factors", default="4,8", help="corpus multiples for the bounded-memory check")
    args = ap.parse_args()

    vocab = DATA / "vocab.txt"
    corpus = bench_corpus(args.mb)
    mb = corpus.stat().st_size / 1e6
    work = Path(tempfile.mkdtemp(prefix="bertkit-bench-"))
    header(f"bertkit prepare: {mb:.1f} MB of real text ({corpus.name}), NSP L 128, dupe {args.dupe_factor}")
    try:
        nsp = ("--instances", "nsp", "--dupe-factor", str(args.dupe_factor))
        t1, rss1 = timed(prepare_cmd(corpus, work / "t1", vocab, 1, *nsp), args.repeat)
        t2, rss2 = timed(prepare_cmd(corpus, work / "t2", vocab, 2, *nsp), args.repeat)
        per_core = mb / t1
        row("end-to-end prepare + NSP, 1 thread", "Google 0.131-0.210 MB/s/core (ANCHORS)", f"{per_core:.2f} MB/s",
            per_core / 0.210, ">= 8 MB/s/core")  # fmt: skip
        row("end-to-end prepare + NSP, 2 threads (command)", f"1 thread {per_core:.2f} MB/s", f"{mb / t2:.2f} MB/s",
            t1 / t2, "scaling >= 1.8x")  # fmt: skip
        nsp_cfg = dict(instances=["nsp"], dupe_factor=args.dupe_factor)
        l1 = library_seconds(corpus, work / "l1", vocab, 1, args.repeat, **nsp_cfg)
        l2 = library_seconds(corpus, work / "l2", vocab, 2, args.repeat, **nsp_cfg)
        row("prepare + NSP, library call, 1 -> 2 threads", f"1 thread {mb / l1:.2f} MB/s", f"{mb / l2:.2f} MB/s",
            l1 / l2, "scaling >= 1.8x")  # fmt: skip
        bpi, n = nsp_bytes_per_instance(work / "t1")
        g = GOOGLE_TFRECORD_BYTES_PER_INSTANCE
        row(f"output bytes per NSP instance ({n:,} instances)", f"Google TFRecord {g} B (ANCHORS)", f"{bpi:.0f} B",
            bpi / g, "<= 0.45x")  # fmt: skip

        peaks = []
        for factor in (int(f) for f in args.memory_factors.split(",")):
            big = scaled_corpus(corpus, factor)
            _, rss = timed(prepare_cmd(big, work / "big", vocab, 2, *nsp), 1)
            peaks.append((big.stat().st_size / 1e6, rss))
            shutil.rmtree(work / "big", ignore_errors=True)
        sizes = " / ".join(f"{m:.0f}" for m, _ in peaks)
        rsss = " / ".join(f"{r / 2**20:.0f}" for _, r in peaks)
        row(f"peak RSS (MiB) at {sizes} MB input, 2 threads", "Google ~50 MB per MB of input", rsss,
            peaks[-1][1] / peaks[0][1], "<= 1 GiB at any size")  # fmt: skip
        if not args.skip_hf:
            hf_bench(corpus, vocab, work, mb, args.repeat)
        google_bench(args, corpus, vocab, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def hf_bench(corpus: Path, vocab: Path, work: Path, mb: float, repeat: int) -> None:
    try:
        import datasets  # noqa: F401
        import transformers  # noqa: F401
    except ImportError:
        print("| HF tokenizers + datasets.map | skipped: pip install transformers datasets | | | |")
        return
    mlm = ("--instances", "mlm", "--mlm-seq-len", "128")
    ours, _ = timed(prepare_cmd(corpus, work / "mlm1", vocab, 1, *mlm), repeat)
    ours2, _ = timed(prepare_cmd(corpus, work / "mlm2", vocab, 2, *mlm), repeat)
    hf_runs = []
    for nproc in (1, 2):
        times = []
        for _ in range(repeat):
            p = subprocess.run([sys.executable, "-c", HF_SCRIPT, str(corpus), str(vocab), str(nproc)],
                               capture_output=True, text=True)  # fmt: skip
            if p.returncode != 0:
                print(f"| HF baseline failed | {p.stderr[-300:]!r} | | | |")
                return
            times.append(float(p.stdout.split()[0]))
        hf_runs.append(median(times))
    row("tokenize + pack to 128, 1 core", f"HF {mb / hf_runs[0]:.2f} MB/s", f"{mb / ours:.2f} MB/s", hf_runs[0] / ours,
        ">= 5x per core")  # fmt: skip
    row("tokenize + pack to 128, 2 cores", f"HF num_proc=2 {mb / hf_runs[1]:.2f} MB/s", f"{mb / ours2:.2f} MB/s",
        hf_runs[1] / ours2, "")  # fmt: skip


def google_bench(args, corpus: Path, vocab: Path, work: Path) -> None:
    gpy = Path(args.google_python)
    if not gpy.exists():
        print(f"| Google create_pretraining_data.py | skipped: no environment at {gpy} (make bench-google-env) | | | |")
        return
    src = sentences_per_line(corpus, work / "google_input.txt", args.google_mb)
    mb = src.stat().st_size / 1e6
    out = work / "google.tfrecord"
    cmd = [str(gpy), "-c", GOOGLE_SHIM, f"--input_file={src}", f"--output_file={out}", f"--vocab_file={vocab}",
           "--do_lower_case=True", "--max_seq_length=128", "--max_predictions_per_seq=20", "--masked_lm_prob=0.15",
           "--random_seed=12345", f"--dupe_factor={args.dupe_factor}"]  # fmt: skip
    p = subprocess.run(
        [sys.executable, "-c",
         "import resource,subprocess,sys,time;t=time.perf_counter();r=subprocess.run(sys.argv[1:],capture_output=True,"
         "text=True);dt=time.perf_counter()-t;print(dt,resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss*1024);"
         "sys.stderr.write(r.stderr);sys.exit(r.returncode)", *cmd],
        capture_output=True, text=True)  # fmt: skip
    if p.returncode != 0:
        print(f"| Google create_pretraining_data.py | failed: {p.stderr[-400:]!r} | | | |")
        return
    g_t, g_rss = (float(x) for x in p.stdout.split()[:2])
    m = re.search(r"Wrote (\d+) total instances", p.stderr)
    g_n = int(m.group(1)) if m else 0
    ours_t, ours_rss = timed(
        prepare_cmd(src, work / "g_ours", vocab, 1, "--sentences-per-line", "--instances", "nsp", "--dupe-factor",
                    str(args.dupe_factor)), args.repeat)  # fmt: skip
    bpi, n = nsp_bytes_per_instance(work / "g_ours")
    row(f"NSP instances from {mb:.1f} MB, 1 core", f"Google {mb / g_t:.3f} MB/s", f"{mb / ours_t:.2f} MB/s",
        g_t / ours_t, ">= 40x")  # fmt: skip
    row("peak RSS, same input", f"Google {g_rss / 2**20:.0f} MiB", f"{ours_rss / 2**20:.0f} MiB", ours_rss / g_rss, "")
    if g_n:
        g_bpi = out.stat().st_size / g_n
        row("bytes per NSP instance, same input", f"Google TFRecord {g_bpi:.0f} B ({g_n:,} inst.)",
            f"{bpi:.0f} B ({n:,} inst.)", bpi / g_bpi, "<= 0.45x")  # fmt: skip


if __name__ == "__main__":
    main()
