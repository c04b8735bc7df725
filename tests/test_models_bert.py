"""bertkit's BERT against transformers' (same weights → same outputs), its pretraining output, and the registry."""

from __future__ import annotations

import json
import math

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

import torch.nn.functional as F  # noqa: E402

from bertkit.exceptions import ConfigError  # noqa: E402
from bertkit.models import ARCHITECTURES, PretrainingOutput, build_config, build_model, get_architecture  # noqa: E402
from bertkit.models.bert import (  # noqa: E402
    PRESETS,
    BertConfig,
    BertForPreTraining,
    BertForSequenceClassification,
    BertForTokenClassification,
    num_parameters,
)

SMALL = dict(
    vocab_size=97,
    hidden_size=48,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=80,
    max_position_embeddings=40,
    type_vocab_size=2,
)
ATOL = 1e-5
MASK_ID = 103  # [MASK] in the bert-base-uncased vocabulary the presets are sized for


def randomize(model: torch.nn.Module, seed: int = 0) -> None:
    """Random values everywhere (biases and LayerNorms too), so a swapped or unused tensor cannot go unnoticed."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            scale = 0.5 if "LayerNorm" in name else 0.1
            base = 1.0 if name.endswith("LayerNorm.weight") else 0.0
            p.copy_(base + scale * torch.randn(p.shape, generator=g))


def hf_pair(seed: int = 0, **overrides):
    config = BertConfig(**{**SMALL, **overrides})
    ours = BertForPreTraining(config)
    randomize(ours, seed)
    hf = transformers.BertForPreTraining(transformers.BertConfig(**config.to_dict(), attn_implementation="eager"))
    result = hf.load_state_dict(ours.state_dict(), strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    return ours.eval(), hf.eval()


def make_batch(config: BertConfig, B: int = 3, T: int = 11, padding: bool = False, M: int = 7, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(1, config.vocab_size, (B, T), generator=g)
    token_type_ids = torch.zeros(B, T, dtype=torch.long)
    token_type_ids[:, T // 2 :] = 1
    attention_mask = torch.ones(B, T, dtype=torch.long)
    if padding:
        lengths = [T, T - 4, T - 7][:B]
        for b, n in enumerate(lengths):
            attention_mask[b, n:] = 0
            input_ids[b, n:] = 0
    # M distinct real-token positions, plus two padding entries (label -100, pointing at index 0).
    real = attention_mask.view(-1).nonzero().squeeze(1)
    chosen = real[torch.randperm(len(real), generator=g)[:M]]
    labels = torch.randint(0, config.vocab_size, (M,), generator=g)
    positions = torch.cat([chosen, torch.zeros(2, dtype=torch.long)])
    labels = torch.cat([labels, torch.full((2,), -100)])
    nsp = torch.tensor([0, 1, 1][:B])
    return dict(
        input_ids=input_ids,
        attention_mask=attention_mask if padding else None,
        token_type_ids=token_type_ids,
        mlm_positions=positions,
        mlm_labels=labels,
        next_sentence_label=nsp,
    ), attention_mask


def hf_labels(batch, B: int, T: int) -> torch.Tensor:
    labels = torch.full((B * T,), -100)
    keep = batch["mlm_labels"] != -100
    labels[batch["mlm_positions"][keep]] = batch["mlm_labels"][keep]
    return labels.view(B, T)


def test_state_dict_keys_equal_transformers():
    config = BertConfig(**SMALL)
    ours = BertForPreTraining(config).state_dict()
    theirs = transformers.BertForPreTraining(transformers.BertConfig(**config.to_dict())).state_dict()
    assert list(ours) == list(theirs)  # same names, same order
    assert {k: tuple(v.shape) for k, v in ours.items()} == {k: tuple(v.shape) for k, v in theirs.items()}


def test_decoder_is_tied_to_the_word_embedding():
    model = BertForPreTraining(BertConfig(**SMALL))
    predictions = model.cls.predictions
    assert predictions.decoder.weight is model.bert.embeddings.word_embeddings.weight
    assert predictions.decoder.bias is predictions.bias
    model = model.to(torch.float64)
    assert predictions.decoder.weight is model.bert.embeddings.word_embeddings.weight
    assert model.bert.embeddings.word_embeddings.weight.dtype == torch.float64
    # named_parameters lists each tied tensor once; HF has the same number of distinct parameters.
    hf = transformers.BertForPreTraining(transformers.BertConfig(**BertConfig(**SMALL).to_dict()))
    assert num_parameters(model) == sum(p.numel() for p in hf.parameters())


def test_hf_init_statistics():
    model = BertForPreTraining(BertConfig(**{**SMALL, "vocab_size": 4000, "hidden_size": 64}))
    emb = model.bert.embeddings.word_embeddings.weight
    assert torch.all(emb[0] == 0)  # padding row
    assert abs(emb[1:].std().item() - 0.02) < 0.002
    assert torch.all(model.cls.predictions.bias == 0)
    assert torch.all(model.bert.encoder.layer[0].attention.self.query.bias == 0)
    assert torch.all(model.bert.encoder.layer[1].output.LayerNorm.weight == 1)


@pytest.mark.parametrize("padding", [False, True], ids=["no-padding", "padding"])
def test_outputs_equal_transformers(padding):
    ours, hf = hf_pair()
    B, T = 3, 11
    batch, mask = make_batch(ours.config, B, T, padding=padding)
    args = (batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
    with torch.no_grad():
        out = ours(**batch)
        hidden = ours.encode(*args)
        logits = ours.mlm_logits(*args, positions=batch["mlm_positions"])
        nsp = ours.nsp_logits(*args)
        ref = hf(
            input_ids=batch["input_ids"],
            attention_mask=mask,
            token_type_ids=batch["token_type_ids"],
            labels=hf_labels(batch, B, T),
            next_sentence_label=batch["next_sentence_label"],
            output_hidden_states=True,
        )
    torch.testing.assert_close(hidden, ref.hidden_states[-1], atol=ATOL, rtol=0)
    ref_logits = ref.prediction_logits.reshape(B * T, -1)[batch["mlm_positions"]]
    torch.testing.assert_close(logits, ref_logits, atol=ATOL, rtol=0)
    torch.testing.assert_close(nsp, ref.seq_relationship_logits, atol=ATOL, rtol=0)
    torch.testing.assert_close(out.loss, ref.loss, atol=ATOL, rtol=0)
    keep = batch["mlm_labels"] != -100
    ref_mlm = F.cross_entropy(ref_logits[keep], batch["mlm_labels"][keep])
    torch.testing.assert_close(out.mlm_loss, ref_mlm, atol=ATOL, rtol=0)
    assert out.mlm_count.item() == int(keep.sum()) == 7
    assert out.mlm_correct.item() == int((ref_logits.argmax(-1) == batch["mlm_labels"])[keep].sum())
    assert out.nsp_count.item() == B
    assert out.nsp_correct.item() == int((ref.seq_relationship_logits.argmax(-1) == batch["next_sentence_label"]).sum())
    assert out.mlm_loss.dim() == 0 and out.mlm_count.dim() == 0 and out.mlm_count.dtype == torch.int64


def test_sdpa_and_eager_transformers_agree_with_bertkit_on_padding():
    ours, _ = hf_pair(seed=3)
    hf = transformers.BertModel(transformers.BertConfig(**ours.config.to_dict(), attn_implementation="sdpa"))
    hf.load_state_dict(ours.bert.state_dict())
    hf.eval()
    batch, mask = make_batch(ours.config, padding=True)
    with torch.no_grad():
        ref = hf(input_ids=batch["input_ids"], attention_mask=mask, token_type_ids=batch["token_type_ids"])
        hidden = ours.encode(batch["input_ids"], mask, batch["token_type_ids"])
    torch.testing.assert_close(hidden, ref.last_hidden_state, atol=ATOL, rtol=0)


def test_mask_none_equals_all_ones_and_token_types_default_to_zero():
    ours, _ = hf_pair()
    batch, _ = make_batch(ours.config)
    ids = batch["input_ids"]
    with torch.no_grad():
        a = ours.encode(ids, None, None)
        b = ours.encode(ids, torch.ones_like(ids), torch.zeros_like(ids))
        c = ours.encode(ids, torch.ones_like(ids, dtype=torch.bool), torch.ones_like(ids))
    torch.testing.assert_close(a, b, atol=1e-6, rtol=0)
    assert not torch.allclose(a, c, atol=1e-3)  # token types are used


def test_mlm_only_output_and_predictions():
    ours, _ = hf_pair()
    batch, _ = make_batch(ours.config)
    batch["next_sentence_label"] = None
    with torch.no_grad():
        out = ours(**batch, return_predictions=True)
        logits = ours.mlm_logits(batch["input_ids"], None, batch["token_type_ids"], batch["mlm_positions"])
    assert isinstance(out, PretrainingOutput)
    assert out.nsp_loss is None and out.nsp_correct is None and out.nsp_count is None
    assert out.loss is out.mlm_loss
    assert torch.equal(out.mlm_predictions, logits.argmax(-1))
    # Force some hits: labels equal to the predictions at three real rows.
    labels = batch["mlm_labels"].clone()
    labels[:3] = out.mlm_predictions[:3]
    with torch.no_grad():
        hit = ours(**{**batch, "mlm_labels": labels})
    assert hit.mlm_correct.item() >= 3
    assert ours(**batch).mlm_predictions is None


def test_padding_entries_do_not_change_the_loss():
    ours, _ = hf_pair()
    batch, _ = make_batch(ours.config)
    keep = batch["mlm_labels"] != -100
    with torch.no_grad():
        padded = ours(**batch)
        plain = ours(
            **{**batch, "mlm_positions": batch["mlm_positions"][keep], "mlm_labels": batch["mlm_labels"][keep]}
        )
    torch.testing.assert_close(padded.loss, plain.loss, atol=1e-6, rtol=0)
    assert padded.mlm_count == plain.mlm_count


def test_missing_mlm_fields_and_too_long_sequences_are_errors():
    ours, _ = hf_pair()
    with pytest.raises(TypeError, match="mlm_positions"):
        ours(torch.zeros(1, 4, dtype=torch.long))
    too_long = torch.zeros(1, SMALL["max_position_embeddings"] + 1, dtype=torch.long)
    with pytest.raises(ConfigError, match="41 tokens but max_position_embeddings is 40"):
        ours.encode(too_long)


def test_gradient_reaches_every_parameter():
    ours, _ = hf_pair()
    ours.train()
    batch, _ = make_batch(ours.config, padding=True)
    ours(**batch).loss.backward()
    for name, p in ours.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


def test_dropout_is_active_in_training_only():
    ours, _ = hf_pair(hidden_dropout_prob=0.2, attention_probs_dropout_prob=0.2)
    batch, _ = make_batch(ours.config)
    with torch.no_grad():
        ours.train()
        a, b = ours(**batch).loss, ours(**batch).loss
        ours.eval()
        c, d = ours(**batch).loss, ours(**batch).loss
    assert a != b
    assert c == d


def test_tiny_preset_learns_a_fixed_batch_on_cpu():
    """Ten AdamW steps on one masked batch: the MLM loss starts at ln(V) (an untrained model predicts uniformly) and
    ends far below it, and the eval-mode argmax predictions move from none to most of the masked labels. A broken
    gradient path, head, loss gather or optimiser wiring stays near ln(V). (Speed is measured in benchmarks/.)"""
    torch.manual_seed(0)
    model = build_model("bert", "tiny")
    V = model.config.vocab_size
    B, T, M = 8, 128, 20 * 8
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(5, V, (B, T), generator=g)
    positions = torch.sort(torch.randperm(B * T, generator=g)[:M]).values
    labels = ids.view(-1)[positions].clone()
    masked = ids.clone()
    masked.view(-1)[positions] = MASK_ID
    nsp = torch.randint(0, 2, (B,), generator=g)

    def evaluate() -> PretrainingOutput:
        model.eval()
        with torch.no_grad():
            out = model(masked, None, None, positions, labels, nsp)
        model.train()
        return out

    before = evaluate()
    assert before.mlm_loss.item() == pytest.approx(math.log(V), abs=0.5)
    assert before.mlm_correct.item() <= 1 and before.mlm_count.item() == M
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(10):
        out = model(masked, None, None, positions, labels, nsp)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        assert torch.isfinite(out.loss)
    after = evaluate()
    assert after.mlm_loss.item() < math.log(V) / 2, after.mlm_loss.item()
    assert after.mlm_correct.item() > M / 2, after.mlm_correct.item()


def test_presets_match_transformers_parameter_counts():
    for name in ("tiny", "small", "base", "large"):
        config = build_config("bert", name)
        with torch.device("meta"):
            ours = BertForPreTraining(config)
            hf = transformers.BertForPreTraining(transformers.BertConfig(**config.to_dict()))
        assert num_parameters(ours) == sum(p.numel() for p in hf.parameters()), name
    assert build_config("bert", "base") == BertConfig()  # base = HF's BertConfig defaults
    with torch.device("meta"):
        assert num_parameters(BertForPreTraining(build_config("bert", "base"))) == 110_106_428


def test_config_round_trip_and_validation():
    config = build_config("bert", "small", vocab_size=8000, hidden_dropout_prob=0.0)
    assert config.vocab_size == 8000 and config.hidden_size == PRESETS["small"]["hidden_size"]
    again = BertConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert again == config
    assert config.replace(pad_token_id=1).pad_token_id == 1
    with pytest.raises(ConfigError, match="multiple of num_attention_heads"):
        BertConfig(hidden_size=100, num_attention_heads=3)
    with pytest.raises(ConfigError, match="hidden_act"):
        BertConfig(hidden_act="swish")
    with pytest.raises(ConfigError, match="hidden_dropout_prob"):
        BertConfig(hidden_dropout_prob=1.5)
    with pytest.raises(ConfigError, match="vocab_size"):
        BertConfig(vocab_size=0)
    with pytest.raises(ConfigError, match="unknown option.*hiden_size.*valid options: vocab_size, hidden_size"):
        BertConfig.from_dict({"hiden_size": 3})


def test_registry_errors_name_the_valid_choices():
    assert get_architecture("bert") is ARCHITECTURES["bert"]
    assert ARCHITECTURES["bert"].preset_names() == ["tiny", "small", "base", "large"]
    with pytest.raises(ConfigError, match=r"unknown architecture 'gpt'; valid architectures: bert"):
        get_architecture("gpt")
    with pytest.raises(ConfigError, match=r"no preset 'huge'; valid presets: tiny, small, base, large"):
        build_model("bert", "huge")
    with pytest.raises(ConfigError, match=r"unknown option\(s\) layers; valid options: .*num_hidden_layers"):
        build_model("bert", "tiny", layers=3)
    with pytest.raises(ConfigError, match="multiple of num_attention_heads"):
        build_model("bert", "tiny", num_attention_heads=3)
    model = build_model("bert", "tiny", vocab_size=500, num_hidden_layers=1)
    assert isinstance(model, BertForPreTraining)
    assert model.config.vocab_size == 500 and len(model.bert.encoder.layer) == 1


def test_sequence_classification_equals_transformers():
    config = BertConfig(**SMALL)
    ours = BertForSequenceClassification(config, num_labels=3)
    randomize(ours, seed=5)
    hf = transformers.BertForSequenceClassification(
        transformers.BertConfig(**config.to_dict(), num_labels=3, attn_implementation="eager")
    )
    assert sorted(ours.state_dict()) == sorted(hf.state_dict())
    hf.load_state_dict(ours.state_dict())
    ours.eval(), hf.eval()
    batch, mask = make_batch(config, padding=True)
    labels = torch.tensor([0, 2, 1])
    with torch.no_grad():
        out = ours(batch["input_ids"], mask, batch["token_type_ids"], labels=labels)
        ref = hf(
            input_ids=batch["input_ids"], attention_mask=mask, token_type_ids=batch["token_type_ids"], labels=labels
        )
    torch.testing.assert_close(out.logits, ref.logits, atol=ATOL, rtol=0)
    torch.testing.assert_close(out.loss, ref.loss, atol=ATOL, rtol=0)
    # Fine-tuning starts from a pretrained encoder.
    pretrained, _ = hf_pair(seed=9)
    ours.load_pretrained_encoder(pretrained)
    torch.testing.assert_close(
        ours.bert.encoder.layer[1].output.dense.weight, pretrained.bert.encoder.layer[1].output.dense.weight
    )
    with pytest.raises(ConfigError, match="num_labels"):
        BertForSequenceClassification(config, num_labels=0)


def test_token_classification_equals_transformers_at_the_positions():
    config = BertConfig(**SMALL)
    ours = BertForTokenClassification(config, num_labels=5)
    randomize(ours, seed=6)
    hf = transformers.BertForTokenClassification(
        transformers.BertConfig(**config.to_dict(), num_labels=5, attn_implementation="eager")
    )
    assert sorted(ours.state_dict()) == sorted(hf.state_dict())
    hf.load_state_dict(ours.state_dict())
    ours.eval(), hf.eval()
    batch, mask = make_batch(config, padding=True)
    B, T = batch["input_ids"].shape
    positions = torch.tensor([1, 2, T + 1, 2 * T + 3])
    labels = torch.tensor([0, 4, -100, 2])
    with torch.no_grad():
        out = ours(batch["input_ids"], mask, batch["token_type_ids"], positions=positions, labels=labels)
        ref = hf(input_ids=batch["input_ids"], attention_mask=mask, token_type_ids=batch["token_type_ids"])
    expected = ref.logits.reshape(B * T, -1)[positions]
    torch.testing.assert_close(out.logits, expected, atol=ATOL, rtol=0)
    torch.testing.assert_close(out.loss, F.cross_entropy(expected, labels, ignore_index=-100), atol=ATOL, rtol=0)
    pretrained, _ = hf_pair(seed=9)
    ours.load_pretrained_encoder(pretrained)  # the pretraining model's pooler is left out
    torch.testing.assert_close(
        ours.bert.embeddings.word_embeddings.weight, pretrained.bert.embeddings.word_embeddings.weight
    )
    with pytest.raises(ConfigError, match="cannot load the encoder"):
        ours.load_pretrained_encoder(torch.nn.Linear(2, 2))
    with pytest.raises(TypeError, match="needs positions"):
        ours(batch["input_ids"])


def test_flops_per_token_matches_the_reference_table():
    """docs/ANCHORS.md: BERT-base S128 sparse 15 % = 545.4, full head 667.9, S512 587.9, large S128 1878.8 MFLOP."""
    with torch.device("meta"):
        base = build_model("bert", "base")
        large = build_model("bert", "large")
    assert round(base.flops_per_token(128, 0.15) / 1e6, 1) == 545.4
    assert round(base.flops_per_token(128, 1.0) / 1e6, 1) == 667.9
    assert round(base.flops_per_token(512, 0.15) / 1e6, 1) == 587.9
    assert round(large.flops_per_token(128, 0.15) / 1e6, 1) == 1878.8
