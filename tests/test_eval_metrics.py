"""bertkit.eval.metrics against hand-computed values (and scipy / scikit-learn where installed)."""

from __future__ import annotations

import math
import random

import pytest

from bertkit.eval.metrics import (
    accuracy,
    average_ranks,
    binary_f1,
    entities,
    entity_f1,
    macro_f1,
    matthews_corrcoef,
    pearson,
    spearman,
)


def test_accuracy_and_f1_by_hand():
    gold = [1, 1, 1, 0, 0, 0, 1, 0]
    pred = [1, 0, 1, 0, 1, 0, 1, 1]
    assert accuracy(gold, pred) == 5 / 8
    # positive class: tp 3, fp 2, fn 1 → F1 = 6 / 9
    assert binary_f1(gold, pred) == pytest.approx(6 / 9)
    # class 0: tp 2, fp 1, fn 2 → 4 / 7; macro = (6/9 + 4/7) / 2
    assert macro_f1(gold, pred) == pytest.approx((6 / 9 + 4 / 7) / 2)
    assert binary_f1([0, 0], [0, 0]) == 0.0  # never positive: 0, not a division error


def test_macro_f1_counts_classes_only_predicted():
    # class "c" never gold but predicted once: its F1 (0) enters the mean, as in sklearn
    assert macro_f1(["a", "b", "a"], ["a", "b", "c"]) == pytest.approx((2 / 3 + 1 + 0) / 3)


def test_matthews_by_hand():
    gold = [1, 1, 1, 0, 0, 0, 1, 0]
    pred = [1, 0, 1, 0, 1, 0, 1, 1]
    tp, tn, fp, fn = 3, 2, 2, 1
    expected = (tp * tn - fp * fn) / math.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    assert matthews_corrcoef(gold, pred) == pytest.approx(expected)
    assert matthews_corrcoef([0, 1, 0, 1], [0, 1, 0, 1]) == pytest.approx(1.0)
    assert matthews_corrcoef([0, 1, 0, 1], [1, 0, 1, 0]) == pytest.approx(-1.0)
    assert matthews_corrcoef([0, 1, 0, 1], [1, 1, 1, 1]) == 0.0  # constant prediction: undefined → 0


def test_pearson_spearman_with_ties_by_hand():
    assert average_ranks([10, 20, 20, 30]) == [1.0, 2.5, 2.5, 4.0]
    assert average_ranks([3, 1, 3, 3]) == [3.0, 1.0, 3.0, 3.0]
    x, y = [1, 2, 3, 4], [2, 4, 6, 8]
    assert pearson(x, y) == pytest.approx(1.0)
    # ranks of x: 1 2.5 2.5 4; ranks of y: 1 2 3 4 → r over those
    rx, ry = [1, 2.5, 2.5, 4], [1, 2, 3, 4]
    mx, my = 2.5, 2.5
    num = sum((a - mx) * (b - my) for a, b in zip(rx, ry, strict=True))
    den = math.sqrt(sum((a - mx) ** 2 for a in rx) * sum((b - my) ** 2 for b in ry))
    assert spearman([1, 2, 2, 3], [0.1, 0.2, 0.3, 0.4]) == pytest.approx(num / den)
    assert spearman([1, 5, 9], [3, 2, 1]) == pytest.approx(-1.0)
    assert pearson([1, 1, 1], [1, 2, 3]) == 0.0


def test_length_mismatch_and_empty_are_errors():
    with pytest.raises(ValueError, match="differ in length"):
        accuracy([1, 2], [1])
    with pytest.raises(ValueError, match="no examples"):
        pearson([], [])


def test_entities_lenient_and_strict():
    tags = ["B-PER", "I-PER", "O", "I-LOC", "I-LOC", "B-LOC", "I-PER", "O", "B-ORG"]
    assert entities(tags) == [("PER", 0, 2), ("LOC", 3, 5), ("LOC", 5, 6), ("PER", 6, 7), ("ORG", 8, 9)]
    # strict IOB2: a stray I- (after O or another type) is no entity
    assert entities(tags, strict=True) == [("PER", 0, 2), ("LOC", 5, 6), ("ORG", 8, 9)]
    assert entities(["B-X", "B-X", "I-X"]) == [("X", 0, 1), ("X", 1, 3)]
    with pytest.raises(ValueError, match="not a BIO tag"):
        entities(["B-PER", "PER"])


def test_entity_f1_by_hand():
    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["O", "B-ORG", "I-ORG"]]
    pred = [["B-PER", "I-PER", "O", "O"], ["O", "B-ORG", "O"]]
    # gold: PER(0,2) LOC(3,4) ORG(1,3); pred: PER(0,2) ORG(1,2) → tp 1, precision 1/2, recall 1/3
    r = entity_f1(gold, pred)
    assert r["precision"] == pytest.approx(1 / 2) and r["recall"] == pytest.approx(1 / 3)
    assert r["f1"] == pytest.approx(2 * (1 / 2) * (1 / 3) / (1 / 2 + 1 / 3))
    assert r["per_type"]["PER"] == {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 1}
    assert r["per_type"]["LOC"]["support"] == 1 and r["per_type"]["LOC"]["recall"] == 0.0
    assert r["gold_entities"] == 3 and r["predicted_entities"] == 2
    with pytest.raises(ValueError, match="sentence 0"):
        entity_f1([["O", "O"]], [["O"]])


def _random_labels(n: int, k: int, seed: int) -> tuple[list[int], list[int]]:
    rng = random.Random(seed)
    gold = [rng.randrange(k) for _ in range(n)]
    pred = [g if rng.random() < 0.6 else rng.randrange(k) for g in gold]
    return gold, pred


def test_against_sklearn():
    sk = pytest.importorskip("sklearn.metrics")
    for seed, k in ((0, 2), (1, 3), (2, 5)):
        gold, pred = _random_labels(200, k, seed)
        assert matthews_corrcoef(gold, pred) == pytest.approx(sk.matthews_corrcoef(gold, pred), abs=1e-12)
        assert macro_f1(gold, pred) == pytest.approx(sk.f1_score(gold, pred, average="macro"), abs=1e-12)
        assert accuracy(gold, pred) == pytest.approx(sk.accuracy_score(gold, pred))
        if k == 2:
            assert binary_f1(gold, pred) == pytest.approx(sk.f1_score(gold, pred), abs=1e-12)


def test_against_scipy():
    stats = pytest.importorskip("scipy.stats")
    rng = random.Random(3)
    x = [rng.randint(0, 10) / 2 for _ in range(100)]  # many ties
    y = [v + rng.gauss(0, 1) for v in x]
    assert pearson(x, y) == pytest.approx(stats.pearsonr(x, y)[0], abs=1e-12)
    assert spearman(x, y) == pytest.approx(stats.spearmanr(x, y)[0], abs=1e-12)


def test_importing_bertkit_eval_loads_neither_torch_nor_the_cli():
    import subprocess
    import sys

    code = "import sys, bertkit.eval; print(sorted(m for m in ('torch', 'typer', 'rich') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
