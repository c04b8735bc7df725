"""Build ``gpu/data/``: the data the GPU checks need, small enough for the device tool's 64 MiB carry.

    python scripts/gpu_data.py            # from $BERTKIT_DATA (default data/), after `make data/.full`

Holds ``news.jsonl`` (the training smoke and the encode benchmark), ``vocab.txt``, ``tokenizer.json`` and
``minilm/``: all-MiniLM-L6-v2 with its weights stored as float16 (45 MB instead of 91 MB; every loader casts them
back to float32, and both sides of the encode benchmark load the same file, so the comparison is unchanged).
``scripts/gpu_checks.sh`` uses it as $BERTKIT_DATA when it is there:

    run(command="bash scripts/gpu_checks.sh", timeout_s=590, carry=["bertkit/_core.abi3.so", "gpu/data"])
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FILES = ("news.jsonl", "vocab.txt", "tokenizer.json")
CARRY_LIMIT = 64 * 2**20


def build(data: Path, out: Path) -> int:
    """Write ``out`` from ``data``; returns its size in bytes. Raises SystemExit naming a missing input."""
    from safetensors.torch import load_file, save_file

    minilm = data / "minilm"
    missing = [str(p) for p in [*(data / f for f in FILES), minilm / "model.safetensors"] if not p.is_file()]
    if missing:
        raise SystemExit(f"missing {', '.join(missing)}: run `make data/.full` (scripts/fetch_data.py) first")
    tmp = out.with_name(out.name + ".tmp-build")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for f in FILES:
        shutil.copy2(data / f, tmp / f)
    shutil.copytree(minilm, tmp / "minilm", ignore=shutil.ignore_patterns("model.safetensors", "README.md"))
    state = load_file(minilm / "model.safetensors")
    half = {k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in state.items()}
    save_file(half, tmp / "minilm" / "model.safetensors", metadata={"format": "pt"})
    size = sum(p.stat().st_size for p in tmp.rglob("*") if p.is_file())
    extension = ROOT / "bertkit" / "_core.abi3.so"  # carried beside it
    room = CARRY_LIMIT - (extension.stat().st_size if extension.is_file() else 0)
    if size > room:
        shutil.rmtree(tmp)
        raise SystemExit(f"{out}: {size / 2**20:.1f} MiB would not fit the 64 MiB carry beside {extension.name}")
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)  # complete or absent
    return size


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=Path(os.environ.get("BERTKIT_DATA", ROOT / "data")))
    p.add_argument("--out", type=Path, default=ROOT / "gpu" / "data")
    args = p.parse_args()
    size = build(args.data, args.out)
    print(f"{args.out}: {size / 2**20:.1f} MiB (+ bertkit/_core.abi3.so) to carry", file=sys.stderr)


if __name__ == "__main__":
    main()
