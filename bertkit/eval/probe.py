"""Linear probes: multinomial logistic regression in torch, and TF-IDF bag-of-words features for the floor that a
pretrained model must beat.

:func:`fit_logistic` minimises the mean cross-entropy plus ``l2 / 2 · ‖W‖²`` (bias not penalised) with full-batch
L-BFGS (strong-Wolfe line search) from zero weights: the optimum is unique and the result deterministic, so the
``seed`` only matters through the features. Dense features are standardised with the training mean and deviation
first; sparse features (``torch.sparse_csr_tensor``, e.g. TF-IDF) are used as they are. :func:`train_probe` picks
``l2`` from :data:`L2_GRID` by dev accuracy.

:class:`TfidfVectorizer` mirrors scikit-learn's defaults where it matters: lower-cased ``\\w\\w+``-style tokens
(here ``\\w+``, so one-letter words count), unigrams and bigrams, vocabulary from the training texts with
``min_df``, smoothed idf ``ln((1 + n) / (1 + df)) + 1``, sublinear tf ``1 + ln(tf)``, rows L2-normalised.
"""

from __future__ import annotations

import math
import re
import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bertkit.exceptions import ConfigError

__all__ = ["L2_GRID", "LogisticProbe", "TfidfVectorizer", "fit_logistic", "train_probe"]

L2_GRID = (1e-5, 1e-4, 1e-3, 1e-2, 1e-1)
_TOKEN = re.compile(r"\w+", re.UNICODE)


@dataclass
class LogisticProbe:
    """A fitted probe: ``predict(x)`` → class ids (``x`` a dense ``[n, d]`` array / tensor or a sparse CSR tensor)."""

    weight: Any
    bias: Any
    mean: Any | None
    std: Any | None
    l2: float
    iterations: int

    def _prepare(self, x: Any) -> Any:
        return x if self.mean is None else (x - self.mean) / self.std

    def logits(self, x: Any) -> Any:
        import torch

        x = self._prepare(_as_tensor(x))
        return (torch.sparse.mm(x, self.weight) if x.is_sparse_csr else x @ self.weight) + self.bias

    def predict(self, x: Any) -> list[int]:
        return self.logits(x).argmax(-1).tolist()


def _as_tensor(x: Any) -> Any:
    import numpy as np
    import torch

    if isinstance(x, torch.Tensor):
        return x if x.is_sparse_csr else x.float()
    return torch.from_numpy(np.asarray(x, dtype=np.float32))


def fit_logistic(
    x: Any, y: Sequence[int], num_classes: int, *, l2: float = 1e-3, max_iter: int = 200, seed: int = 0
) -> LogisticProbe:
    """Multinomial logistic regression on features ``x`` (``[n, d]`` dense array/tensor or sparse CSR tensor)."""
    import torch

    if l2 < 0:
        raise ConfigError(f"l2 must be >= 0, got {l2}")
    torch.manual_seed(seed)
    x = _as_tensor(x)
    targets = torch.as_tensor(list(y), dtype=torch.long)
    if x.shape[0] != len(targets) or not len(targets):
        raise ConfigError(f"{x.shape[0]} feature rows for {len(targets)} labels")
    mean = std = None
    if not x.is_sparse_csr:
        mean = x.mean(0, keepdim=True)
        std = x.std(0, keepdim=True).clamp_min(1e-6)
        x = (x - mean) / std
    d = x.shape[1]
    weight = torch.zeros(d, num_classes, requires_grad=True)
    bias = torch.zeros(num_classes, requires_grad=True)
    optimizer = torch.optim.LBFGS(
        [weight, bias],
        lr=1.0,
        max_iter=max_iter,
        history_size=20,
        tolerance_grad=1e-6,
        tolerance_change=1e-9,
        line_search_fn="strong_wolfe",
    )

    def closure() -> Any:
        optimizer.zero_grad()
        logits = (torch.sparse.mm(x, weight) if x.is_sparse_csr else x @ weight) + bias
        loss = torch.nn.functional.cross_entropy(logits, targets) + 0.5 * l2 * weight.pow(2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    iterations = int(optimizer.state[weight].get("n_iter", 0))
    return LogisticProbe(weight.detach(), bias.detach(), mean, std, l2, iterations)


def train_probe(
    train_x: Any,
    train_y: Sequence[int],
    dev_x: Any,
    dev_y: Sequence[int],
    num_classes: int,
    *,
    l2_grid: Sequence[float] = L2_GRID,
    max_iter: int = 200,
    seed: int = 0,
) -> tuple[LogisticProbe, list[dict[str, float]]]:
    """The probe with the best dev accuracy over ``l2_grid`` (ties: the stronger penalty), and every point's figure."""
    from bertkit.eval.metrics import accuracy

    best: tuple[float, float, LogisticProbe] | None = None
    scores = []
    for l2 in sorted(l2_grid, reverse=True):
        probe = fit_logistic(train_x, train_y, num_classes, l2=l2, max_iter=max_iter, seed=seed)
        acc = accuracy(list(dev_y), probe.predict(dev_x))
        scores.append({"l2": l2, "dev_accuracy": acc})
        if best is None or acc > best[0]:
            best = (acc, l2, probe)
    assert best is not None
    return best[2], scores


class TfidfVectorizer:
    """TF-IDF of unigrams (+ bigrams) fitted on training texts; ``transform`` gives a sparse CSR tensor."""

    def __init__(self, ngrams: int = 2, min_df: int = 2, max_features: int = 50_000) -> None:
        if ngrams < 1 or min_df < 1 or max_features < 1:
            raise ConfigError("ngrams, min_df and max_features must be >= 1")
        self.ngrams = ngrams
        self.min_df = min_df
        self.max_features = max_features
        self.vocabulary: dict[str, int] = {}
        self.idf: list[float] = []

    def _terms(self, text: str) -> list[str]:
        words = _TOKEN.findall(text.lower())
        terms = list(words)
        for n in range(2, self.ngrams + 1):
            terms.extend(" ".join(words[i : i + n]) for i in range(len(words) - n + 1))
        return terms

    def fit(self, texts: Sequence[str]) -> TfidfVectorizer:
        df: Counter[str] = Counter()
        for text in texts:
            df.update(set(self._terms(text)))
        kept = [t for t, c in df.items() if c >= self.min_df]
        kept.sort(key=lambda t: (-df[t], t))
        kept = sorted(kept[: self.max_features])
        if not kept:
            raise ConfigError(f"no term occurs in {self.min_df} or more training texts")
        self.vocabulary = {t: i for i, t in enumerate(kept)}
        n = len(texts)
        self.idf = [math.log((1 + n) / (1 + df[t])) + 1.0 for t in kept]
        return self

    def transform(self, texts: Sequence[str]) -> Any:
        import torch

        crow, col, val = [0], [], []
        for text in texts:
            counts = Counter(i for i in map(self.vocabulary.get, self._terms(text)) if i is not None)
            row = sorted((i, (1.0 + math.log(c)) * self.idf[i]) for i, c in counts.items())
            norm = math.sqrt(sum(v * v for _, v in row)) or 1.0
            col.extend(i for i, _ in row)
            val.extend(v / norm for _, v in row)
            crow.append(len(col))
        with warnings.catch_warnings():  # "sparse CSR support is in beta": the few operations used here are stable
            warnings.simplefilter("ignore", UserWarning)
            return torch.sparse_csr_tensor(
                torch.tensor(crow, dtype=torch.int64),
                torch.tensor(col, dtype=torch.int64),
                torch.tensor(val, dtype=torch.float32),
                size=(len(texts), len(self.vocabulary)),
                check_invariants=True,
            )
