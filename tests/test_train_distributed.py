"""Two CPU ranks (gloo, launched by torch.distributed.run; DDP and FSDP2) equal one rank with gradient accumulation 2,
including an interruption at step 2 and a resume."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("bertkit._core")

from conftest import random_docs, tiny_train_config, write_fixture_dataset  # noqa: E402

from bertkit.train import checkpoint as ck  # noqa: E402
from bertkit.train.config import TrainConfig  # noqa: E402
from bertkit.train.distributed import DistInfo, init_distributed  # noqa: E402
from bertkit.train.trainer import train  # noqa: E402

REPO = Path(__file__).resolve().parents[1]

SCRIPT = """
import json, os, sys
from bertkit.train.config import TrainConfig
from bertkit.train.trainer import train
stop_at = int(os.environ.get("STOP_AT", "0"))

def on_event(event):  # rank 0 only: the trainer makes every rank stop at the same step
    if event["event"] == "step" and event["step"] == stop_at:
        raise KeyboardInterrupt

config = TrainConfig.from_dict(json.loads(open(sys.argv[1]).read()))
summary = train(config, on_event=on_event, resume=bool(os.environ.get("RESUME")))
with open(sys.argv[2] + f".rank{os.environ['RANK']}", "w") as f:
    json.dump({"step": summary.step, "loss": summary.final_loss, "eval": summary.eval}, f)
"""


def base(ds: Path, out: Path, **kw) -> TrainConfig:
    return tiny_train_config(
        ds, out, model={"hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0}, max_steps=4, lr=1e-3,
        warmup=1, eval_every=4, eval_batches=2, checkpoint_every=0, log_every=1, **kw,
    )  # fmt: skip


@pytest.mark.parametrize("fsdp", [False, True], ids=["ddp", "fsdp"])
def test_two_ranks_equal_one_rank_with_accumulation(tmp_path, fsdp):
    ds = write_fixture_dataset(tmp_path / "ds", random_docs(300, seed=1), docs_per_shard=50)
    single = train(base(ds, tmp_path / "one", batch_size=4, grad_accum=2))

    cfg_path = tmp_path / "two.json"
    cfg_path.write_text(json.dumps(base(ds, tmp_path / "two", batch_size=4, grad_accum=1, fsdp=fsdp).to_dict()))
    (tmp_path / "worker.py").write_text(SCRIPT)

    def torchrun(**env_vars: str) -> None:
        env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", **env_vars}
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
        cmd += [str(tmp_path / "worker.py"), str(cfg_path), str(tmp_path / "result")]
        proc = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    # interrupted by rank 0 at step 2 (all ranks stop and save there), then resumed to step 4
    torchrun(STOP_AT="2")
    assert json.loads((tmp_path / "result.rank1").read_text())["step"] == 2
    assert ck.latest(tmp_path / "two").name == "ckpt-000002"
    torchrun(RESUME="1")
    r0 = json.loads((tmp_path / "result.rank0").read_text())
    r1 = json.loads((tmp_path / "result.rank1").read_text())
    assert r0["step"] == r1["step"] == 4
    assert r0["loss"] == r1["loss"]  # the logged loss is the mean over ranks
    assert r0["loss"] == pytest.approx(single.final_loss, rel=1e-5)

    # only rank 0 wrote the run directory; the weights match the single-rank run
    two = ck.latest(tmp_path / "two")
    assert two is not None and two.name == "ckpt-000004"
    a = ck.load_model_state(single.checkpoint)
    b = ck.load_model_state(two)
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=1e-5, atol=1e-6, msg=k)
    assert not any(k.startswith("module.") for k in b)

    def train_losses(run: Path) -> list[float]:
        lines = (run / "metrics.jsonl").read_text().splitlines()
        return [r["loss"] for r in map(json.loads, lines) if r["kind"] == "train"]

    assert train_losses(tmp_path / "two") == pytest.approx(train_losses(tmp_path / "one"), rel=1e-5)


def test_single_process_without_torchrun_env(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert init_distributed("cpu") == DistInfo()
    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(Exception, match="WORLD_SIZE"):
        init_distributed("cpu")
