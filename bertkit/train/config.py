"""The run configuration of ``bertkit train``: one validated dataclass, loaded from TOML and CLI flags.

No torch import here (the CLI validates a config before torch loads). Precedence: CLI flag > TOML file > preset
(the architecture's preset gives the model config; ``model = {...}`` overrides single fields of it).

A TOML run file holds the field names of :class:`TrainConfig` at top level, a ``[model]`` table of model-config
overrides and optionally ``[[phases]]`` tables (``fraction``, ``seq_len``, ``batch_size``)::

    arch = "bert"
    preset = "base"
    view = "nsp"
    optimizer = "lamb"
    lr = 1e-2
    max_steps = 15625
    [model]
    hidden_dropout_prob = 0.1
    [[phases]]
    fraction = 0.9
    seq_len = 128
    batch_size = 256
    [[phases]]
    fraction = 0.1
    seq_len = 512
    batch_size = 64
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bertkit.exceptions import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10 needs the tomli backport (same API)
    import tomli as tomllib

__all__ = ["RESUME_MUTABLE", "Phase", "TrainConfig", "config_diff", "extension_of", "resume_config"]

VIEWS = ("mlm", "nsp", "static-nsp", "static-mlm", "elc")
MASKING = ("token", "wwm", "span")
MASK_COUNTS = ("fixed", "binomial")
SPAN_LENGTHS = ("clipped", "truncated")
CHUNK_RANDOM_POOLS = ("other-chunks", "batch")
OPTIMIZERS = ("adamw", "lamb")
TRUST_RATIO_MODES = ("standard", "elc-faithful")
SCHEDULES = ("linear", "cosine", "one-cycle", "constant")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
DEVICES = ("auto", "cpu", "cuda")
NAN_POLICIES = ("stop", "skip")

RESUME_MUTABLE = frozenset(
    {
        "data",
        "out",
        "log_every",
        "eval_every",
        "eval_batches",
        "checkpoint_every",
        "keep_last",
        "tensorboard",
        "compile",
        "nan_policy",
        "plot",
        "device",
        "verify_data",
    }
)
"""Fields that may differ when a run is resumed; any other difference is a ConfigError."""

_PHASE_KEYS = ("fraction", "seq_len", "batch_size")


@dataclass(frozen=True)
class Phase:
    """A sequence-length phase: the first ``fraction`` of the steps at ``seq_len`` with ``batch_size`` per rank."""

    fraction: float
    seq_len: int
    batch_size: int


@dataclass
class TrainConfig:
    """Everything one training run needs; validated on construction (ConfigError)."""

    data: str = ""
    """Prepared dataset directory (``bertkit prepare``)."""
    out: str = ""
    """Run directory: checkpoints, metrics.jsonl, config.json, TensorBoard events, loss curve."""
    arch: str = "bert"
    """Architecture name in ``bertkit.models.ARCHITECTURES``."""
    preset: str = "base"
    """Preset of the architecture (``tiny``, ``small``, ``base``, ``large``)."""
    model: dict[str, Any] = field(default_factory=dict)
    """Model-config overrides on top of the preset (e.g. ``{"hidden_dropout_prob": 0.0}``)."""
    init_from: str | None = None
    """Hugging Face model directory to start from (its config replaces the preset; ``model`` still applies)."""

    view: str = "mlm"
    """Training samples: ``mlm`` (packed rows), ``nsp`` (sentence pairs), ``static-nsp`` / ``static-mlm``
    (the dataset's prepared instances; static-nsp comes masked), ``elc`` (ELC-BERT's per-document,
    sentence-aligned rows, padded)."""
    seq_len: int = 128
    """Sequence length when ``phases`` is empty."""
    batch_size: int = 32
    """Sequences per rank per micro-batch when ``phases`` is empty."""
    phases: list[dict[str, Any]] = field(default_factory=list)
    """Sequence-length phases: ``[{fraction, seq_len, batch_size}, ...]`` whose fractions sum to 1."""
    grad_accum: int = 1
    """Micro-batches per optimiser step (global batch = batch_size · grad_accum · world size)."""
    short_seq_prob: float = 0.1
    """NSP views: probability of a shorter target length (Google's ``short_seq_prob``)."""
    fix_quirks: bool = False
    """NSP views: correct Google's quirks instead of reproducing them."""
    eval_fraction: float = 0.01
    """Held-out fraction of the dataset for evaluation."""
    verify_data: bool = True
    """Check each dataset shard's checksum before it is first read (``--no-verify-data`` skips it for data that
    ``bertkit verify`` already checked; the values are validated on opening either way)."""
    short_p: float = 0.0
    """mlm / static-mlm training rows: probability of cutting a row to ``randint(1, seq_len - 2)`` tokens, then
    [SEP] and padding (ELC-BERT's ``short_p``; such batches carry an attention mask). 0 = always full rows."""
    long_after: float = 0.0
    """ELC-BERT's sequence-length switch: after this fraction of ``max_steps``, train at ``4 · seq_len`` with
    ``batch_size // 4`` (two phases; not combined with ``phases``). 0 = off."""

    masking: str = "token"
    """Masking strategy: ``token`` (per-token 80/10/10), ``wwm`` (whole words), ``span`` (ELC-BERT spans)."""
    mask_rate: float = 0.15
    """Fraction of the real tokens (not special, not padding) that are predicted (ELC-BERT's ``mask_p``): per row,
    rounded stochastically (``mask_count = fixed``) or in law (``binomial``)."""
    mask_count: str = "fixed"
    """``fixed``: each row masks ``mask_rate`` of its real tokens (not special, not padding; rounded stochastically,
    capped at ``max_predictions_per_seq``); ``binomial`` (ELC-BERT; token and span masking): each row draws
    Binomial(its real tokens, mask_rate) and takes its last span whole."""
    max_predictions_per_seq: int | None = None
    """Most masked positions per sequence (Google's ``max_predictions_per_seq``). None = automatic
    (:meth:`max_predictions`): ``round(20 · seq_len / 128)`` on the ``nsp`` view (Google's 20 at 128, 80 at 512),
    no cap on the mlm views. A number applies to every phase and must be in [1, seq_len]. The static-nsp view comes
    masked by ``prepare`` (its own ``--max-predictions-per-seq``)."""
    mask_p: float = 0.8
    """Chosen positions replaced by [MASK] (ELC-BERT: ``1 - random_p - keep_p``)."""
    random_p: float = 0.1
    """Chosen positions replaced by a random id (the rest, ``1 - mask_p - random_p``, keep the token)."""
    keep_p: float | None = None
    """Chosen positions left unchanged (ELC-BERT's ``keep_p``). None = ``1 - mask_p - random_p``; when given,
    ``mask_p + random_p + keep_p`` must be 1."""
    random_exclude_special: bool = False
    """Random replacements never draw the dataset's special tokens."""
    random_ids_low: int = 0
    """Random replacements are drawn from ``[random_ids_low, vocab_size)`` (ltgoslo/elc-bert draws
    ``randint(n_special_tokens - 1, V)`` = ``[5, V)`` with its seven specials: [PAR] and [TAB] can appear)."""
    maskable_specials: list[str] = field(default_factory=list)
    """Special tokens that may be masked like text (ltgoslo/elc-bert protects only ids below 6, so its [TAB] is
    masked and counted, its [PAR] is not): e.g. ``["[TAB]"]``. Unknown to the dataset's tokenizer → ConfigError."""
    chunk_random_pool: str = "other-chunks"
    """NextLevelBERT: where a randomly replaced chunk's vector comes from: ``other-chunks`` (uniform over the batch's
    other chunk positions) or ``batch`` (the original's: a random permutation of every position of the batch, its
    [CLS]/[SEP]/padding zero vectors and the position itself included)."""
    span_mean: float = 3.0
    """Span masking: mean span length."""
    max_span: int = 10
    """Span masking: longest span."""
    span_lengths: str = "clipped"
    """Span masking: ``clipped`` = min(Geometric(1/span_mean), max_span); ``truncated`` = Geometric conditioned on
    <= max_span (ELC-BERT's ``Geometric(1/3) % 10`` without empty spans: span_mean 3, max_span 9)."""
    label_smoothing: float = 0.0
    """Label smoothing of the MLM cross-entropy."""

    optimizer: str = "adamw"
    """``adamw`` (torch; fused on CUDA) or ``lamb`` (bertkit.train.optim.Lamb)."""
    lr: float = 1e-4
    """Peak learning rate."""
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    """Adam betas."""
    eps: float | None = None
    """Adam epsilon. None = automatic (:meth:`resolved_eps`): 1e-8 for ``nextlevel`` (the original's torch AdamW
    default), 1e-6 for the token models (BERT's). Why it matters: NextLevelBERT's regression loss on unit-norm chunk
    vectors is ~1e-3, so half of its gradient entries are below 1e-6 (measured on the MiniLM-initialised model), and
    an eps of 1e-6 would shrink those Adam steps several-fold."""
    weight_decay: float = 0.01
    """Decoupled weight decay (not applied to biases, norm weights, ``prev_layer_weights``, optionally
    embeddings)."""
    decay_embeddings: bool = True
    """Apply weight decay to embedding tables (ELC-BERT excludes them: set False)."""
    lamb_trust_ratio: str = "standard"
    """LAMB: ``standard`` applies the (clamped) trust ratio to every parameter; ``elc-faithful`` only where the
    group's weight decay is > 0, unclamped, as ltgoslo/elc-bert's ``pre_training/lamb.py`` does."""
    lamb_max_trust_ratio: float = 10.0
    """LAMB standard mode: upper clamp of ‖w‖/‖update‖."""
    mix_lr_scale: float | None = None
    """Multiplier of ``lr`` for ELC-BERT's layer-mixing logits (``prev_layer_weights``). None = automatic
    (:meth:`resolved_mix_lr_scale`): 1 with LAMB ``elc-faithful``, 10 otherwise. Why: in the original, LAMB's trust
    ratio makes every weight matrix move by about ``lr`` *relative* to its norm per step, while the mixing logits,
    which its trust-ratio quirk skips, take plain Adam steps of ``lr`` in absolute terms; under AdamW (or standard
    LAMB) the logits move ~10-20× less relative to the rest of the network, barely leave their uniform start in a
    short run, and ELC-BERT trails LTG-BERT (BENCHMARKS.md)."""

    schedule: str = "linear"
    """Learning-rate schedule after warmup: ``linear``, ``cosine``, ``one-cycle``, ``constant``."""
    warmup: float = 0.01
    """Warmup: an int is a number of steps, a float in [0, 1] a fraction of ``max_steps``."""
    min_lr_ratio: float = 0.0
    """Final learning rate as a fraction of the peak (linear / cosine / one-cycle)."""
    max_steps: int = 1000
    """Optimiser steps of the whole run (all phases)."""
    decay_steps: int | None = None
    """Step at which the linear / cosine / one-cycle decay reaches ``min_lr_ratio`` and stays there (nanoBERT/medium:
    cosine to 45,000 of 60,000 iterations, then the minimum lr). None = ``max_steps``."""
    clip: float = 1.0
    """Gradient clipping max norm (0 = no clipping; the norm is logged either way)."""

    precision: str = "auto"
    """``auto`` (bf16 autocast on CUDA, fp32 on CPU), ``fp32``, ``bf16`` (autocast), ``fp16`` (CUDA, GradScaler)."""
    device: str = "auto"
    """``auto`` (CUDA when available), ``cpu`` or ``cuda``."""
    compile: bool = False
    """Wrap the model in ``torch.compile``."""
    fsdp: bool = False
    """Shard parameters with FSDP under torchrun (large presets) instead of DDP."""

    eval_every: int = 500
    """Evaluate every N steps (0 = never; also at the end when > 0)."""
    eval_batches: int = 50
    """At most this many held-out batches per evaluation."""
    checkpoint_every: int = 1000
    """Save a checkpoint every N steps (0 = only at the end / on interruption)."""
    keep_last: int = 3
    """Checkpoints kept (older complete ones are deleted)."""
    log_every: int = 10
    """Write a metrics record every N steps."""
    tensorboard: bool = True
    """Also write TensorBoard events (when the ``tensorboard`` package is installed)."""
    plot: bool = True
    """Draw loss_curve.png at the end (when matplotlib is installed)."""
    seed: int = 0
    """Seed of the model init, the data order and the masking."""
    nan_policy: str = "stop"
    """Non-finite loss: ``stop`` (raise, checkpoints stay as they were) or ``skip`` (drop that step's update)."""

    def __post_init__(self) -> None:
        self._validate()

    # ---------------------------------------------------------------------------------------------- validation

    def _validate(self) -> None:
        def choice(name: str, options: tuple[str, ...]) -> None:
            value = getattr(self, name)
            if value not in options:
                raise ConfigError(f"{name} = {value!r} is not one of {', '.join(options)}")

        def integer(name: str, low: int) -> None:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ConfigError(f"{name} = {value!r} must be an integer >= {low}")

        def number(name: str, low: float, high: float, *, open_low: bool = False) -> None:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ConfigError(f"{name} = {value!r} must be a number")
            if value < low or value > high or (open_low and value == low):
                bracket = "(" if open_low else "["
                raise ConfigError(f"{name} = {value!r} must be in {bracket}{low}, {high}]")

        for name in ("data", "out", "arch", "preset"):
            if not isinstance(getattr(self, name), str):
                raise ConfigError(f"{name} must be a string, got {getattr(self, name)!r}")
        if self.init_from is not None and not isinstance(self.init_from, str):
            raise ConfigError(f"init_from must be a path string, got {self.init_from!r}")
        if not isinstance(self.model, dict):
            raise ConfigError(f"model must be a table of model-config overrides, got {self.model!r}")
        choice("view", VIEWS)
        choice("masking", MASKING)
        choice("mask_count", MASK_COUNTS)
        choice("span_lengths", SPAN_LENGTHS)
        choice("chunk_random_pool", CHUNK_RANDOM_POOLS)
        choice("optimizer", OPTIMIZERS)
        choice("lamb_trust_ratio", TRUST_RATIO_MODES)
        choice("schedule", SCHEDULES)
        choice("precision", PRECISIONS)
        choice("device", DEVICES)
        choice("nan_policy", NAN_POLICIES)
        integer("seq_len", 8)
        integer("batch_size", 1)
        integer("grad_accum", 1)
        integer("max_steps", 1)
        integer("max_span", 1)
        integer("eval_every", 0)
        integer("eval_batches", 1)
        integer("checkpoint_every", 0)
        integer("keep_last", 1)
        integer("log_every", 1)
        integer("seed", 0)
        integer("random_ids_low", 0)
        if not isinstance(self.maskable_specials, list) or not all(isinstance(t, str) for t in self.maskable_specials):
            raise ConfigError(f"maskable_specials = {self.maskable_specials!r} must be a list of token strings")
        number("short_seq_prob", 0.0, 1.0)
        number("eval_fraction", 0.0, 0.5, open_low=True)
        number("mask_rate", 0.0, 1.0, open_low=True)
        number("mask_p", 0.0, 1.0)
        number("random_p", 0.0, 1.0)
        if self.mask_p + self.random_p > 1.0 + 1e-9:
            raise ConfigError(f"mask_p + random_p = {self.mask_p + self.random_p} must be <= 1")
        if self.keep_p is not None:
            number("keep_p", 0.0, 1.0)
            total = self.mask_p + self.random_p + self.keep_p
            if abs(total - 1.0) > 1e-6:
                raise ConfigError(
                    f"mask_p ({self.mask_p}) + random_p ({self.random_p}) + keep_p ({self.keep_p}) = {total:g}, not 1: "
                    f"the three shares of the chosen positions must add up (for keep_p = {self.keep_p} and random_p = "
                    f"{self.random_p}, set mask_p = {1.0 - self.random_p - self.keep_p:g})"
                )
        if self.max_predictions_per_seq is not None:
            integer("max_predictions_per_seq", 1)
            if self.view == "static-nsp":
                raise ConfigError(
                    "max_predictions_per_seq caps on-device masking; the static-nsp view comes masked by prepare "
                    "(set --max-predictions-per-seq there), so leave it unset"
                )
        if self.mask_count == "binomial" and self.masking == "wwm":
            raise ConfigError("mask_count = 'binomial' works with masking 'token' or 'span', not 'wwm'")
        number("short_p", 0.0, 1.0)
        if self.short_p > 0 and self.view not in ("mlm", "static-mlm", "elc"):
            raise ConfigError(
                f"short_p shortens packed MLM rows (view 'mlm', 'static-mlm' or 'elc'), not view {self.view!r}"
            )
        number("long_after", 0.0, 1.0)
        if self.long_after >= 1.0:
            raise ConfigError(f"long_after = {self.long_after!r} must be below 1 (the fraction of steps at seq_len)")
        number("span_mean", 1.0, 1e6)
        number("label_smoothing", 0.0, 1.0)
        number("lr", 0.0, 1e3, open_low=True)
        if self.eps is not None:
            number("eps", 0.0, 1.0)
        number("weight_decay", 0.0, 1e3)
        number("lamb_max_trust_ratio", 0.0, 1e9, open_low=True)
        if self.mix_lr_scale is not None:
            number("mix_lr_scale", 0.0, 1e6, open_low=True)
        number("min_lr_ratio", 0.0, 1.0)
        number("clip", 0.0, 1e9)
        if (
            not isinstance(self.betas, (list, tuple))
            or len(self.betas) != 2
            or not all(isinstance(b, (int, float)) and not isinstance(b, bool) and 0.0 <= b < 1.0 for b in self.betas)
        ):
            raise ConfigError(f"betas = {self.betas!r} must be two numbers in [0, 1)")
        self.betas = [float(b) for b in self.betas]
        if isinstance(self.warmup, bool) or not isinstance(self.warmup, (int, float)) or self.warmup < 0:
            raise ConfigError(f"warmup = {self.warmup!r} must be a step count (int) or a fraction (float in [0, 1])")
        if isinstance(self.warmup, float) and self.warmup > 1.0:
            raise ConfigError(f"warmup = {self.warmup!r}: a float is a fraction of max_steps (<= 1); use an int")
        if self.warmup_steps() > self.max_steps:
            raise ConfigError(f"warmup = {self.warmup!r} is longer than max_steps = {self.max_steps}")
        if self.decay_steps is not None:
            integer("decay_steps", 1)
            if not self.warmup_steps() < self.decay_steps <= self.max_steps:
                raise ConfigError(
                    f"decay_steps = {self.decay_steps} must be above the warmup ({self.warmup_steps()} steps) and at "
                    f"most max_steps = {self.max_steps}"
                )
        for name in (
            "compile",
            "fsdp",
            "tensorboard",
            "plot",
            "fix_quirks",
            "decay_embeddings",
            "random_exclude_special",
            "verify_data",
        ):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name} = {getattr(self, name)!r} must be true or false")
        self._validate_phases()

    def _validate_phases(self) -> None:
        if not isinstance(self.phases, list):
            raise ConfigError(f"phases must be a list of {{fraction, seq_len, batch_size}} tables, got {self.phases!r}")
        if self.long_after > 0 and self.phases:
            raise ConfigError("long_after and phases both set the sequence-length schedule: give one of them")
        if self.long_after > 0 and self.batch_size < 4:
            raise ConfigError(
                f"long_after needs batch_size >= 4 (batch_size // 4 after the switch), got {self.batch_size}"
            )
        if not self.phases:
            self._check_max_predictions()
            return
        total = 0.0
        for i, p in enumerate(self.phases):
            if not isinstance(p, Mapping):
                raise ConfigError(f"phases[{i}] must be a table with keys {', '.join(_PHASE_KEYS)}")
            unknown = sorted(set(p) - set(_PHASE_KEYS))
            missing = [k for k in _PHASE_KEYS if k not in p]
            if unknown or missing:
                raise ConfigError(
                    f"phases[{i}]: unknown key(s) {unknown} / missing key(s) {missing}; keys: {', '.join(_PHASE_KEYS)}"
                )
            f = p["fraction"]
            if isinstance(f, bool) or not isinstance(f, (int, float)) or not 0.0 < f <= 1.0:
                raise ConfigError(f"phases[{i}].fraction = {f!r} must be in (0, 1]")
            for k, low in (("seq_len", 8), ("batch_size", 1)):
                v = p[k]
                if isinstance(v, bool) or not isinstance(v, int) or v < low:
                    raise ConfigError(f"phases[{i}].{k} = {v!r} must be an integer >= {low}")
            total += float(f)
        if abs(total - 1.0) > 1e-6:
            raise ConfigError(f"phases: fractions sum to {total}, not 1")
        self._check_max_predictions()

    def _check_max_predictions(self) -> None:
        m = self.max_predictions_per_seq
        if m is None:
            return
        shortest = min(p.seq_len for p in self.resolved_phases())
        if m > shortest:
            raise ConfigError(
                f"max_predictions_per_seq = {m} is above seq_len {shortest}: a sequence cannot have more masked "
                "positions than tokens"
            )

    # ------------------------------------------------------------------------------------------------- derived

    def resolved_phases(self) -> list[Phase]:
        """The phases (one phase of ``seq_len``/``batch_size`` when ``phases`` is empty; with ``long_after`` two:
        ``seq_len``/``batch_size``, then ``4 · seq_len``/``batch_size // 4``)."""
        if self.long_after > 0:
            return [
                Phase(float(self.long_after), self.seq_len, self.batch_size),
                Phase(1.0 - float(self.long_after), 4 * self.seq_len, self.batch_size // 4),
            ]
        if not self.phases:
            return [Phase(1.0, self.seq_len, self.batch_size)]
        return [Phase(float(p["fraction"]), int(p["seq_len"]), int(p["batch_size"])) for p in self.phases]

    def phase_starts(self) -> list[int]:
        """First optimiser step of each phase (rounded cumulative fractions of ``max_steps``)."""
        starts, acc = [], 0.0
        for p in self.resolved_phases():
            starts.append(min(self.max_steps, round(acc * self.max_steps)))
            acc += p.fraction
        return starts

    def resolved_eps(self) -> float:
        """``eps``, or its automatic value: 1e-8 for ``nextlevel``, 1e-6 otherwise."""
        return float(_resolve(self.to_dict(), "eps"))

    def resolved_mix_lr_scale(self) -> float:
        """``mix_lr_scale``, or its automatic value: 1 with LAMB ``elc-faithful`` (the original's own dynamics),
        10 with AdamW or standard LAMB."""
        return float(_resolve(self.to_dict(), "mix_lr_scale"))

    def max_predictions(self, seq_len: int) -> int | None:
        """The per-sequence cap of on-device masking at ``seq_len``: ``max_predictions_per_seq``, or automatically
        ``round(20 · seq_len / 128)`` on the nsp view (Google's 20 at 128, 80 at 512), else None (no cap)."""
        if self.max_predictions_per_seq is not None:
            return int(self.max_predictions_per_seq)
        if self.view == "nsp":
            return max(1, min(seq_len, round(20 * seq_len / 128)))
        return None

    def warmup_steps(self) -> int:
        """Warmup length in optimiser steps."""
        if isinstance(self.warmup, int):
            return self.warmup
        return round(self.warmup * self.max_steps)

    def resolved_decay_steps(self) -> int:
        """The step at which the schedule's decay ends: ``decay_steps`` or ``max_steps``."""
        return int(self.decay_steps) if self.decay_steps is not None else self.max_steps

    def max_seq_len(self) -> int:
        return max(p.seq_len for p in self.resolved_phases())

    # -------------------------------------------------------------------------------------------- conversions

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of every field."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def field_defaults(cls) -> dict[str, Any]:
        """The default of every field (JSON-ready)."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            if f.default is not dataclasses.MISSING:
                out[f.name] = f.default
            elif f.default_factory is not dataclasses.MISSING:
                out[f.name] = f.default_factory()
        return out

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str = "config") -> TrainConfig:
        """Build from a mapping; an unknown key is a ConfigError naming it and ``source``."""
        if not isinstance(data, Mapping):
            raise ConfigError(f"{source}: expected a table of options, got {type(data).__name__}")
        valid = cls.field_names()
        unknown = sorted(k for k in data if k not in valid)
        if unknown:
            raise ConfigError(f"{source}: unknown key(s) {', '.join(unknown)}; valid keys: {', '.join(valid)}")
        try:
            return cls(**dict(data))
        except ConfigError as e:
            raise ConfigError(f"{source}: {e}") from None

    @classmethod
    def from_toml(cls, path: str | os.PathLike[str], overrides: Mapping[str, Any] | None = None) -> TrainConfig:
        """Read a TOML run file (unknown keys → ConfigError naming the key and the file), then apply ``overrides``
        (CLI flags; ``None`` values are ignored)."""
        path = Path(path)
        try:
            with open(path, "rb") as f:
                data = tomllib.load(f)
        except FileNotFoundError:
            raise ConfigError(f"{path}: config file not found") from None
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"{path}: invalid TOML: {e}") from None
        except UnicodeDecodeError as e:
            raise ConfigError(
                f"{path}: not UTF-8 text (byte 0x{e.object[e.start]:02x} at offset {e.start}); TOML files are UTF-8"
            ) from None
        except IsADirectoryError:
            raise ConfigError(f"{path}: a directory, not a TOML config file") from None
        merged = _merge(data, overrides or {})
        config = cls.from_dict(merged, source=str(path))
        sources = {k: str(path) for k in data.get("model", {}) if isinstance(data.get("model"), Mapping)}
        sources.update({k: "the command line (--model)" for k in (overrides or {}).get("model") or {}})
        config._model_sources = sources
        return config

    def model_source(self, key: str) -> str | None:
        """Where the ``[model]`` option ``key`` came from (the TOML file, or the command line) for messages; None
        when unknown (a config built in code)."""
        return getattr(self, "_model_sources", {}).get(key)

    def with_overrides(self, overrides: Mapping[str, Any]) -> TrainConfig:
        """A new config with ``overrides`` applied (``None`` values ignored; ``model`` is merged key by key)."""
        return TrainConfig.from_dict(_merge(self.to_dict(), overrides), source="overrides")

    def save_json(self, path: str | os.PathLike[str]) -> None:
        """Write the config as JSON, atomically (a temporary sibling renamed over ``path``)."""
        path = Path(path)
        tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
        tmp.write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, path)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str], overrides: Mapping[str, Any] | None = None) -> TrainConfig:
        """A TOML run file, or a run's saved ``config.json`` (``.json``: the keys of :meth:`to_dict`), then
        ``overrides``; ``--config RUN/config.json`` starts a new run with an old run's settings."""
        path = Path(path)
        if path.suffix.lower() != ".json":
            return cls.from_toml(path, overrides)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"{path}: config file not found") from None
        except (OSError, UnicodeDecodeError, ValueError) as e:
            raise ConfigError(f"{path}: unreadable JSON config ({e})") from None
        if not isinstance(data, Mapping):
            raise ConfigError(f"{path}: expected a JSON object of options, got {type(data).__name__}")
        return cls.from_dict(_merge(data, overrides or {}), source=str(path))

    def extend(self, max_steps: int) -> TrainConfig:
        """This run's config with ``max_steps`` changed, under the extension rule of ``--resume --max-steps``:
        every step already planned keeps its place (the warmup length in steps, the step of each sequence-length
        phase switch, which the last phase absorbs) and the decay after warmup is *stretched* to end at the new
        ``max_steps``. A *continued* schedule would sit at its final value (``min_lr_ratio``, 0 by default) after
        the old end, so the added steps would not learn; stretched, from the resumed step on the learning rate is
        the one a run planned for ``max_steps`` has there (it jumps up from the old end's value)."""
        if isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 1:
            raise ConfigError(f"max_steps = {max_steps!r} must be an integer >= 1")
        if max_steps == self.max_steps:
            return TrainConfig.from_dict(self.to_dict(), source="extension")
        data = self.to_dict()
        warmup = self.warmup_steps()
        if self.schedule == "one-cycle" and warmup == 0:
            warmup = self.max_steps // 2  # one-cycle without warmup rises over half the run: keep that peak's step
        data["max_steps"] = max_steps
        data["warmup"] = min(warmup, max_steps)
        starts = self.phase_starts()
        if self.long_after > 0:
            data["long_after"] = starts[1] / max_steps
        elif self.phases:
            ends = [*starts[1:], max_steps]
            data["phases"] = [
                {**p, "fraction": (end - start) / max_steps}
                for p, start, end in zip(self.phases, starts, ends, strict=True)
            ]
        return TrainConfig.from_dict(data, source=f"max_steps {self.max_steps} → {max_steps}")


def _merge(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in overrides.items():
        if v is None:
            continue
        if k == "model" and isinstance(v, Mapping) and isinstance(out.get("model"), Mapping):
            out["model"] = {**out["model"], **v}
        else:
            out[k] = v
    sized = {k: overrides[k] for k in ("seq_len", "batch_size") if overrides.get(k) is not None}
    if sized and base.get("phases"):
        # --seq-len / --batch-size on the command line replace the file's phases by one phase of that size.
        first = base["phases"][0]
        out["seq_len"] = sized.get("seq_len", first.get("seq_len"))
        out["batch_size"] = sized.get("batch_size", first.get("batch_size"))
        out["phases"] = []
    return out


def _resolve(config: Mapping[str, Any], key: str, absent: Any = None) -> Any:
    """The value of ``key`` in a config dict, with the automatic ones (None) resolved: ``eps`` (1e-8 for nextlevel,
    else 1e-6) and ``mix_lr_scale`` (1 with LAMB ``elc-faithful``, else 10). A missing key gives ``absent``."""
    if key not in config:
        return absent
    value = config[key]
    if value is not None or key not in ("eps", "mix_lr_scale"):
        return value
    if key == "eps":
        return 1e-8 if config.get("arch", "bert") == "nextlevel" else 1e-6
    faithful = config.get("optimizer") == "lamb" and config.get("lamb_trust_ratio") == "elc-faithful"
    return 1.0 if faithful else 10.0


_EXTENSION_KEYS = ("max_steps", "warmup", "phases", "long_after")


def extension_of(saved: Mapping[str, Any], config: TrainConfig) -> TrainConfig | None:
    """When ``config`` resumes the run whose saved config is ``saved`` with another ``max_steps`` (and otherwise the
    saved schedule keys, as given or already extended), the config under the extension rule
    (:meth:`TrainConfig.extend`); None when ``max_steps`` is unchanged or the schedule keys changed otherwise (a
    real difference, which the resume check refuses)."""
    if saved.get("max_steps") == config.max_steps:
        return None
    try:
        old = TrainConfig.from_dict(
            {k: v for k, v in saved.items() if k in TrainConfig.field_names()}, source="saved config"
        )
        extended = old.extend(config.max_steps)
    except ConfigError:
        return None
    mine = config.to_dict()
    ext = extended.to_dict()
    as_saved = {k: mine[k] for k in _EXTENSION_KEYS if k != "max_steps"} == {
        k: saved.get(k) for k in _EXTENSION_KEYS if k != "max_steps"
    }
    as_extended = all(mine[k] == ext[k] for k in _EXTENSION_KEYS)
    if not (as_saved or as_extended):
        return None
    return TrainConfig.from_dict({**mine, **{k: ext[k] for k in _EXTENSION_KEYS}}, source="extension")


def resume_config(run_dir: str | os.PathLike[str], overrides: Mapping[str, Any] | None = None) -> TrainConfig:
    """The config that resumes ``run_dir`` from the run alone: its saved ``config.json`` with ``overrides`` (flags;
    None values ignored). Keys of :data:`RESUME_MUTABLE` may change; ``max_steps`` extends (or shortens) the run
    under the rule of :meth:`TrainConfig.extend`; any other key that differs from the saved value is a ConfigError
    naming it."""
    run_dir = Path(run_dir)
    path = run_dir / "config.json"
    if not path.is_file():
        raise ConfigError(
            f"{run_dir}: no config.json to resume from (not a bertkit run directory, or its first session never "
            "started); give the run's --config / flags"
        )
    saved = TrainConfig.from_file(path)
    given = {k: v for k, v in (overrides or {}).items() if v is not None}
    saved_dict = saved.to_dict()
    refused = []
    for key, value in given.items():
        if key in RESUME_MUTABLE or key == "max_steps":
            continue
        if key == "model" and isinstance(value, Mapping):
            refused += [
                f"model.{k} (saved {saved.model.get(k, '<preset>')!r}, given {v!r})"
                for k, v in value.items()
                if saved.model.get(k, _ABSENT) != v
            ]
        elif _resolve(saved_dict, key, _ABSENT) != value:
            refused.append(f"{key} (saved {_resolve(saved_dict, key, '<absent>')!r}, given {value!r})")
    if refused:
        mutable = ", ".join(sorted(RESUME_MUTABLE | {"max_steps"}))
        raise ConfigError(
            f"{run_dir}: cannot change mid-run: {'; '.join(refused)}. A resumed run may change {mutable}; start a "
            "new run directory for the rest (e.g. --config " + str(path) + " --out NEW)"
        )
    config = saved.with_overrides({k: v for k, v in given.items() if k in RESUME_MUTABLE})
    if "max_steps" in given:
        config = config.extend(int(given["max_steps"]))
    return config


_ABSENT = object()


def config_diff(old: Mapping[str, Any], new: Mapping[str, Any], ignore: frozenset[str] = RESUME_MUTABLE) -> list[str]:
    """Human-readable ``key: old → new`` lines for the keys (outside ``ignore``) whose values differ; an automatic
    value (None) counts as the value it resolves to, so ``eps = 1e-8`` resumes an automatic-eps NextLevel run."""
    defaults = TrainConfig.field_defaults()
    lines = []
    for k in sorted(set(old) | set(new)):
        if k in ignore:
            continue
        a, b = _resolve(old, k, "<absent>"), _resolve(new, k, "<absent>")
        # a field added after the run was saved: absent there means its default
        if a == "<absent>" and k in defaults and b == defaults[k]:
            continue
        if a != b:
            lines.append(f"{k}: {a!r} → {b!r}")
    return lines
