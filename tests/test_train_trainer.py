"""The shared trainer on CPU with the tiny preset: a real run, exact resume, Ctrl-C, NaN guard, phases, views,
and every bad input rejected before the first step."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("bertkit._core")

from conftest import random_docs, tiny_train_config, write_fixture_dataset  # noqa: E402

from bertkit.exceptions import ConfigError, FormatError  # noqa: E402
from bertkit.train import checkpoint as ck  # noqa: E402
from bertkit.train.config import TrainConfig  # noqa: E402
from bertkit.train.trainer import NonFiniteLossError, train  # noqa: E402


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    """About 2,600 tokens over 6 shards (ids in [5, 64) of the tiny fixture vocabulary)."""
    return write_fixture_dataset(tmp_path_factory.mktemp("data") / "ds", random_docs(300, seed=1), docs_per_shard=50)


def config(dataset: Path, out: Path, **kw) -> TrainConfig:
    return tiny_train_config(
        dataset, out, **{"batch_size": 8, "max_steps": 6, "lr": 1e-3, "warmup": 2, "eval_every": 0, "eval_batches": 2,
                         "checkpoint_every": 0, "log_every": 1, **kw}
    )  # fmt: skip


def records(run: Path, kind: str) -> list[dict]:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["kind"] == kind]


def weights(ckpt: Path) -> dict[str, torch.Tensor]:
    return ck.load_model_state(ckpt)


def test_tiny_run_learns_and_writes_everything(dataset, tmp_path):
    events = []
    run = tmp_path / "run"
    cfg = config(dataset, run, max_steps=30, lr=3e-3, eval_every=15, checkpoint_every=10, keep_last=2, log_every=5)
    summary = train(cfg, on_event=events.append)
    assert summary.step == 30 and not summary.interrupted and summary.skipped_steps == 0
    train_recs = records(run, "train")
    assert [r["step"] for r in train_recs] == [5, 10, 15, 20, 25, 30]
    assert {"loss", "lr", "grad_norm", "tokens_per_s"} <= set(train_recs[0]) and "mfu" not in train_recs[0]
    # ln(64) ≈ 4.16 at init: a random-token corpus still teaches unigram frequencies
    assert train_recs[-1]["loss"] < train_recs[0]["loss"]
    evals = records(run, "eval")
    assert [r["step"] for r in evals] == [15, 30]
    assert evals[-1]["perplexity"] == pytest.approx(2.718281828 ** evals[-1]["mlm_loss"], rel=1e-6)
    assert 0.0 <= evals[-1]["mlm_accuracy"] <= 1.0 and evals[-1]["masked_tokens"] > 0
    assert [p.name for p in ck.list_checkpoints(run)] == ["ckpt-000020", "ckpt-000030"]
    assert summary.checkpoint == run / "checkpoints" / "ckpt-000030"
    assert json.loads((run / "config.json").read_text()) == cfg.to_dict()
    kinds = [e["event"] for e in events]
    assert kinds[0] == "start" and kinds[-1] == "end" and kinds.count("step") == 30 and "eval" in kinds
    meta = ck.read_meta(summary.checkpoint)
    assert meta["arch"] == "bert" and meta["model_config"]["vocab_size"] == 64  # from the dataset's tokenizer


def test_two_n_steps_equal_n_plus_resume_plus_n(dataset, tmp_path):
    """Dropout on, grad accumulation 2: the RNG, optimiser, scheduler and data cursor must all resume exactly."""
    kw = dict(max_steps=8, grad_accum=2, optimizer="lamb", weight_decay=0.1, schedule="cosine", checkpoint_every=0)
    straight = train(config(dataset, tmp_path / "a", **kw))

    def stop_at_4(event):
        if event["event"] == "step" and event["step"] == 4:
            raise KeyboardInterrupt

    first = train(config(dataset, tmp_path / "b", **kw), on_event=stop_at_4)
    assert first.interrupted and first.step == 4
    assert ck.latest(tmp_path / "b").name == "ckpt-000004"
    resumed = train(config(dataset, tmp_path / "b", **kw), resume=True)
    assert resumed.step == 8 and resumed.steps_this_session == 4
    assert resumed.final_loss == straight.final_loss
    a, b = weights(straight.checkpoint), weights(resumed.checkpoint)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    losses_a = [r["loss"] for r in records(tmp_path / "a", "train")]
    losses_b = [r["loss"] for r in records(tmp_path / "b", "train")]
    assert losses_a == losses_b  # metrics.jsonl continues across the resume


def test_sigint_saves_a_checkpoint_at_the_step_boundary(dataset, tmp_path):
    def interrupt(event):
        if event["event"] == "step" and event["step"] == 3:
            os.kill(os.getpid(), signal.SIGINT)

    summary = train(config(dataset, tmp_path / "run", max_steps=10), on_event=interrupt)
    assert summary.interrupted and summary.step == 3
    assert ck.latest(tmp_path / "run").name == "ckpt-000003"
    assert ck.read_meta(summary.checkpoint)["data_state"]["cursor"] == 3


def test_nonfinite_loss_stops_without_a_broken_checkpoint(dataset, tmp_path, monkeypatch):
    real = torch.nn.utils.clip_grad_norm_
    calls = []

    def clip(params, max_norm):
        calls.append(1)
        norm = real(params, max_norm)
        return torch.tensor(float("nan")) if len(calls) == 4 else norm

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", clip)
    run = tmp_path / "run"
    with pytest.raises(NonFiniteLossError, match="step 3"):
        train(config(dataset, run, checkpoint_every=2), on_event=None)
    assert [p.name for p in ck.list_checkpoints(run)] == ["ckpt-000002"]
    assert records(run, "nonfinite")[0]["step"] == 3

    calls.clear()
    summary = train(config(dataset, tmp_path / "skip", nan_policy="skip"))
    assert summary.step == 6 and summary.skipped_steps == 1
    w = weights(summary.checkpoint)
    assert all(torch.isfinite(t).all() for t in w.values())


def test_sequence_length_phases(dataset, tmp_path):
    phases = [{"fraction": 0.5, "seq_len": 16, "batch_size": 8}, {"fraction": 0.5, "seq_len": 32, "batch_size": 4}]
    events = []
    train(config(dataset, tmp_path / "run", phases=phases), on_event=events.append)
    assert [r["seq_len"] for r in records(tmp_path / "run", "train")] == [16, 16, 16, 32, 32, 32]
    assert [e["step"] for e in events if e["event"] == "phase"] == [3]


def masked_runs(chosen: torch.Tensor) -> int:
    """Number of maximal runs of consecutive chosen positions within the rows of a bool `[B, T]` tensor."""
    starts = chosen.clone()
    starts[:, 1:] &= ~chosen[:, :-1]
    return int(starts.sum())


@pytest.mark.parametrize("masking", ["wwm", "span"])
def test_masking_strategies_follow_their_rule(dataset, tmp_path, monkeypatch, masking):
    """The trainer masks every batch with the configured strategy, and what it masks obeys that strategy's rule:
    whole words (at most one word per row cut by the row's count) for ``wwm``, runs averaging about span_mean
    tokens for ``span`` (token masking at 15 % gives runs of ~1.2); never a special token; labels are the ids."""
    from bertkit.data import masking as masking_module

    calls = []
    real = masking_module.mask_tokens

    def recording(input_ids, special, **kw):
        out = real(input_ids, special, **kw)
        calls.append((input_ids.clone(), special.clone(), kw, *(x.clone() for x in out)))
        return out

    monkeypatch.setattr(masking_module, "mask_tokens", recording)
    summary = train(config(dataset, tmp_path / "run", max_steps=4, masking=masking))
    assert summary.final_loss is not None and 0 < summary.final_loss < 10
    assert len(calls) >= 4
    continuation = 11  # "##s" in the fixture vocabulary
    total_chosen = total_runs = 0
    for ids, special, kw, masked, positions, labels in calls:
        assert kw["strategy"] == masking
        B, T = ids.shape
        real_pos = positions[labels != -100]
        # each row masks 0.15 of its real tokens, rounded stochastically (down or up)
        per_row = torch.bincount(real_pos // T, minlength=B)
        eligible = (~special).sum(dim=1)
        assert ((per_row >= torch.floor(0.15 * eligible)) & (per_row <= torch.ceil(0.15 * eligible))).all()
        assert torch.equal(labels[labels != -100], ids.reshape(-1)[real_pos])
        chosen = torch.zeros(B * T, dtype=torch.bool)
        chosen[real_pos] = True
        chosen = chosen.view(B, T)
        assert not (chosen & special).any()
        assert torch.equal(masked[~chosen], ids[~chosen])
        if masking == "wwm":
            word_start = kw["word_start"]
            assert torch.equal(word_start[~special], (ids != continuation)[~special])
            words = masking_module.word_ids(word_start)
            for b in range(B):
                cut = 0
                for w in words[b][~special[b]].unique():
                    m = chosen[b][(words[b] == w) & ~special[b]]
                    cut += bool(m.any() and not m.all())
                assert cut <= 1
        total_chosen += int(chosen.sum())
        total_runs += masked_runs(chosen)
    if masking == "span":
        assert total_chosen / total_runs > 1.8, total_chosen / total_runs


def test_nsp_view_reports_nsp_accuracy(tmp_path):
    docs = random_docs(200, seed=3)
    ds = write_fixture_dataset(tmp_path / "ds", [d + d for d in docs], docs_per_shard=40)
    summary = train(config(ds, tmp_path / "run", view="nsp", max_steps=2, eval_every=2, batch_size=4))
    assert 0.0 <= summary.eval["nsp_accuracy"] <= 1.0 and "nsp_loss" in summary.eval


# ------------------------------------------------------------------------------ bad input, before training


def nothing_written(run: Path) -> bool:
    return not (run / "metrics.jsonl").exists() and not ck.list_checkpoints(run)


def test_dataset_vocab_larger_than_the_model(dataset, tmp_path):
    with pytest.raises(ConfigError, match="vocab_size 64"):
        train(config(dataset, tmp_path / "run", model={"vocab_size": 32}))
    assert nothing_written(tmp_path / "run")


def test_dataset_without_manifest(tmp_path):
    ds = write_fixture_dataset(tmp_path / "ds", random_docs(50), manifest=False)
    with pytest.raises(FormatError, match="manifest"):
        train(config(ds, tmp_path / "run"))
    assert nothing_written(tmp_path / "run")


def test_corrupt_shard(tmp_path):
    ds = write_fixture_dataset(tmp_path / "ds", random_docs(300, seed=1), docs_per_shard=50)
    shard = sorted((ds / "shards").glob("corpus-00001.tokens.npy"))[0]
    shard.write_bytes(shard.read_bytes()[:-10])
    with pytest.raises(FormatError, match="corpus-00001"):
        train(config(ds, tmp_path / "run"))
    assert nothing_written(tmp_path / "run")


@pytest.mark.parametrize(("changes", "needle"), [({"preset": "huge"}, "huge"), ({"arch": "gpt"}, "gpt")])
def test_unknown_preset_or_arch(dataset, tmp_path, changes, needle):
    with pytest.raises(ConfigError, match=needle):
        train(config(dataset, tmp_path / "run", **changes))


def test_seq_len_above_max_positions(dataset, tmp_path):
    with pytest.raises(ConfigError, match="max_position_embeddings"):
        train(config(dataset, tmp_path / "run", model={"max_position_embeddings": 16}))


def test_unwritable_run_dir(dataset, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ConfigError, match="not writable"):
        train(config(dataset, blocker / "run"))


def test_resume_with_a_different_config(dataset, tmp_path):
    run = tmp_path / "run"
    train(config(dataset, run, max_steps=2))
    with pytest.raises(ConfigError) as e:
        train(config(dataset, run, max_steps=2, lr=5e-3, log_every=2), resume=True)
    assert "lr:" in str(e.value) and "log_every" not in str(e.value)
    with pytest.raises(ConfigError, match="already holds checkpoints"):
        train(config(dataset, run, max_steps=2))


def test_init_from_vocab_mismatch(dataset, tmp_path):
    from bertkit.export.hf import export_hf
    from bertkit.models import build_model

    hf = tmp_path / "hf"
    model = build_model("bert", "tiny", vocab_size=32)
    export_hf(model, model.config, hf)
    with pytest.raises(ConfigError, match="vocab_size 64"):
        train(config(dataset, tmp_path / "run", init_from=str(hf)))
    (hf / "vocab.txt").write_text("\n".join(f"t{i}" for i in range(64)) + "\n")
    with pytest.raises(ConfigError, match="differ"):
        train(config(dataset, tmp_path / "run", init_from=str(hf)))
    assert nothing_written(tmp_path / "run")


def test_init_from_a_matching_checkpoint_trains(dataset, tmp_path):
    from bertkit.export.hf import export_hf
    from bertkit.models import build_model

    hf = tmp_path / "hf"
    model = build_model("bert", "tiny", vocab_size=64)
    export_hf(model, model.config, hf, tokenizer_dir=dataset / "tokenizer")
    summary = train(config(dataset, tmp_path / "run", init_from=str(hf), max_steps=2))
    assert summary.step == 2


def test_loss_curve_and_tensorboard_are_optional(dataset, tmp_path):
    import importlib.util

    run = tmp_path / "run"
    summary = train(config(dataset, run, max_steps=3, plot=True, tensorboard=True, eval_every=3))
    if importlib.util.find_spec("matplotlib") is not None:
        assert (run / "loss_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    else:
        assert any("matplotlib" in n for n in summary.notes) and not (run / "loss_curve.png").exists()
    if importlib.util.find_spec("tensorboard") is not None:
        assert list((run / "tb").glob("events.out.tfevents.*"))
    else:
        assert any("TensorBoard" in n for n in summary.notes)


@pytest.mark.slow
def test_real_news_tiny_run_learns(data_dir, tmp_path):
    """BBC news tokenized with bert-base-uncased (Python tokenizers; no prepare step needed): the tiny preset's MLM
    loss falls from about ln(30522) ≈ 10.3 to the unigram level (< 8) within 60 CPU steps."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(data_dir / "tokenizer.json"))
    tok.no_padding()
    tok.no_truncation()
    articles = [a for a in (data_dir / "bbc.txt").read_text(encoding="utf-8").split("\n\n") if a.strip()][:400]
    docs = []
    for a in articles:
        lines = [line for line in a.splitlines() if line.strip()]
        encoded = tok.encode_batch(lines, add_special_tokens=False)
        docs.append([e.ids for e in encoded if e.ids])
    vocab = (data_dir / "vocab.txt").read_text(encoding="utf-8").splitlines()
    ds = write_fixture_dataset(tmp_path / "ds", [d for d in docs if d], docs_per_shard=100, vocab=vocab)
    cfg = config(
        ds,
        tmp_path / "run",
        seq_len=128,
        batch_size=16,
        max_steps=60,
        lr=2e-3,
        warmup=6,
        eval_every=60,
        eval_fraction=0.05,
        eval_batches=4,
        log_every=10,
        model={"hidden_dropout_prob": 0.0},
    )
    summary = train(cfg)
    first = records(tmp_path / "run", "train")[0]["loss"]
    assert first > 9.0 and summary.eval["mlm_loss"] < 8.0, (first, summary.eval)


@pytest.mark.slow
def test_compiled_model_trains(dataset, tmp_path):
    """torch.compile on CPU (inductor needs a C++ compiler; about 40 s of compilation)."""
    summary = train(config(dataset, tmp_path / "run", max_steps=2, compile=True, eval_every=2))
    assert summary.step == 2 and summary.eval["mlm_loss"] > 0
    assert ck.read_meta(summary.checkpoint)["model_config"]["vocab_size"] == 64
    assert not any(k.startswith("_orig_mod") for k in weights(summary.checkpoint))


@pytest.mark.parametrize("view", ["static-nsp", "static-mlm"])
def test_static_views(tmp_path, view):
    """Prepared instances: static-nsp batches come masked (positions/labels from the dataset), static-mlm rows are
    masked on the fly."""
    import numpy as np

    rng = np.random.default_rng(0)
    nsp = []
    for _ in range(80):
        a = rng.integers(5, 64, int(rng.integers(2, 9))).tolist()
        b = rng.integers(5, 64, int(rng.integers(2, 9))).tolist()
        positions = [1, len(a) + 2]  # the first token of each segment, stored masked
        masked_ids = [a[0], b[0]]
        a[0], b[0] = 4, 4  # [MASK]
        nsp.append({"a": a, "b": b, "label": int(rng.integers(0, 2)), "positions": positions, "masked_ids": masked_ids})
    mlm = rng.integers(5, 64, (80, 16))
    mlm[:, 0], mlm[:, -1] = 2, 3  # [CLS] ... [SEP]
    ds = write_fixture_dataset(tmp_path / "ds", random_docs(20), nsp=nsp, nsp_per_shard=30, mlm=mlm, mlm_per_shard=30)
    seq_len = 16 if view == "static-mlm" else 32  # static-mlm rows are exactly 16; NSP instances reach 19
    summary = train(config(ds, tmp_path / "run", view=view, seq_len=seq_len, batch_size=4, max_steps=2, eval_every=2))
    assert summary.step == 2 and summary.eval["masked_tokens"] > 0
    assert ("nsp_accuracy" in summary.eval) == (view == "static-nsp")
