"""bertkit: pretrain, compare and evaluate BERT-family encoders.

The Rust extension (`bertkit._core`) prepares corpora into memory-mapped shards; `bertkit.data` reads them. The
library never imports typer or rich (the CLI in `bertkit_cli/` does). ``bertkit.NextLevelBERT`` (document embeddings
of a trained NextLevel run) and ``bertkit.load_run`` (any run as a model in eval mode, with
``mlm_logits(input_ids, attention_mask=None)`` → ``[B, T, V]``) load on first use, so ``import bertkit`` stays light
(no torch).
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name == "NextLevelBERT":
        from bertkit.encode.documents import NextLevelBERT

        return NextLevelBERT
    if name in ("load_run", "RunModel"):
        from bertkit import run

        return getattr(run, name)
    raise AttributeError(f"module 'bertkit' has no attribute {name!r}")
