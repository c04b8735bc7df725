"""`prepare` across machines on Ray: split the inputs into partitions, prepare each as a Ray task, merge.

from bertkit.data.prepare import PrepareConfig
from bertkit.data.ray_prepare import prepare_on_ray
summary = prepare_on_ray(PrepareConfig(inputs=["c4/*.parquet"], out="/shared/ds", tokenizer="vocab.txt"),
                         address="auto")

Layout of `out`: `parts/part-00000/` ... (each a complete dataset, prepared by one task with the same options),
then `manifest.json` + `tokenizer/` written by `merge_datasets` last, referencing the parts' shards in place. So
the result equals preparing each partition locally and merging them with `bertkit merge`, and `out` looks
complete only once every partition is. `out` must be on a file system that every Ray worker and the readers
of the dataset see (NFS, a cluster file system); the tasks write there directly.

Partitions: the expanded input files in order, grouped into runs of about `partition_bytes`; a Parquet file
larger than that is split into ranges of its row groups (`file.parquet#row_groups=A:B`). Standard input and
FIFOs cannot be partitioned and are refused.

Failures: Ray re-runs a task whose worker died (`max_retries`); a retried task resumes its partition from the
shards already written. A task that fails with an error is reported by partition (its inputs and the error);
the other partitions stay complete, no merged manifest is written, and running the same command again reuses
every complete partition.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import socket
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bertkit.data.prepare import PrepareConfig, prepare
from bertkit.exceptions import BertkitError, ConfigError, DatasetExistsError
from bertkit.locks import is_lock_file, output_lock

PARTS = "parts"
PLAN = "ray_plan.json"


@dataclasses.dataclass
class Partition:
    index: int
    inputs: list[str]
    bytes: int

    @property
    def name(self) -> str:
        return f"part-{self.index:05d}"


def plan_partitions(inputs: Sequence[str | os.PathLike[str]], partition_bytes: int) -> list[Partition]:
    """Partitions of the inputs, in input order: whole files grouped up to `partition_bytes`, large Parquet files
    split by row groups."""
    from bertkit import _core

    if partition_bytes < 1:
        raise ConfigError("partition_bytes must be at least 1")
    files = _core.expand_inputs([os.fspath(p) for p in inputs])
    parts: list[Partition] = []
    group: list[str] = []
    size = 0

    def flush() -> None:
        nonlocal group, size
        if group:
            parts.append(Partition(len(parts), group, size))
        group, size = [], 0

    for f in files:
        if f == "-" or not Path(f).is_file():
            raise ConfigError(f"{f}: standard input and FIFOs cannot be split across Ray tasks; give files")
        n = Path(f).stat().st_size
        if f.lower().endswith(".parquet") and n > partition_bytes:
            flush()
            rows = _core.parquet_row_groups(f)
            total = max(sum(rows), 1)
            start, acc = 0, 0
            for g, r in enumerate(rows):
                acc += r
                if acc * n / total >= partition_bytes or g == len(rows) - 1:
                    parts.append(Partition(len(parts), [f"{f}#row_groups={start}:{g + 1}"], int(acc * n / total)))
                    start, acc = g + 1, 0
            continue
        if group and size + n > partition_bytes:
            flush()
        group.append(f)
        size += n
    flush()
    return parts


def check_address(address: str, timeout: float = 5.0) -> None:
    """Raise ConfigError unless the Ray address answers (a TCP connect), so a wrong address fails fast."""
    if address in ("auto", "local"):
        return
    hostport = address.split("://", 1)[-1]
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"Ray address {address!r}: expected HOST:PORT, ray://HOST:PORT, auto or local")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            pass
    except OSError as e:
        raise ConfigError(f"Ray address {address} does not answer ({e}); is the cluster up (`ray status`)?") from None


def _part_config(cfg: PrepareConfig, part: Partition, out: Path, threads: int) -> PrepareConfig:
    return dataclasses.replace(
        cfg, inputs=list(part.inputs), out=str(out / PARTS / part.name), threads=threads, overwrite=False, resume=False
    )


def _identity(cfg: PrepareConfig) -> dict[str, Any]:
    d = json.loads(cfg.to_json())
    for k in ("threads", "overwrite", "resume"):
        d.pop(k, None)
    return d


def prepare_partition(cfg_json: str) -> dict[str, Any]:
    """Prepare one partition (runs inside a Ray task). A complete partition with the same options is reused;
    an incomplete one (a killed earlier attempt) is resumed; a complete one with other options is replaced."""
    cfg = PrepareConfig(**json.loads(cfg_json))
    out = Path(cfg.out)
    manifest = out / "manifest.json"
    if manifest.exists():
        prev = json.loads(manifest.read_text(encoding="utf-8")).get("config", {})
        prev = {k: v for k, v in prev.items() if k not in ("threads", "overwrite", "resume")}
        if prev == _identity(cfg):
            return {"out": str(out), "reused": True}
        cfg = dataclasses.replace(cfg, overwrite=True)
    elif (out / "prepare.json").exists():
        cfg = dataclasses.replace(cfg, resume=True)
    summary = prepare(cfg)
    return {"out": str(out), "reused": False, "totals": summary["totals"], "seconds": summary["seconds"]}


def prepare_on_ray(
    config: PrepareConfig,
    address: str | None = None,
    partition_bytes: int = 256 << 20,
    cpus_per_task: int = 1,
    max_retries: int = 3,
    num_cpus: int | None = None,
) -> dict[str, Any]:
    """Prepare `config.inputs` as Ray tasks (one per partition) and merge the parts into `config.out`.

    `address`: a running cluster (`HOST:PORT`, `ray://HOST:PORT`, `auto`), or None / `local` for a local runtime
    with `num_cpus` workers. Each task gets `cpus_per_task` CPUs and as many prepare threads. Returns a summary:
    totals, partitions, reused partitions, seconds. Raises InputError-like bertkit errors naming the failed
    partitions.
    """
    try:
        import ray
    except ImportError:
        raise ConfigError("prepare --ray needs Ray: pip install 'bertkit[ray]'") from None
    from bertkit.data.merge import merge_datasets

    if cpus_per_task < 1:
        raise ConfigError("cpus_per_task must be at least 1")
    if max_retries < 0:
        raise ConfigError("max_retries must be >= 0")
    if config.resume:
        raise ConfigError("--resume is implied with --ray: complete partitions are reused, incomplete ones resumed")
    out = Path(config.out)
    if not os.fspath(config.out):
        raise ConfigError("no output directory given (--out)")
    if (out / "manifest.json").exists() and not config.overwrite:
        raise DatasetExistsError(f"{out}: already holds a complete dataset (use --overwrite to replace it)")
    if out.exists() and not out.is_dir():
        raise DatasetExistsError(f"{out}: exists and is not a directory")
    entries = [e for e in out.iterdir() if not is_lock_file(e)] if out.is_dir() else []
    if entries and not (out / PLAN).exists() and not (out / "manifest.json").exists():
        raise DatasetExistsError(f"{out}: exists, is not empty and is not a bertkit dataset (choose another --out)")
    parts = plan_partitions(config.inputs, partition_bytes)
    t0 = time.perf_counter()
    if address not in (None, "local"):
        check_address(address)

    with contextlib.ExitStack() as stack:
        if not ray.is_initialized():
            try:
                if address in (None, "local"):
                    ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False, configure_logging=False)
                else:
                    ray.init(address=address, log_to_driver=False, configure_logging=False)
            except Exception as e:  # Ray raises ConnectionError, RuntimeError, ... depending on the version
                raise ConfigError(f"cannot connect to Ray at {address or 'a local runtime'}: {e}") from None
            stack.callback(ray.shutdown)
        # Held until the tasks are done (merge_datasets takes it again to publish).
        stack.enter_context(output_lock(out, purpose="bertkit prepare --ray"))
        # Everything below writes into out: the merged manifest goes first when replacing, so it never looks complete.
        if config.overwrite:
            (out / "manifest.json").unlink(missing_ok=True)
        plan = {"partitions": [dataclasses.asdict(p) for p in parts], "config": _identity(config)}
        old = json.loads((out / PLAN).read_text(encoding="utf-8")) if (out / PLAN).exists() else None
        if old is not None and old != plan and not config.overwrite:
            raise DatasetExistsError(
                f"{out}: holds the parts of a run with other inputs or options ({out / PLAN}); use --overwrite"
            )
        if config.overwrite and old != plan:
            shutil.rmtree(out / PARTS, ignore_errors=True)
        (out / PLAN).write_text(json.dumps(plan, indent=1), encoding="utf-8")
        task = ray.remote(num_cpus=cpus_per_task, max_retries=max_retries, retry_exceptions=False)(prepare_partition)
        refs = [task.remote(_part_config(config, p, out, cpus_per_task).to_json()) for p in parts]
        results: list[dict[str, Any] | None] = [None] * len(parts)
        failures: list[str] = []
        for i, ref in enumerate(refs):
            try:
                results[i] = ray.get(ref)
            except Exception as e:  # a RayTaskError wraps the task's exception; WorkerCrashedError after retries
                cause = getattr(e, "cause", None) or e
                msg = str(cause).strip().splitlines()[-1] if str(cause).strip() else type(cause).__name__
                failures.append(f"partition {parts[i].name} ({', '.join(parts[i].inputs)}): {msg}")
    if failures:
        done = len(parts) - len(failures)
        kept = f"the {done} others are complete in {out / PARTS} and are reused when " if done else "fix it and "
        raise PartitionError(
            f"{len(failures)} of {len(parts)} partitions failed ({kept}the same command runs again); "
            "no merged manifest was written:\n  " + "\n  ".join(failures)
        )
    merged = merge_datasets([out / PARTS / p.name for p in parts], out, overwrite=True)
    return {
        "out": str(out),
        "totals": dataclasses.asdict(merged.totals) if dataclasses.is_dataclass(merged.totals) else merged.totals,
        "partitions": len(parts),
        "reused_partitions": sum(1 for r in results if r and r.get("reused")),
        "shards": len(merged.shards),
        "seconds": time.perf_counter() - t0,
    }


class PartitionError(BertkitError):
    """One or more Ray partitions failed; the message lists each with its inputs and error."""
