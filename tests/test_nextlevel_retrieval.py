"""Retrieval evaluation: MRR / MAP / Hit@k on hand-made rankings, the task readers (BookSum formats, title → text,
halves), the evaluation of a run beside its encoder baseline, `bertkit eval retrieval`, and bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bertkit.eval.retrieval import load_task, paired_bootstrap, query_metrics, retrieval_metrics
from bertkit.exceptions import ConfigError, InputError

pytest_plugins = ["nextlevel_fixtures"]  # the nl_world / nl_run fixtures


def test_metrics_on_a_hand_made_ranking():
    scores = np.array(
        [
            [0.9, 0.8, 0.1, 0.3, 0.2],  # ranking 0 1 3 4 2; relevant {1}: rank 2
            [0.1, 0.2, 0.3, 0.4, 0.5],  # ranking 4 3 2 1 0; relevant {4, 0}: ranks 1 and 5
            [0.5, 0.5, 0.9, 0.0, 0.7],  # ranking 2 4 0 1 3 (tie 0/1 by index); relevant {3}: rank 5
        ]
    )
    relevant = [[1], [4, 0], [3]]
    m = retrieval_metrics(scores, relevant, k=2)
    assert m["queries"] == 3 and m["targets"] == 5
    assert m["mrr"] == pytest.approx((1 / 2 + 1 + 1 / 5) / 3)
    assert m["map"] == pytest.approx((1 / 2 + (1 / 1 + 2 / 5) / 2 + 1 / 5) / 3)
    assert m["hit@1"] == pytest.approx(1 / 3) and m["hit@2"] == pytest.approx(2 / 3)
    assert m["mrr@2"] == pytest.approx((1 / 2 + 1 + 0) / 3)
    # the original's MAP@k: precision at the relevant targets found in the top k, averaged over those found
    assert m["map@2"] == pytest.approx((1 / 2 + 1 + 0) / 3)
    perfect = retrieval_metrics(np.eye(4), [[0], [1], [2], [3]], k=10)
    assert all(perfect[name] == 1.0 for name in ("mrr", "map", "hit@1", "hit@10", "mrr@10", "map@10"))


def test_query_metrics_are_the_per_query_values():
    scores = np.array([[0.9, 0.8, 0.1], [0.1, 0.2, 0.3]])
    per = query_metrics(scores, [[1], [0, 2]], k=1)
    assert per["mrr"].tolist() == [0.5, 1.0] and per["hit@1"].tolist() == [0.0, 1.0]
    assert per["map"].tolist() == pytest.approx([0.5, (1 + 2 / 3) / 2]) and per["mrr@1"].tolist() == [0.0, 1.0]
    means = retrieval_metrics(scores, [[1], [0, 2]], k=1)
    assert all(means[name] == pytest.approx(v.mean()) for name, v in per.items())


def test_paired_bootstrap():
    rng = np.random.default_rng(1)
    b = rng.uniform(size=400)
    same = paired_bootstrap(b, b)
    assert same["delta"] == 0 and same["ci"] == [0.0, 0.0] and same["verdict"] == "within noise"
    shifted = paired_bootstrap(b + 0.1, b, resamples=500)
    assert shifted["delta"] == pytest.approx(0.1) and shifted["ci"] == pytest.approx([0.1, 0.1])
    assert shifted["verdict"] == "above" and shifted["resamples"] == 500 and shifted["queries"] == 400
    # a noisy difference: the interval holds the mean, has about the normal approximation's width and is seeded
    a = b + rng.normal(-0.02, 0.1, size=400)
    r = paired_bootstrap(a, b)
    low, high = r["ci"]
    assert low < r["delta"] < high and r["verdict"] == "below"
    half = 1.96 * np.std(a - b, ddof=1) / np.sqrt(400)
    assert (high - low) / 2 == pytest.approx(half, rel=0.1)
    assert paired_bootstrap(a, b) == r and paired_bootstrap(a, b, seed=1)["ci"] != r["ci"]
    wide = paired_bootstrap(a, b, confidence=0.99)
    assert wide["ci"][0] < low and wide["ci"][1] > high
    # more resamples than one block of indices holds
    big = paired_bootstrap(np.ones(300_000), np.zeros(300_000), resamples=10)
    assert big["ci"] == pytest.approx([1.0, 1.0])
    with pytest.raises(ConfigError, match="same length"):
        paired_bootstrap([1.0, 2.0], [1.0])
    with pytest.raises(ConfigError, match="same length"):
        paired_bootstrap([], [])
    with pytest.raises(ConfigError, match="resamples"):
        paired_bootstrap([1.0], [1.0], resamples=0)
    with pytest.raises(ConfigError, match="confidence"):
        paired_bootstrap([1.0], [1.0], confidence=1.0)


def test_metrics_bad_input():
    with pytest.raises(ConfigError, match="one relevance list per query"):
        retrieval_metrics(np.zeros((2, 3)), [[0]])
    with pytest.raises(ConfigError, match="non-empty indices"):
        retrieval_metrics(np.zeros((1, 3)), [[]])
    with pytest.raises(ConfigError, match="non-empty indices"):
        retrieval_metrics(np.zeros((1, 3)), [[3]])
    with pytest.raises(ConfigError, match="k must be"):
        retrieval_metrics(np.zeros((1, 3)), [[0]], k=0)


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_booksum_formats(tmp_path):
    kmfoda = _jsonl(
        tmp_path / "k.jsonl",
        [
            {"chapter": "Chapter one text.", "summary_text": "Sum A."},
            {"chapter": "Chapter one text.", "summary_text": "Sum B."},  # a second summary of the same chapter
            {"chapter": "Chapter two text.", "summary_text": "Sum C."},
        ],
    )
    task = load_task(kmfoda, "booksum")
    assert task.queries == ["Chapter one text.", "Chapter two text."]
    assert task.targets == ["Sum A.", "Sum B.", "Sum C."] and task.relevant == [[0, 1], [2]]
    ubaada = _jsonl(
        tmp_path / "u.jsonl",
        [{"text": "Ch 1.", "summary": [{"text": "S1."}, {"text": "S2."}]}, {"text": "Ch 2.", "summary": ["S3."]}],
    )
    task = load_task(ubaada, "booksum", limit=1)
    assert task.queries == ["Ch 1."] and task.targets == ["S1.", "S2."] and task.relevant == [[0, 1]]


def test_title_and_halves_tasks(tmp_path):
    rows = [{"title": "Markets rise", "text": "Markets rose today."}, {"title": "Rain", "text": "It rained."}]
    task = load_task(_jsonl(tmp_path / "t.jsonl", rows), "title")
    assert task.queries == ["Markets rise", "Rain"] and task.relevant == [[0], [1]]
    (tmp_path / "d.txt").write_text("One. Two. Three. Four.\n\nSingle sentence only.\n\nThe cat sat. The dog ran.\n")
    task = load_task(tmp_path / "d.txt", "halves")
    assert task.queries == ["One. Two.", "The cat sat."] and task.targets == ["Three. Four.", "The dog ran."]


def test_task_bad_input(tmp_path):
    with pytest.raises(ConfigError, match="unknown retrieval task"):
        load_task(tmp_path / "x.jsonl", "quiz")
    with pytest.raises(ConfigError, match="no such file"):
        load_task(tmp_path / "missing.jsonl", "title")
    with pytest.raises(InputError, match="lacks the field 'title'"):
        load_task(_jsonl(tmp_path / "a.jsonl", [{"text": "x"}]), "title")
    (tmp_path / "bad.jsonl").write_text('{"title": "a", "text": "b"}\nnot json\n')
    with pytest.raises(InputError, match=r"bad.jsonl:2: invalid JSON"):
        load_task(tmp_path / "bad.jsonl", "title")
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(ConfigError, match="no records"):
        load_task(tmp_path / "empty.jsonl", "title")
    with pytest.raises(ConfigError, match="no \\(query, target\\) pairs"):
        load_task(_jsonl(tmp_path / "blank.jsonl", [{"title": " ", "text": "x"}]), "title")


def test_run_beside_its_encoder_baseline(nl_run, nl_world, tmp_path):
    pytest.importorskip("torch")
    from typer.testing import CliRunner

    from bertkit.eval.retrieval import evaluate_retrieval
    from bertkit_cli import app

    docs = nl_world[3][:12]
    rows = [{"title": d.split(".")[0], "text": d} for d in docs]
    path = _jsonl(tmp_path / "t.jsonl", rows)
    task = load_task(path, "title")
    seen = []
    result = evaluate_retrieval([nl_run], task, k=5, device="cpu", on_progress=lambda *a: seen.append(a))
    labels = list(result["results"])
    assert labels[0] == str(nl_run) and "mean of chunks, 16 chunking" in labels[1]
    assert result["queries"] == 12 and result["k"] == 5
    for m in result["results"].values():
        assert 0 < m["mrr"] <= 1 and m["hit@5"] >= m["hit@1"] and m["map"] == pytest.approx(m["mrr"])
    assert seen[-1][1:] == (24, 24)
    (c,) = result["comparisons"]
    assert c["source"] == labels[0] and c["baseline"] == labels[1] and c["metric"] == "mrr"
    mrr = {label: m["mrr"] for label, m in result["results"].items()}
    assert c["value"] == mrr[labels[0]] and c["baseline_value"] == mrr[labels[1]]
    assert c["delta"] == pytest.approx(c["value"] - c["baseline_value"])
    assert c["ci"][0] <= c["delta"] <= c["ci"][1] and c["queries"] == 12 and c["resamples"] == 10_000
    assert c["ratio"] == pytest.approx(c["value"] / c["baseline_value"])
    assert evaluate_retrieval([nl_run], task, k=5, device="cpu", bootstrap=0)["comparisons"] == []
    with pytest.raises(ConfigError, match="bootstrap"):
        evaluate_retrieval([nl_run], task, bootstrap=-1)
    runner = CliRunner(env={"COLUMNS": "300"})
    out = tmp_path / "r.json"
    res = runner.invoke(
        app,
        ["eval", "retrieval", str(nl_run), "--data", str(path), "--task", "title", "-k", "5", "--device", "cpu",
         "--no-baseline", "--out", str(out), "--json"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    saved = json.loads(out.read_text())
    assert list(saved["results"]) == [str(nl_run)]
    assert saved["results"][str(nl_run)]["mrr"] == pytest.approx(result["results"][str(nl_run)]["mrr"])
    assert "MRR@5" in res.output and "paired bootstrap" not in res.output  # no baseline, nothing to compare
    res = runner.invoke(
        app,
        ["eval", "retrieval", str(nl_run), "--data", str(path), "--task", "title", "-k", "5", "--device", "cpu",
         "--bootstrap", "200"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "of its baseline" in res.output and "95% CI [" in res.output and "over 12 queries" in res.output
    res = runner.invoke(app, ["eval", "retrieval", str(nl_run), "--data", str(tmp_path / "none.jsonl")])
    assert res.exit_code == 1 and "no such file" in res.output
