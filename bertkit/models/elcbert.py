"""LTG-BERT (Samuel et al. 2023) and ELC-BERT (Charpentier & Samuel, BabyLM 2023): the backbone and layer mixing.

The LTG-BERT backbone, as ltgoslo/elc-bert ``models/model_elc_bert_*.py`` (@3152a70) builds it:

- **Embeddings**: word embedding → LayerNorm without affine (eps 1e-7) → dropout. No absolute positions and no
  segment embeddings (``token_type_ids`` are accepted and ignored). A ``[2·bucket - 1, d]`` relative-position
  embedding with its own affine LayerNorm is shared by all layers.
- **Attention**: pre-LN (no affine); ``in_proj_qk`` (d → 2d) gives queries and keys and, the same weights,
  projects the relative embeddings into query/key position vectors; ``in_proj_v`` the values. The score of query i
  and key j is ``(q_i·k_j + q_i·kpos[idx(i,j)] + qpos[idx(i,j)]·k_j) / sqrt(3·head_dim)`` (content-to-content,
  content-to-position, position-to-content) with ``idx(i, j) = bucket - 1 + log_bucket(i - j)``; masked softmax,
  dropout, ·V, ``out_proj``, an **affine** post-LN and dropout. The attention block returns that normalised output;
  the residual is the encoder's business (below).
- **FFN**: LN (no affine) → Linear(d, 2·d_ff, no bias) → GEGLU ``x · gelu_tanh(gate)`` → LN (no affine) over
  d_ff → Linear(d_ff, d, no bias) → dropout.
- **Init**: truncated normal, std ``sqrt(2 / (5 d))`` cut at ±2σ, for every weight matrix and both embeddings;
  zero biases; the FFN weights of layer i (from 0) scaled by ``sqrt(1 / (2 (i + 1)))``.
- **MLM head**: LN (no affine) → Linear(d, d) → GELU → LN (no affine) → dropout → decoder tied to the word
  embedding (+ bias), only on the masked rows (``bertkit.ops.masked_lm_loss``: no ``[M, V]`` logits).

How the layers connect (h₀ = embedding output, a = attention block output, MLP = FFN block):

- ``ltg-bert`` (:class:`LtgBertConfig`): plain pre-LN residuals, ``x ← x + Attn(x); x ← x + MLP(x)``.
- ``elc-bert`` (:class:`ElcBertConfig`): layer n owns logits wⁿ ∈ ℝⁿ (``prev_layer_weights``) and reads
  ``xₙ = Σ_{i<n} softmax(wⁿ)_i · h_i`` (``bertkit.ops.layer_mix.LayerOutputs``); aₙ = Attn(xₙ); its output hₙ is:

  ========================  ==================  ==========================================================
  variant                   wⁿ init             hₙ
  ========================  ==================  ==========================================================
  ``base``                  zeros, last = 1     aₙ + MLP(aₙ)
  ``zero``                  zeros               aₙ + MLP(xₙ + aₙ)
  ``normalized``            zeros               LN_noaffine(aₙ + MLP(xₙ + aₙ))
  ``weighted_output``       zeros               as zero; the head reads Σ_{i≤N} softmax(v)_i · h_i (v: N+1 zeros)
  ========================  ==================  ==========================================================

  hₙ excludes xₙ: the mixing is the residual. ``prev_layer_weights`` take no weight decay (bertkit.train.optim).

Module and parameter names are those of ltgoslo/elc-bert (``embedding.word_embedding``,
``transformer.layers.N.attention.in_proj_qk``, ``transformer.layers.N.mlp.mlp.1``, ``classifier.nonlinearity.1``,
...), except that the relative-position index is recomputed, not stored. Tensors here are batch-first ``[B, T, d]``
(the original is ``[T, B, d]``); attention runs through ``F.scaled_dot_product_attention`` with the relative terms
as an additive bias. The model has no NSP head: ``next_sentence_label`` is refused with a ConfigError (the original
trains MLM only).

Fine-tuning heads follow the LTG-BERT release on the Hugging Face hub (``modeling_ltgbert.py``, also used for the
ELC-BERT models): LN (no affine) → Linear(d, d) → GELU → LN (no affine) → dropout → Linear(d, num_labels), on the
[CLS] state for sequences and on each queried token for token classification.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from bertkit.exceptions import ConfigError
from bertkit.models.base import (
    ModelConfig,
    PretrainingOutput,
    SequenceClassificationOutput,
    TokenClassificationOutput,
    check_num_labels,
    check_transformer_shape,
    mlm_output,
    sequence_classification_loss,
    token_classification_loss,
)
from bertkit.ops.layer_mix import LayerOutputs

__all__ = [
    "PRESETS",
    "VARIANTS",
    "ElcBertConfig",
    "ElcBertForPreTraining",
    "ElcBertForSequenceClassification",
    "ElcBertForTokenClassification",
    "LtgBertConfig",
    "LtgBertForPreTraining",
    "LtgBertForSequenceClassification",
    "LtgBertForTokenClassification",
    "log_bucket_position",
    "relative_position_index",
]

VARIANTS = ("base", "zero", "normalized", "weighted_output")


@dataclass(frozen=True)
class LtgBertConfig(ModelConfig):
    """LTG-BERT hyper-parameters; field names and defaults of ltgoslo/elc-bert ``configs/base.json``."""

    vocab_size: int = 16384  # rows of the word embedding (= tied decoder rows)
    hidden_size: int = 768  # d
    num_hidden_layers: int = 12  # L
    num_attention_heads: int = 12  # H; d must divide by it
    intermediate_size: int = 2048  # d_ff: GEGLU width (the up-projection has 2·d_ff outputs)
    hidden_dropout_prob: float = 0.1  # embeddings, attention output, FFN output, MLM head, classifier
    attention_probs_dropout_prob: float = 0.1  # attention probabilities and the relative embeddings
    max_position_embeddings: int = 512  # longest sequence; also the log-bucket range (511 = the last bucket)
    position_bucket_size: int = 32  # C: relative positions fall into 2C - 1 buckets, exact for |i - j| <= C/2
    layer_norm_eps: float = 1e-7
    classifier_dropout: float | None = None  # fine-tuning heads; None = hidden_dropout_prob

    def __post_init__(self) -> None:
        name = type(self).__name__
        check_transformer_shape(
            self,
            (
                "vocab_size",
                "hidden_size",
                "num_hidden_layers",
                "num_attention_heads",
                "intermediate_size",
                "max_position_embeddings",
                "position_bucket_size",
            ),
        )
        if self.position_bucket_size < 4 or self.position_bucket_size % 2:
            raise ConfigError(
                f"{name}.position_bucket_size must be an even integer >= 4, got {self.position_bucket_size}"
            )
        if self.max_position_embeddings - 1 <= self.position_bucket_size // 2:
            raise ConfigError(
                f"{name}.max_position_embeddings ({self.max_position_embeddings}) must exceed "
                f"position_bucket_size / 2 + 1 ({self.position_bucket_size // 2 + 1}): the log buckets need the room"
            )
        for field in ("hidden_dropout_prob", "attention_probs_dropout_prob"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
                raise ConfigError(f"{name}.{field} must be in [0, 1), got {value!r}")
        drop = self.classifier_dropout
        if drop is not None and (isinstance(drop, bool) or not isinstance(drop, (int, float)) or not 0 <= drop < 1):
            raise ConfigError(f"{name}.classifier_dropout must be in [0, 1) or null, got {drop!r}")
        if isinstance(self.layer_norm_eps, bool) or not isinstance(self.layer_norm_eps, (int, float)):
            raise ConfigError(f"{name}.layer_norm_eps must be a number > 0, got {self.layer_norm_eps!r}")
        if not self.layer_norm_eps > 0:
            raise ConfigError(f"{name}.layer_norm_eps must be > 0, got {self.layer_norm_eps!r}")

    @property
    def head_size(self) -> int:
        return self.hidden_size // self.num_attention_heads


@dataclass(frozen=True)
class ElcBertConfig(LtgBertConfig):
    """ELC-BERT: the LTG-BERT fields plus the layer-mixing ``variant`` (one of :data:`VARIANTS`)."""

    variant: str = "zero"  # base | zero | normalized | weighted_output; zero = the BabyLM 100M submission

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.variant not in VARIANTS:
            raise ConfigError(f"ElcBertConfig.variant {self.variant!r} is not a variant; valid: {', '.join(VARIANTS)}")


# Preset → config fields (the rest take the defaults above; the trainer sets vocab_size from the dataset).
PRESETS: dict[str, dict[str, int]] = {
    # CPU tests: forward + backward of a [8, 64] batch in well under a second.
    "tiny": {"hidden_size": 128, "num_hidden_layers": 4, "num_attention_heads": 2, "intermediate_size": 256},
    # ltgoslo/elc-bert configs/small.json (≈24M parameters with V 6144).
    "small": {
        "hidden_size": 384,
        "num_hidden_layers": 12,
        "num_attention_heads": 6,
        "intermediate_size": 1024,
        "vocab_size": 6144,
    },
    # ltgoslo/elc-bert configs/base.json (≈98M parameters with V 16384). The original has no larger config.
    "base": {
        "hidden_size": 768,
        "num_hidden_layers": 12,
        "num_attention_heads": 12,
        "intermediate_size": 2048,
        "vocab_size": 16384,
    },
}


# ------------------------------------------------------------------------------------------ relative positions


def log_bucket_position(relative_pos: torch.Tensor, bucket_size: int, max_position: int) -> torch.Tensor:
    """Signed bucket of each relative position ``i - j``: exact for ``|rel| <= bucket_size / 2``, beyond that
    ``sign · (ceil(log(|rel| / mid) / log((max_position - 1) / mid) · (mid - 1)) + mid)`` with ``mid =
    bucket_size / 2`` and ``|rel|`` clipped at ``max_position - 1`` (so buckets stay within ``±(bucket_size - 1)``).
    The logarithm is evaluated in float32, as the original does."""
    mid = bucket_size // 2
    sign = torch.sign(relative_pos)
    abs_pos = torch.where(
        (relative_pos < mid) & (relative_pos > -mid),
        torch.full_like(relative_pos, mid - 1),
        relative_pos.abs().clamp(max=max_position - 1),
    )
    ratio = abs_pos.to(torch.float32) / mid
    log_pos = torch.ceil(torch.log(ratio) / math.log((max_position - 1) / mid) * (mid - 1)).to(torch.int64) + mid
    return torch.where(abs_pos <= mid, relative_pos, log_pos * sign).to(torch.int64)


def relative_position_index(seq_len: int, bucket_size: int, max_position: int) -> torch.Tensor:
    """``[T, T]`` int64 row of the relative embedding for query i and key j: ``bucket_size - 1 + bucket(i - j)``."""
    positions = torch.arange(seq_len, dtype=torch.int64)
    relative = positions[:, None] - positions[None, :]
    return bucket_size - 1 + log_bucket_position(relative, bucket_size, max_position)


def _trunc_normal_(tensor: torch.Tensor, std: float) -> None:
    nn.init.trunc_normal_(tensor, mean=0.0, std=std, a=-2.0 * std, b=2.0 * std)


def _init_std(config: LtgBertConfig) -> float:
    return math.sqrt(2.0 / (5.0 * config.hidden_size))


# ---------------------------------------------------------------------------------------------------- modules


class Embedding(nn.Module):
    """Word embedding → LN (no affine) → dropout; the relative-position embedding → its affine LN."""

    def __init__(self, config: LtgBertConfig) -> None:
        super().__init__()
        d = config.hidden_size
        self.word_embedding = nn.Embedding(config.vocab_size, d)
        self.word_layer_norm = nn.LayerNorm(d, eps=config.layer_norm_eps, elementwise_affine=False)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.relative_embedding = nn.Parameter(torch.empty(2 * config.position_bucket_size - 1, d))
        self.relative_layer_norm = nn.LayerNorm(d, eps=config.layer_norm_eps)
        std = _init_std(config)
        _trunc_normal_(self.relative_embedding.data, std)
        _trunc_normal_(self.word_embedding.weight.data, std)

    def forward(self, input_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, T, d)`` token states and the ``(2C - 1, d)`` normalised relative embeddings."""
        words = self.dropout(self.word_layer_norm(self.word_embedding(input_ids)))
        return words, self.relative_layer_norm(self.relative_embedding)


class Attention(nn.Module):
    """Disentangled self-attention with log-bucketed relative positions (see the module docstring)."""

    def __init__(self, config: LtgBertConfig) -> None:
        super().__init__()
        d = config.hidden_size
        self.num_heads = config.num_attention_heads
        self.head_size = config.head_size
        self.in_proj_qk = nn.Linear(d, 2 * d, bias=True)
        self.in_proj_v = nn.Linear(d, d, bias=True)
        self.out_proj = nn.Linear(d, d, bias=True)
        self.pre_layer_norm = nn.LayerNorm(d, eps=config.layer_norm_eps, elementwise_affine=False)
        self.post_layer_norm = nn.LayerNorm(d, eps=config.layer_norm_eps, elementwise_affine=True)
        self.dropout = nn.Dropout(config.attention_probs_dropout_prob)
        self.dropout_prob = config.attention_probs_dropout_prob
        self.scale = 1.0 / math.sqrt(3 * self.head_size)
        std = _init_std(config)
        for linear in (self.in_proj_qk, self.in_proj_v, self.out_proj):
            _trunc_normal_(linear.weight.data, std)
            nn.init.zeros_(linear.bias)

    def forward(
        self, x: torch.Tensor, relative: torch.Tensor, index: torch.Tensor, keep: torch.Tensor | None
    ) -> torch.Tensor:
        """``x (B, T, d)``, ``relative (2C-1, d)``, ``index (T, T)`` bucket rows, ``keep (B, 1, 1, T)`` bool
        (True = a token, None = no padding) → ``(B, T, d)``."""
        B, T, D = x.shape
        H, hs = self.num_heads, self.head_size
        h = self.pre_layer_norm(x)
        query, key = self.in_proj_qk(h).chunk(2, dim=-1)  # (B, T, d) each
        value = self.in_proj_v(h)
        query_pos, key_pos = self.in_proj_qk(self.dropout(relative)).chunk(2, dim=-1)  # (R, d) each, R = 2C - 1
        query = query.view(B, T, H, hs).transpose(1, 2)  # (B, H, T, hs)
        key = key.view(B, T, H, hs).transpose(1, 2)
        value = value.view(B, T, H, hs).transpose(1, 2)
        query_pos = query_pos.view(-1, H, hs).transpose(0, 1)  # (H, R, hs)
        key_pos = key_pos.view(-1, H, hs).transpose(0, 1)
        rows = index.expand(B, H, T, T)
        c2p = torch.matmul(query, key_pos.transpose(-1, -2)).gather(-1, rows)  # (B, H, Tq, Tk): q_i · kpos[idx]
        p2c = torch.matmul(query_pos, key.transpose(-1, -2)).gather(-2, rows)  # (B, H, Tq, Tk): qpos[idx] · k_j
        bias = (c2p + p2c) * self.scale
        if keep is not None:
            bias = bias.masked_fill(~keep, float("-inf"))  # keys only: every query keeps at least [CLS]
        context = F.scaled_dot_product_attention(
            query, key, value, attn_mask=bias, dropout_p=self.dropout_prob if self.training else 0.0, scale=self.scale
        )  # (B, H, T, hs)
        context = self.out_proj(context.transpose(1, 2).reshape(B, T, D))
        return self.dropout(self.post_layer_norm(context))


class GeGLU(nn.Module):
    """``x · gelu_tanh(gate)`` over the two halves of the last dimension."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, gate = x.chunk(2, dim=-1)
        return x * F.gelu(gate, approximate="tanh")


class FeedForward(nn.Module):
    """LN → Linear(d, 2·d_ff) → GEGLU → LN(d_ff) → Linear(d_ff, d) → dropout (no biases, no affine LNs)."""

    def __init__(self, config: LtgBertConfig, layer_index: int) -> None:
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
        std = _init_std(config)
        depth_scale = math.sqrt(1.0 / (2.0 * (layer_index + 1)))
        for linear in (self.mlp[1], self.mlp[4]):
            _trunc_normal_(linear.weight.data, std)
            linear.weight.data.mul_(depth_scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(x)


class EncoderLayer(nn.Module):
    """One attention + FFN block; ELC-BERT layers also own their mixing logits (``prev_layer_weights``)."""

    def __init__(self, config: LtgBertConfig, layer_index: int) -> None:
        super().__init__()
        self.attention = Attention(config)
        self.mlp = FeedForward(config, layer_index)
        self.variant = getattr(config, "variant", None)
        if self.variant is not None:
            logits = torch.zeros(layer_index + 1)
            if self.variant == "base":
                logits[-1] = 1.0
            self.prev_layer_weights = nn.Parameter(logits)
        if self.variant == "normalized":
            self.norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps, elementwise_affine=False)

    def forward(
        self,
        hidden: torch.Tensor | LayerOutputs,
        relative: torch.Tensor,
        index: torch.Tensor,
        keep: torch.Tensor | None,
    ) -> torch.Tensor:
        """LTG-BERT: ``hidden`` is the residual stream, the result its next value. ELC-BERT: ``hidden`` holds the
        outputs h_0 … h_{n-1} of the earlier layers; the layer mixes them with its own logits into xₙ (here, inside
        ``forward``, where FSDP has this layer's parameters gathered) and returns hₙ."""
        if self.variant is None:
            x = hidden + self.attention(hidden, relative, index, keep)
            return x + self.mlp(x)
        x = hidden.mix(self.prev_layer_weights)
        a = self.attention(x, relative, index, keep)
        if self.variant == "base":
            return a + self.mlp(a)
        h = a + self.mlp(x + a)
        return self.norm(h) if self.variant == "normalized" else h


class Encoder(nn.Module):
    """The layers and how they connect: residuals (LTG-BERT) or layer mixing (ELC-BERT)."""

    def __init__(self, config: LtgBertConfig) -> None:
        super().__init__()
        self.config = config
        self.layers = nn.ModuleList(EncoderLayer(config, i) for i in range(config.num_hidden_layers))
        self.variant = getattr(config, "variant", None)
        if self.variant == "weighted_output":
            self.prev_layer_weights = nn.Parameter(torch.zeros(config.num_hidden_layers + 1))
        index = relative_position_index(
            config.max_position_embeddings, config.position_bucket_size, config.max_position_embeddings
        )
        self.register_buffer("position_indices", index, persistent=False)

    def forward(self, x: torch.Tensor, relative: torch.Tensor, keep: torch.Tensor | None) -> torch.Tensor:
        T = x.shape[1]
        if T > self.position_indices.shape[0]:  # a static shape check: no graph break, no host sync
            raise ConfigError(f"sequence of {T} tokens but max_position_embeddings is {self.position_indices.shape[0]}")
        index = self.position_indices[:T, :T]
        if self.variant is None:
            for layer in self.layers:
                x = layer(x, relative, index, keep)
            return x
        outputs = LayerOutputs(len(self.layers) + 1)
        outputs.append(x)
        for layer in self.layers:
            # Every output in the embeddings' dtype. Under CUDA autocast LayerNorm runs in fp32, so the layers already
            # return fp32 (a no-op here); CPU autocast runs LayerNorm in bf16, so a layer would return bf16.
            outputs.append(layer(outputs, relative, index, keep).to(x.dtype))
        if self.variant == "weighted_output":
            return outputs.mix(self.prev_layer_weights)
        return outputs[len(outputs) - 1]


class MaskClassifier(nn.Module):
    """The MLM head: LN → Linear → GELU → LN → dropout → decoder (weight tied to the word embedding, own bias)."""

    def __init__(self, config: LtgBertConfig, word_embedding: nn.Parameter) -> None:
        super().__init__()
        d, eps = config.hidden_size, config.layer_norm_eps
        self.nonlinearity = nn.Sequential(
            nn.LayerNorm(d, eps=eps, elementwise_affine=False),
            nn.Linear(d, d),
            nn.GELU(),
            nn.LayerNorm(d, eps=eps, elementwise_affine=False),
            nn.Dropout(config.hidden_dropout_prob),
            nn.Linear(d, config.vocab_size),
        )
        _trunc_normal_(self.nonlinearity[1].weight.data, _init_std(config))
        nn.init.zeros_(self.nonlinearity[1].bias)
        self.nonlinearity[-1].weight = word_embedding
        nn.init.zeros_(self.nonlinearity[-1].bias)

    def transform(self, rows: torch.Tensor) -> torch.Tensor:
        """Everything before the decoder, on ``(M, d)`` rows."""
        for module in self.nonlinearity[:-1]:
            rows = module(rows)
        return rows

    @property
    def decoder(self) -> nn.Linear:
        return self.nonlinearity[-1]


class _LtgBackbone(nn.Module):
    """``embedding`` + ``transformer``: what pretraining and fine-tuning models share (``encode``)."""

    config_class: type[LtgBertConfig] = LtgBertConfig

    def __init__(self, config: LtgBertConfig) -> None:
        super().__init__()
        if type(config) is not self.config_class:
            raise ConfigError(
                f"{type(self).__name__} needs a {self.config_class.__name__}, got {type(config).__name__}"
            )
        self.config = config
        self.embedding = Embedding(config)
        self.transformer = Encoder(config)

    def encode(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The hidden states the heads read ``(B, T, d)`` (``token_type_ids`` are ignored: no segment embedding)."""
        words, relative = self.embedding(input_ids)
        keep = None if attention_mask is None else attention_mask.bool()[:, None, None, :]  # (B, 1, 1, T)
        return self.transformer(words, relative, keep)

    def load_pretrained_encoder(self, model: nn.Module) -> None:
        """Copy ``embedding`` and ``transformer`` from a pretraining model of the same architecture and config."""
        if not isinstance(model, _LtgBackbone) or type(model.config) is not type(self.config):
            raise ConfigError(
                f"cannot load the encoder of a {type(model).__name__} into a {type(self).__name__} "
                f"(needs a {self.config_class.__name__} model)"
            )
        ours, theirs = self.config.to_dict(), model.config.to_dict()
        # dropout rates are training settings, not shapes: fine-tuning sets its own (a run pretrained without dropout
        # is fine-tuned with 0.1 by default)
        differ = sorted(k for k in ours if k != "vocab_size" and "dropout" not in k and ours[k] != theirs[k])
        if differ or ours["vocab_size"] != theirs["vocab_size"]:
            differ = differ or ["vocab_size"]
            lines = ", ".join(f"{k}: {theirs[k]!r} vs {ours[k]!r}" for k in differ)
            raise ConfigError(f"the pretrained encoder does not fit this classifier's config ({lines})")
        self.embedding.load_state_dict(model.embedding.state_dict())
        self.transformer.load_state_dict(model.transformer.state_dict())


class LtgBertForPreTraining(_LtgBackbone):
    """LTG-BERT with the tied MLM head on the masked rows; ``forward`` follows ``bertkit.models.base``'s batch
    contract (MLM only) and returns a ``PretrainingOutput``."""

    supports_nsp = False

    def __init__(self, config: LtgBertConfig) -> None:
        super().__init__(config)
        self.classifier = MaskClassifier(config, self.embedding.word_embedding.weight)

    def mlm_logits(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        positions: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Full-vocabulary logits ``(P, V)`` at ``positions`` (flat indices into B*T; None = every token)."""
        hidden = self.encode(input_ids, attention_mask, token_type_ids)
        rows = hidden.reshape(-1, hidden.shape[-1])
        if positions is not None:
            rows = rows.index_select(0, positions)
        decoder = self.classifier.decoder
        return F.linear(self.classifier.transform(rows), decoder.weight, decoder.bias)

    def flops_per_token(self, seq_len: int, head_fraction: float = 0.15) -> float:
        """Training FLOPs (forward + backward) per input token in DeepSpeed's convention (docs/ANCHORS.md):
        ``6·N_enc + 12·S·d·L + 12·(2C-1)·d·L + 6·(d·V + d²)·f`` with the GLU encoder ``N_enc = L·(4d² + 3·d·d_ff)``
        (up-projection d → 2·d_ff, down-projection d_ff → d), the content-to-position and position-to-content
        scores (each ``(2C-1)·d`` multiply-adds per token and layer) and ``f`` the fraction of tokens through the
        MLM head. Not counted: embeddings, the per-batch projection of the ``2C-1`` relative embeddings, and
        ELC-BERT's layer mixing (``L(L+1)·d`` forward, < 0.1 % at base size)."""
        c = self.config
        d, L = c.hidden_size, c.num_hidden_layers
        n_enc = L * (4 * d * d + 3 * d * c.intermediate_size)
        relative = 12.0 * (2 * c.position_bucket_size - 1) * d * L
        return 6.0 * n_enc + 12.0 * seq_len * d * L + relative + 6.0 * (d * c.vocab_size + d * d) * head_fraction

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        mlm_positions: torch.Tensor | None = None,
        mlm_labels: torch.Tensor | None = None,
        next_sentence_label: torch.Tensor | None = None,
        *,
        return_predictions: bool = False,
        label_smoothing: float = 0.0,
    ) -> PretrainingOutput:
        if next_sentence_label is not None:
            raise ConfigError(
                f"{type(self).__name__} has no NSP head (LTG-BERT / ELC-BERT pretrain with MLM only); "
                "train with view = 'mlm' or 'static-mlm'"
            )
        if mlm_positions is None or mlm_labels is None:
            raise TypeError(f"{type(self).__name__}.forward needs mlm_positions and mlm_labels")
        hidden = self.encode(input_ids, attention_mask, token_type_ids)  # (B, T, d)
        rows = hidden.reshape(-1, hidden.shape[-1]).index_select(0, mlm_positions)  # (M, d): masked rows only
        decoder = self.classifier.decoder
        return mlm_output(
            self.classifier.transform(rows),
            decoder.weight,
            decoder.bias,
            mlm_labels,
            label_smoothing=label_smoothing,
            return_predictions=return_predictions,
        )


class Classifier(nn.Module):
    """Fine-tuning head: LN → Linear(d, d) → GELU → LN → dropout → Linear(d, num_labels) (HF LTG-BERT release)."""

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
        std = _init_std(config)
        for linear in (self.nonlinearity[1], self.nonlinearity[5]):
            _trunc_normal_(linear.weight.data, std)
            nn.init.zeros_(linear.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.nonlinearity(x)


class _LtgWithClassifier(_LtgBackbone):
    """The encoder + a :class:`Classifier` ``head``."""

    def __init__(self, config: LtgBertConfig, num_labels: int = 2) -> None:
        check_num_labels(num_labels)
        super().__init__(config)
        self.num_labels = num_labels
        self.head = Classifier(config, num_labels)


class LtgBertForSequenceClassification(_LtgWithClassifier):
    """The encoder + :class:`Classifier` on the [CLS] state; ``num_labels == 1`` is regression (MSE)."""

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
    ) -> SequenceClassificationOutput:
        hidden = self.encode(input_ids, attention_mask, token_type_ids)
        logits = self.head(hidden[:, 0])  # (B, num_labels)
        return SequenceClassificationOutput(sequence_classification_loss(logits, labels, self.num_labels), logits)


class LtgBertForTokenClassification(_LtgWithClassifier):
    """The encoder + :class:`Classifier` on the hidden states at the given flat positions."""

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        positions: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
    ) -> TokenClassificationOutput:
        if positions is None:
            raise TypeError(f"{type(self).__name__}.forward needs positions (flat indices of the queried tokens)")
        hidden = self.encode(input_ids, attention_mask, token_type_ids)  # (B, T, d)
        logits = self.head(hidden.reshape(-1, hidden.shape[-1]).index_select(0, positions))  # (N, num_labels)
        return TokenClassificationOutput(token_classification_loss(logits, labels), logits)


class ElcBertForPreTraining(LtgBertForPreTraining):
    """ELC-BERT (layer mixing, ``config.variant``) with the LTG-BERT MLM head."""

    config_class = ElcBertConfig


class ElcBertForSequenceClassification(LtgBertForSequenceClassification):
    config_class = ElcBertConfig


class ElcBertForTokenClassification(LtgBertForTokenClassification):
    config_class = ElcBertConfig
