"""Data-parallel training under ``torchrun``: process group, model wrapping, reductions.

``torchrun --nproc_per_node=N -m bertkit_cli train ...`` sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` (and the
rendezvous address); :func:`init_distributed` then joins the process group (``nccl`` on CUDA, ``gloo`` on CPU, so
tests run two CPU ranks). Without those variables everything here degrades to a single process.

Each rank reads its slice of every global batch (``PretrainingData(rank=, world_size=)``); only rank 0 writes
metrics and checkpoints. DDP averages gradients over ranks, so W ranks with batch B equal one rank with gradient
accumulation W and batch B (same global batch), which the tests check. MLM-only views leave BERT's pooler/NSP head
without gradients: the model is wrapped with ``find_unused_parameters=True`` then. ``fsdp=True`` shards parameters
with FSDP2 (``torch.distributed.fsdp.fully_shard``, one unit per child module holding parameters) for large presets.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from bertkit.exceptions import ConfigError

__all__ = [
    "DistInfo",
    "all_reduce_sum",
    "barrier",
    "cleanup",
    "full_state_dicts",
    "init_distributed",
    "load_full_optimizer_state",
    "wrap_model",
]


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None
    """``gloo`` / ``nccl`` when a process group is in use, else None."""
    owned: bool = False
    """True when :func:`init_distributed` created the process group (and :func:`cleanup` destroys it)."""

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.backend is not None


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"environment variable {name}={value!r} is not an integer") from None


def init_distributed(device_type: str) -> DistInfo:
    """Join the torchrun process group when ``WORLD_SIZE`` > 1 (or reuse one already initialised)."""
    if dist.is_available() and dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size(), _env_int("LOCAL_RANK", 0), str(dist.get_backend()))
    world_size = _env_int("WORLD_SIZE", 1)
    if world_size <= 1:
        return DistInfo()
    rank, local_rank = _env_int("RANK", 0), _env_int("LOCAL_RANK", 0)
    backend = "nccl" if device_type == "cuda" else "gloo"
    if device_type == "cuda":
        torch.cuda.set_device(local_rank)
    dist.init_process_group(backend=backend, rank=rank, world_size=world_size)
    return DistInfo(rank, world_size, local_rank, backend, owned=True)


def wrap_model(model: nn.Module, info: DistInfo, *, device: torch.device, fsdp: bool, find_unused: bool) -> nn.Module:
    """DDP (or FSDP2 with ``fsdp``) around ``model`` when distributed; the model itself otherwise."""
    if not info.enabled:
        return model
    if fsdp:
        try:
            from torch.distributed.fsdp import fully_shard
        except ImportError as e:  # pragma: no cover - old torch
            raise ConfigError(f"fsdp=true needs torch.distributed.fsdp.fully_shard ({e})") from None
        for module in model.modules():
            if module is not model and isinstance(module, nn.ModuleList):
                for layer in module:
                    fully_shard(layer)
        fully_shard(model)
        return model
    from torch.nn.parallel import DistributedDataParallel

    ids = [device.index if device.index is not None else info.local_rank] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids, find_unused_parameters=find_unused)


def all_reduce_sum(tensor: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Sum ``tensor`` over ranks in place (no-op on one process)."""
    if info.enabled:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def cleanup(info: DistInfo) -> None:
    """Leave the process group if :func:`init_distributed` created it."""
    if info.owned and dist.is_initialized():
        dist.destroy_process_group()


def full_state_dicts(model: nn.Module, optimizer: torch.optim.Optimizer) -> tuple[dict, dict]:
    """Unsharded CPU state dicts of an FSDP model and its optimiser (a collective: every rank must call it)."""
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        get_model_state_dict,
        get_optimizer_state_dict,
    )

    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    return (
        get_model_state_dict(model, options=options),
        get_optimizer_state_dict(model, optimizer, options=options),
    )


def load_full_optimizer_state(model: nn.Module, optimizer: torch.optim.Optimizer, state: dict) -> None:
    """Load an unsharded optimiser state dict (from :func:`full_state_dicts`) into an FSDP model's optimiser."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

    # strict=False: parameters that never got a gradient (the NSP head of MLM-only runs) have no state yet
    options = StateDictOptions(full_state_dict=True, strict=False)
    set_optimizer_state_dict(model, optimizer, state, options=options)
