"""`bertkit train --arch nextlevel` on a tiny embedding store: the shared trainer end to end, exact resume (data
cursor and keyed chunk masking), the run's record of its encoder, the CLI, and bad input before the first step."""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("bertkit._core")

from conftest import random_docs, tiny_train_config, write_fixture_dataset  # noqa: E402

pytest_plugins = ["nextlevel_fixtures"]  # the nl_world / nl_run fixtures

from bertkit.exceptions import ConfigError, FormatError  # noqa: E402
from bertkit.train import checkpoint as ck  # noqa: E402
from bertkit.train.trainer import train  # noqa: E402


def config(store, out, **kw):
    base = dict(arch="nextlevel", seq_len=16, batch_size=4, eval_every=4, eval_batches=2)
    base.update(kw)
    return tiny_train_config(store, out, **base)


def records(run, kind):
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r.get("kind") == kind]


def weights(ckpt):
    return ck.load_model_state(ckpt)


def test_train_end_to_end_and_exact_resume(nl_world, tmp_path):
    store = nl_world[2]
    kw = dict(max_steps=8, grad_accum=2, schedule="cosine", checkpoint_every=0, lr=1e-3)
    straight = train(config(store, tmp_path / "a", **kw))
    assert straight.step == 8 and straight.final_loss is not None and straight.tokens == 8 * 2 * 4 * 16
    ev = straight.eval
    assert ev["mlm_loss"] > 0 and 0.0 <= ev["mlm_accuracy"] <= 1.0 and ev["masked_tokens"] > 0
    meta = ck.read_meta(straight.checkpoint)
    assert meta["arch"] == "nextlevel"
    mc = meta["model_config"]
    assert mc["embedding_dim"] == 32 and mc["chunk_size"] == 16 and mc["encoder"] == str(nl_world[0].resolve())
    assert len(mc["encoder_checksum"]) == 16
    assert records(tmp_path / "a", "train") and records(tmp_path / "a", "eval")

    def stop_at_4(event):
        if event["event"] == "step" and event["step"] == 4:
            raise KeyboardInterrupt

    first = train(config(store, tmp_path / "b", **kw), on_event=stop_at_4)
    assert first.interrupted and first.step == 4
    resumed = train(config(store, tmp_path / "b", **kw), resume=True)
    assert resumed.step == 8 and resumed.steps_this_session == 4
    assert resumed.final_loss == straight.final_loss
    a, b = weights(straight.checkpoint), weights(resumed.checkpoint)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_the_loss_goes_down(nl_world, tmp_path):
    run = train(config(nl_world[2], tmp_path / "r", max_steps=30, lr=3e-3, warmup=0, log_every=5, eval_every=0))
    losses = [r["loss"] for r in records(tmp_path / "r", "train")]
    assert losses[-1] < losses[0] and run.final_loss < losses[0]


def test_adam_eps_is_the_originals_unless_set(nl_world, tmp_path):
    # the original's torch AdamW default 1e-8: NextLevel gradients are ~1e-6 per entry, BERT's 1e-6 would damp them
    def eps_of(run):
        state = torch.load(run.checkpoint / "optimizer.pt", weights_only=True)
        return {g["eps"] for g in state["param_groups"]}

    auto = train(config(nl_world[2], tmp_path / "auto", max_steps=1, eval_every=0))
    assert eps_of(auto) == {1e-8}
    chosen = train(config(nl_world[2], tmp_path / "set", max_steps=1, eval_every=0, eps=1e-6))
    assert eps_of(chosen) == {1e-6}


def test_the_paper_recipe_file_runs(nl_world, tmp_path):
    from pathlib import Path

    from bertkit.train.config import TrainConfig

    recipe = Path(__file__).resolve().parent.parent / "configs" / "nextlevel-paper.toml"
    c = TrainConfig.from_toml(recipe)
    assert (c.arch, c.preset, c.optimizer, c.lr, c.weight_decay, c.clip, c.resolved_eps()) == (
        "nextlevel",
        "minilm",
        "adamw",
        1e-4,
        0.0,
        0.0,
        1e-8,
    )
    assert (c.schedule, c.warmup_steps(), c.max_steps, c.seq_len, c.batch_size, c.grad_accum) == (
        "cosine",
        1312,
        26250,
        512,
        64,
        2,
    )
    small = {"seq_len": 16, "batch_size": 4, "max_steps": 2, "eval_every": 0, "checkpoint_every": 0}
    run = TrainConfig.from_toml(recipe, {"data": str(nl_world[2]), "out": str(tmp_path / "r"), **small})
    summary = train(run)
    assert summary.step == 2 and ck.read_meta(summary.checkpoint)["model_config"]["init_from_encoder"]


def test_paper_preset_starts_from_the_encoder(nl_world, tmp_path):
    from bertkit.export.hf import load_hf_bert

    summary = train(config(nl_world[2], tmp_path / "p", preset="minilm", max_steps=1, lr=1e-9, eval_every=0))
    mc = ck.read_meta(summary.checkpoint)["model_config"]
    assert mc["init_from_encoder"] and mc["hidden_size"] == 32 and mc["num_hidden_layers"] == 2
    _, state = load_hf_bert(nl_world[0])
    w = weights(summary.checkpoint)
    key = "encoder.layer.1.output.dense.weight"
    torch.testing.assert_close(w[key], state[f"bert.{key}"], atol=1e-6, rtol=0)  # lr 1e-9: one step moves nothing


def test_bad_input_before_the_first_step(nl_world, tmp_path):
    store = nl_world[2]
    with pytest.raises(ConfigError, match="masks single chunks"):
        train(config(store, tmp_path / "a", masking="wwm", max_steps=1))
    with pytest.raises(ConfigError, match="dimension 32 but the model's embedding_dim is 8"):
        train(config(store, tmp_path / "b", model={"embedding_dim": 8}, max_steps=1))
    tokens = write_fixture_dataset(tmp_path / "tokens", random_docs(8))
    with pytest.raises(FormatError, match="not an embedding store"):
        train(config(tokens, tmp_path / "c", max_steps=1))
    with pytest.raises(ConfigError, match="cannot initialise from the encoder"):
        train(config(store, tmp_path / "d", init_from=str(tmp_path / "no-encoder"), max_steps=1))
    with pytest.raises(ConfigError, match="too few chunks"):
        train(config(store, tmp_path / "e", seq_len=256, batch_size=64, max_steps=1))
    with pytest.raises(ConfigError, match="above the model's max_position_embeddings"):
        train(
            config(
                store, tmp_path / "f", seq_len=200, batch_size=1, max_steps=1, model={"max_position_embeddings": 128}
            )
        )
    assert not ck.latest(tmp_path / "a") and not ck.latest(tmp_path / "b")


def test_train_cli(nl_world, tmp_path):
    from typer.testing import CliRunner

    from bertkit_cli import app

    out = tmp_path / "cli-run"
    args = ["train", "--arch", "nextlevel", "--preset", "tiny", "--data", str(nl_world[2]), "--out", str(out)]
    args += ["--seq-len", "16", "--batch-size", "4", "--max-steps", "3", "--device", "cpu", "-q", "--eval-every", "3"]
    res = CliRunner(env={"COLUMNS": "300"}).invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "done: 3 steps" in res.output and ck.latest(out).name == "ckpt-000003"
