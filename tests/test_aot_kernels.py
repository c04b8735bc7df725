"""scripts/aot_kernels.py: every Triton kernel of bertkit.ops compiled ahead of time for sm_80 and sm_90 at the
launchers' own block sizes (no GPU needed), and the recording that makes the script use exactly those."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("triton")

from helpers import load_script  # noqa: E402

from bertkit.ops.triton import planned_sms, recording  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
aot = load_script("aot_kernels")

LOSS_KERNELS = {"masked_lm_loss_fwd", "masked_lm_loss_bwd_dw", "masked_lm_loss_bwd_dh"}
MIX_KERNELS = {"layer_mix_fwd", "layer_mix_bwd", "layer_mix_grad_logits"}


@pytest.mark.aot
@pytest.mark.slow
def test_every_kernel_compiles_for_sm80_and_sm90_without_spills(tmp_path):
    out = tmp_path / "aot.json"
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "aot_kernels.py"), "--targets", "sm_80,sm_90", "--json", str(out)],
        capture_output=True,
        text=True,
        env=env,
        timeout=1800,
    )
    assert out.exists(), proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = json.loads(out.read_text())
    failed = [r for r in rows if not r["ok"]]
    assert not failed, "\n".join(
        f"{r['kernel']} {r['target']} {r['dtype']} {r['blocks']} {r['variant']}: {r['message']}" for r in failed
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    for r in rows:
        assert r["compiled"] and r["spills"] == 0 and 0 < r["registers"] <= 255
        assert r["shared_bytes"] <= r["shared_limit"]
    covered = {(r["kernel"], r["target"], dtype) for r in rows for dtype in r["dtype"].split(",")}
    for target in ("sm_80", "sm_90"):
        for dtype in ("bf16", "fp16", "fp32", "tf32"):
            assert {(k, target, dtype) for k in LOSS_KERNELS} <= covered, (target, dtype)
        for dtype in ("bf16", "fp16", "fp32"):
            assert {(k, target, dtype) for k in MIX_KERNELS} <= covered, (target, dtype)
    assert {s for r in rows for s in r["shapes"].split(",")} == {"base", "tiny"}
    assert "kernel specialisations" in proc.stdout and "FAIL" not in proc.stdout


def test_recorded_launches_are_the_launchers_gpu_choice():
    from bertkit.ops.triton.masked_lm_loss import launch_config, masked_lm_loss_backward, masked_lm_loss_forward

    rows, vocab, width = 150, 1000, 64
    hidden = torch.empty(rows, width, dtype=torch.bfloat16)
    weight = torch.empty(vocab, width, dtype=torch.bfloat16)
    labels = torch.zeros(rows, dtype=torch.int64)
    assert planned_sms(hidden) is None  # a CPU tensor outside a recording
    with recording(sms=132) as recorder:
        assert planned_sms(hidden) == 132
        _, lse, _, n_valid = masked_lm_loss_forward(hidden, weight, None, labels)
        masked_lm_loss_backward(torch.ones(()), hidden, weight, None, labels, lse, n_valid)
    names = [launch.kernel.fn.__name__ for launch in recorder.launches]
    assert names == ["_masked_lm_loss_fwd_kernel", "_masked_lm_loss_bwd_dw_kernel", "_masked_lm_loss_bwd_dh_kernel"]
    config = launch_config(torch.bfloat16, rows, gpu=True)
    for launch in recorder.launches:
        assert {k: launch.kwargs[k] for k in config} == config
        assert launch.kwargs["DOT_PRECISION"] == "ieee" and launch.kwargs["HAS_BIAS"] is False
    forward = recorder.launches[0]
    assert forward.grid[0] == -(-rows // config["BLOCK_M"]) and forward.grid[1] > 1  # splits fill 132 SMs

    previous = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("high")
    try:
        with recording(sms=108) as recorder:
            masked_lm_loss_forward(hidden.float(), weight.float(), None, labels)
    finally:
        torch.set_float32_matmul_precision(previous)
    (launch,) = recorder.launches
    tf32 = launch_config(torch.float32, rows, gpu=True, tf32=True)
    assert {k: launch.kwargs[k] for k in tf32} == tf32 and launch.kwargs["DOT_PRECISION"] == "tf32"
    assert tf32 != launch_config(torch.float32, rows, gpu=True)


def test_layer_mix_records_on_cpu_and_refuses_cpu_tensors_outside():
    from bertkit.ops.triton.layer_mix import grad_logits_config, launch_config, layer_mix_backward, layer_mix_forward

    layers = torch.empty(5, 4096)
    logits = torch.zeros(3)
    with recording(sms=132) as recorder:
        layer_mix_forward(layers[:3], logits)
        layer_mix_backward(torch.empty(4096), layers[:3], logits, torch.empty(3, 4096), accumulate_below=1)
    fwd, bwd, grad_logits = recorder.launches
    block, warps = launch_config(gpu=True)
    for launch in (fwd, bwd):
        assert (launch.kwargs["BLOCK_SIZE"], launch.kwargs["num_warps"]) == (block, warps)
        assert launch.grid == (4096 // block,)
    assert {k: grad_logits.kwargs[k] for k in grad_logits_config(3)} == grad_logits_config(3)
    if os.environ.get("TRITON_INTERPRET") != "1":
        with pytest.raises(ValueError, match="must be on CUDA"):
            layer_mix_forward(layers[:3], logits)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--targets", "sm_99"], "unknown target sm_99; choose from sm_80"),
        (["--targets", ""], "unknown target ''"),
        (["--dtypes", "fp8"], "unknown dtype fp8"),
        (["--shapes", "huge"], "unknown shape set huge"),
        (["--jobs", "0"], "--jobs must be at least 1"),
        (["--json", "/nonexistent-dir/x.json"], "the folder /nonexistent-dir does not exist"),
    ],
)
def test_bad_arguments_are_one_line_and_exit_2(argv, message, capsys):
    assert aot.main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
