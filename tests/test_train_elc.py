"""ELC-BERT's training features in the shared trainer: short_p rows, long_after, keep_p, Binomial span masking,
elc-bert runs end to end (checkpoint, exact resume, eval mlm), and bad input rejected before the first step."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("bertkit._core")

from ckpt_helpers import replace_weights  # noqa: E402
from conftest import random_docs, tiny_train_config, write_fixture_dataset  # noqa: E402
from test_loader import CLS, PAD, SEP, VOCAB, unique_docs  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from bertkit.data.loader import PretrainingData, StreamState  # noqa: E402
from bertkit.eval import evaluate_mlm  # noqa: E402
from bertkit.exceptions import ConfigError, FormatError  # noqa: E402
from bertkit.train import checkpoint as ck  # noqa: E402
from bertkit.train.config import Phase, TrainConfig  # noqa: E402
from bertkit.train.trainer import train  # noqa: E402
from bertkit_cli import app  # noqa: E402

runner = CliRunner()
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return write_fixture_dataset(
        tmp_path_factory.mktemp("short") / "ds", unique_docs(220, seed=1), docs_per_shard=40, vocab=VOCAB
    )


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    """About 2,600 tokens (ids in [5, 64) of the tiny fixture vocabulary)."""
    return write_fixture_dataset(tmp_path_factory.mktemp("elc") / "ds", random_docs(300, seed=1), docs_per_shard=50)


def elc_config(dataset: Path, out: Path, **kw) -> TrainConfig:
    return tiny_train_config(
        dataset,
        out,
        **{
            "arch": "elc-bert",
            "batch_size": 8,
            "max_steps": 6,
            "lr": 2e-3,
            "warmup": 1,
            "eval_every": 0,
            "eval_batches": 2,
            "checkpoint_every": 0,
            "log_every": 1,
            **kw,
        },
    )


def records(run: Path, kind: str) -> list[dict]:
    return [r for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if r["kind"] == kind]


# ------------------------------------------------------------------------------------------------ short_p


def test_short_p_cuts_rows_like_the_original_and_keeps_the_others(corpus):
    L = 24
    full = PretrainingData(corpus, view="mlm", seq_len=L, batch_size=16, seed=3)
    short = PretrainingData(corpus, view="mlm", seq_len=L, batch_size=16, seed=3, short_p=0.5)
    cut_rows = rows = 0
    kept_lengths = []
    for (a, _), (b, _) in zip(full.batches(), short.batches(), strict=False):
        if rows >= 600:
            break
        assert "attention_mask" not in a and b["attention_mask"].shape == b["input_ids"].shape
        for x, y, m, special in zip(
            a["input_ids"], b["input_ids"], b["attention_mask"], b["special_tokens_mask"], strict=True
        ):
            rows += 1
            n = int(m.sum())
            if n == L:
                assert np.array_equal(x, y)  # an uncut row is the row without short_p
                continue
            cut_rows += 1
            kept = n - 2  # [CLS] kept tokens [SEP], then padding
            kept_lengths.append(kept)
            assert y[0] == CLS and y[n - 1] == SEP and (y[n:] == PAD).all()
            assert np.array_equal(y[1 : n - 1], x[1 : n - 1]) and (m[:n] == 1).all() and (m[n:] == 0).all()
            assert special[n:].all()  # padding is never masked
            assert not (x[: n - 1] == SEP).all()  # a prefix of the same packed row
    assert abs(cut_rows / rows - 0.5) < 0.08
    assert min(kept_lengths) >= 1 and max(kept_lengths) <= L - 3  # randint(1, L - 2): high exclusive
    assert len(set(kept_lengths)) > 10


def test_short_p_is_keyed_by_the_sample_so_resume_is_exact(corpus):
    data = PretrainingData(corpus, view="mlm", seq_len=24, batch_size=8, seed=5, short_p=0.3)
    it = data.batches(StreamState())
    batches = [next(it) for _ in range(5)]
    resumed, _ = next(data.batches(batches[2][1]))
    assert np.array_equal(resumed["input_ids"], batches[3][0]["input_ids"])
    assert np.array_equal(resumed["attention_mask"], batches[3][0]["attention_mask"])
    other_epoch, _ = next(data.batches(StreamState(1, 0)))
    assert not np.array_equal(other_epoch["attention_mask"], batches[0][0]["attention_mask"])


def test_short_p_needs_a_packed_view(corpus):
    with pytest.raises(ConfigError, match="short_p shortens packed MLM rows"):
        PretrainingData(corpus, view="nsp", seq_len=24, batch_size=4, short_p=0.1)
    with pytest.raises(ConfigError, match="short_p"):
        TrainConfig(view="nsp", short_p=0.1)
    with pytest.raises(ConfigError, match="short_p"):
        PretrainingData(corpus, view="mlm", seq_len=24, batch_size=4, short_p=1.5)


# ------------------------------------------------------------------------------------------- config fields


def test_long_after_is_two_phases_of_the_original():
    c = TrainConfig(seq_len=128, batch_size=256, long_after=0.9, max_steps=15625)
    assert c.resolved_phases() == [Phase(0.9, 128, 256), Phase(pytest.approx(0.1), 512, 64)]
    assert c.phase_starts() == [0, 14062] and c.max_seq_len() == 512  # the original switches at int(0.9 · 15625)
    assert TrainConfig(batch_size=10, long_after=0.5).resolved_phases()[1].batch_size == 2
    with pytest.raises(ConfigError, match="long_after and phases"):
        TrainConfig(long_after=0.9, phases=[{"fraction": 1.0, "seq_len": 64, "batch_size": 4}])
    with pytest.raises(ConfigError, match="batch_size >= 4"):
        TrainConfig(long_after=0.9, batch_size=3)
    with pytest.raises(ConfigError, match="long_after"):
        TrainConfig(long_after=1.0)


def test_keep_p_must_agree_with_mask_p_and_random_p():
    assert TrainConfig(mask_p=0.8, random_p=0.1, keep_p=0.1).keep_p == 0.1
    assert TrainConfig(mask_p=0.7, random_p=0.1, keep_p=0.2).mask_p == 0.7
    with pytest.raises(ConfigError, match=r"keep_p \(0.2\) = 1.1, not 1.*set mask_p = 0.7"):
        TrainConfig(keep_p=0.2)
    with pytest.raises(ConfigError, match="keep_p"):
        TrainConfig(keep_p=-0.1, mask_p=0.9, random_p=0.1)


def test_masking_options_are_validated():
    with pytest.raises(ConfigError, match="mask_count"):
        TrainConfig(mask_count="poisson")
    with pytest.raises(ConfigError, match="not 'wwm'"):
        TrainConfig(masking="wwm", mask_count="binomial")
    with pytest.raises(ConfigError, match="span_lengths"):
        TrainConfig(span_lengths="mod")
    with pytest.raises(ConfigError, match="random_exclude_special"):
        TrainConfig(random_exclude_special="yes")


def test_the_small_recipe_file():
    c = TrainConfig.from_toml(ROOT / "configs" / "elc-bert-small.toml")
    assert (c.arch, c.preset, c.model) == ("elc-bert", "small", {"variant": "zero"})
    assert (c.optimizer, c.lr, c.betas, c.eps, c.weight_decay, c.lamb_trust_ratio) == (
        "lamb",
        1e-2,
        [0.9, 0.98],
        1e-6,
        0.1,
        "elc-faithful",
    )
    assert (c.schedule, c.warmup_steps(), c.min_lr_ratio, c.clip, c.decay_embeddings) == (
        "cosine",
        250,
        0.1,
        2.0,
        False,
    )
    assert (c.masking, c.mask_count, c.span_lengths, c.max_span, c.keep_p, c.short_p) == (
        "span",
        "binomial",
        "truncated",
        9,
        0.1,
        0.1,
    )
    assert c.resolved_phases()[1] == Phase(pytest.approx(0.1), 512, 64)
    # the original's packing and its random ids / maskable [TAB] (pre_training/cache_dataset.py, dataset.py)
    assert (c.view, c.random_ids_low, c.maskable_specials, c.random_exclude_special) == ("elc", 5, ["[TAB]"], False)


# ---------------------------------------------------------------------------------------------- the trainer


def test_elc_run_switches_length_cuts_rows_masks_spans_and_resumes_exactly(dataset, tmp_path):
    kw = dict(
        model={"variant": "weighted_output"},
        seq_len=16,
        batch_size=8,
        long_after=0.5,
        short_p=0.3,
        masking="span",
        mask_count="binomial",
        span_lengths="truncated",
        max_span=9,
        keep_p=0.1,
        random_exclude_special=True,
        optimizer="lamb",
        lamb_trust_ratio="elc-faithful",
        weight_decay=0.1,
        decay_embeddings=False,
        schedule="cosine",
        min_lr_ratio=0.1,
        label_smoothing=0.1,
        max_steps=6,
    )
    straight = train(elc_config(dataset, tmp_path / "a", **kw))
    assert straight.step == 6 and straight.final_loss is not None
    assert [r["seq_len"] for r in records(tmp_path / "a", "train")] == [16] * 3 + [64] * 3

    def stop_at_2(event):
        if event["event"] == "step" and event["step"] == 2:
            raise KeyboardInterrupt

    first = train(elc_config(dataset, tmp_path / "b", **kw), on_event=stop_at_2)
    assert first.interrupted and first.step == 2
    second = train(elc_config(dataset, tmp_path / "b", **kw), resume=True)
    assert second.step == 6
    a = ck.load_model_state(straight.checkpoint)
    b = ck.load_model_state(second.checkpoint)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert "transformer.prev_layer_weights" in a and ck.read_meta(second.checkpoint)["arch"] == "elc-bert"


@pytest.mark.parametrize(
    ("kw", "scale"),
    [
        ({}, 10.0),  # AdamW: automatic 10x
        ({"mix_lr_scale": 1.0}, 1.0),
        ({"mix_lr_scale": 3.0}, 3.0),
        ({"optimizer": "lamb", "lamb_trust_ratio": "elc-faithful", "weight_decay": 0.1}, 1.0),  # the original's own
    ],
)
def test_mixing_logits_take_steps_of_mix_lr_scale_times_lr(dataset, tmp_path, kw, scale):
    # variant zero starts its logits at 0; one step at a constant lr moves each (Adam's first step: lr * g/(|g|+eps)) by
    # about lr * scale, LAMB elc-faithful included (no decay: no trust ratio), while the logged lr stays lr
    lr = 1e-3
    config = elc_config(dataset, tmp_path / "run", max_steps=1, warmup=0, schedule="constant", lr=lr, **kw)
    summary = train(config)
    state = ck.load_model_state(summary.checkpoint)
    logits = [v for k, v in state.items() if k.endswith("prev_layer_weights")]
    assert len(logits) == 4  # tiny elc-bert: one per layer
    moved = torch.cat([w.flatten() for w in logits[1:]]).abs()  # layer 0 mixes one output: no gradient
    assert moved.max() == pytest.approx(lr * scale, rel=0.01)
    assert records(tmp_path / "run", "train")[0]["lr"] == pytest.approx(lr)


def test_mix_lr_scale_is_validated_and_resumes_exactly(dataset, tmp_path):
    with pytest.raises(ConfigError, match="mix_lr_scale"):
        elc_config(dataset, tmp_path / "x", mix_lr_scale=0.0)
    with pytest.raises(ConfigError, match="mix_lr_scale"):
        elc_config(dataset, tmp_path / "x", mix_lr_scale="ten")
    straight = train(elc_config(dataset, tmp_path / "a"))

    def stop_at_2(event):
        if event["event"] == "step" and event["step"] == 2:
            raise KeyboardInterrupt

    train(elc_config(dataset, tmp_path / "b"), on_event=stop_at_2)
    second = train(elc_config(dataset, tmp_path / "b"), resume=True)  # three optimiser groups come back as saved
    a = ck.load_model_state(straight.checkpoint)
    b = ck.load_model_state(second.checkpoint)
    assert all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(ConfigError, match="mix_lr_scale"):
        train(elc_config(dataset, tmp_path / "b", max_steps=8, mix_lr_scale=2.0), resume=True)


def test_cli_run_checkpoint_resume_and_eval_mlm(dataset, tmp_path):
    run_file = tmp_path / "run.toml"
    run_file.write_text('eval_fraction = 0.1\ntensorboard = false\nplot = false\n[model]\nvariant = "normalized"\n')
    args = [
        "train",
        "--arch",
        "elc-bert",
        "--preset",
        "tiny",
        "--config",
        str(run_file),
        "--model",
        "variant=base",
        "--model",
        "hidden_dropout_prob=0.0",
        "--data",
        str(dataset),
        "--out",
        str(tmp_path / "run"),
        "--max-steps",
        "3",
        "--batch-size",
        "4",
        "--seq-len",
        "32",
        "--device",
        "cpu",
        "--eval-every",
        "3",
        "--checkpoint-every",
        "2",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "eval MLM loss" in result.output
    meta = ck.read_meta(tmp_path / "run" / "checkpoints" / "ckpt-000003")
    assert meta["model_config"]["variant"] == "base" and meta["model_config"]["hidden_dropout_prob"] == 0.0
    shutil.rmtree(tmp_path / "run" / "checkpoints" / "ckpt-000003")  # as if stopped after step 2
    resumed = runner.invoke(app, [*args, "--resume"])
    assert resumed.exit_code == 0 and "resumed from" in resumed.output, resumed.output
    result = evaluate_mlm(tmp_path / "run", write=False)
    assert result["arch"] == "elc-bert" and result["step"] == 3 and result["masked_tokens"] > 0
    assert 0 <= result["mlm_accuracy"] <= 1
    shown = runner.invoke(app, ["eval", "mlm", str(tmp_path / "run"), "--batches", "1", "--show", "1"])
    assert shown.exit_code == 0 and "✓" in shown.output or "✗" in shown.output, shown.output


# ------------------------------------------------------------------------------------------------- bad input


def test_unknown_variant_is_refused_before_training(dataset, tmp_path):
    with pytest.raises(ConfigError, match="valid: base, zero, normalized, weighted_output"):
        train(elc_config(dataset, tmp_path / "run", model={"variant": "zeros"}))
    assert not (tmp_path / "run" / "checkpoints").exists()
    result = runner.invoke(
        app,
        [
            "train",
            "--arch",
            "elc-bert",
            "--preset",
            "tiny",
            "--model",
            "variant=zeros",
            "--data",
            str(dataset),
            "--out",
            str(tmp_path / "cli"),
            "--device",
            "cpu",
        ],
    )
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "variant 'zeros' is not a variant; valid: base, zero, normalized, weighted_output" in result.output
    bad = runner.invoke(app, ["train", "--model", "variant", "--data", str(dataset), "--out", str(tmp_path / "x")])
    assert bad.exit_code == 1 and "expected KEY=VALUE" in bad.output


def test_nsp_view_is_refused_for_mlm_only_architectures(tmp_path):
    docs = [[[7, 8, 9, 10], [11, 12, 13], [14, 15, 16, 17, 18]] for _ in range(40)]
    ds = write_fixture_dataset(tmp_path / "ds", docs, docs_per_shard=20)
    with pytest.raises(ConfigError, match="no NSP head"):
        train(elc_config(ds, tmp_path / "run", arch="ltg-bert", view="nsp"))


def test_resuming_a_checkpoint_of_another_architecture_is_refused(dataset, tmp_path):
    train(tiny_train_config(dataset, tmp_path / "run", arch="bert", batch_size=8, max_steps=2, eval_every=0))
    with pytest.raises(ConfigError, match="checkpoint of architecture 'bert', but this run is 'elc-bert'"):
        train(elc_config(dataset, tmp_path / "run", max_steps=2), resume=True)
    result = runner.invoke(
        app,
        [
            "train",
            "--arch",
            "ltg-bert",
            "--preset",
            "tiny",
            "--data",
            str(dataset),
            "--out",
            str(tmp_path / "run"),
            "--seq-len",
            "32",
            "--batch-size",
            "8",
            "--max-steps",
            "2",
            "--device",
            "cpu",
            "--resume",
        ],
    )
    # the run's saved config.json names the architecture: the flag is refused by name before the checkpoint is read
    assert result.exit_code == 1 and "cannot change mid-run: arch (saved 'bert', given 'ltg-bert')" in result.output


def test_eval_mlm_of_a_checkpoint_whose_weights_are_another_architecture(dataset, tmp_path):
    train(elc_config(dataset, tmp_path / "elc", max_steps=1))
    train(elc_config(dataset, tmp_path / "ltg", arch="ltg-bert", max_steps=1))
    ckpt = tmp_path / "ltg" / "checkpoints" / "ckpt-000001"
    replace_weights(tmp_path / "elc" / "checkpoints" / "ckpt-000001", ckpt)
    with pytest.raises(FormatError, match="model.safetensors: does not fit ltg-bert"):
        evaluate_mlm(tmp_path / "ltg", write=False)
    result = runner.invoke(app, ["eval", "mlm", str(tmp_path / "ltg")])
    assert result.exit_code == 1 and "does not fit ltg-bert" in result.output and "Traceback" not in result.output


@pytest.mark.slow
def test_fsdp_two_ranks_equal_one_rank_with_accumulation(dataset, tmp_path):
    """FSDP2 shards every encoder layer: each layer mixes inside its own forward, where its logits are gathered."""
    import os
    import subprocess
    import sys

    from test_train_distributed import SCRIPT

    kw = dict(
        model={"variant": "weighted_output", "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0},
        max_steps=2,
        batch_size=4,
    )
    single = train(elc_config(dataset, tmp_path / "one", grad_accum=2, **kw))
    cfg_path = tmp_path / "two.json"
    cfg_path.write_text(json.dumps(elc_config(dataset, tmp_path / "two", fsdp=True, **kw).to_dict()))
    (tmp_path / "worker.py").write_text(SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    cmd += [str(tmp_path / "worker.py"), str(cfg_path), str(tmp_path / "result")]
    proc = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert json.loads((tmp_path / "result.rank0").read_text())["loss"] == pytest.approx(single.final_loss, rel=1e-5)
    a = ck.load_model_state(single.checkpoint)
    b = ck.load_model_state(ck.latest(tmp_path / "two"))
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=1e-5, atol=1e-6, msg=k)
