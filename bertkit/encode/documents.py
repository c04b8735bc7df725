"""Document embeddings: a trained NextLevel run (``NextLevelBERT``) or an encoder alone (the mean-pooled baseline).

``NextLevelBERT.from_pretrained(RUN).encode(texts)`` chunks each text as ``bertkit prepare`` chunked the training
documents (the run records the chunk size and the encoder), embeds the chunks with the run's encoder, runs the
NextLevel model over ``[CLS] chunks [SEP]`` (the first ``max_position_embeddings - 2`` chunks of a long document, as
the original truncates at 511 inputs) and returns the mean of the outputs at the chunk positions: one vector per
document. ``embed_documents(source, texts)`` does that for a run, and for an encoder returns the mean of each
document's chunk embeddings: the baseline NextLevelBERT must beat.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bertkit.exceptions import ConfigError, FormatError

__all__ = [
    "DEFAULT_BASELINE_CHUNK_SIZE",
    "NextLevelBERT",
    "embed_documents",
    "embed_files",
    "is_run",
    "read_documents",
]

DEFAULT_BASELINE_CHUNK_SIZE = 256
"""Chunk size of the encoder baseline when none is given (the paper's recommended setting)."""
_GROUP_CHUNKS = 8192  # documents are processed in groups of about this many chunks (progress, bounded memory)

ProgressCallback = Callable[[int, int], None]


def is_run(path: str | os.PathLike[str]) -> bool:
    """True for a training run directory (``checkpoints/``) or one of its checkpoints (``meta.json``)."""
    p = Path(path)
    return p.is_dir() and ((p / "checkpoints").is_dir() or (p / "meta.json").is_file())


def _check_texts(texts: Any) -> list[str]:
    if isinstance(texts, str):
        raise ConfigError("texts must be a list of documents, not one string")
    try:
        docs = list(texts)
    except TypeError:
        raise ConfigError(f"texts must be a list of strings, got {type(texts).__name__}") from None
    if not docs:
        raise ConfigError("no documents to embed (the list is empty)")
    for i, t in enumerate(docs):
        if not isinstance(t, str):
            raise ConfigError(f"document {i} is a {type(t).__name__}, not a string")
    return docs


def _groups(chunked: list[list[np.ndarray]]) -> list[tuple[int, int]]:
    out, lo, size = [], 0, 0
    for i, doc in enumerate(chunked):
        size += len(doc)
        if size >= _GROUP_CHUNKS:
            out.append((lo, i + 1))
            lo, size = i + 1, 0
    if lo < len(chunked):
        out.append((lo, len(chunked)))
    return out


def _chunk_all(chunker: Any, docs: list[str]) -> list[list[np.ndarray]]:
    chunked = chunker.chunk(docs)
    for i, doc in enumerate(chunked):
        if not doc:
            raise ConfigError(
                f"document {i} has no tokens (empty or only whitespace/markup): it is shorter than one chunk"
            )
    return chunked


class NextLevelBERT:
    """A trained NextLevel model with its encoder and chunker: texts in, one vector per document out."""

    def __init__(self, model: Any, encoder: Any, *, path: Path | None = None, step: int | None = None) -> None:
        from bertkit.encode.chunking import Chunker

        self.model = model.eval()
        self.config = model.config
        self.encoder = encoder
        self.chunker = Chunker(encoder.tokenizer, self.config.chunk_size)
        self.device = encoder.device
        self.path, self.step = path, step
        self.max_chunks = self.config.max_position_embeddings - 2  # [CLS] chunks [SEP]

    @property
    def dim(self) -> int:
        return self.config.hidden_size

    @classmethod
    def from_pretrained(
        cls,
        run: str | os.PathLike[str],
        *,
        encoder: str | os.PathLike[str] | None = None,
        device: str = "auto",
        precision: str = "auto",
        compile: bool = False,
    ) -> NextLevelBERT:
        """Load a NextLevel run (its newest complete checkpoint) or a checkpoint directory. The encoder is the one
        the run was trained on (recorded in its config; ``encoder=`` overrides where it lives): an encoder with other
        weights or another dimension is a ConfigError. ``compile=True`` runs the chunk encoder (the cost of
        ``encode``) through ``torch.compile`` (:func:`~bertkit.encode.encoder.load_encoder`)."""

        from bertkit.encode.encoder import load_encoder
        from bertkit.models.nextlevel import NextLevelConfig, NextLevelForPreTraining
        from bertkit.train import checkpoint as ckpt_lib

        path = Path(run)
        if not path.is_dir():
            raise ConfigError(f"{path}: no such run or checkpoint directory")
        ckpt = path if (path / "meta.json").is_file() else ckpt_lib.latest(path)
        if ckpt is None:
            raise FormatError(f"{path}: no complete checkpoint (not a finished `bertkit train` run?)")
        meta = ckpt_lib.read_meta(ckpt)
        if meta.get("arch") != "nextlevel":
            raise ConfigError(f"{ckpt}: a {meta.get('arch')!r} checkpoint, not a NextLevelBERT one (--arch nextlevel)")
        config = NextLevelConfig.from_dict(meta.get("model_config", {}))
        model = NextLevelForPreTraining(config)
        state = ckpt_lib.load_model_state(ckpt)  # checked: a FormatError naming a damaged file
        try:
            model.load_state_dict(state)
        except (RuntimeError, ValueError) as e:
            raise FormatError(f"{ckpt_lib.model_file(ckpt)}: mismatched weights ({e})") from None
        source = encoder if encoder is not None else config.encoder
        if not source:
            raise ConfigError(f"{ckpt}: the run does not record its encoder; pass encoder=")
        enc = load_encoder(source, device=device, precision=precision, compile=compile)
        if enc.dim != config.input_dim:
            raise ConfigError(
                f"encoder {source!r} makes {enc.dim}-dimensional embeddings, the run was trained on {config.input_dim}"
            )
        if config.encoder_checksum and enc.checksum != config.encoder_checksum:
            raise ConfigError(
                f"encoder {source!r} ({enc.root}) has other weights (xxh3 {enc.checksum}) than the run's encoder "
                f"(xxh3 {config.encoder_checksum}); pass the encoder the run was trained on"
            )
        return cls(model.to(enc.device), enc, path=ckpt, step=int(meta.get("step", 0)))

    def encode(
        self,
        texts: Sequence[str],
        *,
        batch_size: int | None = None,
        encoder_batch_size: int | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> np.ndarray:
        """``[len(texts), hidden]`` float32 document embeddings. ``batch_size``: documents per NextLevel batch;
        ``encoder_batch_size``: chunks per encoder batch; ``on_progress(done, total)`` counts documents."""
        docs = _check_texts(texts)
        chunked = [doc[: self.max_chunks] for doc in _chunk_all(self.chunker, docs)]
        out = np.empty((len(docs), self.dim), dtype=np.float32)
        for lo, hi in _groups(chunked):
            flat = [c for doc in chunked[lo:hi] for c in doc]
            vectors = self.encoder.encode_ids(flat, batch_size=encoder_batch_size)
            bounds = np.cumsum([0] + [len(d) for d in chunked[lo:hi]])
            out[lo:hi] = self.embed_chunks(
                [vectors[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)], batch_size
            )
            if on_progress is not None:
                on_progress(hi, len(docs))
        return out

    def embed_chunks(self, documents: Sequence[np.ndarray], batch_size: int | None = None) -> np.ndarray:
        """Document embeddings from chunk embeddings already computed (``[n_i, E]`` per document, e.g. from an
        embedding store): ``[CLS] chunks [SEP]``, length-sorted batches, padding masked, mean over the chunks."""
        import torch

        from bertkit.models.nextlevel import SPECIAL

        n = len(documents)
        out = np.empty((n, self.dim), dtype=np.float32)
        if n == 0:
            return out
        batch_size = batch_size or (256 if self.device.type == "cuda" else 16)
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}")
        E = self.config.input_dim
        lengths = np.array([min(len(d), self.max_chunks) for d in documents], dtype=np.int64)
        if lengths.min() < 1:
            raise ConfigError(f"document {int(np.argmin(lengths))} has no chunk embeddings")
        order = np.argsort(-lengths, kind="stable")
        with torch.inference_mode():
            for lo in range(0, n, batch_size):
                idx = order[lo : lo + batch_size]
                T = int(lengths[idx[0]]) + 2
                emb = np.zeros((len(idx), T, E), dtype=np.float32)
                special = np.full((len(idx), T), SPECIAL["pad"], dtype=np.int64)
                special[:, 0] = SPECIAL["cls"]
                for row, i in enumerate(idx.tolist()):
                    k = int(lengths[i])
                    emb[row, 1 : k + 1] = np.asarray(documents[i][:k], dtype=np.float32)
                    special[row, 1 : k + 1] = -1
                    special[row, k + 1] = SPECIAL["sep"]
                ragged = int(lengths[idx[-1]]) + 2 != T
                mask = torch.from_numpy(special != SPECIAL["pad"]).to(self.device) if ragged else None
                x = torch.from_numpy(emb).to(self.device)
                s = torch.from_numpy(special).to(self.device)
                if self.encoder.autocast is not None:
                    with torch.autocast(self.device.type, dtype=self.encoder.autocast):
                        vectors = self.model.document_embeddings(x, s, mask)
                else:
                    vectors = self.model.document_embeddings(x, s, mask)
                out[idx] = vectors.float().cpu().numpy()
        return out


def embed_documents(
    source: str | os.PathLike[str],
    texts: Sequence[str],
    *,
    device: str = "auto",
    batch_size: int | None = None,
    on_progress: ProgressCallback | None = None,
    chunk_size: int | None = None,
    compile: bool = False,
) -> np.ndarray:
    """``[len(texts), dim]`` float32: one embedding per document.

    ``source`` is a NextLevel run directory (or checkpoint) → its document embeddings (``NextLevelBERT``), or an
    encoder (a sentence-transformers / BERT directory or a known name such as ``all-MiniLM-L6-v2``) → the mean of
    the document's chunk embeddings, chunked with ``chunk_size`` tokens (default 256; 0 = sentences; a run uses its
    own). ``batch_size`` is the encoder's batch (chunks); ``on_progress(done, total)`` counts documents;
    ``compile=True`` runs the chunk encoder through ``torch.compile`` (long jobs on CPU). Bad input
    (an empty list, an empty document, a source that is neither) is a ConfigError / FormatError before any encoding.
    """
    docs = _check_texts(texts)
    if is_run(source):
        model = NextLevelBERT.from_pretrained(source, device=device, compile=compile)
        if chunk_size is not None and chunk_size != model.config.chunk_size:
            raise ConfigError(f"{source} was trained on {model.config.chunk_size}-token chunks, not {chunk_size}")
        return model.encode(docs, encoder_batch_size=batch_size, on_progress=on_progress)
    from bertkit.encode.chunking import Chunker
    from bertkit.encode.encoder import load_encoder

    encoder = load_encoder(source, device=device, compile=compile)
    chunker = Chunker(encoder.tokenizer, DEFAULT_BASELINE_CHUNK_SIZE if chunk_size is None else chunk_size)
    chunked = _chunk_all(chunker, docs)
    out = np.empty((len(docs), encoder.dim), dtype=np.float32)
    for lo, hi in _groups(chunked):
        flat = [c for doc in chunked[lo:hi] for c in doc]
        vectors = encoder.encode_ids(flat, batch_size=batch_size)
        bounds = np.cumsum([0] + [len(d) for d in chunked[lo:hi]])
        for row, (a, b) in enumerate(zip(bounds[:-1], bounds[1:], strict=True)):
            out[lo + row] = vectors[a:b].mean(axis=0)
        if on_progress is not None:
            on_progress(hi, len(docs))
    return out


DOC_MODES = ("file", "blank-line", "line")


def read_documents(
    files: Sequence[str | os.PathLike[str]], *, text_field: str = "text", doc_mode: str = "file"
) -> tuple[list[str], list[dict[str, Any]]]:
    """Documents of text files: a ``.jsonl`` file gives one document per line (``text_field``); any other file
    one document (``doc_mode="file"``), one per blank-line-separated block (``blank-line``) or one per non-empty
    line (``line``). Returns the texts and, per text, ``{"file", "index"}``. Unreadable input is an InputError /
    ConfigError naming the file (and line)."""
    import json

    from bertkit.exceptions import InputError

    if doc_mode not in DOC_MODES:
        raise ConfigError(f"doc_mode {doc_mode!r} is not one of {', '.join(DOC_MODES)}")
    if not files:
        raise ConfigError("no input files")
    texts: list[str] = []
    rows: list[dict[str, Any]] = []
    for f in files:
        path = Path(f)
        if not path.is_file():
            raise ConfigError(f"{path}: no such file")
        try:
            content = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as e:
            raise InputError(f"{path}: not UTF-8 text (byte {e.start})") from None
        if path.suffix == ".jsonl":
            docs = []
            for n, line in enumerate(content.splitlines(), 1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except ValueError as e:
                    raise InputError(f"{path}:{n}: invalid JSON ({e})") from None
                if not isinstance(record, dict) or not isinstance(record.get(text_field), str):
                    raise InputError(f"{path}:{n}: no string field {text_field!r}")
                docs.append(record[text_field])
        elif doc_mode == "file":
            if not content.strip():
                raise InputError(f"{path}: the file is empty: there is no document to embed")
            docs = [content]
        elif doc_mode == "blank-line":
            docs = [b for b in (block.strip() for block in content.replace("\r\n", "\n").split("\n\n")) if b]
        else:
            docs = [line for line in content.splitlines() if line.strip()]
        rows.extend({"file": str(path), "index": i} for i in range(len(docs)))
        texts.extend(docs)
    if not texts:
        raise ConfigError(f"no documents in {', '.join(str(f) for f in files)}")
    return texts, rows


def embed_files(
    source: str | os.PathLike[str],
    files: Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    *,
    text_field: str = "text",
    doc_mode: str = "file",
    device: str = "auto",
    batch_size: int | None = None,
    chunk_size: int | None = None,
    on_progress: ProgressCallback | None = None,
    compile: bool = False,
) -> dict[str, Any]:
    """``bertkit embed``: embed the documents of ``files`` (:func:`read_documents`) with ``source``
    (:func:`embed_documents`) and write ``out`` (``.npy``, float32 ``[n, dim]``, rows in input order) and, beside it,
    ``<out>.json`` (source, dim, the file and index of every row). Both appear atomically, the array last."""
    import json

    from bertkit.data.format import write_bytes_atomic

    out = Path(out)
    if out.suffix != ".npy":
        raise ConfigError(f"{out}: the output is a .npy file")
    if not out.parent.is_dir():
        raise ConfigError(f"{out.parent}: the output directory does not exist")
    texts, rows = read_documents(files, text_field=text_field, doc_mode=doc_mode)
    vectors = embed_documents(
        source,
        texts,
        device=device,
        batch_size=batch_size,
        chunk_size=chunk_size,
        on_progress=on_progress,
        compile=compile,
    )
    index = {"source": os.fspath(source), "documents": len(texts), "dim": int(vectors.shape[1]), "rows": rows}
    write_bytes_atomic(out.with_suffix(".json"), (json.dumps(index, indent=1) + "\n").encode("utf-8"))
    from bertkit.encode.store import _npy_bytes

    write_bytes_atomic(out, _npy_bytes(vectors))
    return {"out": str(out), "documents": len(texts), "dim": int(vectors.shape[1])}
