"""What every architecture gives the shared trainer: its output record, its batch contract, its registry entry.

Batch contract (the keyword arguments of every pretraining model's ``forward``; all tensors on the model's device):

- ``input_ids`` ``[B, T]`` int64: token ids with masking already applied (``[MASK]`` / random / kept).
- ``attention_mask`` ``[B, T]`` (bool or int, 1 = token, 0 = padding), or ``None`` meaning all ones. Pass ``None``
  for batches without padding (packed MLM sequences): then attention runs without a mask and SDPA may use its
  flash / memory-efficient kernels. Models never inspect the mask's values (that would be a host sync).
- ``token_type_ids`` ``[B, T]`` int64 segment ids (0 = segment A, 1 = segment B), optional (``None`` = all 0).
- ``mlm_positions`` ``[M]`` int64: flat indices into the ``B*T`` tokens (``b * T + t``) of the rows the MLM loss is
  computed on. M is FIXED per batch (shapes stay static for ``torch.compile`` / CUDA graphs); padding entries
  point at any valid index (0 is fine) and carry label -100.
- ``mlm_labels`` ``[M]`` int64: the original token ids at ``mlm_positions``; -100 = ignore (padding entries).
- ``next_sentence_label`` ``[B]`` int64, optional: 0 = segment B follows A (IsNext), 1 = B is a random segment
  (NotNext), as in Hugging Face and Google BERT. ``None`` = no NSP loss (MLM-only training).

Keyword-only options: ``return_predictions=False`` (fill ``PretrainingOutput.mlm_predictions``) and
``label_smoothing=0.0`` (passed to ``bertkit.ops.masked_lm_loss``).

Every pretraining model returns a :class:`PretrainingOutput`. ``loss`` is what the trainer backpropagates (MLM mean
cross-entropy over the non-ignored masked rows, plus the NSP mean cross-entropy when NSP labels are given, as Hugging
Face's ``BertForPreTraining`` sums them). Counts are 0-dim int64 tensors so that accuracy is accumulated on the device
without a host sync per step.

Besides ``forward``, pretraining models provide ``encode(input_ids, attention_mask, token_type_ids)`` → ``[B, T, d]``
last hidden states, ``mlm_logits(input_ids, attention_mask, token_type_ids, positions)`` → ``[P, V]`` full logits
at flat positions (evaluation display, parity tests), ``flops_per_token(seq_len, head_fraction)`` (MFU) and a
``config`` attribute. Models without an NSP head set the class attribute ``supports_nsp = False``: the trainer then
refuses NSP views before training, and ``forward`` refuses ``next_sentence_label`` with a ConfigError.

Fine-tuning contract (``bertkit eval glue | classify | ner`` use only this, for every architecture):

- ``Architecture.sequence_classification_class(config, num_labels)``: ``forward(input_ids, attention_mask=None,
  token_type_ids=None, labels=None)`` → :class:`SequenceClassificationOutput` with ``logits [B, num_labels]``
  (``num_labels == 1`` is regression with MSE). Architectures with narrow layers compute the sentence
  representation from the [CLS] query alone.
- ``Architecture.token_classification_class(config, num_labels)``: ``forward(input_ids, attention_mask=None,
  token_type_ids=None, positions=..., labels=None)`` → :class:`TokenClassificationOutput` with ``logits [N,
  num_labels]`` at ``positions`` ``[N]`` int64 (flat indices ``b * T + t`` into the ``B*T`` tokens, like
  ``mlm_positions``: the first sub-token of every labelled word); ``labels [N]`` (-100 = ignore). Models with
  narrow layers use these positions as their queries, so inference needs no labels.
- Both have ``load_pretrained_encoder(pretraining_model)``, copying the encoder weights of a pretraining model of
  the same architecture (a mismatch is a ConfigError), and a ``config`` attribute.

Note for data-parallel training: heads that a batch does not use (the pooler and NSP head of BERT when
``next_sentence_label`` is None) receive no gradient, so MLM-only runs need DDP's ``find_unused_parameters=True``
(or ``static_graph=True``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import torch

from bertkit.exceptions import ConfigError

__all__ = [
    "Architecture",
    "ModelConfig",
    "PretrainingOutput",
    "SequenceClassificationOutput",
    "TokenClassificationOutput",
    "add_nsp_loss",
    "check_num_labels",
    "check_transformer_shape",
    "config_from_dict",
    "config_to_dict",
    "mlm_output",
    "sequence_classification_loss",
    "token_classification_loss",
]

IGNORE_INDEX = -100


@dataclass
class PretrainingOutput:
    """The result of one pretraining forward pass (see the module docstring for the batch contract)."""

    loss: torch.Tensor
    """Scalar to backpropagate: ``mlm_loss`` (+ ``nsp_loss`` when NSP labels were given)."""
    mlm_loss: torch.Tensor
    """Mean cross-entropy over the masked rows whose label is not -100."""
    mlm_correct: torch.Tensor
    """0-dim int64: masked rows (label not -100) whose argmax prediction equals the label."""
    mlm_count: torch.Tensor
    """0-dim int64: masked rows whose label is not -100."""
    nsp_loss: torch.Tensor | None = None
    """Mean NSP cross-entropy; None when the model has no NSP head or no NSP labels were given."""
    nsp_correct: torch.Tensor | None = None
    """0-dim int64 NSP hits; None like ``nsp_loss``."""
    nsp_count: torch.Tensor | None = None
    """0-dim int64 number of NSP labels (not -100); None like ``nsp_loss``."""
    mlm_predictions: torch.Tensor | None = None
    """``[M]`` int64 argmax ids of every masked row (padding rows included), when asked for."""


@dataclass
class SequenceClassificationOutput:
    """The result of a sequence-classification forward pass."""

    loss: torch.Tensor | None
    """Cross-entropy (MSE when there is one label), or None without labels."""
    logits: torch.Tensor
    """``[B, num_labels]``."""


@dataclass
class TokenClassificationOutput:
    """The result of a token-classification forward pass (logits only at the requested positions)."""

    loss: torch.Tensor | None
    """Mean cross-entropy over the positions whose label is not -100, or None without labels."""
    logits: torch.Tensor
    """``[N, num_labels]``, one row per entry of ``positions``."""


# ------------------------------------------------------------------------------- shared by every architecture's heads


def mlm_output(
    rows: torch.Tensor,
    decoder_weight: torch.Tensor,
    decoder_bias: torch.Tensor | None,
    labels: torch.Tensor,
    *,
    label_smoothing: float = 0.0,
    return_predictions: bool = False,
) -> PretrainingOutput:
    """The MLM part of a :class:`PretrainingOutput` from the head-transformed masked rows ``[M, d]`` and the tied
    decoder, through ``bertkit.ops.masked_lm_loss`` (no ``[M, V]`` logits); counts stay on the device."""
    from bertkit.ops.masked_lm_loss import masked_lm_loss

    loss, predicted = masked_lm_loss(
        rows,
        decoder_weight,
        decoder_bias,
        labels,
        ignore_index=IGNORE_INDEX,
        label_smoothing=label_smoothing,
        return_predictions=True,
    )
    valid = labels != IGNORE_INDEX
    return PretrainingOutput(
        loss=loss,
        mlm_loss=loss,
        mlm_correct=((predicted == labels) & valid).sum(),
        mlm_count=valid.sum(),
        mlm_predictions=predicted if return_predictions else None,
    )


def add_nsp_loss(out: PretrainingOutput, logits: torch.Tensor, labels: torch.Tensor) -> PretrainingOutput:
    """Add the NSP cross-entropy of ``logits [B, 2]`` (fp32) against ``labels [B]`` (-100 = ignore) to ``out``."""
    logits = logits.float()
    valid = labels != IGNORE_INDEX
    out.nsp_loss = torch.nn.functional.cross_entropy(logits, labels, ignore_index=IGNORE_INDEX)
    out.nsp_correct = ((logits.argmax(-1) == labels) & valid).sum()
    out.nsp_count = valid.sum()
    out.loss = out.mlm_loss + out.nsp_loss
    return out


def check_transformer_shape(config: Any, positive: tuple[str, ...]) -> None:
    """ConfigError (naming the config class and field) unless every field in ``positive`` is a positive integer and
    ``hidden_size`` is a multiple of ``num_attention_heads``; the checks every encoder config starts with."""
    name = type(config).__name__
    for field in positive:
        value = getattr(config, field)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ConfigError(f"{name}.{field} must be a positive integer, got {value!r}")
    if config.hidden_size % config.num_attention_heads:
        raise ConfigError(
            f"{name}.hidden_size ({config.hidden_size}) must be a multiple of num_attention_heads "
            f"({config.num_attention_heads})"
        )


def check_num_labels(num_labels: int) -> None:
    """ConfigError unless ``num_labels`` is a positive integer (1 = regression)."""
    if isinstance(num_labels, bool) or not isinstance(num_labels, int) or num_labels < 1:
        raise ConfigError(f"num_labels must be a positive integer, got {num_labels!r}")


def sequence_classification_loss(
    logits: torch.Tensor, labels: torch.Tensor | None, num_labels: int
) -> torch.Tensor | None:
    """MSE for one label (regression), else cross-entropy (-100 = ignore), in fp32; None without labels."""
    if labels is None:
        return None
    if num_labels == 1:
        return torch.nn.functional.mse_loss(logits.float().squeeze(-1), labels.float())
    return torch.nn.functional.cross_entropy(logits.float(), labels, ignore_index=IGNORE_INDEX)


def token_classification_loss(logits: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor | None:
    """Cross-entropy over the rows whose label is not -100, in fp32; None without labels."""
    if labels is None:
        return None
    return torch.nn.functional.cross_entropy(logits.float(), labels, ignore_index=IGNORE_INDEX)


@dataclass(frozen=True)
class ModelConfig:
    """Base of the per-architecture config dataclasses (frozen; every field a plain JSON value).

    Every subclass has at least the fields ``vocab_size`` and ``max_position_embeddings`` and validates itself in
    ``__post_init__`` (raising ConfigError).
    """

    def to_dict(self) -> dict[str, Any]:
        return config_to_dict(self)

    @classmethod
    def from_dict(cls: type[_C], data: Mapping[str, Any]) -> _C:
        return config_from_dict(cls, data)

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]


_C = TypeVar("_C", bound=ModelConfig)


def config_to_dict(config: ModelConfig) -> dict[str, Any]:
    """The config as a JSON-ready dict (field order kept)."""
    return {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}


def config_from_dict(cls: type[_C], data: Mapping[str, Any]) -> _C:
    """Build ``cls`` from ``data``; an unknown key is a ConfigError that lists the valid keys."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{cls.__name__}: expected a mapping of options, got {type(data).__name__}")
    valid = cls.field_names()
    unknown = sorted(k for k in data if k not in valid)
    if unknown:
        raise ConfigError(f"{cls.__name__}: unknown option(s) {', '.join(unknown)}; valid options: {', '.join(valid)}")
    try:
        return cls(**dict(data))
    except TypeError as e:  # a missing required field
        raise ConfigError(f"{cls.__name__}: {e}") from None


@dataclass(frozen=True)
class Architecture:
    """A registry entry: everything the trainer, the CLI and evaluation need to know about one architecture."""

    name: str
    """Registry key and ``--arch`` value (lowercase)."""
    config_class: type[ModelConfig]
    pretraining_class: type[torch.nn.Module]
    """``cls(config)`` builds the pretraining model; its ``forward`` follows the batch contract above."""
    presets: Mapping[str, Mapping[str, Any]]
    """Preset name (``tiny``, ``small``, ``base``, ``large``) → config fields (the rest take their defaults)."""
    sequence_classification_class: type[torch.nn.Module] | None = None
    """``cls(config, num_labels)`` for fine-tuning, when the architecture has one (see the fine-tuning contract)."""
    token_classification_class: type[torch.nn.Module] | None = None
    """``cls(config, num_labels)`` for token classification (NER), when the architecture has one."""
    description: str = ""
    data_kind: str = "tokens"
    """What the trainer feeds it: ``tokens`` (a prepared dataset; the batch contract above) or ``embeddings`` (a
    chunk-embedding store of ``bertkit encode``; batches of chunk vectors, see ``bertkit.models.nextlevel``)."""
    exporter: str = ""
    """``module:function`` giving the files of ``bertkit export hf`` from a loaded run and its tokenizer directory
    (``bertkit.export.run.export_run``); empty = the architecture cannot be exported."""
    importer: str = ""
    """``module:function`` building the pretraining model from a model directory for ``init_from``
    (``function(path, arch_name, **config_overrides)``); empty = no ``init_from``."""

    def preset_names(self) -> list[str]:
        return list(self.presets)

    def make_config(self, preset: str, **overrides: Any) -> ModelConfig:
        """The preset's config with ``overrides`` applied; unknown presets / keys → ConfigError naming valid ones."""
        if preset not in self.presets:
            raise ConfigError(
                f"architecture {self.name!r} has no preset {preset!r}; valid presets: {', '.join(self.presets)}"
            )
        return self.config_class.from_dict({**self.presets[preset], **overrides})
