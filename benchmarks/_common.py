"""Shared helpers for the benchmarks: corpora, timing, peak memory, printing rows."""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import sys
from pathlib import Path

DATA = Path(os.environ.get("BERTKIT_DATA", "data"))


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    py = platform.python_version()
    return f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores ({cpu}), Python {py}"


def bench_corpus(target_mb: float = 20.0, name: str = "bench_corpus.txt") -> Path:
    """≥ target_mb of real text from $BERTKIT_DATA (news, BBC, KJV, Wikipedia), one file."""
    out = DATA / "bench" / name
    if out.exists() and out.stat().st_size >= target_mb * 1e6:
        return out
    parts = [DATA / f for f in ("news.txt", "bbc.txt", "kjv.txt", "wiki.txt") if (DATA / f).exists()]
    if not parts:
        sys.exit(f"no corpora in {DATA}: run `python scripts/fetch_data.py --out {DATA}` (or set BERTKIT_DATA)")
    out.parent.mkdir(parents=True, exist_ok=True)
    size = 0
    with open(out, "wb") as f:
        while size < target_mb * 1e6:
            for p in parts:
                b = p.read_bytes().rstrip(b"\n") + b"\n\n"
                f.write(b)
                size += len(b)
    return out


def scaled_corpus(src: Path, factor: int) -> Path:
    out = src.with_name(f"{src.stem}_x{factor}{src.suffix}")
    if not out.exists():
        data = src.read_bytes()
        with open(out, "wb") as f:
            for _ in range(factor):
                f.write(data)
    return out


def peak_rss_of(cmd: list[str]) -> tuple[float, int, str]:
    """Seconds, peak RSS (bytes) and stdout of one command, measured in a fresh wrapper process."""
    code = (
        "import resource,subprocess,sys,time;t=time.perf_counter();"
        "r=subprocess.run(sys.argv[1:],capture_output=True,text=True);dt=time.perf_counter()-t;"
        "sys.stderr.write(r.stderr);sys.stdout.write(r.stdout);"
        "print('\\n@@', dt, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss*1024);sys.exit(r.returncode)"
    )
    p = subprocess.run([sys.executable, "-c", code, *cmd], capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{p.stderr[-3000:]}")
    body, _, tail = p.stdout.rpartition("\n@@")
    dt, rss = tail.split()
    return float(dt), int(rss), body


def median(xs):
    return statistics.median(xs)


def row(what: str, anchor: str, ours: str, ratio: float | None, target: str = "") -> None:
    r = f"{ratio:.2f}x" if ratio is not None else "-"
    print(f"| {what} | {anchor} | {ours} | {r} | {target} |", flush=True)


def header(title: str) -> None:
    print(f"\n### {title}\n\nmachine: {machine()}\n")
    print("| measure | anchor | bertkit | ratio | target |\n|---|---|---|---|---|", flush=True)
