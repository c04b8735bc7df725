"""Hugging Face interop for ``bert``: export a directory ``transformers`` loads, and start from an HF checkpoint.

bertkit's ``BertForPreTraining`` keeps HF's parameter names, so export is a plain copy of the state dict (minus the
tied duplicates ``cls.predictions.decoder.{weight,bias}``, as ``save_pretrained`` writes it) plus ``config.json``
and the tokenizer files; ``transformers.BertForPreTraining`` / ``BertForMaskedLM`` / ``BertModel`` load the result.
Import accepts ``BertForPreTraining`` / ``BertForMaskedLM`` checkpoints and bare ``BertModel`` ones (keys without the
``bert.`` prefix, no heads: the heads keep their fresh init and are reported as missing). Neither direction needs
``transformers`` installed.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from bertkit.exceptions import ConfigError, FormatError
from bertkit.models.bert import ACTIVATIONS, BertConfig, BertForPreTraining

__all__ = ["LoadReport", "bert_files", "export_hf", "hf_config_dict", "hf_files", "init_from_hf", "load_hf_bert"]

log = logging.getLogger("bertkit.export")

# Keys save_pretrained leaves out because they are tied to other parameters.
TIED_KEYS = {
    "cls.predictions.decoder.weight": "bert.embeddings.word_embeddings.weight",
    "cls.predictions.decoder.bias": "cls.predictions.bias",
}
# Keys a checkpoint may lack: the heads (and the pooler, absent from BertForMaskedLM) keep their fresh init.
OPTIONAL_PREFIXES = ("cls.", "bert.pooler.")
# Old non-persistent buffers some checkpoints still carry: dropped silently.
IGNORED_KEYS = {"bert.embeddings.position_ids", "bert.embeddings.token_type_ids"}


def hf_config_dict(config: BertConfig) -> dict[str, Any]:
    """``config.json`` contents for a transformers ``BertConfig`` describing ``config``."""
    from bertkit.models.bert import MODEL_OPTIONS

    if not getattr(config, "is_hf_bert", True):
        raise ConfigError(
            "this BERT uses non-BERT model options (pre-LN, sinusoidal positions, no embedding LayerNorm or segment "
            "embedding, or the ln-linear MLM head: the nanoBERT/medium model), which transformers' BertForPreTraining "
            "cannot express; it cannot be exported as a Hugging Face BERT"
        )
    fields = {k: v for k, v in config.to_dict().items() if k not in MODEL_OPTIONS and k != "embedding_layer_norm"}
    return {
        "architectures": ["BertForPreTraining"],
        "model_type": "bert",
        **fields,
        "position_embedding_type": "absolute",
        "tie_word_embeddings": True,
        "is_decoder": False,
        "add_cross_attention": False,
        "classifier_dropout": None,
        "use_cache": True,
        "dtype": "float32",
    }


def _json_bytes(obj: Any) -> bytes:
    return (json.dumps(obj, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def hf_files(
    model: BertForPreTraining, tokenizer_dir: str | os.PathLike[str] | None, *, do_lower_case: bool | None = None
) -> dict[str, bytes]:
    """The files of the Hugging Face BERT directory of ``model``: ``config.json``, ``model.safetensors`` and, with a
    ``tokenizer_dir``, the tokenizer files of ``bertkit.export.tokenizer.tokenizer_files`` (``do_lower_case``
    overrides the recorded lower-casing)."""
    from safetensors.torch import save

    from bertkit.export.tokenizer import tokenizer_files

    if not isinstance(model, BertForPreTraining):
        raise ConfigError(f"export_hf exports a bertkit BertForPreTraining, got {type(model).__name__}")
    config = model.config
    files: dict[str, bytes] = {}
    if tokenizer_dir is not None:
        files = tokenizer_files(
            Path(tokenizer_dir),
            model_max_length=config.max_position_embeddings,
            vocab_size=config.vocab_size,
            lowercase=do_lower_case,
        )
    state = model.state_dict()
    dtypes = {t.dtype for t in state.values()}
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in state.items() if k not in TIED_KEYS}
    cfg = hf_config_dict(config)
    if len(dtypes) == 1:
        cfg["dtype"] = str(next(iter(dtypes))).removeprefix("torch.")
    files["config.json"] = _json_bytes(cfg)
    files["model.safetensors"] = save(tensors, metadata={"format": "pt"})
    return files


def bert_files(loaded: Any, tokenizer_dir: Path | None) -> dict[str, bytes]:
    """``Architecture.exporter`` of ``bert``: :func:`hf_files` of a loaded run, plus the sentence-transformers modules
    (``modules.json``, pooling) of the model it was initialised from, when that was a sentence-transformers one."""
    files = hf_files(loaded.model, tokenizer_dir)
    init_from = getattr(loaded.config, "init_from", None)
    if init_from and (Path(init_from) / "modules.json").is_file():
        from bertkit.export.sentence_transformers import sentence_transformers_files

        files.update(sentence_transformers_files(init_from))
    return files


def export_hf(
    model: BertForPreTraining,
    config: BertConfig | None,
    out_dir: str | os.PathLike[str],
    tokenizer_dir: str | os.PathLike[str] | None = None,
    *,
    overwrite: bool = False,
    do_lower_case: bool | None = None,
) -> Path:
    """Write ``model`` as a Hugging Face BERT directory: ``config.json``, ``model.safetensors`` and, when
    ``tokenizer_dir`` (a directory with ``vocab.txt`` and/or ``tokenizer.json``) is given, ``tokenizer.json``,
    ``vocab.txt``, ``tokenizer_config.json`` and ``special_tokens_map.json`` that ``AutoTokenizer`` turns into
    bertkit's tokenizer.

    Published with ``bertkit.export.output.publish``: under the directory's lock, written aside and renamed in last,
    with ``bertkit_export.json`` listing what bertkit wrote. An existing non-empty ``out_dir`` is an
    ExportExistsError unless ``overwrite``, and ``overwrite`` only replaces a previous bertkit export. Returns
    ``out_dir``."""
    from bertkit.export.output import check_out_dir, publish

    if not isinstance(model, BertForPreTraining):
        raise ConfigError(f"export_hf exports a bertkit BertForPreTraining, got {type(model).__name__}")
    if config is not None and config != model.config:
        raise ConfigError("export_hf: config differs from the model's own config")
    check_out_dir(out_dir, overwrite)
    files = hf_files(model, tokenizer_dir, do_lower_case=do_lower_case)
    return publish(out_dir, files, overwrite=overwrite, info={"arch": "bert"})


@dataclass
class LoadReport:
    """What loading an HF checkpoint did besides copying matching tensors."""

    path: Path
    missing: list[str] = field(default_factory=list)
    """Model keys the checkpoint lacked (kept at their fresh init): heads / pooler only."""
    unexpected: list[str] = field(default_factory=list)
    """Checkpoint keys the model has no place for (ignored)."""


def read_config_json(path: Path, what: str = "checkpoint directory") -> dict[str, Any]:
    """The JSON object of ``path/config.json`` (a Hugging Face directory's config), or a FormatError naming it."""
    cfg_path = path / "config.json"
    if not cfg_path.is_file():
        raise FormatError(f"{cfg_path}: no config.json in the {what}")
    try:
        raw = json.loads(cfg_path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError):
        raise FormatError(f"{cfg_path}: not valid JSON") from None
    if not isinstance(raw, dict):
        raise FormatError(f"{cfg_path}: not a JSON object")
    return raw


def _read_hf_config(path: Path) -> BertConfig:
    cfg_path = path / "config.json"
    raw = read_config_json(path)
    model_type = raw.get("model_type")
    if model_type != "bert":
        raise FormatError(f"{cfg_path}: model_type is {model_type!r}, not 'bert'")
    position_type = raw.get("position_embedding_type", "absolute")
    if position_type != "absolute":
        raise FormatError(f"{cfg_path}: position_embedding_type {position_type!r} is not supported (only 'absolute')")
    if raw.get("hidden_act", "gelu") not in ACTIVATIONS:
        raise FormatError(f"{cfg_path}: hidden_act {raw.get('hidden_act')!r} is not supported")
    fields = {k: raw[k] for k in BertConfig.field_names() if k in raw and raw[k] is not None}
    try:
        return BertConfig.from_dict(fields)
    except ConfigError as e:
        raise FormatError(f"{cfg_path}: {e}") from None


def _read_weights(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    single = path / "model.safetensors"
    index = path / "model.safetensors.index.json"
    legacy = path / "pytorch_model.bin"
    try:
        if single.is_file():
            return load_file(str(single))
        if index.is_file():
            weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
            state: dict[str, torch.Tensor] = {}
            for shard in sorted(set(weight_map.values())):
                state.update(load_file(str(path / shard)))
            return state
        if legacy.is_file():
            state = torch.load(legacy, map_location="cpu", weights_only=True)
            if not isinstance(state, dict):
                raise FormatError(f"{legacy}: not a state dict")
            return state
    except SafetensorError as e:
        raise FormatError(f"{path}: unreadable safetensors file ({e})") from None
    except FormatError:
        raise
    except Exception as e:  # torch.load / json raise many types (UnpicklingError, RuntimeError, KeyError, ...)
        raise FormatError(f"{path}: unreadable weights ({type(e).__name__}: {e})") from None
    raise FormatError(f"{path}: no weights file (model.safetensors, model.safetensors.index.json or pytorch_model.bin)")


def _normalise_keys(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """HF key variants → bertkit's: ``bert.`` prefix for bare BertModel checkpoints, LayerNorm gamma/beta."""
    bare = not any(k.startswith(("bert.", "cls.")) for k in state)
    out = {}
    for key, value in state.items():
        if bare:
            key = "bert." + key
        key = key.replace("LayerNorm.gamma", "LayerNorm.weight").replace("LayerNorm.beta", "LayerNorm.bias")
        out[key] = value
    if "cls.predictions.bias" not in out and "cls.predictions.decoder.bias" in out:
        out["cls.predictions.bias"] = out["cls.predictions.decoder.bias"]
    for key in TIED_KEYS:  # tied in the model: the embedding / cls.predictions.bias are the sources
        out.pop(key, None)
    return out


def load_hf_bert(path: str | os.PathLike[str]) -> tuple[BertConfig, dict[str, torch.Tensor]]:
    """Read an HF BERT checkpoint directory: its config as a ``BertConfig`` and its tensors with bertkit's keys
    (``bert.`` prefix added to bare ``BertModel`` checkpoints, tied decoder keys dropped)."""
    path = Path(path)
    if not path.is_dir():
        raise FormatError(f"{path}: checkpoint directory does not exist")
    config = _read_hf_config(path)
    return config, _normalise_keys(_read_weights(path))


def init_from_hf(path: str | os.PathLike[str], **overrides: Any) -> BertForPreTraining:
    """A ``BertForPreTraining`` holding the weights of the HF checkpoint at ``path``.

    ``overrides`` change non-shape config fields (e.g. ``hidden_dropout_prob=0.0``). Heads (and the pooler) missing
    from the checkpoint keep their fresh init; checkpoint keys without a place are ignored. Both lists are logged and
    kept in ``model.load_report`` (a ``LoadReport``). A missing encoder tensor or a shape mismatch is a FormatError.
    """
    path = Path(path)
    config, state = load_hf_bert(path)
    if overrides:
        try:
            config = config.replace(**overrides)
        except ConfigError as e:
            raise ConfigError(f"{path}: {e}") from None
    model = BertForPreTraining(config)
    own = {k: v for k, v in model.state_dict().items() if k not in TIED_KEYS}
    report = LoadReport(path=path)
    for key, value in state.items():
        if key in IGNORED_KEYS:
            continue
        if key not in own:
            report.unexpected.append(key)
            continue
        if tuple(value.shape) != tuple(own[key].shape):
            raise FormatError(
                f"{path}: tensor {key} has shape {tuple(value.shape)} but config.json implies {tuple(own[key].shape)}"
            )
    report.missing = [k for k in own if k not in state]
    required = [k for k in report.missing if not k.startswith(OPTIONAL_PREFIXES)]
    if required:
        shown = ", ".join(required[:5]) + (f" (+{len(required) - 5} more)" if len(required) > 5 else "")
        raise FormatError(f"{path}: checkpoint lacks encoder tensor(s) {shown}")
    with torch.no_grad():
        for key, param in own.items():
            if key in state:
                param.copy_(state[key].to(param.dtype))
    if report.missing:
        log.warning("%s: not in the checkpoint, freshly initialised: %s", path, ", ".join(report.missing))
    if report.unexpected:
        log.warning("%s: checkpoint tensors ignored: %s", path, ", ".join(report.unexpected))
    model.load_report = report
    return model


def init_from_hf_arch(path: str | os.PathLike[str], arch: str, **overrides: Any) -> BertForPreTraining:
    """``Architecture.importer`` of ``bert``: :func:`init_from_hf`."""
    return init_from_hf(path, **overrides)
