"""LTG-BERT and ELC-BERT for Hugging Face ``transformers`` (``trust_remote_code=True``), by ``bertkit export hf``.

This file is self-contained: it needs only torch and transformers (bertkit copies it next to the weights).

- LTG-BERT (Samuel et al., "Trained on 100 million words and still in shape", EACL Findings 2023): word embedding →
  LayerNorm without affine; disentangled attention with log-bucketed relative positions (content-to-content,
  content-to-position and position-to-content scores, scaled by 1/sqrt(3 · head size)); GEGLU feed-forward with
  NormFormer-style LayerNorms; pre-LN residuals.
- ELC-BERT (Charpentier & Samuel, "Not all layers are equally as important", BabyLM 2023): the same blocks, but
  layer n reads the softmax(wⁿ)-weighted sum of the embedding output and the outputs of the earlier layers instead
  of a residual stream. Variants (``config.variant``): ``base`` hₙ = aₙ + MLP(aₙ); ``zero`` hₙ = aₙ + MLP(xₙ + aₙ);
  ``normalized`` LayerNorm(zero's hₙ); ``weighted_output`` as zero, and the output is a learned mix of all layers.

Parameter names are those of the authors' code (ltgoslo/elc-bert ``models/model_elc_bert_*.py``) and of their
Hugging Face releases (``modeling_ltgbert.py``): ``embedding.*``, ``transformer.layers.N.*``, the MLM head
``classifier.nonlinearity.*`` and the fine-tuning head ``head.nonlinearity.*``, so their checkpoints load here (the
relative-position index they store as a buffer is recomputed, and the decoder weight is the word embedding).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import (
    BaseModelOutput,
    MaskedLMOutput,
    SequenceClassifierOutput,
    TokenClassifierOutput,
)

VARIANTS = ("base", "zero", "normalized", "weighted_output")


class LtgBertConfig(PretrainedConfig):
    model_type = "ltgbert"

    def __init__(
        self,
        vocab_size: int = 16384,
        hidden_size: int = 768,
        num_hidden_layers: int = 12,
        num_attention_heads: int = 12,
        intermediate_size: int = 2048,
        hidden_dropout_prob: float = 0.1,
        attention_probs_dropout_prob: float = 0.1,
        max_position_embeddings: int = 512,
        position_bucket_size: int = 32,
        layer_norm_eps: float = 1e-7,
        classifier_dropout: float | None = None,
        variant: str | None = None,
        **kwargs,
    ) -> None:
        kwargs.setdefault("tie_word_embeddings", False)  # the decoder reads the word embedding directly
        super().__init__(**kwargs)
        if variant is not None and variant not in VARIANTS:
            raise ValueError(f"variant {variant!r} is not one of {', '.join(VARIANTS)} (or None for LTG-BERT)")
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.intermediate_size = intermediate_size
        self.hidden_dropout_prob = hidden_dropout_prob
        self.attention_probs_dropout_prob = attention_probs_dropout_prob
        self.max_position_embeddings = max_position_embeddings
        self.position_bucket_size = position_bucket_size
        self.layer_norm_eps = layer_norm_eps
        self.classifier_dropout = classifier_dropout
        self.variant = variant


class ElcBertConfig(LtgBertConfig):
    model_type = "elcbert"

    def __init__(self, variant: str | None = "zero", **kwargs) -> None:
        super().__init__(variant=variant, **kwargs)


def _relative_index(seq_len: int, bucket_size: int, max_position: int, device: torch.device) -> torch.Tensor:
    """``[T, T]`` row of the relative embedding for query i and key j: ``bucket_size - 1 + bucket(i - j)``, exact for
    ``|i - j| <= bucket_size / 2`` and logarithmic beyond, up to ``max_position - 1``."""
    positions = torch.arange(seq_len, dtype=torch.int64, device=device)
    rel = positions[:, None] - positions[None, :]
    mid = bucket_size // 2
    sign = torch.sign(rel)
    abs_pos = torch.where(
        (rel < mid) & (rel > -mid), torch.full_like(rel, mid - 1), rel.abs().clamp(max=max_position - 1)
    )
    log_pos = torch.ceil(torch.log(abs_pos.to(torch.float32) / mid) / math.log((max_position - 1) / mid) * (mid - 1))
    bucket = torch.where(abs_pos <= mid, rel, (log_pos.to(torch.int64) + mid) * sign)
    return bucket_size - 1 + bucket


class Embedding(nn.Module):
    def __init__(self, config: LtgBertConfig) -> None:
        super().__init__()
        d = config.hidden_size
        self.word_embedding = nn.Embedding(config.vocab_size, d)
        self.word_layer_norm = nn.LayerNorm(d, eps=config.layer_norm_eps, elementwise_affine=False)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.relative_embedding = nn.Parameter(torch.zeros(2 * config.position_bucket_size - 1, d))
        self.relative_layer_norm = nn.LayerNorm(d, eps=config.layer_norm_eps)

    def forward(self, input_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        words = self.dropout(self.word_layer_norm(self.word_embedding(input_ids)))  # (B, T, d)
        return words, self.relative_layer_norm(self.relative_embedding)  # (2C - 1, d)


class Attention(nn.Module):
    def __init__(self, config: LtgBertConfig) -> None:
        super().__init__()
        d = config.hidden_size
        self.num_heads = config.num_attention_heads
        self.head_size = d // config.num_attention_heads
        self.in_proj_qk = nn.Linear(d, 2 * d, bias=True)
        self.in_proj_v = nn.Linear(d, d, bias=True)
        self.out_proj = nn.Linear(d, d, bias=True)
        self.pre_layer_norm = nn.LayerNorm(d, eps=config.layer_norm_eps, elementwise_affine=False)
        self.post_layer_norm = nn.LayerNorm(d, eps=config.layer_norm_eps, elementwise_affine=True)
        self.dropout = nn.Dropout(config.attention_probs_dropout_prob)
        self.dropout_prob = config.attention_probs_dropout_prob
        self.scale = 1.0 / math.sqrt(3 * self.head_size)

    def forward(
        self, x: torch.Tensor, relative: torch.Tensor, index: torch.Tensor, keep: torch.Tensor | None
    ) -> torch.Tensor:
        B, T, D = x.shape
        H, hs = self.num_heads, self.head_size
        h = self.pre_layer_norm(x)
        query, key = self.in_proj_qk(h).chunk(2, dim=-1)
        value = self.in_proj_v(h)
        query_pos, key_pos = self.in_proj_qk(self.dropout(relative)).chunk(2, dim=-1)  # (R, d) each
        query = query.view(B, T, H, hs).transpose(1, 2)  # (B, H, T, hs)
        key = key.view(B, T, H, hs).transpose(1, 2)
        value = value.view(B, T, H, hs).transpose(1, 2)
        query_pos = query_pos.view(-1, H, hs).transpose(0, 1)  # (H, R, hs)
        key_pos = key_pos.view(-1, H, hs).transpose(0, 1)
        rows = index.expand(B, H, T, T)
        c2p = torch.matmul(query, key_pos.transpose(-1, -2)).gather(-1, rows)  # q_i · kpos[idx(i, j)]
        p2c = torch.matmul(query_pos, key.transpose(-1, -2)).gather(-2, rows)  # qpos[idx(i, j)] · k_j
        bias = (c2p + p2c) * self.scale
        if keep is not None:
            bias = bias.masked_fill(~keep, float("-inf"))
        context = F.scaled_dot_product_attention(
            query, key, value, attn_mask=bias, dropout_p=self.dropout_prob if self.training else 0.0, scale=self.scale
        )
        context = self.out_proj(context.transpose(1, 2).reshape(B, T, D))
        return self.dropout(self.post_layer_norm(context))


class GeGLU(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, gate = x.chunk(2, dim=-1)
        return x * F.gelu(gate, approximate="tanh")


class FeedForward(nn.Module):
    def __init__(self, config: LtgBertConfig) -> None:
        super().__init__()
        d, ff, eps = config.hidden_size, config.intermediate_size, config.layer_norm_eps
        self.mlp = nn.Sequential(
            nn.LayerNorm(d, eps=eps, elementwise_affine=False),
            nn.Linear(d, 2 * ff, bias=False),
            GeGLU(),
            nn.LayerNorm(ff, eps=eps, elementwise_affine=False),
            nn.Linear(ff, d, bias=False),
            nn.Dropout(config.hidden_dropout_prob),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(x)


def _mix(logits: torch.Tensor, outputs: list[torch.Tensor]) -> torch.Tensor:
    weights = torch.softmax(logits.float(), dim=0)
    mixed = weights[0] * outputs[0].float()
    for i in range(1, logits.shape[0]):
        mixed = mixed + weights[i] * outputs[i].float()
    return mixed.to(outputs[0].dtype)


class EncoderLayer(nn.Module):
    def __init__(self, config: LtgBertConfig, layer_index: int) -> None:
        super().__init__()
        self.attention = Attention(config)
        self.mlp = FeedForward(config)
        self.variant = config.variant
        if self.variant is not None:
            self.prev_layer_weights = nn.Parameter(torch.zeros(layer_index + 1))
        if self.variant == "normalized":
            self.norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps, elementwise_affine=False)

    def forward(self, hidden, relative: torch.Tensor, index: torch.Tensor, keep: torch.Tensor | None) -> torch.Tensor:
        if self.variant is None:  # LTG-BERT: ``hidden`` is the residual stream
            x = hidden + self.attention(hidden, relative, index, keep)
            return x + self.mlp(x)
        x = _mix(self.prev_layer_weights, hidden)  # ELC-BERT: ``hidden`` lists the earlier outputs
        a = self.attention(x, relative, index, keep)
        if self.variant == "base":
            return a + self.mlp(a)
        h = a + self.mlp(x + a)
        return self.norm(h) if self.variant == "normalized" else h


class Encoder(nn.Module):
    def __init__(self, config: LtgBertConfig) -> None:
        super().__init__()
        self.config = config
        self.layers = nn.ModuleList(EncoderLayer(config, i) for i in range(config.num_hidden_layers))
        if config.variant == "weighted_output":
            self.prev_layer_weights = nn.Parameter(torch.zeros(config.num_hidden_layers + 1))
        self._index: dict[tuple[int, str], torch.Tensor] = {}

    def index(self, seq_len: int, device: torch.device) -> torch.Tensor:
        key = (seq_len, str(device))
        if key not in self._index:
            c = self.config
            if seq_len > c.max_position_embeddings:
                raise ValueError(
                    f"sequence of {seq_len} tokens but max_position_embeddings is {c.max_position_embeddings}"
                )
            self._index[key] = _relative_index(seq_len, c.position_bucket_size, c.max_position_embeddings, device)
        return self._index[key]

    def forward(
        self, x: torch.Tensor, relative: torch.Tensor, keep: torch.Tensor | None
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        index = self.index(x.shape[1], x.device)
        outputs = [x]
        if self.config.variant is None:
            for layer in self.layers:
                outputs.append(layer(outputs[-1], relative, index, keep))
            return outputs[-1], outputs
        for layer in self.layers:
            outputs.append(layer(outputs, relative, index, keep))
        if self.config.variant == "weighted_output":
            return _mix(self.prev_layer_weights, outputs), outputs
        return outputs[-1], outputs


class DecoderBias(nn.Module):
    """The decoder's own bias; its weight is the word embedding (``classifier.nonlinearity.5``)."""

    def __init__(self, vocab_size: int) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(vocab_size))


class MaskClassifier(nn.Module):
    def __init__(self, config: LtgBertConfig) -> None:
        super().__init__()
        d, eps = config.hidden_size, config.layer_norm_eps
        self.nonlinearity = nn.Sequential(
            nn.LayerNorm(d, eps=eps, elementwise_affine=False),
            nn.Linear(d, d),
            nn.GELU(),
            nn.LayerNorm(d, eps=eps, elementwise_affine=False),
            nn.Dropout(config.hidden_dropout_prob),
            DecoderBias(config.vocab_size),
        )

    def forward(self, x: torch.Tensor, word_embedding: torch.Tensor) -> torch.Tensor:
        for module in self.nonlinearity[:-1]:
            x = module(x)
        return F.linear(x, word_embedding, self.nonlinearity[-1].bias)


class Classifier(nn.Module):
    def __init__(self, config: LtgBertConfig, num_labels: int) -> None:
        super().__init__()
        d, eps = config.hidden_size, config.layer_norm_eps
        drop = config.hidden_dropout_prob if config.classifier_dropout is None else config.classifier_dropout
        self.nonlinearity = nn.Sequential(
            nn.LayerNorm(d, eps=eps, elementwise_affine=False),
            nn.Linear(d, d),
            nn.GELU(),
            nn.LayerNorm(d, eps=eps, elementwise_affine=False),
            nn.Dropout(drop),
            nn.Linear(d, num_labels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.nonlinearity(x)


class LtgBertPreTrainedModel(PreTrainedModel):
    config_class = LtgBertConfig
    base_model_prefix = "ltgbert"
    _keys_to_ignore_on_load_unexpected = [r"position_indices", r"classifier\.nonlinearity\.5\.weight"]

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        """The authors' init: truncated normal, std sqrt(2 / (5 d)) cut at ±2σ; zero biases."""
        std = math.sqrt(2.0 / (5.0 * self.config.hidden_size))
        if isinstance(module, nn.Linear):
            nn.init.trunc_normal_(module.weight, mean=0.0, std=std, a=-2 * std, b=2 * std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.trunc_normal_(module.weight, mean=0.0, std=std, a=-2 * std, b=2 * std)
        elif isinstance(module, Embedding):
            nn.init.trunc_normal_(module.relative_embedding, mean=0.0, std=std, a=-2 * std, b=2 * std)
        elif isinstance(module, nn.LayerNorm) and module.weight is not None:
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, DecoderBias):
            nn.init.zeros_(module.bias)
        elif isinstance(module, EncoderLayer) and module.variant is not None:
            nn.init.zeros_(module.prev_layer_weights)
            if module.variant == "base":
                module.prev_layer_weights[-1] = 1.0
        elif isinstance(module, Encoder) and module.config.variant == "weighted_output":
            nn.init.zeros_(module.prev_layer_weights)


class LtgBertModel(LtgBertPreTrainedModel):
    def __init__(self, config: LtgBertConfig) -> None:
        super().__init__(config)
        self.embedding = Embedding(config)
        self.transformer = Encoder(config)
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embedding.word_embedding

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.embedding.word_embedding = value

    def contextualize(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        words, relative = self.embedding(input_ids)
        keep = None if attention_mask is None else attention_mask.bool()[:, None, None, :]  # (B, 1, 1, T)
        return self.transformer(words, relative, keep)

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,  # accepted and ignored: no segment embedding
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> BaseModelOutput:
        hidden, outputs = self.contextualize(input_ids, attention_mask)
        return BaseModelOutput(last_hidden_state=hidden, hidden_states=tuple(outputs) if output_hidden_states else None)


class LtgBertForMaskedLM(LtgBertModel):
    def __init__(self, config: LtgBertConfig) -> None:
        super().__init__(config)
        self.classifier = MaskClassifier(config)
        self.post_init()

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> MaskedLMOutput:
        hidden, outputs = self.contextualize(input_ids, attention_mask)
        logits = self.classifier(hidden, self.embedding.word_embedding.weight)  # (B, T, V)
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits.flatten(0, 1).float(), labels.flatten(), ignore_index=-100)
        return MaskedLMOutput(loss=loss, logits=logits, hidden_states=tuple(outputs) if output_hidden_states else None)


def _classification_loss(config: LtgBertConfig, logits: torch.Tensor, labels: torch.Tensor | None):
    if labels is None:
        return None
    if config.num_labels == 1:
        return F.mse_loss(logits.float().squeeze(-1), labels.float())
    return F.cross_entropy(logits.float().view(-1, config.num_labels), labels.view(-1), ignore_index=-100)


class LtgBertForSequenceClassification(LtgBertModel):
    def __init__(self, config: LtgBertConfig) -> None:
        super().__init__(config)
        self.head = Classifier(config, config.num_labels)
        self.post_init()

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> SequenceClassifierOutput:
        hidden, outputs = self.contextualize(input_ids, attention_mask)
        logits = self.head(hidden[:, 0])  # [CLS]
        return SequenceClassifierOutput(
            loss=_classification_loss(self.config, logits, labels),
            logits=logits,
            hidden_states=tuple(outputs) if output_hidden_states else None,
        )


class LtgBertForTokenClassification(LtgBertModel):
    def __init__(self, config: LtgBertConfig) -> None:
        super().__init__(config)
        self.head = Classifier(config, config.num_labels)
        self.post_init()

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> TokenClassifierOutput:
        hidden, outputs = self.contextualize(input_ids, attention_mask)
        logits = self.head(hidden)  # (B, T, num_labels)
        return TokenClassifierOutput(
            loss=_classification_loss(self.config, logits, labels),
            logits=logits,
            hidden_states=tuple(outputs) if output_hidden_states else None,
        )


class ElcBertModel(LtgBertModel):
    config_class = ElcBertConfig


class ElcBertForMaskedLM(LtgBertForMaskedLM):
    config_class = ElcBertConfig


class ElcBertForSequenceClassification(LtgBertForSequenceClassification):
    config_class = ElcBertConfig


class ElcBertForTokenClassification(LtgBertForTokenClassification):
    config_class = ElcBertConfig
