"""The shared pretraining loop, for every architecture of ``bertkit.models``.

``train(config)`` checks everything it can before the first step (dataset, vocabulary, preset, sequence lengths,
run directory, resume compatibility), then runs: per micro-batch, masking on the device (``mask_tokens``; the
static-nsp view comes masked), forward → ``PretrainingOutput``, backward (gradient accumulation; DDP syncs only on
the last micro-batch), unscale/clip, a non-finite guard, optimiser and scheduler steps. It evaluates on the held-out
split, writes metrics.jsonl (+ TensorBoard), saves atomic checkpoints and resumes exactly (model, optimiser,
scheduler, RNG, data cursor). Progress reaches the caller only through ``on_event(dict)``; the library draws nothing.

Masking randomness is keyed, not carried: the generator of a micro-batch is seeded from (seed, phase, epoch,
cursor · world_size + rank) of the data stream position, so a resumed run and an uninterrupted run mask identically,
and W ranks mask exactly like one rank with W accumulation steps.

Ctrl-C (SIGINT in the main thread, or a KeyboardInterrupt raised by ``on_event``) stops at the next step
boundary, saves a checkpoint there and returns a summary with ``interrupted=True``. Under torchrun the ranks agree
on the stop (a one-element all-reduce per step), so they all save and leave at the same step.
"""

from __future__ import annotations

import contextlib
import math
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bertkit.exceptions import BertkitError, ConfigError, FormatError
from bertkit.train import checkpoint as ckpt_lib
from bertkit.train.config import TrainConfig, extension_of
from bertkit.train.distributed import (
    DistInfo,
    all_reduce_sum,
    barrier,
    cleanup,
    full_state_dicts,
    init_distributed,
    load_full_optimizer_state,
    wrap_model,
)
from bertkit.train.metrics import MetricsWriter, mfu, peak_flops, plot_loss_curve, rewind_metrics
from bertkit.train.optim import build_optimizer
from bertkit.train.rundir import RunSession
from bertkit.train.schedules import make_lr_lambda

__all__ = ["NonFiniteLossError", "TrainSummary", "evaluate", "train"]

EventCallback = Callable[[dict[str, Any]], None]
_MASK_KEY = 0x6D61736B  # "mask": purpose constant of the masking seeds
_EVAL_KEY = 0x6576616C  # "eval"


class NonFiniteLossError(BertkitError, FloatingPointError):
    """The loss (or gradient norm) became NaN/inf and ``nan_policy`` is ``stop``."""

    def __init__(self, step: int, loss: float, grad_norm: float) -> None:
        super().__init__(
            f"non-finite loss at step {step} (loss {loss}, grad norm {grad_norm}); stopped without saving "
            "(the last checkpoint is intact). Lower the learning rate, or set nan_policy = 'skip'."
        )
        self.step = step
        self.loss = loss
        self.grad_norm = grad_norm


@dataclass
class TrainSummary:
    """What a run did."""

    run_dir: Path
    step: int
    """Optimiser steps done (all sessions of the run)."""
    steps_this_session: int
    final_loss: float | None
    """Training loss of the last step (mean over its micro-batches and ranks)."""
    eval: dict[str, float] | None
    """Metrics of the last evaluation."""
    checkpoint: Path | None
    """The last checkpoint written."""
    interrupted: bool = False
    skipped_steps: int = 0
    tokens: int = 0
    """Input tokens processed in this session (all ranks)."""
    elapsed_s: float = 0.0
    notes: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------------------------------- set-up


def _select_device(config: TrainConfig, info: DistInfo | None = None) -> torch.device:
    if config.device == "cpu":
        return torch.device("cpu")
    if config.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device = 'cuda' but CUDA is not available")
    if config.device == "cuda" or (config.device == "auto" and torch.cuda.is_available()):
        return torch.device("cuda", info.local_rank if info else 0)
    return torch.device("cpu")


def _autocast_dtype(config: TrainConfig, device: torch.device) -> torch.dtype | None:
    if config.precision == "fp32" or (config.precision == "auto" and device.type != "cuda"):
        return None
    if config.precision == "fp16":
        if device.type != "cuda":
            raise ConfigError("precision = 'fp16' needs CUDA (use bf16 or fp32 on CPU)")
        return torch.float16
    return torch.bfloat16


def _intact_checkpoint(run_dir: Path, notes: list[str], emit: EventCallback | None) -> Path | None:
    """The newest checkpoint that passes its checks; newer ones that fail are reported by name and set aside
    (``ckpt-N.corrupt``) so the resumed run can write those steps again. FormatError when none is intact."""
    ckpt, failed = ckpt_lib.resumable(run_dir)
    for bad, why in failed:
        moved = ckpt_lib.quarantine(bad) if emit is not None else bad  # rank 0 renames; the others only read
        message = (
            f"checkpoint {bad.name} is corrupt ({why}); resuming from the previous intact one, "
            f"{ckpt.name if ckpt else 'none'} (the corrupt one is kept as {moved.name})"
        )
        notes.append(message)
        if emit is not None:
            emit({"event": "warning", "message": message})
    return ckpt


def _open_data(config: TrainConfig, seq_len: int, batch_size: int, split: str, info: DistInfo) -> Any:
    from bertkit.data.loader import PretrainingData
    from bertkit.models import get_architecture

    if get_architecture(config.arch).data_kind == "embeddings":  # an embedding store of `bertkit encode`
        from bertkit.encode.blocks import ChunkBlocks

        if not config.data:
            raise ConfigError("no embedding store: set data (--data) to the output of `bertkit encode`")
        return ChunkBlocks(
            config.data,
            seq_len=seq_len,
            batch_size=batch_size,
            seed=config.seed,
            split=split,
            eval_fraction=config.eval_fraction,
            rank=info.rank,
            world_size=info.world_size,
            drop_last=split == "train" or info.world_size > 1,
            verify_data=config.verify_data,
        )
    if not config.data:
        raise ConfigError("no dataset: set data (--data)")
    root = Path(config.data)
    if not root.is_dir():
        raise ConfigError(f"{root}: dataset directory not found")
    if not (root / "manifest.json").is_file():
        raise FormatError(f"{root}: no manifest.json (not a prepared dataset; run `bertkit prepare`)")
    return PretrainingData(
        root,
        view=config.view,
        seq_len=seq_len,
        batch_size=batch_size,
        seed=config.seed,
        split=split,
        eval_fraction=config.eval_fraction,
        rank=info.rank,
        world_size=info.world_size,
        short_seq_prob=config.short_seq_prob,
        fix_quirks=config.fix_quirks,
        drop_last=split == "train" or info.world_size > 1,
        short_p=config.short_p if split == "train" else 0.0,  # evaluation reads full rows
        verify_data=config.verify_data,
    )


def _read_vocab_lines(path: Path) -> list[str] | None:
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return None


def _build_model(config: TrainConfig, data: Any) -> tuple[torch.nn.Module, Any, str]:
    """The pretraining model (fresh from the preset, or ``init_from``), its config and the architecture name."""
    from bertkit.models import get_architecture

    arch = get_architecture(config.arch)
    overrides = dict(config.model)
    field_names = arch.config_class.field_names()
    if arch.data_kind == "embeddings":  # the store decides the input dimension; init_from names an encoder
        torch.manual_seed(config.seed)
        model = arch.pretraining_class.for_data(data, config.preset, overrides, init_from=config.init_from)
        model_config = model.config
    elif config.init_from:
        if not arch.importer:
            raise ConfigError(f"init_from: architecture {arch.name!r} cannot start from a model directory")
        from bertkit.export.run import resolve

        hf_dir = Path(config.init_from)
        if not (hf_dir / "config.json").is_file():
            raise ConfigError(f"{hf_dir}: init_from needs a Hugging Face model directory with config.json")
        hf_vocab = _read_vocab_lines(hf_dir / "vocab.txt")
        data_vocab = _read_vocab_lines(Path(config.data) / "tokenizer" / "vocab.txt")
        if hf_vocab is not None and data_vocab is not None and hf_vocab != data_vocab:
            differ = next((i for i, (a, b) in enumerate(zip(hf_vocab, data_vocab, strict=False)) if a != b), None)
            where = f"first difference at id {differ}" if differ is not None else "different lengths"
            raise ConfigError(
                f"{hf_dir}/vocab.txt and the dataset's tokenizer ({config.data}/tokenizer/vocab.txt) differ "
                f"({len(hf_vocab)} vs {len(data_vocab)} tokens, {where}): the dataset was tokenized with another "
                "vocabulary than the model's"
            )
        torch.manual_seed(config.seed)
        model = resolve(arch.importer)(hf_dir, arch.name, **overrides)
        model_config = model.config
        if data.vocab_size > model_config.vocab_size:
            raise ConfigError(
                f"dataset {config.data} has vocab_size {data.vocab_size} but the model in {hf_dir} has "
                f"{model_config.vocab_size} embeddings: the dataset was not tokenized for this model"
            )
    else:
        if "vocab_size" not in overrides and "vocab_size" in field_names:
            overrides["vocab_size"] = int(data.vocab_size)
        if "pad_token_id" not in overrides and "pad_token_id" in field_names:
            overrides["pad_token_id"] = int(data.pad_id)
        model_config = arch.make_config(config.preset, **overrides)
        vocab = getattr(model_config, "vocab_size", None)
        if vocab is not None and data.vocab_size > vocab:
            raise ConfigError(
                f"dataset {config.data} has vocab_size {data.vocab_size} but the model config has vocab_size "
                f"{vocab}: token ids would index past the embeddings"
            )
        torch.manual_seed(config.seed)
        model = arch.pretraining_class(model_config)
    if config.view in ("nsp", "static-nsp") and not getattr(model, "supports_nsp", True):
        raise ConfigError(
            f"architecture {arch.name!r} has no NSP head (it pretrains with MLM only); view {config.view!r} needs one: "
            "use view = 'mlm' or 'static-mlm'"
        )
    _check_positions(config, model_config)
    return model, model_config, arch.name


def _check_positions(config: TrainConfig, model_config: Any) -> None:
    max_pos = getattr(model_config, "max_position_embeddings", None)
    if max_pos is not None and config.max_seq_len() > max_pos:
        raise ConfigError(
            f"seq_len {config.max_seq_len()} is above the model's max_position_embeddings {max_pos} "
            f"(preset {config.preset!r}); lower seq_len or raise max_position_embeddings in [model]"
        )


def _check_model_options(config: TrainConfig) -> None:
    """ConfigError for an unknown architecture, preset or model option (e.g. an ELC-BERT variant) before the run
    directory or the data are touched (the vocabulary size is set from the dataset later)."""
    from bertkit.models import get_architecture

    arch = get_architecture(config.arch)
    known = set(arch.config_class.field_names())
    model_config = None
    try:
        unknown = [k for k in config.model if k not in known]
        if unknown:  # the same message make_config gives, also when init_from skips it
            raise ConfigError(
                f"{arch.config_class.__name__}: unknown option(s) {', '.join(unknown)}; valid options: "
                + ", ".join(arch.config_class.field_names())
            )
        if not config.init_from:
            model_config = arch.make_config(config.preset, **config.model)
    except ConfigError as e:  # name where the [model] keys came from (the TOML file, the command line)
        keys = unknown or list(config.model)
        sources = sorted({w for k in keys if (w := config.model_source(k))})
        raise ConfigError(f"{', '.join(sources)}: [model]: {e}" if sources else str(e)) from None
    if model_config is not None and arch.data_kind != "embeddings":  # before the data open
        _check_positions(config, model_config)


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    inner = getattr(model, "_orig_mod", model)  # torch.compile
    inner = getattr(inner, "module", inner)  # DDP
    return getattr(inner, "_orig_mod", inner)


# ---------------------------------------------------------------------------------------------- batches


def _mask_seed(*keys: int) -> int:
    """A 63-bit seed from integer keys (numpy's SeedSequence hashing: stable across versions and platforms)."""
    return int(np.random.SeedSequence([int(k) for k in keys]).generate_state(1, np.uint64)[0] >> 1)


class _Batcher:
    """Numpy batches → device tensors following the model batch contract, masked on the device."""

    def __init__(self, config: TrainConfig, data: Any, device: torch.device) -> None:
        self.config = config
        self.device = device
        self.vocab_size = int(data.vocab_size)
        self.mask_id = int(data.mask_id)
        self.pin = device.type == "cuda"
        self.exclude = None
        if config.random_exclude_special:
            self.exclude = torch.as_tensor(np.asarray(data.special_ids, dtype=np.int64), device=device)
        if not 0 <= config.random_ids_low < self.vocab_size:
            raise ConfigError(
                f"random_ids_low = {config.random_ids_low} must be below the dataset's vocab_size {self.vocab_size}"
            )
        self.maskable = None
        if config.maskable_specials:
            ids = [data.special_token_id(t) for t in config.maskable_specials]
            self.maskable = torch.as_tensor(np.asarray(ids, dtype=np.int64), device=device)
        # (masked real tokens, real tokens) of the last batch, on the device (the step's mask_fraction)
        self.last_mask_counts: tuple[torch.Tensor, torch.Tensor] | None = None

    def _tensor(self, array: np.ndarray) -> torch.Tensor:
        t = torch.from_numpy(np.ascontiguousarray(array))
        if self.pin:
            t = t.pin_memory()
        return t.to(self.device, non_blocking=True)

    def units(self, batch: Mapping[str, np.ndarray]) -> int:
        """Input tokens of the batch (throughput is counted in these)."""
        return int(batch["input_ids"].size)

    def __call__(self, batch: Mapping[str, np.ndarray], seed: int) -> dict[str, torch.Tensor | None]:
        from bertkit.data.masking import mask_tokens

        c = self.config
        input_ids = self._tensor(batch["input_ids"]).long()
        attention_mask = self._tensor(batch["attention_mask"]) if "attention_mask" in batch else None
        token_type_ids = self._tensor(batch["token_type_ids"]).long() if "token_type_ids" in batch else None
        nsp = self._tensor(batch["next_sentence_label"]).long() if "next_sentence_label" in batch else None
        if "mlm_positions" in batch:  # static instances: already masked
            positions = self._tensor(batch["mlm_positions"]).long()
            labels = self._tensor(batch["mlm_labels"]).long()
            masked = input_ids
            # real tokens: [CLS] A [SEP] B [SEP] without the three specials (the input is masked already)
            length = attention_mask.sum() if attention_mask is not None else torch.tensor(input_ids.numel())
            real = length.to(self.device) - 3 * input_ids.shape[0]
        else:
            special = self._tensor(batch["special_tokens_mask"]).bool()
            if self.maskable is not None:
                special = special & ~torch.isin(input_ids, self.maskable)
            if attention_mask is not None:
                special = special | (attention_mask == 0)
            word_start = self._tensor(batch["word_start"]).bool() if "word_start" in batch else None
            generator = torch.Generator(device=self.device)
            generator.manual_seed(seed)
            masked, positions, labels = mask_tokens(
                input_ids,
                special,
                vocab_size=self.vocab_size,
                mask_id=self.mask_id,
                rate=c.mask_rate,
                strategy=c.masking,
                word_start=word_start,
                mask_p=c.mask_p,
                random_p=c.random_p,
                span_mean=c.span_mean,
                max_span=c.max_span,
                span_lengths=c.span_lengths,
                count=c.mask_count,
                max_per_row=c.max_predictions(int(input_ids.shape[1])),
                random_ids_low=c.random_ids_low,
                random_ids_exclude_special=self.exclude,
                generator=generator,
            )
            real = (~special).sum()
        self.last_mask_counts = ((labels != -100).sum(), real)
        return {
            "input_ids": masked,
            "attention_mask": attention_mask,
            "token_type_ids": token_type_ids,
            "mlm_positions": positions,
            "mlm_labels": labels,
            "next_sentence_label": nsp,
        }


# ------------------------------------------------------------------------------------------------ evaluation


@torch.no_grad()
def evaluate(
    model: torch.nn.Module,
    data: Any,
    batcher: _Batcher,
    *,
    max_batches: int,
    seed: int,
    autocast_dtype: torch.dtype | None,
    info: DistInfo | None = None,
) -> dict[str, Any]:
    """MLM loss / accuracy / perplexity (and NSP accuracy when the view has NSP labels) on up to ``max_batches``
    held-out batches, summed over ranks. Masking of eval batch i is seeded from (seed, i): every evaluation of a
    run sees the same masks."""
    from bertkit.data.loader import StreamState

    info = info or DistInfo()
    device = batcher.device
    was_training = model.training
    model.eval()
    sums = torch.zeros(6, dtype=torch.float64, device=device)  # mlm loss·n, mlm n, mlm hits, nsp loss·n, nsp n, hits
    try:
        for i, (batch, _) in enumerate(data.batches(StreamState())):
            if i >= max_batches:
                break
            inputs = batcher(batch, _mask_seed(seed, _EVAL_KEY, i, info.rank))
            with _autocast(device, autocast_dtype):
                out = model(**inputs)
            n = out.mlm_count.double()
            sums[0] += out.mlm_loss.double() * n if n > 0 else 0.0
            sums[1] += n
            sums[2] += out.mlm_correct.double()
            if out.nsp_loss is not None and out.nsp_count is not None:
                sums[3] += out.nsp_loss.double() * out.nsp_count.double()
                sums[4] += out.nsp_count.double()
                sums[5] += out.nsp_correct.double()
    finally:
        model.train(was_training)
    all_reduce_sum(sums, info)
    s = sums.tolist()
    if s[1] == 0:
        return {"note": "no held-out batch: the eval split is smaller than one batch (raise eval_fraction)"}
    result: dict[str, Any] = {"mlm_loss": s[0] / s[1], "mlm_accuracy": s[2] / s[1], "masked_tokens": s[1]}
    result["perplexity"] = math.exp(min(result["mlm_loss"], 700.0))
    if s[4] > 0:
        result["nsp_loss"] = s[3] / s[4]
        result["nsp_accuracy"] = s[5] / s[4]
    return result


def _make_batcher(config: TrainConfig, data: Any, device: torch.device) -> Any:
    """The batcher for the architecture's data kind: token masking, or chunk masking for embedding stores."""
    from bertkit.models import get_architecture

    if get_architecture(config.arch).data_kind == "embeddings":
        from bertkit.models.nextlevel import ChunkBatcher

        return ChunkBatcher(config, data, device)
    return _Batcher(config, data, device)


def _autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


# ------------------------------------------------------------------------------------------------ the loop


class _Interrupt:
    """Turns SIGINT into a flag checked at step boundaries (main thread only); a second Ctrl-C raises at once."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None

    def __enter__(self) -> _Interrupt:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handler)
        return self

    def _handler(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc: Any) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


@dataclass
class _Stream:
    """The training data of the current phase and the position of its next global batch."""

    phase: int
    data: Any
    state: Any  # StreamState of the next batch
    iterator: Iterator[Any] | None = None

    def next(self) -> tuple[Mapping[str, np.ndarray], Any]:
        """The next batch and the StreamState it was drawn at."""
        if self.iterator is None:
            self.iterator = iter(self.data.batches(self.state))
        before = self.state
        batch, after = next(self.iterator)
        self.state = after
        return batch, before


def train(config: TrainConfig, on_event: EventCallback | None = None, *, resume: bool = False) -> TrainSummary:
    """Run (or with ``resume=True`` continue) the training described by ``config``; see the module docstring.

    Raises ConfigError / FormatError before the first step for bad input, :class:`NonFiniteLossError` when the
    loss diverges under ``nan_policy='stop'``.
    """
    from bertkit.data.loader import StreamState

    t_start = time.perf_counter()
    device = _select_device(config)
    info = init_distributed(device.type)
    try:
        device = _select_device(config, info)
        with RunSession(info.is_main) as session:  # the run directory's lock; a failed start-up leaves nothing
            return _train(config, on_event, resume, device, info, t_start, StreamState, session)
    finally:
        cleanup(info)


def _train(
    config: TrainConfig,
    on_event: EventCallback | None,
    resume: bool,
    device: torch.device,
    info: DistInfo,
    t_start: float,
    StreamState: Any,  # noqa: N803 - the class, imported lazily
    session: RunSession,
) -> TrainSummary:
    stop_requested = [False]  # set when on_event raises KeyboardInterrupt (rank 0 only; agreed on at step ends)

    def emit(event: dict[str, Any]) -> None:
        if on_event is not None and info.is_main:
            try:
                on_event(event)
            except KeyboardInterrupt:
                stop_requested[0] = True

    notes: list[str] = []
    # ------------------------------------------------------------------ checks before anything heavy
    _check_model_options(config)
    run_dir = session.open(config.out)
    autocast_dtype = _autocast_dtype(config, device)
    phases = config.resolved_phases()
    phase_starts = config.phase_starts()
    existing = ckpt_lib.latest(run_dir)
    if existing is not None and not resume:
        raise ConfigError(
            f"{run_dir} already holds checkpoints ({existing.name}); resume it (--resume) or choose a new --out"
        )
    if resume and existing is None:
        notes.append(f"resume: no complete checkpoint in {run_dir}; starting from step 0")
    if resume and existing is not None:
        existing = _intact_checkpoint(run_dir, notes, emit if info.is_main else None)
    extended_from: int | None = None  # the saved max_steps when this session extends (or shortens) the run
    if resume and existing is not None:
        saved_config = ckpt_lib.read_config(existing)
        extension = extension_of(saved_config, config)
        if extension is not None:
            reached = int(ckpt_lib.read_meta(existing).get("step", 0))
            if config.max_steps < reached:
                raise ConfigError(
                    f"max_steps = {config.max_steps} is below step {reached}, which {existing} already reached"
                )
            extended_from = int(saved_config["max_steps"])
            config = extension
            notes.append(
                f"max_steps {extended_from} → {config.max_steps}: warmup and phase switches keep their steps, the "
                "decay is stretched to the new end"
            )
        phases = config.resolved_phases()
        phase_starts = config.phase_starts()
    # every phase's data opens now, so a bad seq_len / dataset fails before training
    train_data = [_open_data(config, p.seq_len, p.batch_size, "train", info) for p in phases]
    data0 = train_data[0]
    model, model_config, arch_name = _build_model(config, data0)
    config_dict = config.to_dict()
    model_config_dict = model_config.to_dict()
    if resume and existing is not None:
        checked = dict(config_dict)
        if extended_from is not None:  # the schedule keys changed under the extension rule, nothing else may
            checked.update({k: saved_config.get(k) for k in ("max_steps", "warmup", "phases", "long_after")})
        ckpt_lib.check_compatible(existing, checked, arch_name, model_config_dict, world_size=info.world_size)

    # ------------------------------------------------------------------ model, optimiser, schedule
    sharded = config.fsdp and info.enabled
    if sharded and resume and existing is not None:  # FSDP: full weights go in before sharding
        ckpt_lib.load_checkpoint(existing, model=model, restore_rng_state=False)
    model.to(device)
    raw_model = model
    has_nsp = config.view in ("nsp", "static-nsp")
    wrapped = wrap_model(model, info, device=device, fsdp=config.fsdp, find_unused=not has_nsp)
    optimizer = build_optimizer(
        raw_model,
        name=config.optimizer,
        lr=config.lr,
        betas=config.betas,
        eps=config.resolved_eps(),
        weight_decay=config.weight_decay,
        decay_embeddings=config.decay_embeddings,
        trust_ratio=config.lamb_trust_ratio,
        max_trust_ratio=config.lamb_max_trust_ratio,
        mix_lr_scale=config.resolved_mix_lr_scale(),
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        make_lr_lambda(
            schedule=config.schedule,
            warmup=config.warmup_steps(),
            max_steps=config.resolved_decay_steps(),
            min_lr_ratio=config.min_lr_ratio,
        ),
    )
    scaler = torch.amp.GradScaler(device.type, enabled=autocast_dtype is torch.float16)
    step = 0
    data_state: dict[str, Any] = {"phase": 0, "epoch": 0, "cursor": 0}
    if resume and existing is not None:
        state = ckpt_lib.load_checkpoint(
            existing,
            model=None if sharded else raw_model,
            optimizer=None if sharded else optimizer,
            scheduler=scheduler,
            scaler=scaler,
            map_location=device,
        )
        if sharded:
            full = ckpt_lib.load_optimizer_state(existing)
            load_full_optimizer_state(wrapped, optimizer, full)
        step = int(state["step"])
        data_state = dict(state["data_state"])
        if extended_from is not None:  # the next update follows the new schedule, not the saved one's last value
            factor = scheduler.lr_lambdas[0](step)
            for group, base in zip(optimizer.param_groups, scheduler.base_lrs, strict=True):
                group["lr"] = base * factor
            scheduler._last_lr = [g["lr"] for g in optimizer.param_groups]
        emit({"event": "resumed", "step": step, "checkpoint": str(existing)})
    forward_model = torch.compile(wrapped) if config.compile else wrapped

    if info.is_main:
        config.save_json(run_dir / "config.json")
        if not (resume and existing is not None):
            (run_dir / "metrics.jsonl").unlink(missing_ok=True)
        else:  # the killed session may have logged steps after this checkpoint: they are run again
            notes.extend(rewind_metrics(run_dir / "metrics.jsonl", step))
    purge = step + 1 if resume and existing is not None else None
    metrics = MetricsWriter(run_dir, tensorboard=config.tensorboard, enabled=info.is_main, purge_step=purge)
    if metrics.tensorboard_note:
        notes.append(metrics.tensorboard_note)
    metrics.log_config(config_dict, model_config_dict, arch_name)
    peak = peak_flops(torch.cuda.get_device_name(device)) if device.type == "cuda" else None

    def phase_at(s: int) -> int:
        return max(i for i, start in enumerate(phase_starts) if start <= s)

    def open_stream(phase: int, saved: Mapping[str, Any] | None) -> _Stream:
        if saved is not None and int(saved["phase"]) == phase:
            start = StreamState(epoch=int(saved["epoch"]), cursor=int(saved["cursor"]))
        else:
            start = StreamState()
        return _Stream(phase, train_data[phase], start)

    stream = open_stream(phase_at(step), data_state)
    batcher = _make_batcher(config, data0, device)
    eval_cache: dict[int, Any] = {}

    def run_eval() -> dict[str, float]:
        p = stream.phase
        if p not in eval_cache:
            eval_cache[p] = _open_data(config, phases[p].seq_len, phases[p].batch_size, "eval", info)
        return evaluate(
            forward_model,
            eval_cache[p],
            batcher,
            max_batches=config.eval_batches,
            seed=config.seed,
            autocast_dtype=autocast_dtype,
            info=info,
        )

    def save(at_step: int) -> Path | None:
        path = None
        model_state = optimizer_state = None
        if sharded:  # gathering the full state is a collective
            model_state, optimizer_state = full_state_dicts(wrapped, optimizer)
        if info.is_main:
            path = ckpt_lib.save_checkpoint(
                run_dir,
                at_step,
                model=raw_model,
                optimizer=optimizer,
                scheduler=scheduler,
                scaler=scaler,
                config=config_dict,
                arch=arch_name,
                model_config=model_config_dict,
                data_state={
                    "phase": stream.phase,
                    "epoch": stream.state.epoch,
                    "cursor": stream.state.cursor,
                    "world_size": info.world_size,
                },
                keep_last=config.keep_last,
                model_state=model_state,
                optimizer_state=optimizer_state,
            )
            emit({"event": "checkpoint", "step": at_step, "path": str(path)})
        barrier(info)
        return path

    emit(
        {
            "event": "start",
            "run_dir": str(run_dir),
            "step": step,
            "max_steps": config.max_steps,
            "device": str(device),
            "world_size": info.world_size,
            "parameters": sum(p.numel() for p in raw_model.parameters()),
            "notes": list(notes),
        }
    )
    for note in notes:
        metrics.write("event", step, {"note": note})

    start_step = step
    last_ckpt: Path | None = existing if resume else None
    last_saved_step = step if last_ckpt is not None else -1
    last_loss: float | None = None
    last_eval: dict[str, float] | None = None
    skipped = 0
    tokens_session = 0
    interrupted = False
    window_tokens, window_t0 = 0, time.perf_counter()
    window_loss, window_steps = 0.0, 0
    params = [p for p in raw_model.parameters() if p.requires_grad]
    clip = config.clip if config.clip > 0 else float("inf")
    A = config.grad_accum
    boundary_state = None

    session.started()
    with _Interrupt() as interrupt:
        try:
            while step < config.max_steps:
                phase = phase_at(step)
                if phase != stream.phase:
                    stream = open_stream(phase, None)
                    emit({"event": "phase", "step": step, "phase": phase, **vars(phases[phase])})
                seq_len = phases[phase].seq_len
                boundary_state = stream.state
                loss_sum = torch.zeros((), device=device)
                step_tokens = 0
                head_rows = 0
                mask_counts = torch.zeros(2, dtype=torch.float64, device=device)
                for k in range(A):
                    batch, at = stream.next()
                    # keyed by the sample offset (global batch · ranks + rank) of this micro-batch: W ranks with batch
                    # B mask exactly like one rank with W accumulation steps of batch B
                    unit = at.cursor * info.world_size + info.rank
                    seed = _mask_seed(config.seed, _MASK_KEY, phase, at.epoch, unit)
                    inputs = batcher(batch, seed)
                    counts = getattr(batcher, "last_mask_counts", None)
                    if counts is not None:
                        mask_counts[0] += counts[0]
                        mask_counts[1] += counts[1]
                    sync = k == A - 1 or not hasattr(wrapped, "no_sync")
                    ctx = contextlib.nullcontext() if sync else wrapped.no_sync()
                    with ctx:
                        with _autocast(device, autocast_dtype):
                            out = forward_model(**inputs, label_smoothing=config.label_smoothing)
                        scaler.scale(out.loss / A).backward()
                    loss_sum += out.loss.detach().float()
                    step_tokens += batcher.units(batch)
                    head_rows += int(inputs["mlm_positions"].numel())
                scaler.unscale_(optimizer)
                grad_norm = torch.nn.utils.clip_grad_norm_(params, clip)
                if hasattr(grad_norm, "full_tensor"):  # FSDP: a DTensor
                    grad_norm = grad_norm.full_tensor()
                step_loss = loss_sum / A
                if info.enabled:
                    step_loss = all_reduce_sum(step_loss.clone(), info) / info.world_size
                loss_value, norm_value = float(step_loss), float(grad_norm)  # one host sync per step
                finite = math.isfinite(loss_value) and (math.isfinite(norm_value) or scaler.is_enabled())
                lr = optimizer.param_groups[0]["lr"]
                if not finite:
                    optimizer.zero_grad(set_to_none=True)
                    record = {"loss": loss_value, "grad_norm": norm_value, "policy": config.nan_policy}
                    metrics.write("nonfinite", step, record)
                    emit({"event": "nonfinite", "step": step, **record})
                    if config.nan_policy == "stop":
                        raise NonFiniteLossError(step, loss_value, norm_value)
                    skipped += 1
                    if scaler.is_enabled():
                        scaler.update()
                else:
                    scaler.step(optimizer)
                    scaler.update()
                    optimizer.zero_grad(set_to_none=True)
                    last_loss = loss_value
                    window_loss += loss_value
                    window_steps += 1
                scheduler.step()
                step += 1
                boundary_state = stream.state
                global_tokens = step_tokens * info.world_size
                tokens_session += global_tokens
                window_tokens += global_tokens

                if step % config.log_every == 0 or step == config.max_steps:
                    now = time.perf_counter()
                    tokens_per_s = window_tokens / max(now - window_t0, 1e-9)
                    head_fraction = head_rows / max(step_tokens, 1)
                    flops = _unwrap(forward_model).flops_per_token(seq_len, head_fraction)
                    if info.enabled:
                        mask_counts = all_reduce_sum(mask_counts, info)
                    masked_real, real = mask_counts.tolist()
                    record = {
                        "loss": window_loss / window_steps if window_steps else float("nan"),
                        "lr": lr,
                        "grad_norm": norm_value,
                        "tokens_per_s": tokens_per_s,
                        "mfu": mfu(tokens_per_s, flops, peak),
                        "seq_len": seq_len,
                        "epoch": stream.state.epoch,
                        "mask_fraction": masked_real / real if real > 0 else float("nan"),
                    }
                    metrics.write("train", step, record)
                    emit({"event": "log", "step": step, "max_steps": config.max_steps, **record})
                    window_tokens, window_t0, window_loss, window_steps = 0, now, 0.0, 0
                emit({"event": "step", "step": step, "max_steps": config.max_steps, "loss": loss_value})

                t_pause = time.perf_counter()  # evaluation and checkpoints do not count against tokens/s
                if config.eval_every and (step % config.eval_every == 0 or step == config.max_steps):
                    last_eval = run_eval()
                    metrics.write("eval", step, last_eval)
                    emit({"event": "eval", "step": step, **last_eval})
                if config.checkpoint_every and step % config.checkpoint_every == 0 and step < config.max_steps:
                    last_ckpt = save(step) or last_ckpt
                    last_saved_step = step
                window_t0 += time.perf_counter() - t_pause
                stop = interrupt.requested or stop_requested[0]
                if info.enabled:  # every rank stops at the same step (torchrun signals ranks at different times)
                    flag = torch.tensor([1.0 if stop else 0.0], device=device)
                    stop = all_reduce_sum(flag, info).item() > 0
                if stop and step < config.max_steps:
                    raise KeyboardInterrupt
        except KeyboardInterrupt:
            interrupted = True
            # The interruption lands at a step boundary (SIGINT is deferred; on_event runs between steps), or inside
            # a step's micro-batches, before any update: the weights, optimiser and data cursor of `step` hold.
            # Micro-batches drawn by an unfinished step are drawn again after resuming: rewind the cursor.
            optimizer.zero_grad(set_to_none=True)
            if boundary_state is not None:
                stream.state, stream.iterator = boundary_state, None
            emit({"event": "interrupted", "step": step})
    if step != last_saved_step:
        last_ckpt = save(step) or last_ckpt
    metrics.write("event", step, {"note": "interrupted" if interrupted else "finished"})
    metrics.close()
    if info.is_main and config.plot:
        result = plot_loss_curve(run_dir)
        if isinstance(result, str):
            notes.append(result)
    summary = TrainSummary(
        run_dir=run_dir,
        step=step,
        steps_this_session=step - start_step,
        final_loss=last_loss,
        eval=last_eval,
        checkpoint=last_ckpt,
        interrupted=interrupted,
        skipped_steps=skipped,
        tokens=tokens_session,
        elapsed_s=time.perf_counter() - t_start,
        notes=notes,
    )
    emit({"event": "end", "summary": summary})
    return summary
