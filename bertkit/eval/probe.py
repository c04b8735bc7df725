"""Linear probes: multinomial logistic regression in torch (in numpy where torch is not installed), and TF-IDF
bag-of-words features for the floor that a pretrained model must beat.

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

__all__ = ["L2_GRID", "LogisticProbe", "SparseRows", "TfidfVectorizer", "fit_logistic", "train_probe"]

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
        if not _has_torch():  # the numpy fit (an install without torch)
            x = _as_numpy(x)
            x = x if isinstance(x, SparseRows) or self.mean is None else (x - self.mean) / self.std
            return (x.matmul(self.weight) if isinstance(x, SparseRows) else x @ self.weight) + self.bias
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


def _has_torch() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


@dataclass
class SparseRows:
    """A CSR matrix in numpy (``crow``, ``col``, ``val``, ``shape``): the TF-IDF features without torch."""

    crow: Any
    col: Any
    val: Any
    shape: tuple[int, int]

    @property
    def rows(self) -> Any:
        import numpy as np

        return np.repeat(np.arange(self.shape[0]), np.diff(self.crow))

    def matmul(self, w: Any) -> Any:
        """``X @ w`` for a dense ``[d, k]`` w."""
        import numpy as np

        rows = self.rows
        return np.stack(
            [np.bincount(rows, weights=self.val * w[self.col, j], minlength=self.shape[0]) for j in range(w.shape[1])],
            axis=1,
        )

    def rmatmul(self, g: Any) -> Any:
        """``X.T @ g`` for a dense ``[n, k]`` g."""
        import numpy as np

        rows = self.rows
        return np.stack(
            [np.bincount(self.col, weights=self.val * g[rows, j], minlength=self.shape[1]) for j in range(g.shape[1])],
            axis=1,
        )


def _as_numpy(x: Any) -> Any:
    import numpy as np

    return x if isinstance(x, SparseRows) else np.asarray(x, dtype=np.float64)


def _lbfgs(fun: Any, x0: Any, *, max_iter: int, history: int = 20, gtol: float = 1e-6, ftol: float = 1e-9) -> Any:
    """Minimise a smooth convex ``fun(x) -> (f, grad)`` with L-BFGS (two-loop recursion, Armijo backtracking);
    returns ``(x, iterations)``. The same stopping rules as torch's LBFGS: gradient max-norm, loss change."""
    import numpy as np

    x = x0
    f, g = fun(x)
    s_hist: list[Any] = []
    y_hist: list[Any] = []
    it = 0
    while it < max_iter and np.abs(g).max() > gtol:
        it += 1
        q = g.copy()
        coefs = []
        for s, y in zip(reversed(s_hist), reversed(y_hist), strict=True):
            rho = 1.0 / float(y @ s)
            a = rho * float(s @ q)
            q -= a * y
            coefs.append((rho, a))
        if s_hist:
            q *= float(s_hist[-1] @ y_hist[-1]) / float(y_hist[-1] @ y_hist[-1])
        else:
            q *= min(1.0, 1.0 / max(np.abs(g).sum(), 1e-12))  # torch's first step length
        for (s, y), (rho, a) in zip(zip(s_hist, y_hist, strict=True), reversed(coefs), strict=True):
            q += s * (a - rho * float(y @ q))
        d = -q
        slope = float(g @ d)
        if slope >= 0:  # not a descent direction: restart from the gradient
            s_hist.clear()
            y_hist.clear()
            d, slope = -g, -float(g @ g)
        t = 1.0
        while True:
            x_new = x + t * d
            f_new, g_new = fun(x_new)
            if f_new <= f + 1e-4 * t * slope or t < 1e-12:
                break
            t *= 0.5
        s, y = x_new - x, g_new - g
        if float(y @ s) > 1e-10:
            s_hist.append(s)
            y_hist.append(y)
            if len(s_hist) > history:
                s_hist.pop(0)
                y_hist.pop(0)
        done = abs(f_new - f) < ftol or np.abs(s).max() < ftol
        x, f, g = x_new, f_new, g_new
        if done:
            break
    return x, it


def _fit_logistic_numpy(x: Any, y: Sequence[int], num_classes: int, l2: float, max_iter: int) -> LogisticProbe:
    """:func:`fit_logistic` without torch: the same objective, from zero weights, with a numpy L-BFGS."""
    import numpy as np

    x = _as_numpy(x)
    targets = np.asarray(list(y), dtype=np.int64)
    if x.shape[0] != len(targets) or not len(targets):
        raise ConfigError(f"{x.shape[0]} feature rows for {len(targets)} labels")
    mean = std = None
    if not isinstance(x, SparseRows):
        mean = x.mean(0, keepdims=True)
        std = np.maximum(x.std(0, ddof=1, keepdims=True) if len(x) > 1 else np.ones_like(mean), 1e-6)
        x = (x - mean) / std
    n, d, k = x.shape[0], x.shape[1], num_classes
    onehot = np.zeros((n, k))
    onehot[np.arange(n), targets] = 1.0

    def fun(theta: Any) -> tuple[float, Any]:
        w, b = theta[: d * k].reshape(d, k), theta[d * k :]
        logits = (x.matmul(w) if isinstance(x, SparseRows) else x @ w) + b
        logits -= logits.max(1, keepdims=True)
        logp = logits - np.log(np.exp(logits).sum(1, keepdims=True))
        loss = -float((logp * onehot).sum()) / n + 0.5 * l2 * float((w * w).sum())
        p = (np.exp(logp) - onehot) / n
        gw = (x.rmatmul(p) if isinstance(x, SparseRows) else x.T @ p) + l2 * w
        return loss, np.concatenate([gw.ravel(), p.sum(0)])

    theta, iterations = _lbfgs(fun, np.zeros(d * k + k), max_iter=max_iter)
    weight, bias = theta[: d * k].reshape(d, k), theta[d * k :]
    return LogisticProbe(weight, bias, mean, std, l2, iterations)


def fit_logistic(
    x: Any, y: Sequence[int], num_classes: int, *, l2: float = 1e-3, max_iter: int = 200, seed: int = 0
) -> LogisticProbe:
    """Multinomial logistic regression on features ``x`` (``[n, d]`` dense array/tensor or sparse CSR tensor;
    without torch: numpy arrays and :class:`SparseRows`, fitted by the same objective in numpy)."""
    if l2 < 0:
        raise ConfigError(f"l2 must be >= 0, got {l2}")
    if not _has_torch():
        return _fit_logistic_numpy(x, y, num_classes, l2, max_iter)
    import torch

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
        """The features: a torch sparse CSR tensor, or :class:`SparseRows` where torch is not installed."""
        crow, col, val = [0], [], []
        for text in texts:
            counts = Counter(i for i in map(self.vocabulary.get, self._terms(text)) if i is not None)
            row = sorted((i, (1.0 + math.log(c)) * self.idf[i]) for i, c in counts.items())
            norm = math.sqrt(sum(v * v for _, v in row)) or 1.0
            col.extend(i for i, _ in row)
            val.extend(v / norm for _, v in row)
            crow.append(len(col))
        if not _has_torch():
            import numpy as np

            return SparseRows(
                np.asarray(crow, dtype=np.int64),
                np.asarray(col, dtype=np.int64),
                np.asarray(val, dtype=np.float64),
                (len(texts), len(self.vocabulary)),
            )
        import torch

        with warnings.catch_warnings():  # "sparse CSR support is in beta": the few operations used here are stable
            warnings.simplefilter("ignore", UserWarning)
            return torch.sparse_csr_tensor(
                torch.tensor(crow, dtype=torch.int64),
                torch.tensor(col, dtype=torch.int64),
                torch.tensor(val, dtype=torch.float32),
                size=(len(texts), len(self.vocabulary)),
                check_invariants=True,
            )
