"""Model architectures and their registry.

``ARCHITECTURES`` maps the ``--arch`` name to an :class:`~bertkit.models.base.Architecture` (config class,
pretraining model class, presets, optional sequence-classification class). Architectures are listed here explicitly,
not registered by decorators. ``build_model("bert", "tiny", vocab_size=8000)`` builds a pretraining model.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from bertkit.exceptions import ConfigError
from bertkit.models import bert, elcbert, narrowbert, nextlevel
from bertkit.models.base import (
    Architecture,
    ModelConfig,
    PretrainingOutput,
    SequenceClassificationOutput,
    TokenClassificationOutput,
)

__all__ = [
    "ARCHITECTURES",
    "Architecture",
    "ModelConfig",
    "PretrainingOutput",
    "SequenceClassificationOutput",
    "TokenClassificationOutput",
    "build_config",
    "build_model",
    "get_architecture",
]

ARCHITECTURES: dict[str, Architecture] = {
    "bert": Architecture(
        name="bert",
        config_class=bert.BertConfig,
        pretraining_class=bert.BertForPreTraining,
        presets=bert.PRESETS,
        sequence_classification_class=bert.BertForSequenceClassification,
        token_classification_class=bert.BertForTokenClassification,
        description="BERT (post-LN, MLM + NSP heads); parameter names of Hugging Face's BertForPreTraining",
        exporter="bertkit.export.hf:bert_files",
        importer="bertkit.export.hf:init_from_hf_arch",
    ),
    "narrowbert": Architecture(
        name="narrowbert",
        config_class=narrowbert.NarrowBertConfig,
        pretraining_class=narrowbert.NarrowBertForPreTraining,
        presets=narrowbert.PRESETS,
        sequence_classification_class=narrowbert.NarrowBertForSequenceClassification,
        token_classification_class=narrowbert.NarrowBertForTokenClassification,
        description="NarrowBERT: full layers, then narrow layers that compute only the query rows (masked / [CLS])",
        exporter="bertkit.export.remote:remote_files",
        importer="bertkit.export.remote:init_from_export",
    ),
    "elc-bert": Architecture(
        name="elc-bert",
        config_class=elcbert.ElcBertConfig,
        pretraining_class=elcbert.ElcBertForPreTraining,
        presets=elcbert.PRESETS,
        sequence_classification_class=elcbert.ElcBertForSequenceClassification,
        token_classification_class=elcbert.ElcBertForTokenClassification,
        description="ELC-BERT: LTG-BERT whose layers mix all earlier outputs (variant base | zero | normalized | "
        "weighted_output); MLM only",
        exporter="bertkit.export.remote:remote_files",
        importer="bertkit.export.remote:init_from_export",
    ),
    "ltg-bert": Architecture(
        name="ltg-bert",
        config_class=elcbert.LtgBertConfig,
        pretraining_class=elcbert.LtgBertForPreTraining,
        presets=elcbert.PRESETS,
        sequence_classification_class=elcbert.LtgBertForSequenceClassification,
        token_classification_class=elcbert.LtgBertForTokenClassification,
        description="LTG-BERT: relative-position disentangled attention, GEGLU, NormFormer-style LNs; MLM only",
        exporter="bertkit.export.remote:remote_files",
        importer="bertkit.export.remote:init_from_export",
    ),
    "nextlevel": Architecture(
        name="nextlevel",
        config_class=nextlevel.NextLevelConfig,
        pretraining_class=nextlevel.NextLevelForPreTraining,
        presets=nextlevel.PRESETS,
        description="NextLevelBERT: masked-chunk prediction over sentence-transformers chunk embeddings",
        exporter="bertkit.export.sentence_transformers:nextlevel_files",
        data_kind="embeddings",
    ),
}


def get_architecture(name: str | Architecture) -> Architecture:
    """The registry entry for ``name``; an unknown name is a ConfigError listing the valid ones."""
    if isinstance(name, Architecture):
        return name
    try:
        return ARCHITECTURES[name]
    except (KeyError, TypeError):
        raise ConfigError(f"unknown architecture {name!r}; valid architectures: {', '.join(ARCHITECTURES)}") from None


def build_config(arch: str | Architecture, preset: str, **overrides: Any) -> ModelConfig:
    """The config of ``arch``'s ``preset`` with ``overrides`` (unknown preset / key → ConfigError naming valid ones)."""
    return get_architecture(arch).make_config(preset, **overrides)


def build_model(arch: str | Architecture, preset: str, **overrides: Any) -> nn.Module:
    """A freshly initialised pretraining model of ``arch``'s ``preset`` with config ``overrides`` applied."""
    architecture = get_architecture(arch)
    return architecture.pretraining_class(architecture.make_config(preset, **overrides))
