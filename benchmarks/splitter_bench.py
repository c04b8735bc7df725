"""Sentence splitter benchmark: pySBD English Golden Rules accuracy and throughput, same run.

    python benchmarks/splitter_bench.py [--text $BERTKIT_DATA/news.txt] [--runs 3]

The 48 Golden Rules cases are not shipped with bertkit: they are read from pySBD's source
distribution, downloaded with pip into a cache directory at run time (``GOLDEN_EN_RULES``, in
``tests/lang/test_english.py`` or ``benchmarks/english_golden_rules.py`` depending on the
release). Throughput is measured per paragraph (blank-line separated) on a text file for
bertkit's rule splitter, a naive regex splitter and pySBD (when installed; on a prefix, as it is
slow), and printed as MB/s with same-run ratios.
"""

from __future__ import annotations

import argparse
import ast
import os
import re
import statistics
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable
from pathlib import Path

PYSBD_VERSIONS = ("0.3.4", "0.3.3")  # newest first; 0.3.4 has no sdist on PyPI at the time of writing
Case = tuple[str, list[str]]
Splitter = Callable[[str], list[str]]


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "bertkit" / "splitter-bench"


def _golden_from_sdist(path: Path) -> list[Case] | None:
    with tarfile.open(path) as tar:
        for member in tar.getmembers():
            if not member.isfile() or not member.name.endswith(".py"):
                continue
            f = tar.extractfile(member)
            if f is None:
                continue
            source = f.read().decode("utf-8")
            if "GOLDEN_EN_RULES" not in source:
                continue
            for node in ast.walk(ast.parse(source)):
                if isinstance(node, ast.Assign) and any(
                    isinstance(t, ast.Name) and t.id == "GOLDEN_EN_RULES" for t in node.targets
                ):
                    cases = ast.literal_eval(node.value)
                    return [(text, list(expected)) for text, expected in cases]
    return None


def load_golden_rules(cache_dir: Path | None = None) -> list[Case]:
    """The pySBD English Golden Rules, from pySBD's sdist (downloaded once with pip)."""
    cache_dir = cache_dir or default_cache_dir()
    cache_dir.mkdir(parents=True, exist_ok=True)
    errors = []
    for version in PYSBD_VERSIONS:
        sdist = cache_dir / f"pysbd-{version}.tar.gz"
        if not sdist.exists():
            cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:"]
            cmd += [f"pysbd=={version}", "-d", str(cache_dir)]
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
            if proc.returncode != 0 or not sdist.exists():
                errors.append(f"pysbd=={version}: {proc.stderr.strip().splitlines()[-1:] or proc.returncode}")
                continue
        cases = _golden_from_sdist(sdist)
        if cases:
            return cases
        errors.append(f"{sdist.name}: no GOLDEN_EN_RULES")
    raise RuntimeError("could not get the pySBD Golden Rules: " + "; ".join(errors))


def evaluate(cases: list[Case], split: Splitter) -> tuple[int, list[tuple[int, Case, list[str]]]]:
    """Exact-match count and the failures as (1-based case number, case, output)."""
    failures = []
    for number, (text, expected) in enumerate(cases, start=1):
        got = split(text)
        if got != expected:
            failures.append((number, (text, expected), got))
    return len(cases) - len(failures), failures


_NAIVE = re.compile(r"(?<=[.!?])\s+")


def naive_split(text: str) -> list[str]:
    """The naive anchor: break after every . ! ? followed by whitespace."""
    return [s for s in (part.strip() for part in _NAIVE.split(text)) if s]


def bertkit_split(text: str) -> list[str]:
    from bertkit._core import split_sentences

    return split_sentences(text, "rules")


def pysbd_splitter() -> Splitter | None:
    try:
        import pysbd
    except ImportError:
        return None
    segmenter = pysbd.Segmenter(language="en", clean=False)
    return lambda text: [s.strip() for s in segmenter.segment(text) if s.strip()]


def paragraphs(text: str) -> list[str]:
    return [p for p in re.split(r"\n\s*\n", text) if p.strip()]


def throughput(split: Splitter, paras: list[str], runs: int) -> tuple[float, int]:
    """Median MB/s over `runs` passes of per-paragraph calls, and the sentence count."""
    nbytes = sum(len(p.encode("utf-8")) for p in paras)
    times, count = [], 0
    for _ in range(runs):
        start = time.perf_counter()
        count = sum(len(split(p)) for p in paras)
        times.append(time.perf_counter() - start)
    return nbytes / 1e6 / statistics.median(times), count


def prefix(paras: list[str], max_bytes: int) -> list[str]:
    out, total = [], 0
    for p in paras:
        if total >= max_bytes:
            break
        out.append(p)
        total += len(p.encode("utf-8"))
    return out


def main() -> None:
    data = os.environ.get("BERTKIT_DATA")
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--text", type=Path, default=Path(data) / "news.txt" if data else None)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--pysbd-bytes", type=int, default=300_000, help="pySBD is timed on this prefix")
    parser.add_argument("--cache-dir", type=Path, default=None)
    parser.add_argument("--no-golden", action="store_true")
    args = parser.parse_args()

    splitters: dict[str, Splitter] = {"bertkit": bertkit_split, "naive-regex": naive_split}
    sbd = pysbd_splitter()
    if sbd is not None:
        splitters["pysbd"] = sbd

    if not args.no_golden:
        cases = load_golden_rules(args.cache_dir)
        print(f"pySBD English Golden Rules ({len(cases)} cases), exact match:")
        for name, split in splitters.items():
            ok, failures = evaluate(cases, split)
            print(f"  {name:12s} {ok}/{len(cases)} = {100 * ok / len(cases):.1f} %")
            if name == "bertkit":
                for number, (text, expected), got in failures:
                    print(f"    FAIL #{number}: {text!r}\n      expected {expected!r}\n      got      {got!r}")

    if args.text is None:
        print("no --text and BERTKIT_DATA unset: skipping throughput")
        return
    paras = paragraphs(args.text.read_text(encoding="utf-8"))
    size = sum(len(p.encode("utf-8")) for p in paras) / 1e6
    print(f"\nthroughput on {args.text} ({size:.1f} MB, {len(paras)} paragraphs, one call each, 1 thread):")
    results = {}
    for name, split in splitters.items():
        part = prefix(paras, args.pysbd_bytes) if name == "pysbd" else paras
        runs = 1 if name == "pysbd" else args.runs
        results[name], count = throughput(split, part, runs)
        print(f"  {name:12s} {results[name]:8.2f} MB/s  ({count} sentences in {len(part)} paragraphs)")
    ours = {"naive-regex": results["bertkit"]}
    if "pysbd" in results:  # compare on the same prefix pySBD ran on
        ours["pysbd"], _ = throughput(bertkit_split, prefix(paras, args.pysbd_bytes), args.runs)
    for anchor, mbps in ours.items():
        ratio = mbps / results[anchor]
        print(f"  anchor {anchor}: {results[anchor]:.2f} MB/s, ours {mbps:.2f} MB/s, ratio {ratio:.1f}x")


if __name__ == "__main__":
    main()
