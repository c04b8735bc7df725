"""What checking a checkpoint costs: save and resume of a BERT checkpoint with and without the integrity checks.

    python benchmarks/checkpoint_bench.py [--preset base] [--repeats 3]

Rows (median of ``--repeats``):
- save: ``save_checkpoint`` (safetensors weights, torch optimiser/trainer files, xxh3 of every file recorded in
  meta.json, fsync) against the anchor of the same files written by ``torch.save`` alone with no checksums;
- resume: ``check_checkpoint`` + ``load_checkpoint`` (what ``--resume`` does: checksums, finite weights, trainer
  state, then the load, which checks the files it reads again) against the anchor of plain ``torch.load`` of the
  same files with no checks.
The ratio is bertkit / anchor (the price of the checks, in wall time).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import header, median, row  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", default="base")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--dir", default=None, help="where to write (default: a temporary directory)")
    args = ap.parse_args()

    import torch

    from bertkit.models import get_architecture
    from bertkit.train import checkpoint as ck
    from bertkit.train.config import TrainConfig

    arch = get_architecture("bert")
    model = arch.pretraining_class(arch.make_config(args.preset))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    model(
        input_ids=torch.randint(5, 100, (2, 16)),
        mlm_positions=torch.tensor([1, 20]),
        mlm_labels=torch.tensor([7, 8]),
    ).loss.backward()
    opt.step()  # optimiser state exists (exp_avg, exp_avg_sq: twice the weights)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    params = sum(p.numel() for p in model.parameters())
    root = Path(args.dir or tempfile.mkdtemp(prefix="ckpt-bench-"))
    saves, plain_saves, loads, plain_loads = [], [], [], []
    try:
        for i in range(args.repeats):
            t0 = time.perf_counter()
            ckpt = ck.save_checkpoint(
                root / "run",
                i + 1,
                model=model,
                optimizer=opt,
                scheduler=sched,
                config=TrainConfig().to_dict(),
                arch="bert",
                model_config=model.config.to_dict(),
                data_state={"phase": 0, "epoch": 0, "cursor": 0},
                keep_last=1,
            )
            saves.append(time.perf_counter() - t0)
            plain = root / f"plain-{i}"
            plain.mkdir()
            t0 = time.perf_counter()
            torch.save(model.state_dict(), plain / "model.pt")
            torch.save(opt.state_dict(), plain / "optimizer.pt")
            torch.save({"scheduler": sched.state_dict(), "rng": ck.capture_rng()}, plain / "trainer.pt")
            plain_saves.append(time.perf_counter() - t0)

            t0 = time.perf_counter()
            assert ck.check_checkpoint(ckpt) == []
            ck.load_checkpoint(ckpt, model=model, optimizer=opt, scheduler=sched, restore_rng_state=False)
            loads.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            model.load_state_dict(torch.load(plain / "model.pt", weights_only=True))
            opt.load_state_dict(torch.load(plain / "optimizer.pt", weights_only=True))
            torch.load(plain / "trainer.pt", weights_only=True)
            plain_loads.append(time.perf_counter() - t0)
            shutil.rmtree(plain)
        size = sum(p.stat().st_size for p in ckpt.iterdir()) / 1e6
    finally:
        if args.dir is None:
            shutil.rmtree(root, ignore_errors=True)
    header(f"checkpoint integrity: bert {args.preset} ({params / 1e6:.0f}M parameters, {size:,.0f} MB per checkpoint)")
    s, ps, lo, pl = (median(x) for x in (saves, plain_saves, loads, plain_loads))
    row("save (s)", f"torch.save, no checks: {ps:.2f}", f"{s:.2f}", s / ps)
    row("resume: check + load (s)", f"torch.load, no checks: {pl:.2f}", f"{lo:.2f}", lo / pl)


if __name__ == "__main__":
    main()
