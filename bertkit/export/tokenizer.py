"""Tokenizer files for an export that ``transformers.AutoTokenizer`` turns back into bertkit's tokenizer, id for id.

bertkit tokenizes with its own Rust WordPiece (``bertkit._core.WordPieceTokenizer``), which implements the two
pipelines bertkit reads or trains (see ``bertkit.tokenizers``):

- ``bert``: BertNormalizer (lower-casing and accent stripping as recorded) + BertPreTokenizer + WordPiece (``##``),
  what a ``vocab.txt`` means. Exported as a fresh ``tokenizer.json`` with exactly those settings, plus ``vocab.txt``
  and a ``BertTokenizer`` ``tokenizer_config.json`` (``do_lower_case`` as recorded).
- ``byte_level`` (ELC-BERT's tokenizer, ltgoslo/elc-bert ``tokenizers/create_tokenizer.py``): no normalizer,
  ByteLevel + individual digits, WordPiece without a continuation prefix. Exported as its own ``tokenizer.json``
  with a ``PreTrainedTokenizerFast`` config: a ``BertTokenizer`` config would rebuild a BERT pipeline around the
  vocabulary and tokenize differently.

Both add ``[CLS] … [SEP]`` (pairs ``[CLS] A [SEP] B [SEP]``, segment ids 0 / 1) as bertkit's sequences have them, pad
with ``[PAD]`` and carry ``model_max_length`` = the model's position count. Padding or truncation baked into a source
``tokenizer.json`` is dropped. Before anything is written, the built tokenizer is run against bertkit's on probe
texts; a tokenizer that ``transformers`` cannot reproduce is a FormatError naming the file and the first text where
the two differ.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bertkit.exceptions import FormatError

__all__ = ["PROBES", "describe_tokenizer", "tokenizer_files", "tokenizer_json"]

SPECIALS = {
    "unk_token": "[UNK]",
    "sep_token": "[SEP]",
    "pad_token": "[PAD]",
    "cls_token": "[CLS]",
    "mask_token": "[MASK]",
}
# Texts the exported tokenizer must tokenize as bertkit does before it is written (scripts, accents, digits,
# punctuation, control characters, special tokens inside text, long words, whitespace runs).
PROBES = (
    "Hello world, 2024!",
    "The quick brown fox jumps over the lazy dog.",
    "  Leading and trailing spaces  ",
    "Tabs\tand\nnewlines\r\nand\u00a0no-break spaces",
    "Café naïve résumé façade Ærøskøbing Straße",
    "ÀÉÎÕÜ àéîõü Ççñ",
    "日本語のテキストと中文和한국어",
    "Ελληνικά и русский текст",
    "emoji 😀🎉 and symbols ©®™ ½ ∑ → ≠",
    "numbers 3.14159 1,000,000 -42 1e-5 0x1F",
    "don't won't it's O'Neil's rock'n'roll",
    "e-mail: someone@example.com, https://example.org/a?b=c&d=e",
    "[CLS] a [MASK] in the middle [SEP] and [PAD] [UNK]",
    "x[MASK]y [mask] [ MASK ]",
    "supercalifragilisticexpialidocious" * 4,
    "a" * 120,
    "control\u0000chars\u0007and\u200bzero\u200dwidth\ufeff",
    "",
)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise FormatError(f"{path}: unreadable JSON ({e})") from None
    if not isinstance(data, dict):
        raise FormatError(f"{path}: not a JSON object")
    return data


def _recorded_lowercase(tokenizer_dir: Path) -> bool | None:
    """Lower-casing recorded beside the files: the dataset manifest's tokenizer entry (prepare's effective setting)
    or an HF ``tokenizer_config.json``'s ``do_lower_case``."""
    manifest = tokenizer_dir.parent / "manifest.json"
    if tokenizer_dir.name == "tokenizer" and manifest.is_file():
        info = _read_json(manifest).get("tokenizer")
        if isinstance(info, dict) and isinstance(info.get("lowercase"), bool):
            return info["lowercase"]
    config = tokenizer_dir / "tokenizer_config.json"
    if config.is_file():
        value = _read_json(config).get("do_lower_case")
        if isinstance(value, bool):
            return value
    return None


def _source(tokenizer_dir: Path) -> Path:
    if not tokenizer_dir.is_dir():
        raise FormatError(f"{tokenizer_dir}: tokenizer directory does not exist")
    for name in ("tokenizer.json", "vocab.txt"):
        if (tokenizer_dir / name).is_file():
            return tokenizer_dir / name
    raise FormatError(f"{tokenizer_dir}: no tokenizer.json or vocab.txt in the tokenizer directory")


def describe_tokenizer(tokenizer_dir: str | Path, lowercase: bool | None = None) -> tuple[Any, Path]:
    """bertkit's tokenizer for the files in ``tokenizer_dir`` (``tokenizer.json`` first, else ``vocab.txt``) with the
    recorded lower-casing (``lowercase`` overrides it), and the file it was read from."""
    from bertkit._core import WordPieceTokenizer

    tokenizer_dir = Path(tokenizer_dir)
    source = _source(tokenizer_dir)
    if lowercase is None:
        lowercase = _recorded_lowercase(tokenizer_dir)
    try:
        return WordPieceTokenizer(source, lowercase=lowercase), source
    except (OSError, ValueError) as e:
        raise FormatError(str(e) if str(source) in str(e) else f"{source}: {e}") from None


def _vocab(tokenizer: Any, source: Path) -> dict[str, int]:
    vocab: dict[str, int] = {}
    for i in range(tokenizer.vocab_size):
        token = tokenizer.id_to_token(i)
        if token is None or token in vocab:
            raise FormatError(
                f"{source}: token {token!r} appears at ids {vocab.get(token)} and {i}; a transformers tokenizer "
                "maps each token to one id, so this vocabulary cannot be expressed for transformers"
            )
        vocab[token] = i
    return vocab


def _template(cls_id: int, sep_id: int) -> dict[str, Any]:
    return {
        "type": "TemplateProcessing",
        "single": [
            {"SpecialToken": {"id": "[CLS]", "type_id": 0}},
            {"Sequence": {"id": "A", "type_id": 0}},
            {"SpecialToken": {"id": "[SEP]", "type_id": 0}},
        ],
        "pair": [
            {"SpecialToken": {"id": "[CLS]", "type_id": 0}},
            {"Sequence": {"id": "A", "type_id": 0}},
            {"SpecialToken": {"id": "[SEP]", "type_id": 0}},
            {"Sequence": {"id": "B", "type_id": 1}},
            {"SpecialToken": {"id": "[SEP]", "type_id": 1}},
        ],
        "special_tokens": {
            "[CLS]": {"id": "[CLS]", "ids": [cls_id], "tokens": ["[CLS]"]},
            "[SEP]": {"id": "[SEP]", "ids": [sep_id], "tokens": ["[SEP]"]},
        },
    }


def _added_token(content: str, token_id: int) -> dict[str, Any]:
    return {
        "id": token_id,
        "content": content,
        "single_word": False,
        "lstrip": False,
        "rstrip": False,
        "normalized": False,
        "special": True,
    }


def _spec(tokenizer: Any, source: Path, info: dict[str, Any]) -> dict[str, Any]:
    """The tokenizer.json of bertkit's tokenizer (see the module docstring)."""
    specials = info["special_ids"]
    original = _read_json(source) if source.suffix == ".json" else None
    if info["pipeline"] == "byte_level":
        assert original is not None  # only a tokenizer.json can describe a byte-level pipeline
        spec = dict(original)
        byte_level = {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True}
        spec["post_processor"] = {
            "type": "Sequence",
            "processors": [byte_level, _template(specials["cls"], specials["sep"])],
        }
    else:
        normalizer = {
            "type": "BertNormalizer",
            "clean_text": True,
            "handle_chinese_chars": True,
            "strip_accents": info["strip_accents"],
            "lowercase": info["lowercase"],
        }
        if original is not None and isinstance(original.get("normalizer"), dict):
            for key in ("clean_text", "handle_chinese_chars"):
                if isinstance(original["normalizer"].get(key), bool):
                    normalizer[key] = original["normalizer"][key]
        prefix = info["continuing_subword_prefix"]
        spec = {
            "version": "1.0",
            "added_tokens": original.get("added_tokens", [])
            if original is not None
            else [_added_token(t, i) for t, i in sorted(info["special_tokens"].items(), key=lambda kv: kv[1])],
            "normalizer": normalizer,
            "pre_tokenizer": {"type": "BertPreTokenizer"},
            "post_processor": _template(specials["cls"], specials["sep"]),
            "decoder": {"type": "WordPiece", "prefix": prefix, "cleanup": True},
            "model": {
                "type": "WordPiece",
                "unk_token": "[UNK]",
                "continuing_subword_prefix": prefix,
                "max_input_chars_per_word": info["max_input_chars_per_word"],
                "vocab": _vocab(tokenizer, source),
            },
        }
    spec["truncation"] = None
    spec["padding"] = None
    return spec


def _check_round_trip(spec: dict[str, Any], tokenizer: Any, source: Path, texts: tuple[str, ...]) -> None:
    from tokenizers import AddedToken, Tokenizer

    try:
        built = Tokenizer.from_str(json.dumps(spec))
    except Exception as e:  # tokenizers raises bare Exceptions for specs it cannot build
        raise FormatError(f"{source}: cannot be expressed as a transformers tokenizer ({e})") from None
    # transformers adds the special tokens of tokenizer_config.json to the tokenizer when it loads it
    built.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIALS.values()])
    for text in texts:
        ours = list(tokenizer.encode(text))
        theirs = built.encode(text, add_special_tokens=False).ids
        if ours != theirs:
            at = next(
                (i for i, (a, b) in enumerate(zip(ours, theirs, strict=False)) if a != b), min(len(ours), len(theirs))
            )
            raise FormatError(
                f"{source}: cannot be expressed as a transformers tokenizer: on {text[:60]!r} bertkit gives "
                f"{ours[at : at + 5]} at token {at}, the exported tokenizer {theirs[at : at + 5]}"
            )


def tokenizer_files(
    tokenizer_dir: str | Path,
    *,
    model_max_length: int | None,
    vocab_size: int | None = None,
    lowercase: bool | None = None,
) -> dict[str, bytes]:
    """``tokenizer.json``, ``tokenizer_config.json``, ``special_tokens_map.json`` and ``vocab.txt`` of the tokenizer
    in ``tokenizer_dir`` (a dataset's ``tokenizer/`` directory, a ``bertkit tokenizer train`` output or an HF model
    directory). ``vocab_size``: the model's embedding rows (more tokens than that is a FormatError)."""
    tokenizer, source = describe_tokenizer(tokenizer_dir, lowercase)
    info = tokenizer.info()
    if vocab_size is not None and tokenizer.vocab_size > vocab_size:
        raise FormatError(f"{source}: {tokenizer.vocab_size} tokens but the model has vocab_size {vocab_size}")
    missing = [t for t in SPECIALS.values() if tokenizer.token_to_id(t) is None]
    if missing:
        raise FormatError(f"{source}: vocabulary lacks the special token(s) {', '.join(missing)}")
    spec = _spec(tokenizer, source, info)
    _check_round_trip(spec, tokenizer, source, PROBES)
    bert_style = info["pipeline"] == "bert"
    config: dict[str, Any] = {
        "tokenizer_class": "BertTokenizer" if bert_style else "PreTrainedTokenizerFast",
        **({"do_lower_case": info["lowercase"], "strip_accents": info["strip_accents"]} if bert_style else {}),
        **({"model_max_length": model_max_length} if model_max_length is not None else {}),
        "clean_up_tokenization_spaces": False,
        "model_input_names": ["input_ids", "token_type_ids", "attention_mask"],
        **SPECIALS,
    }
    vocab = "".join(tokenizer.id_to_token(i) + "\n" for i in range(tokenizer.vocab_size))
    return {
        "tokenizer.json": _json_bytes(spec),
        "tokenizer_config.json": _json_bytes(config),
        "special_tokens_map.json": _json_bytes(SPECIALS),
        "vocab.txt": vocab.encode("utf-8"),
    }


def _json_bytes(obj: Any) -> bytes:
    return (json.dumps(obj, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def tokenizer_json(source: str | Path, lowercase: bool | None = None) -> bytes:
    """The ``tokenizer.json`` (no special tokens added, no padding or truncation) of bertkit's tokenizer read from the
    file ``source`` with ``lowercase`` as ``bertkit._core.WordPieceTokenizer`` takes it; checked like
    :func:`tokenizer_files`."""
    from bertkit._core import WordPieceTokenizer

    source = Path(source)
    try:
        tokenizer = WordPieceTokenizer(source, lowercase=lowercase)
    except (OSError, ValueError) as e:
        raise FormatError(str(e) if str(source) in str(e) else f"{source}: {e}") from None
    spec = _spec(tokenizer, source, tokenizer.info())
    _check_round_trip(spec, tokenizer, source, PROBES)
    return _json_bytes(spec)
