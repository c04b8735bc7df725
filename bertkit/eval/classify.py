"""``bertkit eval classify``: any single-sentence or sentence-pair classification task in TSV / CSV / JSONL.

Three ways to get a classifier, one evaluation:

- ``mode="finetune"``: fine-tune a :class:`~bertkit.eval.finetune.Backbone` (run or HF directory) with the library
  trainer; the state with the best dev score is kept and scored on test (``select="best"``).
- ``mode="embeddings"``: embed every text with ``bertkit.encode.embed_documents(source, texts)`` (sentence pairs:
  the SentEval features ``[u, v, |u − v|, u ⊙ v]``) and train a linear probe (:mod:`bertkit.eval.probe`).
- ``mode="bow"``: TF-IDF unigrams + bigrams and the same probe, the floor a pretrained model must beat.

Labels are the distinct label strings of the training file (sorted); a dev or test label the training file never
had is a FormatError naming its file and line. Without a dev file, a seeded ``dev_fraction`` of the training
examples (stratified by label) is held out. Metrics: accuracy and macro-F1 on dev and test.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bertkit.eval.finetune import Backbone, FinetuneConfig, ProgressFn, SequenceData, write_text_atomic
from bertkit.eval.tasks import Example, check_labels, read_classification
from bertkit.exceptions import ConfigError

__all__ = ["CLASSIFY_CONFIG", "MODES", "evaluate_classify", "stratified_split"]

MODES = ("finetune", "embeddings", "bow")
METRICS = ("accuracy", "macro_f1")
CLASSIFY_CONFIG = FinetuneConfig(lr=4e-5, batch_size=32, epochs=3, warmup=0.1, max_len=128, select="best")


def stratified_split(labels: Sequence[Any], fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """(kept, held-out) indices: ``round(fraction · n_c)`` of each class c held out (at least one when the class
    has two or more examples), chosen by a seeded permutation; both lists sorted."""
    import numpy as np

    if not 0 < fraction < 1:
        raise ConfigError(f"dev_fraction must be in (0, 1), got {fraction!r}")
    rng = np.random.default_rng(seed)
    held: list[int] = []
    for label in sorted(set(labels)):
        members = [i for i, y in enumerate(labels) if y == label]
        k = int(round(fraction * len(members)))
        if k == 0 and len(members) >= 2:
            k = 1
        held.extend(members[i] for i in rng.permutation(len(members))[:k].tolist())
    held_set = set(held)
    return [i for i in range(len(labels)) if i not in held_set], sorted(held)


def _scores(predictions: Sequence[int], gold: Sequence[int]) -> dict[str, float]:
    from bertkit.eval.metrics import accuracy, macro_f1

    return {"accuracy": accuracy(gold, predictions), "macro_f1": macro_f1(gold, predictions)}


def _counts(examples: Sequence[Example]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for e in examples:
        counts[str(e.label)] = counts.get(str(e.label), 0) + 1
    return dict(sorted(counts.items()))


def _embed(source: str, examples: Sequence[Example], pairs: bool, emit: ProgressFn, name: str) -> Any:
    import numpy as np

    try:
        from bertkit.encode import embed_documents
    except ImportError as e:
        raise ConfigError(f"--embeddings needs bertkit.encode.embed_documents, which is not available ({e})") from None

    def run(texts: list[str], what: str) -> Any:
        emit({"event": "embed", "set": what, "texts": len(texts)})
        x = np.asarray(embed_documents(source, texts), dtype=np.float32)
        if x.ndim != 2 or x.shape[0] != len(texts):
            raise ConfigError(f"embed_documents({source!r}) returned shape {x.shape} for {len(texts)} texts")
        return x

    u = run([e.text for e in examples], name)
    if not pairs:
        return u
    v = run([str(e.pair) for e in examples], name + " (pairs)")
    return np.concatenate([u, v, np.abs(u - v), u * v], axis=1)


def evaluate_classify(
    train: str | os.PathLike[str],
    *,
    dev: str | os.PathLike[str] | None = None,
    test: str | os.PathLike[str] | None = None,
    mode: str = "finetune",
    backbone: Backbone | None = None,
    embeddings: str | None = None,
    text_field: str = "text",
    pair_field: str | None = None,
    label_field: str = "label",
    config: FinetuneConfig = CLASSIFY_CONFIG,
    seeds: int = 1,
    grid: Sequence[Mapping[str, Any]] | None = None,
    metric: str = "accuracy",
    dev_fraction: float = 0.1,
    task: str | None = None,
    out: str | os.PathLike[str] | None = None,
    on_progress: ProgressFn | None = None,
) -> dict[str, Any]:
    """Train a classifier on ``train`` and score it on dev (and test); see the module docstring.

    ``mode`` ``finetune`` needs ``backbone``, ``embeddings`` the ``embeddings`` source for ``embed_documents``;
    ``bow`` needs neither. ``metric`` (accuracy / macro_f1) selects the fine-tuning state and the probe's penalty.
    The result is written to ``out`` when given (JSON, atomically).
    """
    if mode not in MODES:
        raise ConfigError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    if metric not in METRICS:
        raise ConfigError(f"metric must be one of {', '.join(METRICS)}, got {metric!r}")
    if mode == "finetune":
        if backbone is None:
            raise ConfigError("fine-tuning needs a model (a run or Hugging Face directory)")
        from bertkit.eval.finetune import check_config

        check_config(backbone, config, "sequence")
    if mode == "embeddings" and not embeddings:
        raise ConfigError("mode 'embeddings' needs an embeddings source")
    emit = on_progress or (lambda event: None)

    read = {"text_field": text_field, "pair_field": pair_field, "label_field": label_field}
    train_examples = read_classification(train, **read)
    labels = sorted({str(e.label) for e in train_examples})
    if len(labels) < 2:
        raise ConfigError(f"{train}: only one label ({labels[0]!r}); classification needs at least two")
    sets: dict[str, list[Example]] = {}
    files: dict[str, str] = {"train": str(train)}
    for name, path in (("dev", dev), ("test", test)):
        if path is not None:
            sets[name] = read_classification(path, **read)
            check_labels(sets[name], labels, path)
            files[name] = str(path)
    if "dev" not in sets:
        kept, held = stratified_split([e.label for e in train_examples], dev_fraction, config.seed)
        sets["dev"] = [train_examples[i] for i in held]
        train_examples = [train_examples[i] for i in kept]
        files["dev"] = f"{dev_fraction:.0%} of train (stratified, seed {config.seed})"
    sets = {"dev": sets["dev"], **{k: v for k, v in sets.items() if k != "dev"}}
    label_ids = {label: i for i, label in enumerate(labels)}
    gold = {name: [label_ids[str(e.label)] for e in examples] for name, examples in sets.items()}
    train_gold = [label_ids[str(e.label)] for e in train_examples]
    pairs = pair_field is not None

    result: dict[str, Any] = {
        "task": task or Path(train).parent.name or Path(train).stem,
        "mode": mode,
        "files": files,
        "labels": labels,
        "counts": {"train": _counts(train_examples), **{k: _counts(v) for k, v in sets.items()}},
        "fields": {"text": text_field, "pair": pair_field, "label": label_field},
        "metric": metric,
    }
    if mode == "finetune":
        assert backbone is not None
        from bertkit.eval.finetune import encode_sequences, finetune, run_grid

        result["source"] = backbone.describe()
        encoded: dict[tuple[int, str], tuple[SequenceData, dict[str, SequenceData]]] = {}

        def encode(examples: Sequence[Example], y: list[int], cfg: FinetuneConfig) -> SequenceData:
            return encode_sequences(
                backbone.tokenizer,
                [e.text for e in examples],
                [str(e.pair) for e in examples] if pairs else None,
                y,
                cfg.max_len,
                cfg.truncation,
            )

        def score(predictions: list[Any], data: SequenceData) -> dict[str, float]:
            return _scores(predictions, data.labels or [])

        def run_one(cfg: FinetuneConfig) -> dict[str, Any]:
            key = (cfg.max_len, cfg.truncation)
            if key not in encoded:
                encoded[key] = (
                    encode(train_examples, train_gold, cfg),
                    {n: encode(sets[n], gold[n], cfg) for n in sets},
                )
            tr, evals = encoded[key]
            return finetune(
                backbone,
                "sequence",
                len(labels),
                tr,
                evals,
                score,
                metric,
                cfg,
                select_on="dev",
                on_progress=on_progress,
            )

        outcome = run_grid(
            run_one, config, seeds=seeds, grid=grid, select_set="dev", primary=metric, on_progress=on_progress
        )
        result.update(outcome)
    else:
        from bertkit.eval.probe import TfidfVectorizer, train_probe

        if mode == "bow":
            vectorizer = TfidfVectorizer()

            def joined(examples: Sequence[Example]) -> list[str]:
                return [e.text if e.pair is None else f"{e.text} {e.pair}" for e in examples]

            vectorizer.fit(joined(train_examples))
            features = {n: vectorizer.transform(joined(v)) for n, v in {"train": train_examples, **sets}.items()}
            result["source"] = {
                "kind": "bow",
                "features": len(vectorizer.vocabulary),
                "ngrams": vectorizer.ngrams,
                "min_df": vectorizer.min_df,
            }
        else:
            assert embeddings is not None
            features = {n: _embed(embeddings, v, pairs, emit, n) for n, v in {"train": train_examples, **sets}.items()}
            result["source"] = {"kind": "embeddings", "source": embeddings, "dim": int(features["train"].shape[1])}
        emit({"event": "probe", "train": len(train_examples), "features": int(features["train"].shape[1])})
        probe, l2_scores = train_probe(
            features["train"], train_gold, features["dev"], gold["dev"], len(labels), seed=config.seed
        )
        metrics = {n: _scores(probe.predict(features[n]), gold[n]) for n in sets}
        result.update(
            {
                "config": {"l2": probe.l2, "iterations": probe.iterations},
                "l2_grid": l2_scores,
                "median": metrics,
                "seeds": [config.seed],
                "runs": [],
            }
        )
    result["headline"] = result["median"].get("test", result["median"]["dev"])
    if out is not None:
        out_path = Path(out)
        write_text_atomic(out_path, json.dumps(result, indent=2, ensure_ascii=False) + "\n")
        result["out"] = str(out_path)
    return result
