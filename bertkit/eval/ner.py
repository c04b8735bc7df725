"""``bertkit eval ner``: CoNLL-format token classification with entity-level F1.

Words are tokenized as given (pre-split) and the model is queried at the first sub-token of every word: those flat
positions are the ``positions`` of the token-classification contract, which NarrowBERT-style models use as their
queries, so training and inference never need the labels to choose positions. A sentence longer than the sequence
budget is cut at word boundaries into several rows, so every word is predicted; a word that produces no token at all
(e.g. only characters the normaliser removes) is predicted ``O``.

Tags are BIO / IOB2; the tag set is the training file's (``O`` first). Entity-level precision, recall and F1 are
seqeval's: exact (type, span) matches, micro-averaged, with ``strict`` choosing IOB2 strict mode over the default
conlleval-style decoding (:func:`bertkit.eval.metrics.entities`). Fine-tuning keeps the state with the best dev F1
(NarrowBERT's CoNLL recipe: lr 5e-5, 5 epochs).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bertkit.eval.finetune import Backbone, FinetuneConfig, ProgressFn, TokenData, write_text_atomic
from bertkit.eval.tasks import LabelledSentence, read_conll
from bertkit.exceptions import ConfigError, FormatError

__all__ = ["NER_CONFIG", "evaluate_ner", "split_sentences"]

NER_CONFIG = FinetuneConfig(lr=5e-5, batch_size=16, epochs=5, warmup=0.1, max_len=128, select="best")


def split_sentences(count: int, fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """(kept, held-out) sentence indices: a seeded ``fraction`` (at least one) held out, both sorted."""
    import numpy as np

    if not 0 < fraction < 1:
        raise ConfigError(f"dev_fraction must be in (0, 1), got {fraction!r}")
    if count < 2:
        raise ConfigError("need at least two training sentences to hold out a dev set")
    k = max(1, int(round(fraction * count)))
    held = sorted(np.random.default_rng(seed).permutation(count)[:k].tolist())
    held_set = set(held)
    return [i for i in range(count) if i not in held_set], held


def _check_tags(sentences: Sequence[LabelledSentence], tags: Sequence[str], path: str | os.PathLike[str]) -> None:
    known = set(tags)
    for s in sentences:
        for tag, line in zip(s.tags, s.lines, strict=True):
            if tag not in known:
                raise FormatError(
                    f"{path}:{line}: tag {tag!r} never occurs in the training file (tags: {', '.join(tags)})"
                )


def evaluate_ner(
    backbone: Backbone,
    train: str | os.PathLike[str],
    *,
    dev: str | os.PathLike[str] | None = None,
    test: str | os.PathLike[str] | None = None,
    config: FinetuneConfig = NER_CONFIG,
    seeds: int = 1,
    grid: Sequence[Mapping[str, Any]] | None = None,
    strict: bool = False,
    dev_fraction: float = 0.1,
    task: str | None = None,
    out: str | os.PathLike[str] | None = None,
    on_progress: ProgressFn | None = None,
) -> dict[str, Any]:
    """Fine-tune ``backbone``'s token-classification head on ``train`` and report entity F1 on dev (and test)."""
    from bertkit.eval.finetune import check_config, encode_token_sentences, finetune, run_grid
    from bertkit.eval.metrics import entity_f1

    check_config(backbone, config, "token")
    train_sentences = read_conll(train)
    tags = sorted({t for s in train_sentences for t in s.tags}, key=lambda t: (t != "O", t))
    sets: dict[str, list[LabelledSentence]] = {}
    files = {"train": str(train)}
    for name, path in (("dev", dev), ("test", test)):
        if path is not None:
            sets[name] = read_conll(path)
            _check_tags(sets[name], tags, path)
            files[name] = str(path)
    if "dev" not in sets:
        kept, held = split_sentences(len(train_sentences), dev_fraction, config.seed)
        sets["dev"] = [train_sentences[i] for i in held]
        train_sentences = [train_sentences[i] for i in kept]
        files["dev"] = f"{dev_fraction:.0%} of train (seed {config.seed})"
    sets = {"dev": sets["dev"], **{k: v for k, v in sets.items() if k != "dev"}}
    tag_ids = {t: i for i, t in enumerate(tags)}

    def encode(sentences: Sequence[LabelledSentence], cfg: FinetuneConfig) -> TokenData:
        return encode_token_sentences(
            backbone.tokenizer,
            [s.words for s in sentences],
            [[tag_ids[t] for t in s.tags] for s in sentences],
            cfg.max_len,
        )

    def score(predictions: list[Any], data: TokenData) -> dict[str, Any]:
        assert data.tags is not None
        gold = [[tags[i] for i in sentence] for sentence in data.tags]
        pred = [[tags[i] if i >= 0 else "O" for i in sentence] for sentence in predictions]
        result = entity_f1(gold, pred, strict=strict)
        words = sum(len(s) for s in gold)
        result["token_accuracy"] = (
            sum(g == p for gs, ps in zip(gold, pred, strict=True) for g, p in zip(gs, ps, strict=True)) / words
        )
        return result

    encoded: dict[int, tuple[TokenData, dict[str, TokenData]]] = {}

    def run_one(cfg: FinetuneConfig) -> dict[str, Any]:
        if cfg.max_len not in encoded:
            encoded[cfg.max_len] = (encode(train_sentences, cfg), {n: encode(v, cfg) for n, v in sets.items()})
        tr, evals = encoded[cfg.max_len]
        return finetune(
            backbone, "token", len(tags), tr, evals, score, "f1", cfg, select_on="dev", on_progress=on_progress
        )

    outcome = run_grid(run_one, config, seeds=seeds, grid=grid, select_set="dev", primary="f1", on_progress=on_progress)
    first = next(iter(encoded.values()))
    result: dict[str, Any] = {
        "task": task or Path(train).parent.name or Path(train).stem,
        "source": backbone.describe(),
        "files": files,
        "tags": tags,
        "strict": strict,
        "counts": {
            "train": {"sentences": len(train_sentences), "words": sum(len(s.words) for s in train_sentences)},
            **{n: {"sentences": len(v), "words": sum(len(s.words) for s in v)} for n, v in sets.items()},
        },
        "untokenized_words": {
            "train": first[0].untokenized_words,
            **{n: d.untokenized_words for n, d in first[1].items()},
        },
        **outcome,
    }
    result["headline"] = result["median"].get("test", result["median"]["dev"])
    if out is not None:
        write_text_atomic(out, json.dumps(result, indent=2, ensure_ascii=False) + "\n")
        result["out"] = str(out)
    return result
