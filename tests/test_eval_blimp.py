"""`bertkit eval blimp`: pseudo-log-likelihoods equal to a plain per-copy reference through transformers (in a fresh
process, on an HF export of a bert run), every token architecture and HF directories scored, the per-paradigm /
per-phenomenon results and their resumption, and clear errors for bad input with nothing half-written.

The minimal pairs are handmade files in BLiMP's layout (tests/data/blimp: agreement, islands, NPIs, filler-gap);
the vocabulary splits plural / 3rd-person ``-s`` words into two pieces so that the two PLL variants differ."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("bertkit._core")

from conftest import tiny_train_config, write_fixture_dataset  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from bertkit.eval.blimp import (  # noqa: E402
    evaluate_blimp,
    load_scorer,
    masked_copies,
    read_blimp,
    score_sentences,
)
from bertkit.exceptions import ConfigError, FormatError  # noqa: E402
from bertkit_cli import app  # noqa: E402

BLIMP = Path(__file__).parent / "data" / "blimp"
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
ARCHS = ["bert", "narrowbert", "elc-bert", "ltg-bert"]
runner = CliRunner()


def fixture_vocab() -> list[str]:
    """Every word of the fixture pairs (lower-cased); words of 4+ letters ending in -s only as stem + ``##s``."""
    words: set[str] = set()
    for path in BLIMP.glob("*.jsonl"):
        for line in path.read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            for s in (row["sentence_good"], row["sentence_bad"]):
                words.update(re.findall(r"\w+|[^\w\s]", s.lower()))
    vocab = set()
    for w in words:
        if len(w) >= 4 and w.endswith("s") and not w.endswith("ss"):
            vocab.add(w[:-1])
        else:
            vocab.add(w)
    return SPECIALS + sorted(vocab) + ["##s", "##ing", "##ed", "extra"]


def _docs(vocab_size: int, n: int = 60, seed: int = 0) -> list[list[list[int]]]:
    import random

    rng = random.Random(seed)
    return [[[rng.randrange(5, vocab_size) for _ in range(rng.randint(4, 12))] for _ in range(3)] for _ in range(n)]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A 2-step tiny run of every token architecture on a dataset with the fixture vocabulary."""
    from bertkit.train.trainer import train

    root = tmp_path_factory.mktemp("blimp")
    vocab = fixture_vocab()
    ds = write_fixture_dataset(root / "ds", _docs(len(vocab)), docs_per_shard=20, vocab=vocab)
    out = {}
    for arch in ARCHS:
        cfg = tiny_train_config(
            ds,
            root / arch,
            arch=arch,
            batch_size=4,
            max_steps=2,
            warmup=1,
            eval_every=0,
            checkpoint_every=2,
            log_every=2,
            model={"max_position_embeddings": 64},
        )
        train(cfg)
        out[arch] = root / arch
    return out


@pytest.fixture(scope="module")
def hf_dir(runs, tmp_path_factory):
    """The bert run exported with `bertkit export hf`."""
    out = tmp_path_factory.mktemp("hf") / "bert"
    result = runner.invoke(app, ["export", "hf", str(runs["bert"]), str(out)])
    assert result.exit_code == 0, result.output
    return out


REFERENCE = r"""
import json, sys
import torch
from transformers import AutoModelForMaskedLM, AutoTokenizer

path, sentences = sys.argv[1], json.loads(sys.argv[2])
tok = AutoTokenizer.from_pretrained(path)
model = AutoModelForMaskedLM.from_pretrained(path).eval()
out = []
for s in sentences:
    enc = tok(s, return_tensors="pt")
    ids, words = enc["input_ids"][0], enc.word_ids(0)
    scores = {"pll": 0.0, "pll-word-l2r": 0.0}
    for i, w in enumerate(words):
        if w is None:
            continue
        for variant in scores:
            masked = ids.clone()
            masked[i] = tok.mask_token_id
            j = i + 1
            while variant == "pll-word-l2r" and j < len(words) and words[j] == w:
                masked[j] = tok.mask_token_id
                j += 1
            with torch.no_grad():  # one full forward per masked copy, logits at every position
                logits = model(input_ids=masked[None], attention_mask=enc["attention_mask"]).logits[0]
            scores[variant] += torch.log_softmax(logits[i], -1)[ids[i]].item()
    out.append({"ids": ids.tolist(), "words": [w for w in words], **scores})
print(json.dumps(out))
"""


def sentences() -> list[str]:
    pairs = [p for group in read_blimp(BLIMP).values() for p in group]
    return [s for p in pairs for s in (p.good, p.bad)]


def reference(hf: Path, texts: list[str]) -> list[dict]:
    proc = subprocess.run(
        [sys.executable, "-c", REFERENCE, str(hf), json.dumps(texts)], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)


# ------------------------------------------------------------------------------------------------ fidelity


def test_masked_copies_of_each_variant():
    words = [None, 0, 1, 1, 1, 2, None]  # [CLS] a b ##b ##b c [SEP]
    assert masked_copies(words, "pll") == [(1, (1,)), (2, (2,)), (3, (3,)), (4, (4,)), (5, (5,))]
    assert masked_copies(words, "pll-word-l2r") == [(1, (1,)), (2, (2, 3, 4)), (3, (3, 4)), (4, (4,)), (5, (5,))]
    with pytest.raises(ConfigError, match="unknown PLL scoring variant.*'pll-l2r'.*valid: pll, pll-word-l2r"):
        masked_copies(words, "pll-l2r")


@pytest.mark.slow
def test_scores_equal_the_plain_transformers_reference(runs, hf_dir):
    texts = sentences()
    ref = reference(hf_dir, texts)
    assert any(len(set(w for w in r["words"] if w is not None)) < len(r["words"]) - 2 for r in ref)  # split words
    assert any(abs(r["pll"] - r["pll-word-l2r"]) > 1e-3 for r in ref)  # the variants differ on them
    for scorer in (load_scorer(runs["bert"], device="cpu"), load_scorer(hf_dir, device="cpu")):
        assert [ids for ids, _ in scorer.tokenize(texts)] == [r["ids"] for r in ref], scorer.kind
        ours = score_sentences(scorer, texts, batch_size=7)  # batches cut across sentences of mixed lengths
        for text, o, r in zip(texts, ours, ref, strict=True):
            for v in ("pll", "pll-word-l2r"):
                assert o[v] == pytest.approx(r[v], abs=1e-4), (scorer.kind, v, text)


def test_batching_does_not_change_the_scores(runs):
    scorer = load_scorer(runs["bert"], device="cpu")
    texts = sentences()[:12]
    one = score_sentences(scorer, texts, batch_size=1)
    many = score_sentences(scorer, texts, batch_size=500)
    for a, b in zip(one, many, strict=True):
        for v in a:
            assert a[v] == pytest.approx(b[v], abs=1e-4)


@pytest.mark.parametrize("arch", ARCHS)
def test_every_architecture_matches_a_per_copy_forward(runs, arch):
    """The batched scorer equals masking one copy at a time through the model's own full forward (mlm_logits at
    every position), for NarrowBERT's query rows and LTG/ELC-BERT's head alike."""
    scorer = load_scorer(runs[arch], device="cpu")
    texts = ["The cats sleeps on the mat.", "Who does the girl wonder why the cat likes?"]
    ours = score_sentences(scorer, texts, batch_size=5)
    model = scorer.model
    for (ids, words), o in zip(scorer.tokenize(texts), ours, strict=True):
        for variant in ("pll", "pll-word-l2r"):
            total = 0.0
            for at, masked in masked_copies(words, variant):
                x = torch.tensor([ids])
                x[0, list(masked)] = scorer.mask_id
                with torch.no_grad():
                    logits = model.mlm_logits(x, None, None, None)  # every position through the head
                total += torch.log_softmax(logits[at], -1)[ids[at]].item()
            assert o[variant] == pytest.approx(total, abs=1e-4), (arch, variant)


@pytest.mark.parametrize("arch", ["narrowbert", "elc-bert", "ltg-bert"])
def test_remote_code_exports_score_like_their_runs(runs, arch, tmp_path):
    """`bertkit export hf` of the other architectures writes remote-code directories (auto_map): scored through
    AutoModelForMaskedLM with trust_remote_code, they give the run's own scores."""
    out = tmp_path / arch
    result = runner.invoke(app, ["export", "hf", str(runs[arch]), str(out)])
    assert result.exit_code == 0, result.output
    texts = sentences()[:8]
    ours = score_sentences(load_scorer(runs[arch], device="cpu"), texts)
    exported = score_sentences(load_scorer(out, device="cpu", trust_remote_code=True), texts)
    for a, b in zip(ours, exported, strict=True):
        for v in a:
            assert a[v] == pytest.approx(b[v], abs=1e-4), (arch, v)


# ------------------------------------------------------------------------------------------------ results


def test_results_per_paradigm_and_phenomenon(runs, tmp_path):
    out = tmp_path / "res" / "blimp.json"
    result = evaluate_blimp(load_scorer(runs["ltg-bert"], device="cpu"), BLIMP, out=out)
    assert result["status"] == "done"
    saved = json.loads(out.read_text())
    assert saved["paradigms"].keys() == read_blimp(BLIMP).keys()
    assert set(saved["phenomena"]) == {
        "subject_verb_agreement",
        "determiner_noun_agreement",
        "island_effects",
        "npi_licensing",
        "filler_gap_dependency",
    }
    assert saved["phenomena"]["island_effects"]["paradigms"] == ["adjunct_island", "wh_island"]
    for v in ("pll", "pll-word-l2r"):
        accs = [e["accuracy"][v] for e in saved["paradigms"].values()]
        assert all(0 <= a <= 1 for a in accs)
        assert saved["average"][v] == pytest.approx(sum(accs) / len(accs))
        phen = [p["accuracy"][v] for p in saved["phenomena"].values()]
        assert saved["phenomenon_average"][v] == pytest.approx(sum(phen) / len(phen))
        island = [saved["paradigms"][u]["accuracy"][v] for u in ("adjunct_island", "wh_island")]
        assert saved["phenomena"]["island_effects"]["accuracy"][v] == pytest.approx(sum(island) / 2)
        e = saved["paradigms"]["wh_island"]
        assert e["correct"][v] / e["pairs"] == e["accuracy"][v] and e["pairs"] == 3
    md = out.with_suffix(".md").read_text()
    assert "| island_effects (2) |" in md and "| wh_island | island_effects | 3 |" in md
    assert "macro average over phenomena" in md


def test_a_pair_is_right_when_the_good_sentence_scores_higher(runs, tmp_path):
    scorer = load_scorer(runs["bert"], device="cpu")
    data = tmp_path / "one.jsonl"
    pairs = [("The dog runs home.", "The dog run home."), ("The dog run home.", "The dog runs home.")]
    data.write_text(
        "".join(
            json.dumps({"sentence_good": g, "sentence_bad": b, "field": "f", "linguistics_term": "t", "UID": "u"})
            + "\n"
            for g, b in pairs
        )
    )
    result = evaluate_blimp(scorer, data, variants="pll", out=tmp_path / "r.json")
    good, bad = (s["pll"] for s in score_sentences(scorer, ["The dog runs home.", "The dog run home."]))
    assert good != bad
    assert result["paradigms"]["u"]["correct"] == {"pll": 1}  # exactly one of the two orders is right
    assert result["variants"] == ["pll"] and set(result["average"]) == {"pll"}


def test_resume_keeps_finished_paradigms(runs, tmp_path, monkeypatch):
    import bertkit.eval.blimp as blimp

    scorer = load_scorer(runs["bert"], device="cpu")
    out = tmp_path / "blimp.json"
    real = blimp.score_token_ids
    calls: list[int] = []

    def interrupted(*args, **kwargs):
        if len(calls) == 3:
            raise KeyboardInterrupt
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(blimp, "score_token_ids", interrupted)
    with pytest.raises(KeyboardInterrupt):
        evaluate_blimp(scorer, BLIMP, out=out)
    partial = json.loads(out.read_text())
    assert partial["status"] == "partial"
    done = [u for u, e in partial["paradigms"].items() if e["status"] == "done"]
    assert len(done) == 3
    assert "Partial" in out.with_suffix(".md").read_text()

    calls.clear()
    scored: list[int] = []
    monkeypatch.setattr(blimp, "score_token_ids", lambda *a, **k: scored.append(1) or real(*a, **k))
    events: list[dict] = []
    result = evaluate_blimp(scorer, BLIMP, out=out, on_progress=events.append)
    assert result["status"] == "done" and len(scored) == len(read_blimp(BLIMP)) - 3
    assert sorted(e["paradigm"] for e in events if e.get("status") == "skipped") == sorted(done)
    fresh = evaluate_blimp(scorer, BLIMP, out=tmp_path / "fresh.json")
    assert result["paradigms"] == fresh["paradigms"] and result["average"] == fresh["average"]

    # another model: start over; changed sentences: that paradigm again
    other = load_scorer(runs["narrowbert"], device="cpu")
    events.clear()
    evaluate_blimp(other, BLIMP, out=out, on_progress=events.append)
    assert any(e["event"] == "restart" for e in events)
    assert not any(e.get("status") == "skipped" for e in events)


def test_changed_sentences_rescore_that_paradigm(runs, tmp_path):
    scorer = load_scorer(runs["bert"], device="cpu")
    data = tmp_path / "blimp"
    shutil.copytree(BLIMP, data)
    out = tmp_path / "r.json"
    evaluate_blimp(scorer, data, out=out)
    path = data / "wh_island.jsonl"
    path.write_text(path.read_text().replace("think", "say"))
    events: list[dict] = []
    evaluate_blimp(scorer, data, out=out, on_progress=events.append)
    started = [e["paradigm"] for e in events if e.get("status") == "start"]
    assert started == ["wh_island"]


def test_cli_on_a_run_and_an_hf_directory(runs, hf_dir, tmp_path):
    result = runner.invoke(app, ["eval", "blimp", str(runs["bert"]), "--data", str(BLIMP), "--variant", "pll"])
    assert result.exit_code == 0, result.output
    saved = json.loads((runs["bert"] / "eval" / "blimp.json").read_text())
    assert saved["variants"] == ["pll"] and saved["status"] == "done"
    assert "filler_gap_dependency" in result.output and "written to" in result.output
    out = tmp_path / "hf.json"
    result = runner.invoke(app, ["eval", "blimp", str(hf_dir), "--data", str(BLIMP), "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    hf = json.loads(out.read_text())
    assert hf["source"]["kind"] == "hf" and hf["source"]["arch"] == "hf:bert"
    run_scores = evaluate_blimp(load_scorer(runs["bert"], device="cpu"), BLIMP, out=tmp_path / "run.json")
    assert hf["average"] == pytest.approx(run_scores["average"])  # the same model, the same pairs right


# ------------------------------------------------------------------------------------------------ bad input


def _pair_line(**kw) -> str:
    row = {"sentence_good": "The dog runs.", "sentence_bad": "The dog run.", "field": "morphology"}
    row.update({"linguistics_term": "subject_verb_agreement", "UID": "p"}, **kw)
    return json.dumps({k: v for k, v in row.items() if v is not None}) + "\n"


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (_pair_line(UID=None), r"bad\.jsonl:2: no 'UID' field; not a BLiMP file"),
        (_pair_line(sentence_bad="  "), r"bad\.jsonl:2: sentence_bad is empty"),
        (_pair_line(sentence_good=3), r"bad\.jsonl:2: field 'sentence_good' is int, not a string"),
        ("{not json\n", r"bad\.jsonl:2: not valid JSON"),
        ("[1, 2]\n", r"bad\.jsonl:2: not a JSON object"),
    ],
)
def test_malformed_files_name_the_file_and_line(runs, tmp_path, line, message):
    data = tmp_path / "data"
    data.mkdir()
    (data / "a_good.jsonl").write_text(_pair_line(UID="a"))
    (data / "bad.jsonl").write_text(_pair_line() + line)
    scorer = load_scorer(runs["bert"], device="cpu")
    out = tmp_path / "r.json"
    with pytest.raises(FormatError, match=message):
        evaluate_blimp(scorer, data, out=out)
    assert not out.exists() and not out.with_suffix(".md").exists()  # nothing scored, nothing written
    result = runner.invoke(app, ["eval", "blimp", str(runs["bert"]), "--data", str(data), "--out", str(out)])
    assert result.exit_code == 1 and "error" in result.output and "Traceback" not in result.output
    assert "bad.jsonl:2" in result.output.replace("\n", "")


def test_sentence_longer_than_the_positions(runs, tmp_path):
    data = tmp_path / "long.jsonl"
    long = " ".join(["the cat"] * 40) + "."
    data.write_text(_pair_line() + _pair_line(sentence_bad=long))
    out = tmp_path / "r.json"
    with pytest.raises(FormatError, match=r"long\.jsonl:2: sentence_bad: 83 tokens .* more than the 64 positions"):
        evaluate_blimp(load_scorer(runs["elc-bert"], device="cpu"), data, out=out)
    assert not out.exists()


def test_other_bad_input(runs, hf_dir, tmp_path):
    scorer = load_scorer(runs["bert"], device="cpu")
    with pytest.raises(ConfigError, match="unknown PLL scoring variant.*'word'"):
        evaluate_blimp(scorer, BLIMP, variants="pll,word", out=tmp_path / "r.json")
    with pytest.raises(ConfigError, match="batch_size must be a positive integer"):
        evaluate_blimp(scorer, BLIMP, batch_size=0, out=tmp_path / "r.json")
    with pytest.raises(ConfigError, match="no BLiMP files"):
        evaluate_blimp(scorer, tmp_path, out=tmp_path / "r.json")
    with pytest.raises(ConfigError, match="not found"):
        evaluate_blimp(scorer, tmp_path / "nothing", out=tmp_path / "r.json")
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(FormatError, match=r"empty\.jsonl: no minimal pairs"):
        read_blimp(tmp_path / "empty.jsonl")
    mixed = tmp_path / "mixed.jsonl"
    mixed.write_text(_pair_line() + _pair_line(linguistics_term="binding"))
    with pytest.raises(FormatError, match=r"mixed\.jsonl:2: paradigm 'p' has linguistics_term 'binding'"):
        read_blimp(mixed)
    with pytest.raises(ConfigError, match="device must be"):
        load_scorer(runs["bert"], device="tpu")
    assert not (tmp_path / "r.json").exists()
    result = runner.invoke(app, ["eval", "blimp", str(runs["bert"]), "--data", str(BLIMP), "--variant", "l2r"])
    assert result.exit_code == 1 and "unknown PLL scoring variant" in result.output
    result = runner.invoke(app, ["eval", "blimp", str(runs["bert"]), "--data", str(BLIMP), "--batch-size", "0"])
    assert result.exit_code == 1 and "batch_size must be a positive integer" in result.output


def test_a_model_without_an_mlm_head(hf_dir, tmp_path):
    """A fine-tuned classifier saved by transformers has no MLM head: refused before anything is scored."""
    transformers = pytest.importorskip("transformers")
    clf = transformers.BertForSequenceClassification.from_pretrained(str(hf_dir), num_labels=2)
    path = tmp_path / "classifier"
    clf.save_pretrained(str(path))
    for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        if (hf_dir / name).is_file():
            shutil.copy(hf_dir / name, path / name)
    with pytest.raises(ConfigError, match=r"classifier: has no trained masked-LM head .*BertForSequenceClassification"):
        load_scorer(path, device="cpu")
    result = runner.invoke(app, ["eval", "blimp", str(path), "--data", str(BLIMP)])
    assert result.exit_code == 1 and "masked-LM head" in result.output
    assert not (path / "eval").exists()


def test_a_run_without_a_token_mlm_head_is_refused(tmp_path, monkeypatch):
    """A NextLevel run (chunk embeddings in, no token vocabulary) cannot be scored; refused before any data is read."""
    from bertkit.eval import blimp

    config = type("Config", (), {"data": ""})()
    monkeypatch.setattr(blimp, "_load_run_model", lambda path, checkpoint: (object(), "nextlevel", 1, config))
    (tmp_path / "run").mkdir()
    with pytest.raises(ConfigError, match="'nextlevel' run has no token masked-LM head"):
        load_scorer(tmp_path / "run", device="cpu")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_scores_equal_the_cpu_ones(runs):
    texts = sentences()[:10]
    for arch in ARCHS:
        cpu = score_sentences(load_scorer(runs[arch], device="cpu"), texts)
        gpu = score_sentences(load_scorer(runs[arch], device="cuda"), texts)
        for a, b in zip(cpu, gpu, strict=True):
            for v in a:
                assert a[v] == pytest.approx(b[v], abs=1e-3), (arch, v)
