"""NextLevelBERT's encoding side: sentence-transformers encoders, chunk-embedding stores, document embeddings.

- ``load_encoder(name_or_path)``: a sentence-transformers / BERT encoder run by bertkit (offline name resolution).
- ``encode_dataset(dataset, encoder, out)``: every chunk of a prepared dataset (``--instances chunks``) → an
  embedding store (float16 shards, manifest written last, resumable, shardable across processes).
- ``open_store(path)``: read a store (numpy memmaps; no torch).
- ``embed_documents(source, texts)``: one vector per document, from a NextLevel run or from an encoder alone
  (the mean of the document's chunk embeddings: the baseline).
- ``NextLevelBERT``: the inference API of a trained run (``from_pretrained(RUN).encode(texts)``).

Names load lazily: importing this package imports neither torch nor numpy.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "SentenceEncoder": "bertkit.encode.encoder",
    "load_encoder": "bertkit.encode.encoder",
    "resolve_encoder": "bertkit.encode.encoder",
    "Chunker": "bertkit.encode.chunking",
    "EmbeddingStore": "bertkit.encode.store",
    "encode_dataset": "bertkit.encode.store",
    "open_store": "bertkit.encode.store",
    "verify_store": "bertkit.encode.store",
    "NextLevelBERT": "bertkit.encode.documents",
    "embed_documents": "bertkit.encode.documents",
}

__all__ = [  # noqa: F822 (resolved lazily by __getattr__)
    "Chunker",
    "EmbeddingStore",
    "NextLevelBERT",
    "SentenceEncoder",
    "embed_documents",
    "encode_dataset",
    "load_encoder",
    "open_store",
    "resolve_encoder",
    "verify_store",
]

if TYPE_CHECKING:
    from bertkit.encode.chunking import Chunker
    from bertkit.encode.documents import NextLevelBERT, embed_documents
    from bertkit.encode.encoder import SentenceEncoder, load_encoder, resolve_encoder
    from bertkit.encode.store import EmbeddingStore, encode_dataset, open_store, verify_store


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'bertkit.encode' has no attribute {name!r}")
