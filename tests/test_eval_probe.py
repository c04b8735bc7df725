"""The linear probe and the TF-IDF features: hand-computed values, and scikit-learn's results where installed."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")
np = pytest.importorskip("numpy")

from bertkit.eval.probe import TfidfVectorizer, fit_logistic, train_probe  # noqa: E402
from bertkit.exceptions import ConfigError  # noqa: E402

TEXTS = ["good movie", "bad movie", "good good fun", "bad boring film", "fun film"]


def test_tfidf_by_hand():
    v = TfidfVectorizer(ngrams=2, min_df=2).fit(TEXTS)
    # terms in >= 2 texts: bad, film, fun, good, movie (no bigram repeats)
    assert list(v.vocabulary) == ["bad", "film", "fun", "good", "movie"]
    x = v.transform(["good good movie unknown"]).to_dense()[0]
    idf_good = math.log(6 / 3) + 1  # df 2 of 5 texts
    a, b = (1 + math.log(2)) * idf_good, 1 * (math.log(6 / 3) + 1)
    norm = math.hypot(a, b)
    assert x.tolist() == pytest.approx([0, 0, 0, a / norm, b / norm], abs=1e-6)
    assert v.transform(["nothing known"]).to_dense().abs().sum() == 0  # an all-unknown row stays zero
    with pytest.raises(ConfigError):
        TfidfVectorizer(min_df=3).fit(["a", "b"])


def test_probe_separates_and_picks_l2_on_dev():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 4)).astype(np.float32)
    y = np.argmax(x[:, :3] @ rng.normal(size=(3, 3)), 1)  # 3 linearly separable classes
    probe, grid = train_probe(x[:200], y[:200], x[200:], y[200:], 3)
    acc = np.mean(np.array(probe.predict(x[200:])) == y[200:])
    assert acc > 0.9 and [g["l2"] for g in grid] == sorted((g["l2"] for g in grid), reverse=True)
    assert probe.l2 == max(grid, key=lambda g: (g["dev_accuracy"], g["l2"]))["l2"]
    again = fit_logistic(x[:200], y[:200], 3, l2=probe.l2)
    assert torch.equal(again.weight, probe.weight)  # deterministic


def test_probe_matches_sklearn_logistic_regression():
    linear_model = pytest.importorskip("sklearn.linear_model")
    preprocessing = pytest.importorskip("sklearn.preprocessing")
    rng = np.random.default_rng(1)
    x = rng.normal(size=(400, 6)) * [1, 2, 3, 1, 1, 5] + [0, 1, 0, 0, 2, 0]
    y = rng.integers(0, 3, 400)
    x[np.arange(400), y] += 1.5
    l2 = 1e-2
    ours = fit_logistic(x, y, 3, l2=l2, max_iter=500)
    # sklearn: C·Σ CE + ½‖W‖²  ⇔  mean CE + ½·(1 / (C·n))‖W‖²
    scaler = preprocessing.StandardScaler().fit(x)
    sk = linear_model.LogisticRegression(C=1 / (l2 * len(y)), max_iter=2000, tol=1e-10).fit(scaler.transform(x), y)
    theirs = sk.predict_proba(scaler.transform(x))
    mine = torch.softmax(ours.logits(x), -1).numpy()
    assert np.abs(mine - theirs).max() < 2e-3


def test_tfidf_matches_sklearn():
    text = pytest.importorskip("sklearn.feature_extraction.text")
    docs = TEXTS * 3 + ["movie fun good film", "the good the bad"]
    ours = TfidfVectorizer(ngrams=2, min_df=2).fit(docs)
    sk = text.TfidfVectorizer(token_pattern=r"(?u)\b\w+\b", ngram_range=(1, 2), min_df=2, sublinear_tf=True).fit(docs)
    assert list(ours.vocabulary) == list(sk.get_feature_names_out())
    assert np.allclose(ours.transform(docs).to_dense().numpy(), sk.transform(docs).toarray(), atol=1e-6)
