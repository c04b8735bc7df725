"""`bertkit eval ner`: the CoNLL reader and its line-numbered errors, entity-F1 fine-tuning on a fixture that can be
learnt (long sentences split into windows), and the command line."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("bertkit._core")

from conftest import random_docs, tiny_train_config, write_fixture_dataset  # noqa: E402
from eval_fixtures import WORDS, tiny_backbone  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from bertkit.eval.finetune import FinetuneConfig  # noqa: E402
from bertkit.eval.ner import evaluate_ner, split_sentences  # noqa: E402
from bertkit.eval.tasks import read_conll  # noqa: E402
from bertkit.exceptions import ConfigError, FormatError  # noqa: E402
from bertkit_cli import app  # noqa: E402

runner = CliRunner()


def conll_text(n: int, seed: int, length: tuple[int, int] = (3, 9)) -> str:
    """Sentences where 'cat' / 'dog' are ANIMALs and 'on mat' is a THING (B-THING I-THING); the rest O."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        words = [(w, "O") for w in (rng.choice(WORDS[8:]) for _ in range(rng.randint(*length)))]
        words.insert(rng.randrange(len(words) + 1), (rng.choice(["cat", "dog"]), "B-ANIMAL"))
        at = rng.randrange(len(words) + 1)
        words[at:at] = [("on", "B-THING"), ("mat", "I-THING")]
        out.append("\n".join(f"{w}\t{t}" for w, t in words))
    return "\n\n".join(out) + "\n"


def test_read_conll_layouts_and_errors(tmp_path):
    path = tmp_path / "a.conll"
    path.write_text("-DOCSTART- -X- O O\n\nEU NNP B-ORG\nrejects VBZ O\n \t\nPeter\tB-PER\nBlackburn\tI-PER\n\n\n")
    sentences = read_conll(path)
    assert [s.words for s in sentences] == [["EU", "rejects"], ["Peter", "Blackburn"]]
    assert [s.tags for s in sentences] == [["B-ORG", "O"], ["B-PER", "I-PER"]]
    assert sentences[1].lines == [6, 7]
    cases = {
        "token\tO\nlonely\n": r"b\.conll:2: expected 'token<TAB>tag'",
        "a\tO\n\nb\tB_PER\n": r"b\.conll:3: tag 'B_PER' is not BIO / IOB2",
        "a\tO\nb\tI-\n": r"b\.conll:2: tag 'I-' is not BIO",
        "\n\n  \n": r"b\.conll: the file is empty",
        "-DOCSTART-\tO\n\n": r"b\.conll: no sentences",
    }
    for content, message in cases.items():
        (tmp_path / "b.conll").write_text(content)
        with pytest.raises(FormatError, match=message):
            read_conll(tmp_path / "b.conll")
    (tmp_path / "c.conll").write_bytes(b"caf\xe9\tO\n")
    with pytest.raises(FormatError, match="not UTF-8"):
        read_conll(tmp_path / "c.conll")


def test_split_sentences():
    kept, held = split_sentences(20, 0.1, 0)
    assert len(held) == 2 and sorted(kept + held) == list(range(20)) and split_sentences(20, 0.1, 0) == (kept, held)
    with pytest.raises(ConfigError):
        split_sentences(1, 0.1, 0)


def _task(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "train.conll").write_text(conll_text(120, 0))
    (root / "dev.conll").write_text(conll_text(20, 1))
    (root / "test.conll").write_text(conll_text(20, 2, length=(10, 16)))  # longer than a 16-token row: windows
    return root


def test_fine_tuning_learns_entities_and_unknown_tags_are_errors(tmp_path):
    task = _task(tmp_path / "ner")
    backbone = tiny_backbone(tmp=tmp_path)
    config = FinetuneConfig(lr=2e-3, batch_size=8, epochs=4, max_len=16, dropout=0.0, select="best", device="cpu")
    out = tmp_path / "res.json"
    result = evaluate_ner(
        backbone, task / "train.conll", dev=task / "dev.conll", test=task / "test.conll", config=config, out=out
    )
    assert result["tags"] == ["O", "B-ANIMAL", "B-THING", "I-THING"]
    test = result["median"]["test"]
    assert test["f1"] >= 0.9 and test["gold_entities"] == 40 and set(test["per_type"]) >= {"ANIMAL", "THING"}
    assert (
        result["counts"]["test"]["sentences"] == 20
        and json.loads(out.read_text())["median"]["test"]["f1"] == (test["f1"])
    )
    (tmp_path / "bad.conll").write_text("cat\tB-ANIMAL\nw20\tB-PERSON\n")
    with pytest.raises(FormatError, match=r"bad\.conll:2: tag 'B-PERSON' never occurs in the training file"):
        evaluate_ner(backbone, task / "train.conll", dev=tmp_path / "bad.conll", config=config)


def test_strict_mode_changes_decoding(tmp_path):
    task = tmp_path / "t"
    task.mkdir()
    (task / "train.conll").write_text("cat\tB-ANIMAL\nmat\tI-THING\n\ndog\tO\n")
    backbone = tiny_backbone(tmp=tmp_path)
    config = FinetuneConfig(lr=1e-3, batch_size=2, epochs=1, max_len=16, device="cpu")
    lenient = evaluate_ner(backbone, task / "train.conll", dev=task / "train.conll", config=config)
    strict = evaluate_ner(backbone, task / "train.conll", dev=task / "train.conll", config=config, strict=True)
    assert lenient["median"]["dev"]["gold_entities"] == 2 and strict["median"]["dev"]["gold_entities"] == 1


def test_cli_ner_on_a_run(tmp_path):
    from bertkit.train.trainer import train

    ds = write_fixture_dataset(tmp_path / "ds", random_docs(40, seed=5), docs_per_shard=20)
    train(tiny_train_config(ds, tmp_path / "run", batch_size=4, max_steps=2, eval_every=0, checkpoint_every=2))
    task = _task(tmp_path / "wnut")
    r = runner.invoke(
        app,
        [
            "eval",
            "ner",
            str(tmp_path / "run"),
            "--data",
            str(task),
            "--epochs",
            "1",
            "--max-len",
            "32",
            "--device",
            "cpu",
            "--max-steps",
            "4",
        ],
    )
    assert r.exit_code == 0, r.output
    saved = json.loads((tmp_path / "run" / "eval" / "ner-wnut.json").read_text())
    assert saved["runs"][0]["steps"] == 4 and set(saved["median"]) == {"dev", "test"}
    (task / "train.conll").write_text("cat\tB-ANIMAL\nbroken\n")
    r = runner.invoke(app, ["eval", "ner", str(tmp_path / "run"), "--data", str(task), "--device", "cpu"])
    assert r.exit_code == 1 and "train.conll:2: expected 'token<TAB>tag'" in r.output and "Traceback" not in r.output
