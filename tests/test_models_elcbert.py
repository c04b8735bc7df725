"""LTG-BERT / ELC-BERT against direct re-implementations: the log-bucket index, the disentangled attention (plain
loops), the four layer-mixing rules, the initialisation, the MLM head, fine-tuning heads and the registry."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")

import torch.nn.functional as F  # noqa: E402

from bertkit.exceptions import ConfigError  # noqa: E402
from bertkit.models import ARCHITECTURES, build_config, build_model, get_architecture  # noqa: E402
from bertkit.models.bert import BertConfig, BertForPreTraining  # noqa: E402
from bertkit.models.elcbert import (  # noqa: E402
    PRESETS,
    VARIANTS,
    ElcBertConfig,
    ElcBertForPreTraining,
    ElcBertForSequenceClassification,
    ElcBertForTokenClassification,
    LtgBertConfig,
    LtgBertForPreTraining,
    LtgBertForSequenceClassification,
    log_bucket_position,
    relative_position_index,
)
from bertkit.train.optim import param_groups  # noqa: E402

SMALL = dict(
    vocab_size=53,
    hidden_size=24,
    num_hidden_layers=3,
    num_attention_heads=3,
    intermediate_size=20,
    max_position_embeddings=64,
    position_bucket_size=8,
)


def reference_bucket(rel: int, bucket: int = 32, max_position: int = 512) -> int:
    """ltgoslo/elc-bert ``Attention.make_log_bucket_position``: exact for |rel| <= bucket/2, else
    sign·(ceil(log(|rel|/mid)/log((max-1)/mid)·(mid-1))+mid)."""
    mid = bucket // 2
    if abs(rel) <= mid:
        return rel
    a = min(abs(rel), max_position - 1)
    return int(math.copysign(math.ceil(math.log(a / mid) / math.log((max_position - 1) / mid) * (mid - 1)) + mid, rel))


def randomize(model: torch.nn.Module, seed: int = 0) -> None:
    """Random values everywhere (mixing logits, LN affines, biases), so a swapped or unused tensor shows."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            base = 1.0 if name.endswith("layer_norm.weight") else 0.0
            p.copy_(base + 0.3 * torch.randn(p.shape, generator=g, dtype=p.dtype))


def make(variant: str | None, seed: int = 0, **overrides) -> LtgBertForPreTraining:
    if variant is None:
        model = LtgBertForPreTraining(LtgBertConfig(**{**SMALL, **overrides}))
    else:
        model = ElcBertForPreTraining(ElcBertConfig(**{**SMALL, **overrides}, variant=variant))
    randomize(model, seed)
    return model.double().eval()


def batch(B: int = 2, T: int = 13, V: int = 53, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, V, (B, T), generator=g)
    mask = torch.ones(B, T, dtype=torch.long)
    mask[1, 9:] = 0
    return ids, mask


# ------------------------------------------------------------------------------------------ relative positions


def test_log_buckets_equal_the_reference_formula():
    rel = torch.arange(-700, 701)
    got = log_bucket_position(rel, 32, 512).tolist()
    assert got == [reference_bucket(r) for r in rel.tolist()]
    known = {0: 0, 5: 5, -16: -16, 16: 16, 17: 17, 20: 17, 64: 23, 100: 24, -100: -24, 511: 31, 600: 31, -600: -31}
    assert {r: log_bucket_position(torch.tensor(r), 32, 512).item() for r in known} == known


def test_relative_index_spans_the_63_rows_and_is_toeplitz():
    idx = relative_position_index(512, 32, 512)
    assert idx.shape == (512, 512) and idx.min() == 0 and idx.max() == 62
    assert idx[0, 0] == 31 and idx[5, 0] == 36 and idx[0, 5] == 26  # idx[i, j] = 31 + bucket(i - j)
    assert torch.equal(idx[1:, 1:], idx[:-1, :-1])  # depends on i - j only


# ------------------------------------------------------------------------------------------------ attention


def loop_attention(attn, x, relative, index, keep):
    """Per batch, head, query and key: (q·k + q·kpos[idx] + qpos[idx]·k) / sqrt(3·hs), softmax over kept keys."""
    B, T, D = x.shape
    H, hs = attn.num_heads, attn.head_size
    h = F.layer_norm(x, (D,), eps=attn.pre_layer_norm.eps)
    qk = h @ attn.in_proj_qk.weight.T + attn.in_proj_qk.bias
    q, k = qk[..., :D], qk[..., D:]
    v = h @ attn.in_proj_v.weight.T + attn.in_proj_v.bias
    pos = relative @ attn.in_proj_qk.weight.T + attn.in_proj_qk.bias
    qpos, kpos = pos[:, :D], pos[:, D:]
    out = torch.zeros(B, T, D, dtype=x.dtype)
    for b in range(B):
        for head in range(H):
            sl = slice(head * hs, (head + 1) * hs)
            for i in range(T):
                scores = []
                for j in range(T):
                    r = int(index[i, j])
                    s = q[b, i, sl] @ k[b, j, sl] + q[b, i, sl] @ kpos[r, sl] + qpos[r, sl] @ k[b, j, sl]
                    scores.append(s / math.sqrt(3 * hs) if keep is None or keep[b, j] else torch.tensor(-math.inf))
                p = torch.softmax(torch.stack(scores), 0)
                out[b, i, sl] = sum(p[j] * v[b, j, sl] for j in range(T))
    y = out @ attn.out_proj.weight.T + attn.out_proj.bias
    return F.layer_norm(y, (D,), attn.post_layer_norm.weight, attn.post_layer_norm.bias, attn.post_layer_norm.eps)


@pytest.mark.parametrize("padding", [False, True])
def test_attention_equals_the_plain_loop(padding):
    model = make(None)
    attn = model.transformer.layers[1].attention
    ids, mask = batch(T=11)
    x = torch.randn(2, 11, SMALL["hidden_size"], dtype=torch.float64)
    relative = model.embedding(ids)[1]
    index = relative_position_index(11, SMALL["position_bucket_size"], SMALL["max_position_embeddings"])
    keep = mask.bool() if padding else None
    got = attn(x, relative, index, None if keep is None else keep[:, None, None, :])
    want = loop_attention(attn, x, relative, index, keep)
    rows = mask.bool() if padding else torch.ones_like(mask, dtype=torch.bool)
    torch.testing.assert_close(got[rows], want[rows], rtol=1e-10, atol=1e-10)


def test_padding_keys_do_not_matter_and_no_mask_equals_all_ones():
    model = make("zero")
    ids, mask = batch()
    full = model.encode(ids, torch.ones_like(mask))
    torch.testing.assert_close(model.encode(ids, None), full, rtol=0, atol=0)
    changed = ids.clone()
    changed[1, 9:] = (changed[1, 9:] + 7) % SMALL["vocab_size"]
    a, b = model.encode(ids, mask), model.encode(changed, mask)
    torch.testing.assert_close(a[1, :9], b[1, :9], rtol=1e-12, atol=1e-12)
    assert not torch.allclose(a[1, :9], full[1, :9])


# ------------------------------------------------------------------------------------------------- mixing


def direct_encoder(model, ids, mask, variant):
    """The original's encoder loop: a running list of outputs and an explicit softmax-weighted sum."""
    words, relative = model.embedding(ids)
    T = ids.shape[1]
    index = relative_position_index(T, SMALL["position_bucket_size"], SMALL["max_position_embeddings"])
    keep = mask.bool()[:, None, None, :]
    D = SMALL["hidden_size"]

    def ln(t):
        return F.layer_norm(t, (D,), eps=SMALL.get("layer_norm_eps", 1e-7))

    if variant is None:
        x = words
        for layer in model.transformer.layers:
            x = x + layer.attention(x, relative, index, keep)
            x = x + layer.mlp(x)
        return x
    hidden = [words]
    for layer in model.transformer.layers:
        w = torch.softmax(layer.prev_layer_weights, 0)
        x = w[0] * hidden[0]
        for i, h in enumerate(hidden[1:]):
            x = x + w[i + 1] * h
        a = layer.attention(x, relative, index, keep)
        if variant == "base":
            h = a + layer.mlp(a)
        else:
            h = a + layer.mlp(x + a)
            if variant == "normalized":
                h = ln(h)
        hidden.append(h)
    if variant == "weighted_output":
        w = torch.softmax(model.transformer.prev_layer_weights, 0)
        return sum(w[i] * h for i, h in enumerate(hidden))
    return hidden[-1]


@pytest.mark.parametrize("variant", [None, *VARIANTS])
def test_encoder_equals_the_direct_loop(variant):
    model = make(variant)
    ids, mask = batch()
    tol = 1e-10 if variant is None else 2e-5  # bertkit.ops.layer_mix sums in fp32 (the model here is fp64)
    torch.testing.assert_close(model.encode(ids, mask), direct_encoder(model, ids, mask, variant), rtol=tol, atol=tol)


def test_mixing_weights_initialisation_and_names():
    L = SMALL["num_hidden_layers"]
    for variant in VARIANTS:
        model = ElcBertForPreTraining(ElcBertConfig(**SMALL, variant=variant))
        for n, layer in enumerate(model.transformer.layers):
            expected = torch.zeros(n + 1)
            if variant == "base":
                expected[-1] = 1.0
            assert torch.equal(layer.prev_layer_weights.data, expected)
        has_final = hasattr(model.transformer, "prev_layer_weights")
        assert has_final == (variant == "weighted_output")
        if has_final:
            assert torch.equal(model.transformer.prev_layer_weights.data, torch.zeros(L + 1))
    ltg = LtgBertForPreTraining(LtgBertConfig(**SMALL))
    assert not any("prev_layer_weights" in n for n, _ in ltg.named_parameters())
    names = {n for n, _ in model.named_parameters()}  # ltgoslo/elc-bert's parameter names
    original = {
        "embedding.word_embedding.weight",
        "embedding.relative_embedding",
        "transformer.layers.0.mlp.mlp.1.weight",
        "transformer.layers.2.attention.in_proj_qk.weight",
        "classifier.nonlinearity.1.weight",
    }
    assert original <= names


def test_prev_layer_weights_relative_embedding_and_norms_take_no_weight_decay():
    model = ElcBertForPreTraining(ElcBertConfig(**SMALL, variant="weighted_output"))
    decay, no_decay = param_groups(model, 0.1, decay_embeddings=False)
    assert all("prev_layer_weights" not in n for n in decay["names"])
    assert {"transformer.prev_layer_weights", "transformer.layers.1.prev_layer_weights"} <= set(no_decay["names"])
    assert {"embedding.word_embedding.weight", "embedding.relative_embedding"} <= set(no_decay["names"])
    assert "embedding.relative_layer_norm.weight" in no_decay["names"]
    assert "transformer.layers.0.attention.post_layer_norm.weight" in no_decay["names"]
    assert set(decay["names"]) == {
        n
        for n, p in model.named_parameters()
        if n.endswith("weight") and p.ndim == 2 and "embedding" not in n and "prev_layer" not in n
    }


# --------------------------------------------------------------------------------------------- init and head


def test_initialisation_follows_ltg_bert():
    torch.manual_seed(0)
    config = ElcBertConfig(**{**SMALL, "hidden_size": 192, "num_attention_heads": 3, "intermediate_size": 256})
    model = ElcBertForPreTraining(config)
    std = math.sqrt(2.0 / (5.0 * 192))
    for name in ("embedding.word_embedding.weight", "embedding.relative_embedding",
                 "transformer.layers.0.attention.in_proj_qk.weight", "classifier.nonlinearity.1.weight"):  # fmt: skip
        w = model.get_parameter(name)
        assert w.abs().max() <= 2 * std + 1e-7, name
        assert w.std().item() == pytest.approx(std * 0.88, rel=0.1), name  # a ±2σ cut keeps 88 % of σ
    for i, layer in enumerate(model.transformer.layers):
        for w in (layer.mlp.mlp[1].weight, layer.mlp.mlp[4].weight):
            bound = 2 * std * math.sqrt(1 / (2 * (i + 1)))
            assert w.abs().max() <= bound + 1e-7 and w.abs().max() > 0.8 * bound
        assert torch.count_nonzero(layer.attention.in_proj_qk.bias) == 0
        assert layer.mlp.mlp[1].bias is None and layer.mlp.mlp[4].bias is None
        assert not layer.attention.pre_layer_norm.elementwise_affine and layer.attention.post_layer_norm.weight.all()
    assert model.classifier.decoder.weight is model.embedding.word_embedding.weight
    assert torch.count_nonzero(model.classifier.decoder.bias) == 0
    assert not model.embedding.word_layer_norm.elementwise_affine
    assert model.embedding.relative_embedding.shape == (2 * SMALL["position_bucket_size"] - 1, 192)


def test_mlm_head_on_masked_rows_only_equals_full_logits_cross_entropy():
    model = make("zero")
    ids, mask = batch()
    positions = torch.tensor([1, 4, 5, 14, 20, 0])
    labels = torch.tensor([3, 9, 9, 1, 40, -100])
    out = model(ids, mask, mlm_positions=positions, mlm_labels=labels, return_predictions=True, label_smoothing=0.1)
    logits = model.mlm_logits(ids, mask, positions=positions)
    assert logits.shape == (6, SMALL["vocab_size"])
    want = F.cross_entropy(logits, labels, ignore_index=-100, label_smoothing=0.1)
    torch.testing.assert_close(out.loss, want.float())  # masked_lm_loss computes in fp32
    assert out.mlm_count.item() == 5
    assert out.mlm_correct.item() == int(((logits.argmax(-1) == labels) & (labels != -100)).sum())
    assert torch.equal(out.mlm_predictions, logits.argmax(-1))
    every = model.mlm_logits(ids, mask)
    torch.testing.assert_close(every[positions], logits)


def test_gradient_reaches_every_parameter_of_every_variant():
    for variant in [None, *VARIANTS]:
        model = make(variant).train()
        ids, mask = batch()
        out = model(ids, mask, mlm_positions=torch.arange(0, 26, 3), mlm_labels=ids.reshape(-1)[0:26:3])
        out.loss.backward()
        missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.any(p.grad != 0)]
        # the first layer mixes h_0 alone: softmax of one logit is 1 whatever the logit (as in the original)
        expected = [] if variant is None else ["transformer.layers.0.prev_layer_weights"]
        assert missing == expected, (variant, missing)


def test_nsp_labels_long_sequences_and_missing_fields_are_errors():
    model = make("zero")
    ids, mask = batch()
    with pytest.raises(ConfigError, match="no NSP head"):
        model(ids, mask, mlm_positions=torch.tensor([0]), mlm_labels=torch.tensor([1]),
              next_sentence_label=torch.tensor([0, 1]))  # fmt: skip
    with pytest.raises(TypeError, match="mlm_positions"):
        model(ids, mask)
    with pytest.raises(ConfigError, match="max_position_embeddings is 64"):
        model.encode(torch.zeros(1, 65, dtype=torch.long))
    assert LtgBertForPreTraining.supports_nsp is False


def test_tiny_preset_learns_on_cpu():
    # Speed is measured in benchmarks/, never asserted here: a few optimiser steps on one batch must learn.
    torch.manual_seed(0)
    model = build_model("elc-bert", "tiny", vocab_size=40, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(5, 40, (4, 32), generator=g)
    positions = torch.randperm(4 * 32, generator=g)[:24]
    labels = ids.reshape(-1)[positions]
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(8):
        loss = model(ids, mlm_positions=positions, mlm_labels=labels).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0], losses


# --------------------------------------------------------------------------------------------- configs, flops


def test_presets_match_the_published_configs():
    small = build_config("elc-bert", "small")
    assert (small.hidden_size, small.intermediate_size, small.num_attention_heads, small.num_hidden_layers) == (
        384, 1024, 6, 12)  # fmt: skip
    assert small.vocab_size == 6144 and small.position_bucket_size == 32 and small.layer_norm_eps == 1e-7
    base = build_config("ltg-bert", "base")
    assert (base.hidden_size, base.intermediate_size, base.num_attention_heads, base.vocab_size) == (
        768,
        2048,
        12,
        16384,
    )
    with torch.device("meta"):  # shapes only: no initialisation work
        count = {p: sum(t.numel() for t in build_model("elc-bert", p).parameters()) for p in ("small", "base")}
    assert count["small"] == pytest.approx(24e6, rel=0.02) and count["base"] == pytest.approx(98e6, rel=0.01)
    assert list(PRESETS) == ["tiny", "small", "base"]


def test_unknown_variant_and_bad_fields_are_config_errors_naming_the_valid_ones():
    with pytest.raises(ConfigError, match="valid: base, zero, normalized, weighted_output"):
        build_config("elc-bert", "tiny", variant="zeros")
    with pytest.raises(ConfigError, match=r"unknown option\(s\) variant"):
        build_config("ltg-bert", "tiny", variant="zero")  # LTG-BERT has no mixing
    with pytest.raises(ConfigError, match="position_bucket_size"):
        ElcBertConfig(position_bucket_size=7)
    with pytest.raises(ConfigError, match="multiple of num_attention_heads"):
        LtgBertConfig(hidden_size=100, num_attention_heads=3)
    assert ElcBertConfig.from_dict(ElcBertConfig(variant="base").to_dict()) == ElcBertConfig(variant="base")


def test_flops_per_token_counts_the_glu_encoder_relative_terms_and_the_head():
    with torch.device("meta"):
        model = build_model("ltg-bert", "base")
    d, L, ff, V, S, R = 768, 12, 2048, 16384, 128, 63
    n_enc = L * (4 * d * d + d * (2 * ff) + ff * d)  # docs/ANCHORS.md GLU form with d_ff = 2·intermediate
    want = 6 * n_enc + 12 * S * d * L + 12 * R * d * L + 6 * (d * V + d * d) * 0.15
    assert model.flops_per_token(S, 0.15) == pytest.approx(want)
    assert 6 * n_enc == pytest.approx(6 * 84.9e6, rel=0.01)  # 85M encoder parameters without embeddings


# ------------------------------------------------------------------------------------------------ fine-tuning


def test_sequence_and_token_classification_heads_and_encoder_loading():
    torch.manual_seed(0)
    config = ElcBertConfig(**SMALL, variant="normalized")
    pretrained = make("normalized")
    seq = ElcBertForSequenceClassification(config, num_labels=3).double().eval()
    seq.load_pretrained_encoder(pretrained)
    ids, mask = batch()
    torch.testing.assert_close(seq.encode(ids, mask), pretrained.encode(ids, mask))
    out = seq(ids, mask, labels=torch.tensor([0, 2]))
    assert out.logits.shape == (2, 3)
    torch.testing.assert_close(out.logits, seq.head(pretrained.encode(ids, mask)[:, 0]))
    torch.testing.assert_close(out.loss, F.cross_entropy(out.logits.float(), torch.tensor([0, 2])))
    reg = ElcBertForSequenceClassification(config, num_labels=1).double()
    assert reg(ids, mask, labels=torch.tensor([0.5, 1.0], dtype=torch.float64)).loss.ndim == 0
    tok = ElcBertForTokenClassification(config, num_labels=5).double().eval()
    tok.load_pretrained_encoder(pretrained)
    positions = torch.tensor([1, 3, 15])
    t = tok(ids, mask, positions=positions, labels=torch.tensor([4, -100, 0]))
    assert t.logits.shape == (3, 5)
    torch.testing.assert_close(t.logits, tok.head(pretrained.encode(ids, mask).reshape(-1, 24)[positions]))
    with pytest.raises(TypeError, match="positions"):
        tok(ids, mask)


def test_loading_an_encoder_of_another_architecture_is_a_config_error():
    elc = ElcBertForSequenceClassification(ElcBertConfig(**SMALL), num_labels=2)
    with pytest.raises(ConfigError, match="BertForPreTraining"):
        bert = BertConfig(
            vocab_size=53, hidden_size=24, num_hidden_layers=1, num_attention_heads=3, intermediate_size=8
        )
        elc.load_pretrained_encoder(BertForPreTraining(bert))
    with pytest.raises(ConfigError, match="ElcBertConfig"):
        elc.load_pretrained_encoder(LtgBertForPreTraining(LtgBertConfig(**SMALL)))
    with pytest.raises(ConfigError, match="num_hidden_layers: 2 vs 3"):
        elc.load_pretrained_encoder(ElcBertForPreTraining(ElcBertConfig(**{**SMALL, "num_hidden_layers": 2})))
    with pytest.raises(ConfigError, match="variant: 'base' vs 'zero'"):
        elc.load_pretrained_encoder(ElcBertForPreTraining(ElcBertConfig(**SMALL, variant="base")))
    with pytest.raises(ConfigError, match="needs a LtgBertConfig"):
        LtgBertForSequenceClassification(ElcBertConfig(**SMALL))
    with pytest.raises(ConfigError, match="num_labels"):
        LtgBertForSequenceClassification(LtgBertConfig(**SMALL), num_labels=0)


def test_registry_entries():
    for name, cls in (("elc-bert", ElcBertForPreTraining), ("ltg-bert", LtgBertForPreTraining)):
        arch = get_architecture(name)
        assert arch is ARCHITECTURES[name] and arch.pretraining_class is cls
        assert arch.preset_names() == ["tiny", "small", "base"]
        assert arch.sequence_classification_class is not None and arch.token_classification_class is not None
    assert type(build_model("elc-bert", "tiny", vocab_size=30).config) is ElcBertConfig
    assert build_config("elc-bert", "tiny").variant == "zero"
