"""sentence-transformers directories: a NextLevel run as one document encoder, and the modules of a
sentence-transformers model a ``bert`` run was initialised from.

A NextLevel export (``bertkit export hf RUN OUT`` of a ``nextlevel`` run) is a sentence-transformers directory with
one custom module (``modeling_nextlevel.NextLevelDocuments``, so load it with ``trust_remote_code=True``) that holds
the chunk encoder the run was trained on (``chunk_encoder/``: the sentence-transformers model copied as it is, its
``modules.json`` and pooling included), the chunk tokenizer (``chunk_tokenizer.json``, checked id for id against
bertkit's) and the NextLevel weights (``nextlevel.safetensors``, ``nextlevel_config.json``).
``SentenceTransformer(OUT, trust_remote_code=True).encode(docs)`` then gives the vectors of
``bertkit.NextLevelBERT.from_pretrained(run).encode(docs)``.

A ``bert`` run started from a sentence-transformers model (``--init-from all-MiniLM-L6-v2``) keeps that model's
``modules.json``, ``sentence_bert_config.json`` and pooling / normalisation modules on export, so
sentence-transformers pools it as the original (not with its default pooling).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bertkit.exceptions import ConfigError, FormatError

__all__ = ["nextlevel_files", "sentence_transformers_files"]

MODULE_FILE = "modeling_nextlevel.py"
ST_CONFIG = {
    "__version__": {"bertkit": "0.1.0"},
    "prompts": {},
    "default_prompt_name": None,
    "similarity_fn_name": "cosine",
}


def _json_bytes(obj: Any) -> bytes:
    return (json.dumps(obj, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def _tree(root: Path, prefix: str = "") -> dict[str, bytes]:
    """Every regular file under ``root`` (hidden entries skipped) as ``prefix + relative path`` → bytes."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root)
        if any(part.startswith(".") for part in rel.parts) or not p.is_file():
            continue
        out[prefix + rel.as_posix()] = p.read_bytes()
    return out


def _modules(root: Path) -> list[dict[str, Any]]:
    path = root / "modules.json"
    try:
        modules = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise FormatError(f"{path}: unreadable modules.json ({e})") from None
    if not isinstance(modules, list) or not all(isinstance(m, dict) for m in modules):
        raise FormatError(f"{path}: expected a list of module records")
    return modules


def sentence_transformers_files(st_dir: str | Path) -> dict[str, bytes]:
    """The sentence-transformers files of ``st_dir`` beside a Hugging Face BERT export: ``modules.json`` (its
    Transformer module pointed at the export itself), ``sentence_bert_config.json``,
    ``config_sentence_transformers.json`` and the files of every other module (pooling, normalisation, dense)."""
    root = Path(st_dir)
    modules = _modules(root)
    kinds = [str(m.get("type", "")).rsplit(".", 1)[-1] for m in modules]
    if not kinds or kinds[0] != "Transformer":
        raise FormatError(f"{root / 'modules.json'}: the first module is {kinds[:1]}, not a Transformer")
    transformer = root / str(modules[0].get("path", ""))
    files: dict[str, bytes] = {}
    records = []
    for module in modules:
        record = dict(module)
        sub = str(module.get("path", ""))
        if module is modules[0]:
            record["path"] = ""
        elif sub and (root / sub).is_dir():
            files.update(_tree(root / sub, sub.rstrip("/") + "/"))
        records.append(record)
    files["modules.json"] = _json_bytes(records)
    for name in ("sentence_bert_config.json",):
        if (transformer / name).is_file():
            files[name] = (transformer / name).read_bytes()
    if (root / "config_sentence_transformers.json").is_file():
        files["config_sentence_transformers.json"] = (root / "config_sentence_transformers.json").read_bytes()
    return files


def nextlevel_files(loaded: Any, tokenizer_dir: Path | None) -> dict[str, bytes]:
    """``Architecture.exporter`` of ``nextlevel``: the sentence-transformers directory of a loaded run (see the module
    docstring). The run's encoder must still be where it was (or resolvable by name) with the same weights."""
    from safetensors.torch import save

    from bertkit.encode.encoder import _layout, _tokenizer_file, load_encoder
    from bertkit.export.tokenizer import tokenizer_json

    config = loaded.model_config
    if not config.encoder:
        raise ConfigError(f"{loaded.checkpoint}: the run does not record its chunk encoder")
    encoder = load_encoder(config.encoder, device="cpu", precision="fp32")
    if config.encoder_checksum and encoder.checksum != config.encoder_checksum:
        raise ConfigError(
            f"encoder {config.encoder!r} ({encoder.root}) has other weights (xxh3 {encoder.checksum}) than the run's "
            f"chunk encoder (xxh3 {config.encoder_checksum}); the export needs the encoder the run was trained on"
        )
    layout = _layout(encoder.root)
    if not layout.sentence_transformers:
        raise ConfigError(
            f"{encoder.root}: the chunk encoder is a plain transformers directory, not a sentence-transformers one "
            "(modules.json with its pooling): the export could not say how chunks are pooled"
        )
    tok_path, lower = _tokenizer_file(layout.transformer_dir)
    state = {
        k: v.detach().cpu().contiguous() for k, v in loaded.model.state_dict().items() if not k.startswith("head.")
    }
    fields = config.to_dict()
    fields["embedding_dim"] = config.input_dim if config.input_dim != config.hidden_size else 0
    fields["chunk_max_seq_length"] = encoder.max_seq_length
    fields["splitter"] = "rules"
    files = _tree(encoder.root, "chunk_encoder/")
    files.update(
        {
            "modules.json": _json_bytes(
                [{"idx": 0, "name": "0", "path": "", "type": "modeling_nextlevel.NextLevelDocuments"}]
            ),
            "config_sentence_transformers.json": _json_bytes(ST_CONFIG),
            MODULE_FILE: (Path(__file__).parent / MODULE_FILE).read_bytes(),
            "nextlevel_config.json": _json_bytes(fields),
            "nextlevel.safetensors": save(state, metadata={"format": "pt"}),
            "chunk_tokenizer.json": tokenizer_json(tok_path, lower),
        }
    )
    return files
