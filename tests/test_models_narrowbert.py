"""NarrowBERT against hand-written per-row loop references (both variants), its query batching, heads, registry
and config errors, and a round trip through the trainer, checkpoints, resume and `bertkit eval mlm`."""

from __future__ import annotations

import json
import math

import pytest

torch = pytest.importorskip("torch")

import torch.nn.functional as F  # noqa: E402

from bertkit.exceptions import ConfigError  # noqa: E402
from bertkit.models import ARCHITECTURES, build_config, build_model, get_architecture  # noqa: E402
from bertkit.models.bert import BertForPreTraining, BertForSequenceClassification, num_parameters  # noqa: E402
from bertkit.models.narrowbert import (  # noqa: E402
    PRESETS,
    NarrowBertConfig,
    NarrowBertForPreTraining,
    NarrowBertForSequenceClassification,
    NarrowBertForTokenClassification,
    query_layout,
)

SMALL = dict(
    vocab_size=97,
    hidden_size=48,
    num_hidden_layers=4,
    num_attention_heads=4,
    intermediate_size=80,
    max_position_embeddings=40,
    hidden_dropout_prob=0.0,
    attention_probs_dropout_prob=0.0,
)
VARIANTS = ("sparse-queries", "context-first")
ATOL = 1e-9  # the references run in float64


def randomize(model: torch.nn.Module, seed: int = 0) -> None:
    """Random values everywhere (biases and LayerNorms too), so a swapped or unused tensor cannot go unnoticed."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            scale = 0.5 if "LayerNorm" in name else 0.1
            base = 1.0 if name.endswith("LayerNorm.weight") else 0.0
            p.copy_(base + scale * torch.randn(p.shape, generator=g, dtype=p.dtype))


def make_model(cls=NarrowBertForPreTraining, *args, seed: int = 0, **overrides):
    model = cls(NarrowBertConfig(**{**SMALL, **overrides}), *args).double()
    randomize(model, seed)
    return model.eval()


def make_batch(B: int = 3, T: int = 12, padding: bool = True, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(5, SMALL["vocab_size"], (B, T), generator=g)
    token_type_ids = (torch.arange(T) >= T // 2).long().expand(B, T).clone()
    attention_mask = None
    if padding:
        attention_mask = torch.ones(B, T, dtype=torch.long)
        attention_mask[1, T - 4 :] = 0
        attention_mask[2, T - 1 :] = 0
    return input_ids, attention_mask, token_type_ids


# ------------------------------------------------------------------------------------- the loop references


def linear(x, layer):
    return x @ layer.weight.T + layer.bias


def layer_norm(x, ln):
    return F.layer_norm(x, x.shape[-1:], ln.weight, ln.bias, ln.eps)


def attend(queries, context, attention):
    """Multi-head attention of `queries` [n, d] over `context` [m, d], one head and one query at a time."""
    heads, size = attention.num_attention_heads, attention.attention_head_size
    k, v = linear(context, attention.key), linear(context, attention.value)
    rows = []
    for q in linear(queries, attention.query):
        parts = []
        for h in range(heads):
            cols = slice(h * size, (h + 1) * size)
            weights = torch.softmax(k[:, cols] @ q[cols] / math.sqrt(size), dim=0)
            parts.append(weights @ v[:, cols])
        rows.append(torch.cat(parts))
    return torch.stack(rows)


def attention_sublayer(x, context, layer):
    return layer_norm(linear(attend(x, context, layer.attention.self), layer.attention.output.dense) + x,
                      layer.attention.output.LayerNorm)  # fmt: skip


def ffn_sublayer(x, layer):
    ffn = linear(F.gelu(linear(x, layer.intermediate.dense)), layer.output.dense)
    return layer_norm(ffn + x, layer.output.LayerNorm)


def full_layers_output(model, input_ids, attention_mask, token_type_ids):
    """H from transformers' BertModel holding the embeddings and full layers (independent of bertkit)."""
    transformers = pytest.importorskip("transformers")
    c = model.config
    fields = c.bert_config(num_hidden_layers=c.full_layers).to_dict()
    hf_config = transformers.BertConfig(**fields, attn_implementation="eager")
    hf = transformers.BertModel(hf_config).double().eval()
    state = {k: v for k, v in model.bert.state_dict().items() if not k.startswith("encoder_narrow.")}
    hf.load_state_dict(state, strict=True)
    mask = torch.ones_like(input_ids) if attention_mask is None else attention_mask
    with torch.no_grad():
        return hf(input_ids, attention_mask=mask, token_type_ids=token_type_ids).last_hidden_state


def reference_rows(model, input_ids, attention_mask, token_type_ids, positions):
    """The last hidden state of each query, computed row by row with plain loops."""
    H = full_layers_output(model, input_ids, attention_mask, token_type_ids)
    B, T, _ = H.shape
    mask = torch.ones(B, T, dtype=torch.bool) if attention_mask is None else attention_mask.bool()
    layers = list(model.bert.encoder_narrow.layer)
    if model.config.variant == "context-first":  # s^n over all tokens of each row, then f^n on the queries
        X = H.clone()
        for layer in layers:
            X = torch.stack([attention_sublayer(X[b], X[b][mask[b]], layer) for b in range(B)])
        out = []
        for p in positions.tolist():
            x = X[p // T, p % T][None]
            for layer in layers:
                x = ffn_sublayer(x, layer)
            out.append(x[0])
        return torch.stack(out)
    out = []
    for p in positions.tolist():  # each query cross-attends to the fixed H of its row
        b, t = divmod(p, T)
        x = H[b, t][None]
        for layer in layers:
            x = ffn_sublayer(attention_sublayer(x, H[b][mask[b]], layer), layer)
        out.append(x[0])
    return torch.stack(out)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize(("full_layers", "padding"), [(2, True), (1, False), (3, True)])
def test_query_rows_equal_the_loop_reference(variant, full_layers, padding):
    model = make_model(variant=variant, full_layers=full_layers)
    ids, mask, types = make_batch(padding=padding)
    positions = torch.tensor([25, 3, 14, 0, 35, 16, 12, 7, 24, 3])  # any order, a repeat, all rows
    with torch.no_grad():
        ours = model.bert(ids, mask, types, positions)
    torch.testing.assert_close(ours, reference_rows(model, ids, mask, types, positions), atol=ATOL, rtol=0)


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_token_as_a_query_equals_the_reference(variant):
    model = make_model(variant=variant)
    ids, mask, types = make_batch()
    B, T = ids.shape
    everything = torch.arange(B * T)
    reference = reference_rows(model, ids, mask, types, everything)
    shuffled = torch.randperm(B * T, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(model.encode(ids, mask, types), reference.view(B, T, -1), atol=ATOL, rtol=0)
        torch.testing.assert_close(model.bert(ids, mask, types, shuffled), reference[shuffled], atol=ATOL, rtol=0)


def test_context_is_the_output_of_the_full_layers():
    """H (what every SparseQueries narrow layer attends to) equals transformers' BERT with the full layers alone."""
    model = make_model(full_layers=3)
    ids, mask, types = make_batch()
    H, _ = model.bert.context(ids, mask, types)
    torch.testing.assert_close(H, full_layers_output(model, ids, mask, types), atol=ATOL, rtol=0)


@pytest.mark.parametrize("variant", VARIANTS)
def test_queries_do_not_interact(variant):
    """A position's logits do not depend on which other positions are queried (nor on the query block size)."""
    model = make_model(variant=variant)
    ids, mask, types = make_batch()
    many = torch.tensor([2, 3, 4, 5, 6, 7, 8, 9, 13, 30, 31, 0, 0, 0])
    with torch.no_grad():
        together = model.mlm_logits(ids, mask, types, many)
        for i in (0, 8, 9, 11):
            alone = model.mlm_logits(ids, mask, types, many[i : i + 1])
            torch.testing.assert_close(alone[0], together[i], atol=ATOL, rtol=0)
        static = make_model(variant=variant, static_queries=True).mlm_logits(ids, mask, types, many)
    torch.testing.assert_close(static, together, atol=ATOL, rtol=0)


def test_query_layout_groups_rows_without_padding_the_projections():
    positions = torch.tensor([9, 1, 0, 1, 17, 4, 0, 9])  # B = 3, T = 6: rows 0, 0, 0, 0, 2, 0, 0, 1
    layout = query_layout(positions, 3, 6)
    assert layout.queries_per_row == 6  # 3 distinct queries in row 0 → rounded up to 8 → capped at T = 6
    rows = torch.arange(8.0)[:, None] * 10  # query row i holds 10·i
    block = layout.to_block(rows).view(3, 6)
    # each slot holds the first occurrence of a distinct position, in position order within the row
    assert block[0, :3].tolist() == [20.0, 10.0, 50.0] and block[1, 0] == 0.0 and block[2, 0] == 40.0
    back = layout.from_block(layout.to_block(rows))
    assert back.tolist() == [[0.0], [10.0], [20.0], [10.0], [40.0], [50.0], [20.0], [0.0]]  # repeats share a slot
    assert query_layout(positions, 3, 6, static=True).queries_per_row == 6
    wide = query_layout(torch.tensor([1, 70, 71]), 2, 64)
    assert wide.queries_per_row == 8  # 2 in the busiest row → 8


def test_repeated_positions_get_the_gradient_of_separate_queries():
    model = make_model()
    ids, mask, types = make_batch()
    weights = torch.randn(3, SMALL["hidden_size"], dtype=torch.float64)

    def grads(positions):
        model.zero_grad()
        rows = model.bert(ids, mask, types, positions)
        (rows * weights[: len(positions)]).sum().backward()
        return {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}

    repeated = grads(torch.tensor([5, 5, 20]))
    w = weights.clone()
    weights[:2] = torch.stack([w[0] + w[1], w[2]])  # one query at 5 carrying both weights, then 20
    merged = grads(torch.tensor([5, 20]))
    assert repeated.keys() == merged.keys()
    for k in merged:
        torch.testing.assert_close(repeated[k], merged[k], atol=1e-10, rtol=1e-7, msg=k)


# ------------------------------------------------------------------------------------------------- pretraining


def pretraining_batch(B: int = 3, T: int = 12, nsp: bool = True):
    ids, mask, types = make_batch(B, T)
    positions = torch.tensor([1, 4, 5, 13, 14, 20, 26, 27, 30, 0, 0])  # the last two: contract padding entries
    labels = ids.view(-1)[positions].clone()
    labels[-2:] = -100
    return {
        "input_ids": ids,
        "attention_mask": mask,
        "token_type_ids": types,
        "mlm_positions": positions,
        "mlm_labels": labels,
        "next_sentence_label": torch.tensor([0, 1, 1]) if nsp else None,
    }


@pytest.mark.parametrize("variant", VARIANTS)
def test_pretraining_loss_is_cross_entropy_at_the_queries(variant):
    model = make_model(variant=variant)
    batch = pretraining_batch()
    with torch.no_grad():
        out = model(**batch, return_predictions=True)
        logits = model.mlm_logits(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"],
                                  batch["mlm_positions"])  # fmt: skip
        rows = reference_rows(model, batch["input_ids"], batch["attention_mask"], batch["token_type_ids"],
                              torch.tensor([0, 12, 24]))  # fmt: skip
    labels = batch["mlm_labels"]
    expected_mlm = F.cross_entropy(logits, labels, ignore_index=-100).float()  # the loss is computed in fp32
    torch.testing.assert_close(out.mlm_loss, expected_mlm, atol=1e-6, rtol=0)
    assert out.mlm_count == 9 and torch.equal(out.mlm_predictions, logits.argmax(-1))
    nsp_logits = model.cls.seq_relationship(torch.tanh(linear(rows, model.bert.pooler.dense)))
    expected_nsp = F.cross_entropy(nsp_logits, batch["next_sentence_label"]).float()
    torch.testing.assert_close(out.nsp_loss, expected_nsp, atol=1e-6, rtol=0)
    torch.testing.assert_close(out.loss, out.mlm_loss + out.nsp_loss, atol=0, rtol=0)
    assert 0 <= out.nsp_correct <= out.nsp_count == 3
    # padding entries (label -100) change nothing, and MLM-only runs skip the [CLS] queries
    keep = labels != -100
    with torch.no_grad():
        plain = model(**{**batch, "mlm_positions": batch["mlm_positions"][keep], "mlm_labels": labels[keep]})
        mlm_only = model(**{**batch, "next_sentence_label": None})
    torch.testing.assert_close(plain.loss, out.loss, atol=1e-6, rtol=0)
    torch.testing.assert_close(mlm_only.loss, out.mlm_loss, atol=1e-6, rtol=0)
    assert mlm_only.nsp_loss is None and mlm_only.mlm_predictions is None


@pytest.mark.parametrize("variant", VARIANTS)
def test_gradient_reaches_every_parameter(variant):
    model = make_model(variant=variant).float().train()
    model(**pretraining_batch()).loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name
    model.zero_grad(set_to_none=True)
    model(**pretraining_batch(nsp=False)).loss.backward()
    unused = sorted(n for n, p in model.named_parameters() if p.grad is None)
    assert unused == ["bert.pooler.dense.bias", "bert.pooler.dense.weight", "cls.seq_relationship.bias",
                      "cls.seq_relationship.weight"]  # fmt: skip


def test_missing_queries_is_an_error_and_dropout_trains_only():
    model = make_model(hidden_dropout_prob=0.2, attention_probs_dropout_prob=0.2)
    with pytest.raises(TypeError, match="mlm_positions"):
        model(torch.zeros(1, 4, dtype=torch.long))
    batch = pretraining_batch()
    with torch.no_grad():
        model.train()
        a, b = model(**batch).loss, model(**batch).loss
        model.eval()
        c, d = model(**batch).loss, model(**batch).loss
    assert a != b and c == d


def test_tiny_preset_learns_on_cpu():
    torch.manual_seed(0)
    model = build_model("narrowbert", "tiny", vocab_size=500)
    B, T = 4, 32
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(5, 500, (B, T), generator=g)
    positions = torch.randperm(B * T, generator=g)[: B * T // 7].sort().values
    labels = ids.view(-1)[positions]
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(5):
        out = model(ids, None, None, positions, labels, torch.randint(0, 2, (B,), generator=g))
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        losses.append(out.loss.item())
    assert losses[-1] < losses[0], losses


def test_flops_per_token_follows_the_narrow_cost_model():
    with torch.device("meta"):
        bert = build_model("bert", "base")
        sparse = build_model("narrowbert", "base")
        first = build_model("narrowbert", "base", variant="context-first")
    # every token a query: a narrow layer costs exactly a full layer, in both variants
    for model in (sparse, first):
        assert model.flops_per_token(512, 1.0) == pytest.approx(bert.flops_per_token(512, 1.0), rel=1e-12)
    # base, S512, 15 %: 2 full layers + 10 × (6·2d² + 0.15·(6·(2d² + 2·d·4d) + 12·512·d)) + head
    d, f = 768, 0.15
    narrow = 6 * 2 * d * d + f * (6 * (2 * d * d + 8 * d * d) + 12 * 512 * d)
    full = 6 * 12 * d * d + 12 * 512 * d
    head = 6 * (d * 30522 + d * d) * f
    assert sparse.flops_per_token(512, f) == pytest.approx(2 * full + 10 * narrow + head, rel=1e-12)
    assert bert.flops_per_token(512, f) / sparse.flops_per_token(512, f) > 2.0  # the paper: "more than 2×" faster
    assert sparse.flops_per_token(512, f) < first.flops_per_token(512, f) < bert.flops_per_token(512, f)


# ----------------------------------------------------------------------------------------- fine-tuning heads


@pytest.mark.parametrize("variant", VARIANTS)
def test_sequence_classification_uses_the_cls_query(variant):
    pretrained = make_model(variant=variant)
    model = make_model(NarrowBertForSequenceClassification, 3, variant=variant, seed=5)
    model.load_pretrained_encoder(pretrained)
    ids, mask, types = make_batch()
    with torch.no_grad():
        out = model(ids, mask, types, labels=torch.tensor([0, 2, 1]))
        cls = reference_rows(pretrained, ids, mask, types, torch.tensor([0, 12, 24]))
    expected = linear(torch.tanh(linear(cls, pretrained.bert.pooler.dense)), model.classifier)
    torch.testing.assert_close(out.logits, expected, atol=ATOL, rtol=0)
    expected_loss = F.cross_entropy(expected, torch.tensor([0, 2, 1]))
    torch.testing.assert_close(out.loss.double(), expected_loss, atol=1e-6, rtol=0)
    regression = make_model(NarrowBertForSequenceClassification, 1, variant=variant)
    with torch.no_grad():
        r = regression(ids, mask, types, labels=torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64))
    assert r.logits.shape == (3, 1) and r.loss > 0
    assert model(ids, mask, types).loss is None


@pytest.mark.parametrize("variant", VARIANTS)
def test_token_classification_queries_the_given_positions(variant):
    pretrained = make_model(variant=variant)
    model = make_model(NarrowBertForTokenClassification, 5, variant=variant, seed=6)
    model.load_pretrained_encoder(pretrained)
    ids, mask, types = make_batch()
    word_starts = torch.tensor([1, 2, 4, 13, 15, 25, 26, 29])
    labels = torch.tensor([0, 4, 1, -100, 2, 3, 3, 1])
    with torch.no_grad():
        out = model(ids, mask, types, positions=word_starts, labels=labels)
        no_labels = model(ids, mask, types, positions=word_starts)
        rows = reference_rows(pretrained, ids, mask, types, word_starts)
    expected = linear(rows, model.classifier)
    torch.testing.assert_close(out.logits, expected, atol=ATOL, rtol=0)
    torch.testing.assert_close(no_labels.logits, out.logits, atol=0, rtol=0)  # inference needs no labels
    assert no_labels.loss is None
    expected_loss = F.cross_entropy(expected, labels, ignore_index=-100)
    torch.testing.assert_close(out.loss.double(), expected_loss, atol=1e-6, rtol=0)
    with pytest.raises(TypeError, match="needs positions"):
        model(ids)


def test_loading_a_foreign_or_differently_shaped_encoder_is_a_config_error():
    classifier = NarrowBertForSequenceClassification(NarrowBertConfig(**SMALL), 2)
    with pytest.raises(ConfigError, match="BertForPreTraining into a NarrowBERT classifier"):
        classifier.load_pretrained_encoder(BertForPreTraining(NarrowBertConfig(**SMALL).bert_config()))
    with pytest.raises(ConfigError, match="context-first with 2 full layers"):
        classifier.load_pretrained_encoder(NarrowBertForPreTraining(NarrowBertConfig(**SMALL, variant="context-first")))
    with pytest.raises(ConfigError, match="does not fit"):
        classifier.load_pretrained_encoder(NarrowBertForPreTraining(NarrowBertConfig(**{**SMALL, "hidden_size": 32})))
    with pytest.raises(ConfigError, match="NarrowBertForPreTraining into a BERT classifier"):
        BertForSequenceClassification(NarrowBertConfig(**SMALL).bert_config()).load_pretrained_encoder(
            NarrowBertForPreTraining(NarrowBertConfig(**SMALL))
        )
    with pytest.raises(ConfigError, match="num_labels"):
        NarrowBertForTokenClassification(NarrowBertConfig(**SMALL), 0)


# ------------------------------------------------------------------------------------- config and registry


def bert_name(key: str, full_layers: int) -> str:
    """The BERT parameter name of a NarrowBERT parameter (narrow layer j = BERT layer full_layers + j)."""
    if key.startswith("bert.encoder_narrow.layer."):
        j, rest = key.removeprefix("bert.encoder_narrow.layer.").split(".", 1)
        return f"bert.encoder.layer.{full_layers + int(j)}.{rest}"
    return key


def test_registry_presets_and_parameter_names_match_bert():
    arch = get_architecture("narrowbert")
    assert ARCHITECTURES["narrowbert"] is arch and arch.preset_names() == ["tiny", "small", "base", "large"]
    assert arch.sequence_classification_class is NarrowBertForSequenceClassification
    assert arch.token_classification_class is NarrowBertForTokenClassification
    base = build_config("narrowbert", "base")
    assert (base.full_layers, base.narrow_layers, base.variant) == (2, 10, "sparse-queries")
    assert base.bert_config() == build_config("bert", "base")
    assert PRESETS["tiny"]["full_layers"] == 1
    for name in PRESETS:  # the same parameters as BERT of the same preset, layer k + j → narrow layer j
        with torch.device("meta"):
            ours = build_model("narrowbert", name)
            theirs = build_model("bert", name)
        ours_shapes = {bert_name(n, ours.config.full_layers): p.shape for n, p in ours.state_dict().items()}
        assert ours_shapes == {n: p.shape for n, p in theirs.state_dict().items()}, name
        assert num_parameters(ours) == num_parameters(theirs)


def test_config_validation_names_the_problem():
    config = build_config("narrowbert", "small", vocab_size=800, full_layers=3, variant="context-first")
    assert NarrowBertConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    assert config.replace(full_layers=1).full_layers == 1 and config.replace(full_layers=1).variant == "context-first"
    with pytest.raises(ConfigError, match=r"full_layers must be .* \[1, 3\].*got 4"):
        build_config("narrowbert", "small", full_layers=4)
    with pytest.raises(ConfigError, match="full_layers"):
        NarrowBertConfig(full_layers=0)
    with pytest.raises(ConfigError, match="full_layers"):
        build_config("narrowbert", "tiny", full_layers=2)  # the 2-layer tiny preset: 1 full + 1 narrow at most
    with pytest.raises(ConfigError, match="variant 'sparse' is not one of sparse-queries, context-first"):
        NarrowBertConfig(variant="sparse")
    with pytest.raises(ConfigError, match="static_queries"):
        NarrowBertConfig(static_queries="yes")
    with pytest.raises(ConfigError, match="NarrowBertConfig.hidden_size .* multiple of num_attention_heads"):
        NarrowBertConfig(hidden_size=100, num_attention_heads=3)
    with pytest.raises(ConfigError, match="unknown option.*full_layer\\b.*valid options:.*full_layers, variant"):
        NarrowBertConfig.from_dict({"full_layer": 3})
    with pytest.raises(ConfigError, match="unknown option.*full_layers"):
        build_config("bert", "tiny", full_layers=1)  # BERT has no such option


# ------------------------------------------------------------------- trainer, checkpoints, eval, CLI, bad input


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    pytest.importorskip("bertkit._core")
    from conftest import random_docs, write_fixture_dataset

    return write_fixture_dataset(tmp_path_factory.mktemp("data") / "ds", random_docs(300, seed=1), docs_per_shard=50)


def run_config(dataset, out, **kw):
    from conftest import tiny_train_config

    return tiny_train_config(
        dataset, out, **{"arch": "narrowbert", "batch_size": 8, "max_steps": 6, "lr": 2e-3, "warmup": 2,
                         "eval_every": 6, "eval_batches": 2, "checkpoint_every": 0, "log_every": 1, **kw}
    )  # fmt: skip


def test_trainer_checkpoint_resume_and_eval_mlm(dataset, tmp_path):
    """Dropout on (RNG state resumes too), NSP view (the [CLS] query): 6 steps = 3 + resume + 3, and the checkpoint
    loads back into the same model that `bertkit eval mlm` evaluates to the trainer's figures."""
    from bertkit.eval import evaluate_mlm, load_run
    from bertkit.train import checkpoint as ck
    from bertkit.train.trainer import train

    narrow_nsp = {"view": "nsp", "model": {"variant": "context-first"}}
    straight = train(run_config(dataset, tmp_path / "a", **narrow_nsp))

    def stop_at_3(event):
        if event["event"] == "step" and event["step"] == 3:
            raise KeyboardInterrupt

    first = train(run_config(dataset, tmp_path / "b", **narrow_nsp), on_event=stop_at_3)
    assert first.interrupted and first.step == 3
    resumed = train(run_config(dataset, tmp_path / "b", **narrow_nsp), resume=True)
    assert resumed.step == 6 and resumed.final_loss == pytest.approx(straight.final_loss, rel=1e-6)
    a = ck.load_model_state(straight.checkpoint)
    b = ck.load_model_state(resumed.checkpoint)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    meta = ck.read_meta(straight.checkpoint)
    assert meta["arch"] == "narrowbert" and meta["model_config"]["variant"] == "context-first"
    assert meta["model_config"]["full_layers"] == 1 and meta["model_config"]["vocab_size"] == 64

    loaded = load_run(tmp_path / "a")
    assert isinstance(loaded.model, NarrowBertForPreTraining) and loaded.model_config.variant == "context-first"
    assert all(torch.equal(loaded.model.state_dict()[k], a[k]) for k in a)
    result = evaluate_mlm(tmp_path / "a", dataset, batches=2, show=2)
    for key in ("mlm_loss", "mlm_accuracy", "nsp_accuracy"):
        assert result[key] == pytest.approx(straight.eval[key], rel=1e-6), key
    assert result["arch"] == "narrowbert" and len(result["examples"]) == 2 and "→" in result["examples"][0]


def test_cli_train_and_eval_mlm(dataset, tmp_path):
    from typer.testing import CliRunner

    from bertkit_cli import app

    runner = CliRunner()
    run = tmp_path / "run"
    args = ["train", "--arch", "narrowbert", "--preset", "tiny", "--full-layers", "1", "--data", str(dataset),
            "--out", str(run), "--max-steps", "3", "--batch-size", "4", "--seq-len", "32", "--device", "cpu",
            "--eval-every", "0", "--log-every", "1"]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    saved = json.loads((run / "config.json").read_text())
    assert saved["arch"] == "narrowbert" and saved["model"] == {"full_layers": 1}
    result = runner.invoke(app, ["eval", "mlm", str(run), "--split", "train", "--batches", "1", "--show", "1"])
    assert result.exit_code == 0, result.output
    assert "MLM accuracy" in result.output and "example 1" in result.output


@pytest.mark.parametrize(
    ("extra", "toml", "needle"),
    [
        (["--full-layers", "2"], None, "full_layers must be an integer in [1, num_hidden_layers - 1] = [1, 1]"),
        (["--full-layers", "0"], None, "full_layers must be"),
        (["--arch", "bert", "--full-layers", "1"], None, "unknown option(s) full_layers"),
        ([], '[model]\nvariant = "sparse"\n', "variant 'sparse' is not one of sparse-queries, context-first"),
        ([], "[model]\nfull_layers = 5\n", "[1, 1]"),
    ],
)
def test_cli_bad_narrow_options_fail_before_training(dataset, tmp_path, extra, toml, needle):
    from typer.testing import CliRunner

    from bertkit_cli import app

    run = tmp_path / "run"
    args = ["train", "--arch", "narrowbert", "--preset", "tiny", "--data", str(dataset), "--out", str(run),
            "--max-steps", "2", "--batch-size", "4", "--seq-len", "32", "--device", "cpu", *extra]  # fmt: skip
    if toml is not None:
        (tmp_path / "run.toml").write_text(toml)
        args += ["--config", str(tmp_path / "run.toml")]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1, result.output
    assert needle in " ".join(result.output.split()) and "Traceback" not in result.output
    assert not (run / "checkpoints").exists() and not (run / "metrics.jsonl").exists()


def test_checkpoints_of_another_architecture_are_refused(dataset, tmp_path):
    from ckpt_helpers import replace_weights

    from bertkit.eval import evaluate_mlm
    from bertkit.exceptions import FormatError
    from bertkit.train import checkpoint as ck
    from bertkit.train.trainer import train

    bert_run = tmp_path / "bert"
    train(run_config(dataset, bert_run, arch="bert", max_steps=1, warmup=0, eval_every=0))
    with pytest.raises(ConfigError, match="checkpoint of architecture 'bert', but this run is 'narrowbert'"):
        train(run_config(dataset, bert_run, max_steps=1, warmup=0, eval_every=0), resume=True)
    narrow_run = tmp_path / "narrow"
    train(run_config(dataset, narrow_run, max_steps=1, warmup=0, eval_every=0))
    with pytest.raises(ConfigError, match="checkpoint of architecture 'narrowbert', but this run is 'bert'"):
        train(run_config(dataset, narrow_run, arch="bert", max_steps=1, warmup=0, eval_every=0), resume=True)
    # a narrowbert checkpoint whose weights are BERT's: a FormatError naming the file, not a state-dict traceback
    ckpt = ck.latest(narrow_run)
    replace_weights(ck.latest(bert_run), ckpt)
    with pytest.raises(FormatError, match="model.safetensors: does not fit narrowbert"):
        evaluate_mlm(narrow_run, dataset)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_gpu_bf16_matches_fp32():
    model = NarrowBertForPreTraining(NarrowBertConfig(**SMALL)).cuda().eval()
    batch = {k: (v.cuda() if v is not None else None) for k, v in pretraining_batch().items()}
    with torch.no_grad():
        ref = model(**batch).loss
        with torch.autocast("cuda", dtype=torch.bfloat16):
            half = model(**batch).loss
    assert abs(float(half) - float(ref)) < 0.05 * float(ref)
