"""Evaluation metrics, in plain Python (no numpy/scipy/sklearn needed): the official GLUE metrics, macro-F1 and
seqeval-style entity-level F1.

- ``accuracy``; ``binary_f1`` (F1 of the positive class, GLUE's MRPC/QQP F1); ``macro_f1`` (unweighted mean of the
  per-class F1 over the classes present in the gold labels or the predictions, sklearn's ``average="macro"``).
- ``matthews_corrcoef`` (CoLA), for any number of classes (Gorodkin's R_K, sklearn's formula); 0 when undefined.
- ``pearson`` and ``spearman`` (STS-B); Spearman is Pearson on average ranks, so ties share their mean rank.
- ``entities`` / ``entity_f1``: chunks of a BIO (IOB2) tag sequence and micro precision/recall/F1 over exact
  (type, start, end) matches, with per-type figures. The default ``strict=False`` follows conlleval and seqeval's
  default mode: an ``I-X`` after ``O`` or after another type starts an entity. ``strict=True`` is seqeval's
  ``mode="strict"`` with IOB2: only ``B-X`` starts an entity and a stray ``I-X`` is no entity at all.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Hashable, Sequence

__all__ = [
    "accuracy",
    "average_ranks",
    "binary_f1",
    "entities",
    "entity_f1",
    "macro_f1",
    "matthews_corrcoef",
    "pearson",
    "spearman",
]


def _check_lengths(gold: Sequence, pred: Sequence) -> None:
    if len(gold) != len(pred):
        raise ValueError(f"gold and predictions differ in length ({len(gold)} vs {len(pred)})")
    if not gold:
        raise ValueError("no examples to score")


def accuracy(gold: Sequence[Hashable], pred: Sequence[Hashable]) -> float:
    _check_lengths(gold, pred)
    return sum(g == p for g, p in zip(gold, pred, strict=True)) / len(gold)


def _f1(tp: int, fp: int, fn: int) -> float:
    return 0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn)


def binary_f1(gold: Sequence[Hashable], pred: Sequence[Hashable], positive: Hashable = 1) -> float:
    """F1 of the ``positive`` class (0 when it is never predicted and never gold)."""
    _check_lengths(gold, pred)
    tp = sum(g == positive and p == positive for g, p in zip(gold, pred, strict=True))
    fp = sum(g != positive and p == positive for g, p in zip(gold, pred, strict=True))
    fn = sum(g == positive and p != positive for g, p in zip(gold, pred, strict=True))
    return _f1(tp, fp, fn)


def macro_f1(gold: Sequence[Hashable], pred: Sequence[Hashable]) -> float:
    """Unweighted mean of per-class F1 over every class seen in ``gold`` or ``pred``."""
    _check_lengths(gold, pred)
    classes = set(gold) | set(pred)
    return sum(binary_f1(gold, pred, positive=c) for c in classes) / len(classes)


def matthews_corrcoef(gold: Sequence[Hashable], pred: Sequence[Hashable]) -> float:
    """Matthews correlation (multi-class R_K); 0.0 when a marginal is constant (the coefficient is undefined)."""
    _check_lengths(gold, pred)
    n = len(gold)
    correct = sum(g == p for g, p in zip(gold, pred, strict=True))
    t, p = Counter(gold), Counter(pred)
    classes = set(t) | set(p)
    cov_yp = correct * n - sum(t[k] * p[k] for k in classes)
    cov_pp = n * n - sum(p[k] ** 2 for k in classes)
    cov_yy = n * n - sum(t[k] ** 2 for k in classes)
    if cov_pp == 0 or cov_yy == 0:
        return 0.0
    return cov_yp / math.sqrt(cov_pp * cov_yy)


def pearson(x: Sequence[float], y: Sequence[float]) -> float:
    """Pearson's r; 0.0 when either sequence is constant (undefined)."""
    _check_lengths(x, y)
    n = len(x)
    mx, my = math.fsum(x) / n, math.fsum(y) / n
    sxy = math.fsum((a - mx) * (b - my) for a, b in zip(x, y, strict=True))
    sxx = math.fsum((a - mx) ** 2 for a in x)
    syy = math.fsum((b - my) ** 2 for b in y)
    if sxx == 0 or syy == 0:
        return 0.0
    return sxy / math.sqrt(sxx * syy)


def average_ranks(values: Sequence[float]) -> list[float]:
    """1-based ranks; tied values share the mean of the ranks they span (scipy's ``rankdata(method="average")``)."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        shared = (i + j) / 2 + 1
        for k in range(i, j + 1):
            ranks[order[k]] = shared
        i = j + 1
    return ranks


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rho: Pearson's r of the average ranks (ties handled)."""
    _check_lengths(x, y)
    return pearson(average_ranks(x), average_ranks(y))


def _split_tag(tag: str) -> tuple[str, str]:
    """('B'|'I'|'O', type) of a BIO tag; ``O`` has the empty type."""
    if tag == "O":
        return "O", ""
    prefix, sep, kind = tag.partition("-")
    if not sep or prefix not in ("B", "I") or not kind:
        raise ValueError(f"not a BIO tag: {tag!r} (expected O, B-TYPE or I-TYPE)")
    return prefix, kind


def entities(tags: Sequence[str], *, strict: bool = False) -> list[tuple[str, int, int]]:
    """The entities of one BIO tag sequence as ``(type, start, end)`` with ``end`` exclusive."""
    found: list[tuple[str, int, int]] = []
    kind: str | None = None
    start = 0
    for i, tag in enumerate(tags):
        prefix, t = _split_tag(tag)
        continues = prefix == "I" and kind == t
        if kind is not None and not continues:
            found.append((kind, start, i))
            kind = None
        if prefix == "B" or (prefix == "I" and not continues and not strict):
            kind, start = t, i
    if kind is not None:
        found.append((kind, start, len(tags)))
    return found


def entity_f1(
    gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]], *, strict: bool = False
) -> dict[str, object]:
    """Micro precision / recall / F1 over exact entity matches across sentences, plus ``per_type`` figures
    (``precision``, ``recall``, ``f1``, ``support`` = gold entities of the type)."""
    _check_lengths(gold, pred)
    tp: Counter[str] = Counter()
    n_gold: Counter[str] = Counter()
    n_pred: Counter[str] = Counter()
    for i, (g, p) in enumerate(zip(gold, pred, strict=True)):
        if len(g) != len(p):
            raise ValueError(f"sentence {i}: {len(g)} gold tags but {len(p)} predicted tags")
        ge = set(entities(g, strict=strict))
        pe = set(entities(p, strict=strict))
        for kind, _, _ in ge:
            n_gold[kind] += 1
        for kind, _, _ in pe:
            n_pred[kind] += 1
        for kind, _, _ in ge & pe:
            tp[kind] += 1

    def prf(t: int, npred: int, ngold: int) -> dict[str, float]:
        precision = t / npred if npred else 0.0
        recall = t / ngold if ngold else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        return {"precision": precision, "recall": recall, "f1": f1}

    total = prf(sum(tp.values()), sum(n_pred.values()), sum(n_gold.values()))
    per_type = {
        k: {**prf(tp[k], n_pred[k], n_gold[k]), "support": n_gold[k]} for k in sorted(set(n_gold) | set(n_pred))
    }
    return {
        **total,
        "gold_entities": sum(n_gold.values()),
        "predicted_entities": sum(n_pred.values()),
        "per_type": per_type,
    }
