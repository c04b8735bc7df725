"""Hugging Face export (and import) of the architectures ``transformers`` does not ship: NarrowBERT, ELC-BERT (every
variant) and LTG-BERT.

The export directory holds ``config.json`` (with ``auto_map`` pointing at the modeling file), ``model.safetensors``,
the modeling file bertkit wrote (``modeling_narrowbert.py`` / ``modeling_ltgbert.py``: torch + transformers only)
and the tokenizer files, so ``AutoModel`` / ``AutoModelForMaskedLM`` / ``AutoModelForSequenceClassification`` /
``AutoModelForTokenClassification`` and ``pipeline("fill-mask")`` load it with ``trust_remote_code=True``. The
tensors keep bertkit's names, which are the authors' (see each modeling file), minus the decoder weight tied to the
word embedding. ``config.json`` also records bertkit's own model config under ``"bertkit"`` so that ``--init-from``
an export rebuilds the exact model; without it (a release of the authors) the config is read from the usual fields.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from bertkit.exceptions import ConfigError, FormatError

__all__ = ["REMOTE", "RemoteSpec", "init_from_export", "remote_files"]

log = logging.getLogger("bertkit.export")


@dataclass(frozen=True)
class RemoteSpec:
    """How one architecture is written for ``transformers``."""

    modeling_file: str
    """File name in the export (the source lives beside this module)."""
    model_type: str
    config_class: str
    classes: dict[str, str]
    """Auto class → model class in the modeling file."""
    tied: tuple[str, ...]
    """bertkit state-dict keys that alias another tensor (not written; re-tied on import)."""
    hf_fields: tuple[str, ...]
    """Config fields read from a ``config.json`` without bertkit's record (the authors' releases)."""
    ignored: tuple[str, ...] = ()
    """Key suffixes of the authors' checkpoints that bertkit recomputes (dropped on import)."""
    accepted_model_types: tuple[str, ...] = ()
    """``model_type`` values of a ``config.json`` without bertkit's record that this architecture can load."""


_LTG_FIELDS = (
    "vocab_size",
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "intermediate_size",
    "hidden_dropout_prob",
    "attention_probs_dropout_prob",
    "max_position_embeddings",
    "position_bucket_size",
    "layer_norm_eps",
    "classifier_dropout",
)
_LTG_CLASSES = ("Model", "ForMaskedLM", "ForSequenceClassification", "ForTokenClassification")
_AUTO = ("AutoModel", "AutoModelForMaskedLM", "AutoModelForSequenceClassification", "AutoModelForTokenClassification")


def _ltg(prefix: str, model_type: str) -> RemoteSpec:
    return RemoteSpec(
        modeling_file="modeling_ltgbert.py",
        model_type=model_type,
        config_class=f"{prefix}Config",
        classes={auto: f"{prefix}{cls}" for auto, cls in zip(_AUTO, _LTG_CLASSES, strict=True)},
        tied=("classifier.nonlinearity.5.weight",),
        hf_fields=_LTG_FIELDS + (("variant",) if prefix == "ElcBert" else ()),
        ignored=("position_indices",),
        accepted_model_types=("ltgbert", "elcbert"),  # the authors' ELC-BERT releases reuse LTG-BERT's code
    )


REMOTE: dict[str, RemoteSpec] = {
    "narrowbert": RemoteSpec(
        modeling_file="modeling_narrowbert.py",
        model_type="narrowbert",
        config_class="NarrowBertConfig",
        classes={
            "AutoModel": "NarrowBertModel",
            "AutoModelForMaskedLM": "NarrowBertForMaskedLM",
            "AutoModelForSequenceClassification": "NarrowBertForSequenceClassification",
            "AutoModelForTokenClassification": "NarrowBertForTokenClassification",
        },
        tied=("cls.predictions.decoder.weight", "cls.predictions.decoder.bias"),
        hf_fields=(
            "vocab_size",
            "hidden_size",
            "num_hidden_layers",
            "num_attention_heads",
            "intermediate_size",
            "hidden_act",
            "hidden_dropout_prob",
            "attention_probs_dropout_prob",
            "max_position_embeddings",
            "type_vocab_size",
            "layer_norm_eps",
            "initializer_range",
            "pad_token_id",
            "full_layers",
            "variant",
        ),
        accepted_model_types=("narrowbert",),
    ),
    "elc-bert": _ltg("ElcBert", "elcbert"),
    "ltg-bert": _ltg("LtgBert", "ltgbert"),
}


def _spec(arch: str) -> RemoteSpec:
    try:
        return REMOTE[arch]
    except KeyError:
        raise ConfigError(f"architecture {arch!r} has no transformers modeling file in bertkit") from None


def modeling_source(arch: str) -> bytes:
    """The text of the modeling file written for ``arch``."""
    return (Path(__file__).parent / _spec(arch).modeling_file).read_bytes()


def config_json(arch: str, model_config: Any) -> dict[str, Any]:
    """``config.json`` of the export of a ``model_config`` of ``arch``."""
    spec = _spec(arch)
    fields = model_config.to_dict()
    hf = {k: fields[k] for k in spec.hf_fields if k in fields}
    if arch == "ltg-bert":
        hf["variant"] = None
    module = spec.modeling_file.removesuffix(".py")
    return {
        "architectures": [spec.classes["AutoModelForMaskedLM"]],
        "model_type": spec.model_type,
        "auto_map": {"AutoConfig": f"{module}.{spec.config_class}"}
        | {auto: f"{module}.{cls}" for auto, cls in spec.classes.items()},
        **hf,
        "tie_word_embeddings": False,
        "dtype": "float32",
        "bertkit": {"arch": arch, "model_config": fields},
    }


def remote_files(loaded: Any, tokenizer_dir: Path | None) -> dict[str, Any]:
    """The files of the export of a loaded run (``bertkit.eval.mlm.LoadedRun``) of a remote-code architecture."""
    from safetensors.torch import save

    from bertkit.export.tokenizer import tokenizer_files

    spec = _spec(loaded.arch)
    config = config_json(loaded.arch, loaded.model_config)
    state = loaded.model.state_dict()
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in state.items() if k not in spec.tied}
    dtypes = {t.dtype for t in tensors.values()}
    if len(dtypes) == 1:
        config["dtype"] = str(next(iter(dtypes))).removeprefix("torch.")
    files: dict[str, Any] = {
        "config.json": _json_bytes(config),
        "model.safetensors": save(tensors, metadata={"format": "pt"}),
        spec.modeling_file: modeling_source(loaded.arch),
    }
    if tokenizer_dir is not None:
        files.update(
            tokenizer_files(
                tokenizer_dir,
                model_max_length=loaded.model_config.max_position_embeddings,
                vocab_size=loaded.model_config.vocab_size,
            )
        )
    return files


def _json_bytes(obj: Any) -> bytes:
    return (json.dumps(obj, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


# ------------------------------------------------------------------------------------------------------- import


def _read_config(path: Path) -> dict[str, Any]:
    from bertkit.export.hf import read_config_json

    return read_config_json(path, "model directory")


def _model_config(arch: str, path: Path, raw: dict[str, Any], overrides: dict[str, Any]) -> Any:
    from bertkit.models import get_architecture

    entry = get_architecture(arch)
    spec = _spec(arch)
    cfg_path = path / "config.json"
    record = raw.get("bertkit")
    if isinstance(record, dict):
        if record.get("arch") != arch:
            raise ConfigError(f"{cfg_path}: an export of a {record.get('arch')!r} model, but this run is {arch!r}")
        fields = dict(record.get("model_config") or {})
    else:
        if raw.get("model_type") not in spec.accepted_model_types:
            raise ConfigError(f"{cfg_path}: model_type {raw.get('model_type')!r} is not a {arch} model")
        fields = {k: raw[k] for k in spec.hf_fields if raw.get(k) is not None and k in entry.config_class.field_names()}
    try:
        return entry.config_class.from_dict({**fields, **overrides})
    except ConfigError as e:
        raise ConfigError(f"{cfg_path}: {e}") from None


def init_from_export(path: str | os.PathLike[str], arch: str, **overrides: Any) -> torch.nn.Module:
    """The pretraining model of ``arch`` holding the weights of the directory ``path``: a bertkit export of that
    architecture, or a Hugging Face release with the same parameter names (the authors' LTG-BERT / ELC-BERT models).

    ``overrides`` change config fields (dropout, an ELC variant the release's config.json does not state; a shape
    that differs from the weights is a FormatError). Tensors the model has no place for (``position_indices``
    buffers) are ignored; a missing tensor other than a tied alias is a FormatError naming the first ones."""
    from bertkit.export.hf import LoadReport, _read_weights
    from bertkit.models import get_architecture

    path = Path(path)
    if not path.is_dir():
        raise FormatError(f"{path}: model directory does not exist")
    spec = _spec(arch)
    config = _model_config(arch, path, _read_config(path), overrides)
    state = _read_weights(path)
    model = get_architecture(arch).pretraining_class(config)
    own = model.state_dict()
    report = LoadReport(path=path)
    usable: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if spec.ignored and key.endswith(spec.ignored):
            continue
        if key not in own:
            report.unexpected.append(key)
            continue
        if tuple(value.shape) != tuple(own[key].shape):
            raise FormatError(
                f"{path}: tensor {key} has shape {tuple(value.shape)} but the config implies {tuple(own[key].shape)}"
            )
        usable[key] = value
    report.missing = [k for k in own if k not in usable and k not in spec.tied]
    if report.missing:
        shown = ", ".join(report.missing[:5]) + (
            f" (+{len(report.missing) - 5} more)" if len(report.missing) > 5 else ""
        )
        raise FormatError(f"{path}: the checkpoint lacks tensor(s) {shown} of a {arch} model")
    with torch.no_grad():
        for key, value in usable.items():
            if key in spec.tied:
                continue
            own[key].copy_(value.to(own[key].dtype))
    if report.unexpected:
        log.warning("%s: checkpoint tensors ignored: %s", path, ", ".join(report.unexpected))
    model.load_report = report
    return model
