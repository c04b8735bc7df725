"""Run metrics: metrics.jsonl (always), TensorBoard events (when installed), MFU, the loss-curve PNG.

Each line of ``metrics.jsonl`` is one JSON object with a ``kind`` (``train``, ``eval``, ``event``), the ``step`` and
its values, e.g. ``{"kind": "train", "step": 100, "loss": 7.1, "lr": 1e-4, "tokens_per_s": 52000.0,
"grad_norm": 1.3, "mfu": 0.31}`` (``mfu`` only on GPU, from the model's ``flops_per_token``).

Each record is appended with one ``write`` of the whole line to a file opened with ``O_APPEND``, so a crash leaves at
most a partial last line, never a line interleaved with another. On resume :func:`rewind_metrics` drops such a line
(with a note) and every record the interrupted session logged after its checkpoint, so no step appears twice; the
readers (:func:`read_metrics` with ``skip_bad``, the loss-curve plot) tolerate whatever a full disk left.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["PEAK_TFLOPS", "MetricsWriter", "mfu", "peak_flops", "plot_loss_curve", "read_metrics", "rewind_metrics"]

PEAK_TFLOPS: dict[str, float] = {
    # dense BF16 tensor-core peaks (docs/ANCHORS.md); matched against torch.cuda.get_device_name()
    "H200": 989.4,
    "H100 PCIe": 756.0,
    "H100": 989.4,
    "A100": 312.0,
}


def peak_flops(device_name: str | None) -> float | None:
    """Peak dense BF16 FLOP/s of a GPU by its name (the first table key contained in it), or None when unknown."""
    if not device_name:
        return None
    for key, tflops in PEAK_TFLOPS.items():
        if key.lower() in device_name.lower():
            return tflops * 1e12
    return None


def mfu(tokens_per_s: float, flops_per_token: float, peak: float | None) -> float | None:
    """Model FLOPs utilisation: achieved training FLOP/s over the device peak (None without a peak)."""
    if not peak:
        return None
    return tokens_per_s * flops_per_token / peak


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # JSON has no NaN/inf; keep them readable
    return value


class MetricsWriter:
    """Appends metric records to ``run_dir/metrics.jsonl`` and mirrors scalars to TensorBoard (``run_dir/tb``).

    ``enabled=False`` (ranks other than 0) makes every call a no-op. ``purge_step`` (a resumed run: the step after
    its checkpoint) makes TensorBoard drop the events an interrupted session logged from that step on.
    """

    def __init__(
        self,
        run_dir: str | os.PathLike[str],
        *,
        tensorboard: bool = True,
        enabled: bool = True,
        purge_step: int | None = None,
    ) -> None:
        self.run_dir = Path(run_dir)
        self.enabled = enabled
        self.path = self.run_dir / "metrics.jsonl"
        self._fd: int | None = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644) if enabled else None
        self._tb = None
        self.tensorboard_note: str | None = None
        if enabled and tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._tb = SummaryWriter(log_dir=str(self.run_dir / "tb"), purge_step=purge_step)
            except Exception as e:  # noqa: BLE001 - tensorboard missing or broken: metrics.jsonl still has it all
                self.tensorboard_note = f"TensorBoard events not written ({type(e).__name__}: {e})"

    def write(self, kind: str, step: int, values: Mapping[str, Any]) -> dict[str, Any]:
        record = {"kind": kind, "step": step, **{k: _clean(v) for k, v in values.items() if v is not None}}
        if not self.enabled:
            return record
        assert self._fd is not None
        line = (json.dumps(record) + "\n").encode("utf-8")
        written = os.write(self._fd, line)  # one write of the full line (O_APPEND: never interleaved)
        if written != len(line):  # a short write (disk full): finish the line so the next record starts clean
            os.write(self._fd, line[written:])
        if self._tb is not None:
            for k, v in values.items():
                if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
                    self._tb.add_scalar(f"{kind}/{k}", v, step)
        return record

    def log_config(self, config: Mapping[str, Any], model_config: Mapping[str, Any], arch: str) -> None:
        """The resolved run and model config to TensorBoard: a ``config`` text (the JSON of both) and the hparams
        plugin's table (scalar, string and boolean fields; ``model.*`` for the model's), against the metrics
        ``eval/mlm_loss``, ``eval/mlm_accuracy`` and ``train/loss`` that the run logs."""
        if self._tb is None:
            return
        from torch.utils.tensorboard.summary import hparams

        text = json.dumps({"arch": arch, "config": dict(config), "model_config": dict(model_config)}, indent=2)
        self._tb.add_text("config", "```\n" + text + "\n```", 0)
        flat = {"arch": arch, **dict(config), **{f"model.{k}": v for k, v in model_config.items()}}
        table = {
            k: v
            for k, v in flat.items()
            if isinstance(v, (bool, str)) or (isinstance(v, (int, float)) and math.isfinite(v))
        }
        table.update({k: json.dumps(v) for k, v in flat.items() if isinstance(v, (list, dict)) and v})
        metrics = {"eval/mlm_loss": None, "eval/mlm_accuracy": None, "train/loss": None}
        experiment, start, end = hparams(table, metrics)
        for summary in (experiment, start, end):  # into this run's own event file (add_hparams would add a sub-run)
            self._tb.file_writer.add_summary(summary)
        self._tb.flush()

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self._tb is not None:
            self._tb.close()
            self._tb = None


def _parse(line: bytes) -> dict[str, Any] | None:
    try:
        record = json.loads(line)
    except ValueError:  # JSONDecodeError and UnicodeDecodeError
        return None
    return record if isinstance(record, dict) and "kind" in record and isinstance(record.get("step"), int) else None


def read_metrics(path: str | os.PathLike[str], *, skip_bad: bool = False) -> list[dict[str, Any]]:
    """All records of a metrics.jsonl file. A line that is not a record (a partial line a crash or a full disk
    left) is a FormatError naming the file and line, or with ``skip_bad`` is left out."""
    from bertkit.exceptions import FormatError

    records = []
    with open(path, "rb") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            record = _parse(line)
            if record is None:
                if skip_bad:
                    continue
                raise FormatError(f"{path}: line {number} is not a metrics record ({line[:60]!r})")
            records.append(record)
    return records


def rewind_metrics(path: str | os.PathLike[str], step: int) -> list[str]:
    """Make ``path`` the log of a run resumed from its checkpoint at ``step``: a partial last line is dropped, and so
    is every record of a later step (the interrupted session logged them after that checkpoint; they are run again),
    including non-finite records of the step after it (logged under ``step``). The file is replaced atomically.
    Returns notes saying what was dropped (none when nothing was)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    lines = data.split(b"\n")
    tail = lines.pop()  # b"" when the file ends with a newline
    notes = []
    if tail.strip():
        notes.append(f"{path}: dropped a partial last line ({len(tail)} bytes; the previous session ended mid-write)")
    kept, bad, later = [], 0, 0
    for line in lines:
        if not line.strip():
            continue
        record = _parse(line)
        if record is None:
            bad += 1
        elif record["step"] > step or (record["step"] == step and record["kind"] == "nonfinite"):
            later += 1
        else:
            kept.append(line)
    if bad:
        notes.append(f"{path}: dropped {bad} unreadable line(s)")
    if later:
        notes.append(f"{path}: rewound to step {step} (dropped {later} record(s) logged after that checkpoint)")
    if notes:
        tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
        with open(tmp, "wb") as f:
            f.write(b"".join(line + b"\n" for line in kept))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    return notes


def plot_loss_curve(run_dir: str | os.PathLike[str]) -> Path | str:
    """Draw ``loss_curve.png`` (train loss, eval MLM loss) from metrics.jsonl; returns its path, or a note (str)
    saying why it was skipped (matplotlib not installed, no records)."""
    run_dir = Path(run_dir)
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "loss curve skipped: matplotlib is not installed"
    try:
        records = read_metrics(run_dir / "metrics.jsonl", skip_bad=True)
    except OSError as e:
        return f"loss curve skipped: {run_dir / 'metrics.jsonl'}: {e.strerror or e}"
    train = [(r["step"], r["loss"]) for r in records if r["kind"] == "train" and isinstance(r.get("loss"), float)]
    evals = [(r["step"], r["mlm_loss"]) for r in records if r["kind"] == "eval" and "mlm_loss" in r]
    evals = [e for e in evals if isinstance(e[1], float)]
    if not train and not evals:
        return "loss curve skipped: no loss records"
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    if train:
        ax.plot(*zip(*train, strict=True), label="train loss")
    if evals:
        ax.plot(*zip(*evals, strict=True), "o-", label="eval MLM loss")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.grid(alpha=0.3)
    ax.legend()
    out = run_dir / "loss_curve.png"
    fig.tight_layout()
    try:
        fig.savefig(out)
    except OSError as e:
        return f"loss curve skipped: {out}: {e.strerror or e}"
    finally:
        plt.close(fig)
    return out
