"""`bertkit export hf`: a tiny trained run exported and loaded by `transformers` (BertForPreTraining and
BertForMaskedLM give bertkit's outputs within 1e-5 in fp32), and `bertkit train --init-from` with MiniLM."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("bertkit._core")

from conftest import random_docs, tiny_train_config, write_fixture_dataset  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from bertkit.eval import load_run  # noqa: E402
from bertkit.train.checkpoint import load_model_state  # noqa: E402
from bertkit.train.config import TrainConfig  # noqa: E402
from bertkit.train.trainer import train  # noqa: E402
from bertkit_cli import app  # noqa: E402

runner = CliRunner()


def run_config(dataset: Path, out: Path, **kw) -> TrainConfig:
    return tiny_train_config(
        dataset, out, **{"batch_size": 8, "max_steps": 4, "lr": 5e-3, "warmup": 1, "eval_every": 0,
                         "checkpoint_every": 2, "log_every": 2, **kw}
    )  # fmt: skip


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    ds = write_fixture_dataset(root / "ds", random_docs(200, seed=3), docs_per_shard=50)
    train(run_config(ds, root / "run", view="nsp"))  # NSP view: the NSP head is trained too
    return ds, root / "run"


def batch(vocab_size: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(5, vocab_size, (3, 20), generator=g)
    ids[:, 0], ids[:, 9], ids[:, -1] = 2, 3, 3
    mask = torch.ones_like(ids)
    mask[1, 15:] = 0  # padding in one row
    types = torch.zeros_like(ids)
    types[:, 10:] = 1
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}


def test_export_loads_in_transformers_with_equal_outputs(trained, tmp_path):
    transformers = pytest.importorskip("transformers")
    ds, run = trained
    out = tmp_path / "hf"
    result = runner.invoke(app, ["export", "hf", str(run), str(out)])
    assert result.exit_code == 0, result.output
    assert "step 4" in result.output
    for name in ("config.json", "model.safetensors", "vocab.txt", "tokenizer_config.json"):
        assert (out / name).is_file(), name
    assert (out / "vocab.txt").read_text() == (ds / "tokenizer" / "vocab.txt").read_text()

    loaded = load_run(run)
    ours = loaded.model.eval()
    inputs = batch(loaded.model_config.vocab_size)
    with torch.no_grad():
        logits = ours.mlm_logits(**inputs).reshape(3, 20, -1)
        nsp = ours.nsp_logits(**inputs)
        pre = transformers.BertForPreTraining.from_pretrained(out, attn_implementation="sdpa").eval()
        mlm = transformers.BertForMaskedLM.from_pretrained(out, attn_implementation="sdpa").eval()
        hf_pre = pre(**inputs)
        hf_mlm = mlm(**inputs)
    assert pre.dtype == torch.float32
    keep = inputs["attention_mask"].bool()  # padded positions are not compared (their hidden states are arbitrary)
    torch.testing.assert_close(hf_pre.prediction_logits[keep], logits[keep], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(hf_pre.seq_relationship_logits, nsp, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(hf_mlm.logits[keep], logits[keep], atol=1e-5, rtol=1e-5)
    # the trained weights went out, not a fresh init
    trained_w = ours.bert.encoder.layer[0].attention.self.query.weight
    torch.testing.assert_close(pre.bert.encoder.layer[0].attention.self.query.weight, trained_w)
    tok = transformers.AutoTokenizer.from_pretrained(out)
    assert tok.convert_tokens_to_ids(["[CLS]", "the", "cat"]) == [2, 5, 6]


def test_export_an_older_checkpoint_and_overwrite(trained, tmp_path):
    from safetensors.torch import load_file

    ds, run = trained
    out = tmp_path / "hf"
    ckpt2 = run / "checkpoints" / "ckpt-000002"
    assert runner.invoke(app, ["export", "hf", str(run), str(out), "--checkpoint", str(ckpt2)]).exit_code == 0
    w2 = load_file(str(out / "model.safetensors"))["bert.embeddings.word_embeddings.weight"]
    again = runner.invoke(app, ["export", "hf", str(run), str(out)])
    assert again.exit_code == 1 and "--overwrite" in again.output and "Traceback" not in again.output
    assert runner.invoke(app, ["export", "hf", str(run), str(out), "--overwrite"]).exit_code == 0
    w4 = load_file(str(out / "model.safetensors"))["bert.embeddings.word_embeddings.weight"]
    want2 = load_model_state(ckpt2)["bert.embeddings.word_embeddings.weight"]
    torch.testing.assert_close(w2, want2)
    assert not torch.equal(w2, w4)
    assert json.loads((out / "config.json").read_text())["vocab_size"] == 64


def test_export_errors(trained, tmp_path):
    _, run = trained
    empty = tmp_path / "empty"
    empty.mkdir()
    result = runner.invoke(app, ["export", "hf", str(empty), str(tmp_path / "out")])
    assert result.exit_code == 1 and "no complete checkpoint" in result.output and str(empty) in result.output
    assert not (tmp_path / "out").exists()
    result = runner.invoke(app, ["export", "hf", str(run), str(tmp_path / "out"), "--checkpoint", str(empty)])
    assert result.exit_code == 1 and "not a complete checkpoint" in result.output


@pytest.mark.slow
def test_minilm_initialises_a_bert_run(data_dir, tmp_path):
    """all-MiniLM-L6 (a bare BertModel: heads fresh) starts a bert run on news tokenized with its vocabulary; a few
    steps train, the encoder starts from MiniLM's weights, and the export round-trips into transformers."""
    from safetensors.torch import load_file
    from tokenizers import Tokenizer

    minilm = data_dir / "minilm"
    tok = Tokenizer.from_file(str(minilm / "tokenizer.json"))
    tok.no_padding()
    tok.no_truncation()
    articles = [a for a in (data_dir / "news.txt").read_text(encoding="utf-8").split("\n\n") if a.strip()][:150]
    docs = []
    for a in articles:
        lines = [line for line in a.splitlines() if line.strip()]
        docs.append([e.ids for e in tok.encode_batch(lines, add_special_tokens=False) if e.ids])
    vocab = (minilm / "vocab.txt").read_text(encoding="utf-8").splitlines()
    ds = write_fixture_dataset(tmp_path / "ds", [d for d in docs if d], docs_per_shard=50, vocab=vocab)
    run = tmp_path / "run"
    cli_args = ["train", "--data", str(ds), "--out", str(run), "--init-from", str(minilm), "--max-steps", "4"]
    cli_args += ["--batch-size", "8", "--seq-len", "64", "--lr", "1e-4", "--warmup", "1", "--device", "cpu", "-q"]
    cli_args += ["--eval-every", "4", "--checkpoint-every", "0"]
    result = runner.invoke(app, cli_args)
    assert result.exit_code == 0, result.output
    loaded = load_run(run)
    assert loaded.model_config.hidden_size == 384 and loaded.model_config.num_hidden_layers == 6
    start = load_file(str(minilm / "model.safetensors"))
    w0 = start["embeddings.word_embeddings.weight"]
    w = loaded.model.bert.embeddings.word_embeddings.weight.detach()
    # a few small AdamW steps: moved, but still MiniLM's embedding (not a fresh init)
    assert not torch.equal(w, w0) and (w - w0).abs().max() < 1e-2
    evaluated = runner.invoke(app, ["eval", "mlm", str(run), "--device", "cpu", "--show", "1"])
    assert evaluated.exit_code == 0, evaluated.output
    result = json.loads((run / "eval_mlm.json").read_text())
    # MiniLM's embeddings are the tied decoder: after 4 steps of the fresh head transform the loss (measured 8.1) is
    # far below the ≈ ln(30522) = 10.3 of a fresh model
    assert result["mlm_loss"] < 9.3 and result["step"] == 4


def test_export_refuses_what_it_must_not_replace(trained, tmp_path):
    """OUT a file, OUT a directory bertkit did not write (even with --overwrite), OUT locked by another writer, a
    tokenizer transformers cannot express: one-line errors naming the path, nothing replaced or half-written."""
    from bertkit.locks import output_lock

    _, run = trained
    a_file = tmp_path / "file"
    a_file.write_text("mine")
    for extra in ([], ["--overwrite"]):
        result = runner.invoke(app, ["export", "hf", str(run), str(a_file), *extra])
        assert result.exit_code == 1 and f"{a_file}: exists and is not a directory" in result.output, result.output
    assert a_file.read_text() == "mine"

    theirs = tmp_path / "theirs"
    (theirs / "sub").mkdir(parents=True)
    (theirs / "notes.txt").write_text("keep")
    result = runner.invoke(app, ["export", "hf", str(run), str(theirs), "--overwrite"])
    assert result.exit_code == 1 and f"{theirs}: not a bertkit export" in result.output, result.output
    assert sorted(p.name for p in theirs.iterdir()) == ["notes.txt", "sub"]

    out = tmp_path / "out"
    assert runner.invoke(app, ["export", "hf", str(run), str(out)]).exit_code == 0
    (out / "extra").mkdir()
    result = runner.invoke(app, ["export", "hf", str(run), str(out), "--overwrite"])
    assert result.exit_code == 1 and "holds files bertkit did not write (extra/)" in result.output, result.output
    (out / "extra").rmdir()
    with output_lock(out, purpose="another export"):
        result = runner.invoke(app, ["export", "hf", str(run), str(out), "--overwrite"])
    assert result.exit_code == 1 and "another bertkit process is writing here" in result.output, result.output
    assert "another export" in result.output

    bad = tmp_path / "badtok"
    bad.mkdir()
    (bad / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "a"]) + "\n")
    fresh = tmp_path / "fresh"
    result = runner.invoke(app, ["export", "hf", str(run), str(fresh), "--tokenizer", str(bad)])
    assert result.exit_code == 1 and f"{bad / 'vocab.txt'}: token 'a' appears at ids 5 and 6" in result.output
    assert "Traceback" not in result.output
    assert not fresh.exists() and not list(tmp_path.glob(".fresh*"))
