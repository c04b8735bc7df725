"""A NextLevel run reads chunk embeddings and has no token fine-tuning heads: `eval classify` / `eval ner` on it say
so and point at `eval classify --embeddings` / `eval retrieval`, instead of failing on the missing tokenizer."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")
pytest.importorskip("bertkit._core")

from typer.testing import CliRunner  # noqa: E402

from bertkit.eval.finetune import load_backbone  # noqa: E402
from bertkit.exceptions import ConfigError  # noqa: E402
from bertkit_cli import app  # noqa: E402

pytest_plugins = ["nextlevel_fixtures"]
runner = CliRunner()


def test_load_backbone_refuses_a_nextlevel_run(nl_run):
    with pytest.raises(ConfigError, match=r"'nextlevel' run reads embeddings.*--embeddings"):
        load_backbone(nl_run)


def test_cli_finetuning_a_nextlevel_run_is_a_clear_error(nl_run, tmp_path):
    task = tmp_path / "task"
    task.mkdir()
    (task / "train.jsonl").write_text('{"text": "a dog", "label": "pos"}\n{"text": "a cat", "label": "neg"}\n')
    conll = tmp_path / "train.conll"
    conll.write_text("a O\ndog B-animal\n\n")
    for args in (
        ["eval", "classify", str(nl_run), "--data", str(task)],
        ["eval", "ner", str(nl_run), "--train", str(conll)],
    ):
        r = runner.invoke(app, args)
        assert r.exit_code == 1, (args, r.output)
        assert "no fine-tuning heads" in r.output and "Traceback" not in r.output, (args, r.output)
