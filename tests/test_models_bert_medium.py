"""The nanoBERT "medium" model options of `bert` against my-best-day/medium's src/bert/ (ported here as plain
loops), its recipe file, and the refusals (HF export, NarrowBERT)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from bertkit.exceptions import ConfigError  # noqa: E402
from bertkit.models import build_config, build_model  # noqa: E402
from bertkit.models.bert import sinusoidal_positions  # noqa: E402
from bertkit.train.config import TrainConfig  # noqa: E402
from bertkit.train.schedules import lr_factor  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
MEDIUM = dict(
    layer_norm_position="pre",
    positions="sinusoidal-medium",
    embedding_layer_norm=False,
    type_vocab_size=0,
    mlm_head="ln-linear",
    init="xavier",
    hidden_dropout_prob=0.0,
    attention_probs_dropout_prob=0.0,
)


def original_positions(max_len: int, d_model: int) -> torch.Tensor:
    """my-best-day/medium src/bert/positional_embedding.py, loop for loop."""
    pe = torch.zeros(max_len, d_model)
    for pos in range(max_len):
        for i in range(0, d_model, 2):
            pe[pos, i] = math.sin(pos / (10000 ** ((2 * i) / d_model)))
            pe[pos, i + 1] = math.cos(pos / (10000 ** ((2 * (i + 1)) / d_model)))
    return pe


def test_sinusoidal_positions_with_and_without_the_frequency_bug():
    torch.testing.assert_close(sinusoidal_positions(64, 32, medium_bug=True), original_positions(64, 32))
    fixed = sinusoidal_positions(64, 32)
    p, k = 7, 5  # Vaswani et al.: sin/cos(p / 10000^(2k/d)) at 2k / 2k + 1
    assert fixed[p, 2 * k].item() == pytest.approx(math.sin(p / 10000 ** (2 * k / 32)), abs=1e-6)
    assert fixed[p, 2 * k + 1].item() == pytest.approx(math.cos(p / 10000 ** (2 * k / 32)), abs=1e-6)
    assert not torch.allclose(fixed, original_positions(64, 32))


def original_forward(model, ids: torch.Tensor) -> torch.Tensor:
    """The original's BERT.forward + MaskedLanguageModel (LayerNorm → Linear) on bertkit's weights: token embedding +
    positions, dropout-free pre-LN EncoderLayers (x + MHA(LN1 x); x + FF(LN2 x)), no final LayerNorm."""
    c = model.config
    emb = model.bert.embeddings
    x = emb.word_embeddings.weight[ids] + original_positions(ids.shape[1], c.hidden_size)
    H, hs = c.num_attention_heads, c.hidden_size // c.num_attention_heads
    for layer in model.bert.encoder.layer:
        a, o = layer.attention, layer.output
        n1 = torch.nn.functional.layer_norm(x, (c.hidden_size,), a.output.LayerNorm.weight, a.output.LayerNorm.bias)
        q, k, v = (
            lin(n1).view(*ids.shape, H, hs).permute(0, 2, 1, 3) for lin in (a.self.query, a.self.key, a.self.value)
        )
        w = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(hs), dim=-1)
        ctx = (w @ v).permute(0, 2, 1, 3).reshape(*ids.shape, c.hidden_size)
        x = x + a.output.dense(ctx)
        n2 = torch.nn.functional.layer_norm(x, (c.hidden_size,), o.LayerNorm.weight, o.LayerNorm.bias)
        x = x + o.dense(torch.nn.functional.gelu(layer.intermediate.dense(n2)))
    head = model.cls.predictions
    ln = head.transform.LayerNorm
    return torch.nn.functional.linear(
        torch.nn.functional.layer_norm(x, (c.hidden_size,), ln.weight, ln.bias), head.decoder.weight, head.bias
    )


def test_medium_model_equals_the_original_computation():
    torch.manual_seed(0)
    model = build_model("bert", "tiny", vocab_size=300, **MEDIUM).eval()
    ids = torch.randint(1, 300, (3, 24))
    ours = model.mlm_logits(ids)
    torch.testing.assert_close(ours.view(3, 24, -1), original_forward(model, ids), rtol=1e-4, atol=1e-4)
    keys = set(model.state_dict())
    assert not any("position_embeddings" in k or "token_type" in k or "embeddings.LayerNorm" in k for k in keys)
    # untied head: its own decoder weight, not the word embedding
    head = model.cls.predictions
    assert head.decoder.weight.data_ptr() != model.bert.embeddings.word_embeddings.weight.data_ptr()
    loss = model(
        ids, mlm_positions=torch.tensor([1, 5, 30]), mlm_labels=torch.tensor([7, 8, 9]), label_smoothing=0.0
    ).loss
    loss.backward()
    assert head.decoder.weight.grad is not None and model.bert.embeddings.word_embeddings.weight.grad is not None


def test_xavier_init_as_the_original():
    torch.manual_seed(1)
    model = build_model("bert", "tiny", vocab_size=3000, init="xavier", mlm_head="ln-linear")
    q = model.bert.encoder.layer[0].attention.self.query
    fan = q.weight.shape[0] + q.weight.shape[1]
    assert q.weight.std().item() == pytest.approx(math.sqrt(2.0 / fan), rel=0.05)  # xavier_uniform_
    assert q.bias.abs().max().item() > 0  # PyTorch's default bias, kept (the original only re-inits weights)
    emb = model.bert.embeddings.word_embeddings.weight
    assert emb[1:].std().item() == pytest.approx(1.0, rel=0.05) and emb[0].abs().max().item() == 0.0
    head = model.cls.predictions
    assert head.decoder.weight.std().item() == pytest.approx(0.02, rel=0.05) and head.bias.abs().max().item() == 0.0


def test_default_bert_is_unchanged_and_options_are_validated():
    c = build_config("bert", "tiny")
    assert c.is_hf_bert and (c.layer_norm_position, c.positions, c.mlm_head, c.init) == (
        "post",
        "learned",
        "bert",
        "bert",
    )
    for bad in ({"layer_norm_position": "sandwich"}, {"positions": "rotary"}, {"mlm_head": "tied"}, {"init": "kaiming"},
                {"type_vocab_size": -1}, {"embedding_layer_norm": "no"}):  # fmt: skip
        with pytest.raises(ConfigError, match=next(iter(bad))):
            build_config("bert", "tiny", **bad)
    with pytest.raises(ConfigError, match="NarrowBertConfig"):
        build_config("narrowbert", "tiny", layer_norm_position="pre")


def test_hf_export_refuses_the_medium_model(tmp_path):
    from bertkit.export.hf import export_hf

    model = build_model("bert", "tiny", vocab_size=100, **MEDIUM)
    with pytest.raises(ConfigError, match="cannot be exported as a Hugging Face BERT"):
        export_hf(model, None, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_the_nanobert_recipe_file():
    c = TrainConfig.from_toml(ROOT / "configs" / "nanobert-mlm.toml")
    assert (c.seq_len, c.batch_size, c.max_steps, c.decay_steps, c.warmup_steps()) == (128, 100, 60000, 45000, 1000)
    assert (c.lr, c.min_lr_ratio, c.resolved_eps(), c.weight_decay, c.clip) == (1e-3, 0.05, 1e-8, 0.01, 1.0)
    m = build_config("bert", c.preset, vocab_size=24992, **c.model)
    assert (m.num_hidden_layers, m.hidden_size, m.layer_norm_position, m.mlm_head, m.init) == (
        6,
        768,
        "pre",
        "ln-linear",
        "xavier",
    )
    # cosine from 1e-3 at the end of the warmup to 5e-5 at 45k, then 5e-5 to 60k (the original's get_lr)
    f = lambda s: lr_factor(s, schedule=c.schedule, warmup=1000, max_steps=c.resolved_decay_steps(), min_lr_ratio=0.05)  # noqa: E731
    assert f(1000) == pytest.approx(1.0) and f(23000) == pytest.approx(0.525, abs=1e-3)
    assert f(45000) == pytest.approx(0.05) and f(59999) == pytest.approx(0.05)
    with pytest.raises(ConfigError, match="decay_steps"):
        TrainConfig(max_steps=100, decay_steps=101)


def test_google_recipe_keeps_256_sequences_per_step_at_512():
    c = TrainConfig.from_toml(ROOT / "configs" / "bert-base-google.toml")
    assert [p.batch_size * c.grad_accum for p in c.resolved_phases()] == [256, 256]
    assert [p.seq_len for p in c.resolved_phases()] == [128, 512]
    assert (c.max_predictions(128), c.max_predictions(512)) == (20, 80)


def test_a_medium_model_trains(tmp_path):
    pytest.importorskip("bertkit._core")
    from conftest import random_docs, tiny_train_config, write_fixture_dataset

    from bertkit.train.trainer import train

    ds = write_fixture_dataset(tmp_path / "ds", random_docs(200, seed=2), docs_per_shard=50)
    model = {k: v for k, v in MEDIUM.items() if "dropout" not in k}
    cfg = tiny_train_config(ds, tmp_path / "run", batch_size=8, max_steps=4, decay_steps=3, warmup=1, lr=1e-3,
                            eval_every=4, checkpoint_every=0, log_every=1, model=model)  # fmt: skip
    summary = train(cfg)
    assert summary.step == 4 and summary.final_loss is not None and math.isfinite(summary.final_loss)
    assert summary.eval["masked_tokens"] > 0
