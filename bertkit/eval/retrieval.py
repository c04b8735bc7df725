"""Zero-shot retrieval with document embeddings (``bertkit eval retrieval``), as NextLevelBERT's BookSum task.

Every query and every target text is embedded by the same source (a NextLevel run or an encoder: see
``bertkit.encode.embed_documents``), targets are ranked by cosine similarity to each query, and the ranks of the
relevant targets give the metrics:

- ``mrr``: mean reciprocal rank of the first relevant target over the full ranking;
- ``map``: mean average precision over the full ranking (AP = mean over the relevant targets of precision at their
  rank; with one relevant target per query it equals MRR);
- ``hit@1``, ``hit@k``: share of queries with a relevant target in the top 1 / k;
- ``mrr@k``, ``map@k``: the original's figures (``example_usage.py``: torchmetrics' RetrievalMRR / RetrievalMAP over
  the top-k list only: a relevant target below rank k counts nothing, and AP divides by the relevant targets
  *found* in the top k).

Tasks (``load_task``): ``booksum`` (JSONL of chapter → summaries: kmfoda/booksum's ``chapter`` / ``summary_text`` or
ubaada/booksum-complete-cleaned's ``text`` / ``summary`` list; queries are chapters, targets summaries, as in the
paper), ``title`` (JSONL ``title`` → ``text``: e.g. BBC headline → article) and ``halves`` (first half of a
document's sentences → its second half).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bertkit.exceptions import ConfigError, InputError

__all__ = [
    "TASKS",
    "RetrievalTask",
    "evaluate_retrieval",
    "load_task",
    "paired_bootstrap",
    "query_metrics",
    "retrieval_metrics",
]

TASKS = ("booksum", "title", "halves")


def query_metrics(scores: np.ndarray, relevant: Sequence[Sequence[int]], k: int = 10) -> dict[str, np.ndarray]:
    """Every metric per query (``[queries]`` arrays; :func:`retrieval_metrics` is their mean) of a
    ``[queries, targets]`` score matrix (higher = more similar) given each query's relevant target indices; ties are
    broken by target index. See the module docstring for the definitions."""
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 2 or scores.shape[0] != len(relevant):
        raise ConfigError(f"scores must be [queries, targets] with one relevance list per query, got {scores.shape}")
    if not isinstance(k, int) or k < 1:
        raise ConfigError(f"k must be a positive integer, got {k!r}")
    Q, D = scores.shape
    order = np.argsort(-scores, axis=1, kind="stable")
    rank_of = np.empty_like(order)
    rank_of[np.arange(Q)[:, None], order] = np.arange(1, D + 1)[None, :]
    out = {name: np.zeros(Q) for name in ("mrr", "map", "hit@1", f"hit@{k}", f"mrr@{k}", f"map@{k}")}
    for q, rel in enumerate(relevant):
        targets = sorted(set(int(t) for t in rel))
        if not targets or targets[0] < 0 or targets[-1] >= D:
            raise ConfigError(f"query {q}: relevant targets {list(rel)} must be non-empty indices into {D} targets")
        ranks = np.sort(rank_of[q, targets])
        precision = np.arange(1, len(ranks) + 1) / ranks
        top = ranks <= k
        out["mrr"][q] = 1.0 / ranks[0]
        out["map"][q] = precision.mean()
        out["hit@1"][q] = float(ranks[0] == 1)
        out[f"hit@{k}"][q] = float(top.any())
        out[f"mrr@{k}"][q] = 1.0 / ranks[0] if top[0] else 0.0
        out[f"map@{k}"][q] = precision[top].mean() if top.any() else 0.0
    return out


def retrieval_metrics(scores: np.ndarray, relevant: Sequence[Sequence[int]], k: int = 10) -> dict[str, float]:
    """The metrics of :func:`query_metrics` averaged over the queries, with ``queries`` and ``targets`` counts."""
    return _averaged(query_metrics(scores, relevant, k), *np.shape(scores))


def _averaged(per_query: dict[str, np.ndarray], queries: int, targets: int) -> dict[str, float]:
    out: dict[str, float] = {name: float(v.mean()) if queries else 0.0 for name, v in per_query.items()}
    out.update(queries=queries, targets=targets)
    return out


def paired_bootstrap(
    a: Sequence[float] | np.ndarray,
    b: Sequence[float] | np.ndarray,
    *,
    resamples: int = 10_000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, Any]:
    """How sure a difference of two systems' mean is, from their per-query values on the same queries: the mean of
    ``a - b`` and its percentile bootstrap confidence interval (the queries resampled with replacement, the same
    resample for both systems; seeded, so a report is reproducible). ``verdict`` is ``"above"`` / ``"below"`` when
    the whole interval is on one side of zero, else ``"within noise"``."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.ndim != 1 or a.shape != b.shape or a.size == 0:
        raise ConfigError(f"paired values must be two non-empty lists of the same length, got {a.shape} and {b.shape}")
    if not isinstance(resamples, int) or resamples < 1:
        raise ConfigError(f"resamples must be a positive integer, got {resamples!r}")
    if not 0.0 < confidence < 1.0:
        raise ConfigError(f"confidence must be in (0, 1), got {confidence!r}")
    diff = a - b
    n = diff.size
    rng = np.random.default_rng(seed)
    means = np.empty(resamples)
    block = max(1, 2_000_000 // n)  # resamples drawn per block: at most ~2M indices in memory
    for lo in range(0, resamples, block):
        hi = min(resamples, lo + block)
        means[lo:hi] = diff[rng.integers(0, n, size=(hi - lo, n))].mean(axis=1)
    tail = (1.0 - confidence) / 2
    low, high = (float(x) for x in np.quantile(means, [tail, 1.0 - tail]))
    verdict = "above" if low > 0 else "below" if high < 0 else "within noise"
    return {
        "delta": float(diff.mean()),
        "ci": [low, high],
        "confidence": confidence,
        "resamples": resamples,
        "queries": n,
        "verdict": verdict,
    }


@dataclass
class RetrievalTask:
    """Queries, targets and which targets each query should find."""

    name: str
    queries: list[str]
    targets: list[str]
    relevant: list[list[int]]


def _records(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        raise ConfigError(f"{path}: no such file")
    out = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError as e:
                raise InputError(f"{path}:{n}: invalid JSON ({e})") from None
            if not isinstance(record, dict):
                raise InputError(f"{path}:{n}: expected a JSON object")
            out.append(record)
    if not out:
        raise ConfigError(f"{path}: no records")
    return out


def _texts(value: Any, where: str) -> list[str]:
    """A field holding a text, a list of texts or a list of {"text": ...} objects (booksum-complete-cleaned)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        out = []
        for v in value:
            text = v.get("text") if isinstance(v, dict) else v
            if not isinstance(text, str):
                raise InputError(f"{where}: expected texts, found {type(text).__name__}")
            out.append(text)
        return out
    raise InputError(f"{where}: expected a text or a list of texts, found {type(value).__name__}")


def _documents(path: Path, text_field: str) -> list[str]:
    if path.suffix == ".jsonl":
        return [_texts(r.get(text_field), f"{path}: field {text_field!r}")[0] for r in _records(path)]
    if not path.is_file():
        raise ConfigError(f"{path}: no such file")
    blocks = path.read_text(encoding="utf-8").replace("\r\n", "\n").split("\n\n")
    return [b.strip() for b in blocks if b.strip()]


def load_task(
    path: str | os.PathLike[str],
    task: str = "booksum",
    *,
    query_field: str | None = None,
    target_field: str | None = None,
    limit: int | None = None,
) -> RetrievalTask:
    """Read a retrieval task from a file (see the module docstring); ``limit`` keeps the first N queries. Queries
    and targets are deduplicated by text (a chapter listed once per summary becomes one query)."""
    path = Path(path)
    if task not in TASKS:
        raise ConfigError(f"unknown retrieval task {task!r} (one of {', '.join(TASKS)})")
    if limit is not None and (not isinstance(limit, int) or limit < 1):
        raise ConfigError(f"limit must be a positive integer, got {limit!r}")
    pairs: list[tuple[str, list[str]]] = []
    if task == "halves":
        from bertkit import _core

        for text in _documents(path, query_field or "text"):
            sentences = _core.split_sentences(text, "rules")
            if len(sentences) >= 2:
                half = len(sentences) // 2
                pairs.append((" ".join(sentences[:half]), [" ".join(sentences[half:])]))
    else:
        records = _records(path)
        if task == "title":
            qf, tf = query_field or "title", target_field or "text"
        else:
            first = records[0]
            qf = query_field or ("chapter" if "chapter" in first else "text")
            tf = target_field or ("summary_text" if "summary_text" in first else "summary")
        for n, r in enumerate(records, 1):
            if qf not in r or tf not in r:
                raise InputError(f"{path}: record {n} lacks the field {qf if qf not in r else tf!r} ({task} task)")
            pairs.append((_texts(r[qf], f"{path}: record {n} {qf!r}")[0], _texts(r[tf], f"{path}: record {n} {tf!r}")))
    queries: dict[str, set[str]] = {}
    for q, ts in pairs:
        if q.strip() and any(t.strip() for t in ts):
            queries.setdefault(q, set()).update(t for t in ts if t.strip())
    items = list(queries.items())[:limit]
    if not items:
        raise ConfigError(f"{path}: no (query, target) pairs for the {task} task")
    targets: dict[str, int] = {}
    relevant = []
    for _, ts in items:
        relevant.append(sorted(targets.setdefault(t, len(targets)) for t in sorted(ts)))
    return RetrievalTask(task, [q for q, _ in items], list(targets), relevant)


def _normalise(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def evaluate_retrieval(
    sources: Sequence[str | os.PathLike[str]],
    task: RetrievalTask,
    *,
    k: int = 10,
    baseline: bool = True,
    chunk_size: int | None = None,
    device: str = "auto",
    batch_size: int | None = None,
    bootstrap: int = 10_000,
    on_progress: Callable[[str, int, int], None] | None = None,
) -> dict[str, Any]:
    """Metrics of every source on ``task``, side by side. With ``baseline``, each NextLevel run's own encoder is
    added (mean of chunk embeddings, the run's chunk size): the baseline it must beat, and ``comparisons`` says by
    how much each run's MRR differs from it, with a 95 % paired-bootstrap confidence interval over the queries
    (``bootstrap`` resamples; 0 leaves the comparisons out). ``chunk_size`` applies to the encoder sources given
    directly (default 256). ``on_progress(label, done, total)`` counts embedded texts."""
    from bertkit.encode.documents import embed_documents, is_run

    if not sources:
        raise ConfigError("no source to evaluate (a NextLevel run or an encoder)")
    if not isinstance(bootstrap, int) or isinstance(bootstrap, bool) or bootstrap < 0:
        raise ConfigError(f"bootstrap must be a number of resamples >= 0, got {bootstrap!r}")
    plan: list[tuple[str, str, int | None]] = []  # label, source, chunk size
    pairs: list[tuple[str, str]] = []  # (run, its baseline)
    for s in sources:
        source = os.fspath(s)
        if is_run(source):
            plan.append((source, source, None))
            if baseline:
                encoder, size = _run_encoder(source)
                label = f"{encoder} (mean of chunks, {size or 'sentence'} chunking)"
                if all(label != p[0] for p in plan):
                    plan.append((label, encoder, size))
                pairs.append((source, label))
        else:
            size = 256 if chunk_size is None else chunk_size
            plan.append((f"{source} (mean of chunks, {size or 'sentence'} chunking)", source, size))
    texts = task.queries + task.targets
    results, per_query = {}, {}
    for label, source, size in plan:

        def progress(done: int, total: int, label: str = label) -> None:
            if on_progress is not None:
                on_progress(label, done, total)

        vectors = _normalise(
            embed_documents(source, texts, device=device, batch_size=batch_size, chunk_size=size, on_progress=progress)
        )
        q, t = vectors[: len(task.queries)], vectors[len(task.queries) :]
        values = query_metrics(q @ t.T, task.relevant, k=k)
        per_query[label] = values["mrr"]
        results[label] = _averaged(values, len(q), len(t))
    comparisons = []
    for run, base in pairs if bootstrap else []:
        mrr, base_mrr = results[run]["mrr"], results[base]["mrr"]
        comparisons.append(
            {
                "source": run,
                "baseline": base,
                "metric": "mrr",
                "value": mrr,
                "baseline_value": base_mrr,
                "ratio": mrr / base_mrr,  # full-ranking MRR is at least 1 / targets, never 0
                **paired_bootstrap(per_query[run], per_query[base], resamples=bootstrap),
            }
        )
    return {
        "task": task.name,
        "queries": len(task.queries),
        "targets": len(task.targets),
        "k": k,
        "results": results,
        "comparisons": comparisons,
    }


def _run_encoder(run: str) -> tuple[str, int]:
    """The encoder and chunk size a NextLevel run was trained with (from its newest checkpoint)."""
    from bertkit.exceptions import FormatError
    from bertkit.train import checkpoint as ckpt_lib

    path = Path(run)
    ckpt = path if (path / "meta.json").is_file() else ckpt_lib.latest(path)
    if ckpt is None:
        raise FormatError(f"{path}: no complete checkpoint")
    config = ckpt_lib.read_meta(ckpt).get("model_config", {})
    if not config.get("encoder"):
        raise ConfigError(f"{ckpt}: not a NextLevel checkpoint with a recorded encoder")
    return str(config["encoder"]), int(config.get("chunk_size", 256))
