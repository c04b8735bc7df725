"""BERT (Devlin et al. 2019): post-LN encoder, MLM + NSP pretraining heads, sequence classification.

Model options (defaults = BERT) also give the nanoBERT "medium" model of my-best-day/medium (``src/bert/``):
``layer_norm_position = "pre"`` (pre-LN blocks ``x + Attn(LN(x))``, ``x + FFN(LN(x))``, no final LayerNorm),
``positions = "sinusoidal"`` (fixed sin/cos positions) or ``"sinusoidal-medium"`` (the original's
``positional_embedding.py`` with its exponent ``2·i/d`` over even ``i``: frequencies fall twice as fast),
``embedding_layer_norm = False``, ``type_vocab_size = 0`` (no segment embedding), ``mlm_head = "ln-linear"`` (an
untied LayerNorm → Linear head, ``masked_language_model.py``) and ``init = "xavier"`` (``xavier_uniform_`` Linear
weights with PyTorch's default biases, N(0, 1) embeddings, the MLM decoder at normal(0, 0.02) with a zero bias).
Such a model is not Hugging Face's BERT: ``export hf`` refuses it.

Module and attribute names are exactly those of Hugging Face's ``modeling_bert`` so that ``state_dict()`` keys equal
``transformers.BertForPreTraining``'s (``bert.embeddings.word_embeddings.weight``, ..., ``cls.seq_relationship.bias``)
and an HF checkpoint loads without an adapter (see ``bertkit.export.hf``). The maths is HF's too (post-LN residual
blocks, exact erf GELU, LayerNorm eps 1e-12), but attention is one ``scaled_dot_product_attention`` call, and
pretraining sends only the masked rows through the LM head (``bertkit.ops.masked_lm_loss``: tied decoder, no
``[M, vocab]`` logits).
"""

from __future__ import annotations

from collections.abc import Callable
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
    add_nsp_loss,
    check_num_labels,
    check_transformer_shape,
    mlm_output,
    sequence_classification_loss,
    token_classification_loss,
)

__all__ = [
    "PRESETS",
    "BertConfig",
    "BertForPreTraining",
    "BertForSequenceClassification",
    "BertForTokenClassification",
    "BertModel",
    "num_parameters",
]


def _gelu_tanh(x: torch.Tensor) -> torch.Tensor:
    return F.gelu(x, approximate="tanh")


# HF ``hidden_act`` names this implementation supports ("gelu" is HF's exact erf GELU).
ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "gelu": F.gelu,
    "gelu_new": _gelu_tanh,
    "gelu_pytorch_tanh": _gelu_tanh,
    "relu": F.relu,
}


@dataclass(frozen=True)
class BertConfig(ModelConfig):
    """BERT hyper-parameters, with Hugging Face ``BertConfig``'s field names and defaults (bert-base-uncased)."""

    vocab_size: int = 30522  # rows of the word embedding (= tied decoder rows)
    hidden_size: int = 768  # d
    num_hidden_layers: int = 12  # L
    num_attention_heads: int = 12  # H; d must divide by it
    intermediate_size: int = 3072  # FFN inner size
    hidden_act: str = "gelu"  # one of ACTIVATIONS; "gelu" is the exact (erf) GELU
    hidden_dropout_prob: float = 0.1  # embeddings, attention output, FFN output, classifier
    attention_probs_dropout_prob: float = 0.1  # dropout on the attention probabilities
    max_position_embeddings: int = 512  # longest sequence the learned positions cover
    type_vocab_size: int = 2  # segment ids (A/B)
    layer_norm_eps: float = 1e-12
    initializer_range: float = 0.02  # std of the normal init of Linear / Embedding weights
    pad_token_id: int = 0  # padding row of the word embedding (kept at zero by init, no gradient)
    # Model options (module docstring); the defaults are BERT's.
    layer_norm_position: str = "post"  # "post" (BERT) | "pre" (pre-LN blocks, no final LayerNorm)
    positions: str = "learned"  # "learned" | "sinusoidal" | "sinusoidal-medium" (the original's 2x frequency bug)
    embedding_layer_norm: bool = True  # LayerNorm after the embedding sum (BERT); medium has none
    mlm_head: str = "bert"  # "bert" (dense → act → LN, decoder tied to the embedding) | "ln-linear" (LN → Linear)
    init: str = "bert"  # "bert" (normal(0, initializer_range)) | "xavier" (medium)

    def __post_init__(self) -> None:
        check_transformer_shape(
            self,
            (
                "vocab_size",
                "hidden_size",
                "num_hidden_layers",
                "num_attention_heads",
                "intermediate_size",
                "max_position_embeddings",
            ),
        )
        name = type(self).__name__
        tv = self.type_vocab_size
        if isinstance(tv, bool) or not isinstance(tv, int) or tv < 0:
            raise ConfigError(f"{name}.type_vocab_size must be an integer >= 0 (0 = no segment embedding), got {tv!r}")
        for field, options in MODEL_OPTIONS.items():
            if getattr(self, field) not in options:
                raise ConfigError(
                    f"{name}.{field} = {getattr(self, field)!r} is not one of {', '.join(map(str, options))}"
                )
        if not isinstance(self.embedding_layer_norm, bool):
            raise ConfigError(f"{name}.embedding_layer_norm must be true or false, got {self.embedding_layer_norm!r}")
        if self.positions == "sinusoidal-medium" and self.hidden_size % 2:
            raise ConfigError(f"{name}.positions = 'sinusoidal-medium' needs an even hidden_size")
        if self.hidden_act not in ACTIVATIONS:
            raise ConfigError(
                f"BertConfig.hidden_act {self.hidden_act!r} is not supported; valid: {', '.join(ACTIVATIONS)}"
            )
        for name in ("hidden_dropout_prob", "attention_probs_dropout_prob"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
                raise ConfigError(f"BertConfig.{name} must be in [0, 1), got {value!r}")
        if not isinstance(self.layer_norm_eps, (int, float)) or not self.layer_norm_eps > 0:
            raise ConfigError(f"BertConfig.layer_norm_eps must be > 0, got {self.layer_norm_eps!r}")
        if not isinstance(self.initializer_range, (int, float)) or not self.initializer_range > 0:
            raise ConfigError(f"BertConfig.initializer_range must be > 0, got {self.initializer_range!r}")
        if not isinstance(self.pad_token_id, int) or not 0 <= self.pad_token_id < self.vocab_size:
            raise ConfigError(f"BertConfig.pad_token_id must be in [0, vocab_size), got {self.pad_token_id!r}")

    @property
    def head_size(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @property
    def is_hf_bert(self) -> bool:
        """Whether the model options are BERT's (the model is then Hugging Face's ``BertForPreTraining``)."""
        return (
            self.layer_norm_position == "post"
            and self.positions == "learned"
            and self.embedding_layer_norm
            and self.mlm_head == "bert"
            and self.type_vocab_size > 0
        )

    def replace(self, **changes: object) -> BertConfig:
        """A copy with ``changes`` applied (validated; unknown keys are ConfigErrors)."""
        return BertConfig.from_dict({**self.to_dict(), **changes})


MODEL_OPTIONS: dict[str, tuple[str, ...]] = {
    "layer_norm_position": ("post", "pre"),
    "positions": ("learned", "sinusoidal", "sinusoidal-medium"),
    "mlm_head": ("bert", "ln-linear"),
    "init": ("bert", "xavier"),
}

# Preset → config fields; everything else (vocab 30522, 512 positions, dropout 0.1, ...) takes the defaults above.
PRESETS: dict[str, dict[str, int]] = {
    # CPU tests: forward + backward of a [8, 128] batch in well under a second.
    "tiny": {"hidden_size": 128, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 512},
    # BERT-small (Turc et al. 2019, "Well-Read Students"): 4 layers, 512 hidden.
    "small": {"hidden_size": 512, "num_hidden_layers": 4, "num_attention_heads": 8, "intermediate_size": 2048},
    "base": {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072},
    "large": {"hidden_size": 1024, "num_hidden_layers": 24, "num_attention_heads": 16, "intermediate_size": 4096},
}


def sinusoidal_positions(
    length: int, dim: int, *, medium_bug: bool = False, device: torch.device | None = None
) -> torch.Tensor:
    """``(length, dim)`` fixed positions: ``sin(p / 10000^(2k/d))`` at ``2k``, ``cos`` of the same at ``2k + 1``
    (Vaswani et al.). ``medium_bug``: my-best-day/medium's ``positional_embedding.py``, which loops ``i`` over the
    even dimensions but uses ``2·i/d`` (sin) and ``2·(i+1)/d`` (cos) as exponents, so frequencies fall twice as fast
    and sin/cos of a pair differ in frequency. Computed in float64, returned in float32."""
    pos = torch.arange(length, dtype=torch.float64, device=device)[:, None]
    even = torch.arange(0, dim, 2, dtype=torch.float64, device=device)[None, :]  # i = 2k
    if medium_bug:
        sin_exp, cos_exp = 2.0 * even / dim, 2.0 * (even + 1.0) / dim
    else:
        sin_exp = cos_exp = even / dim
    pe = torch.zeros(length, dim, dtype=torch.float64, device=device)
    pe[:, 0::2] = torch.sin(pos / torch.pow(10000.0, sin_exp))
    pe[:, 1::2] = torch.cos(pos / torch.pow(10000.0, cos_exp))[:, : dim // 2]
    return pe.float()


class BertEmbeddings(nn.Module):
    """word + position + token-type embeddings, then LayerNorm and dropout (model options: fixed sinusoidal
    positions, no token-type table, no LayerNorm)."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.positions = config.positions
        self.max_positions = config.max_position_embeddings
        self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden_size, padding_idx=config.pad_token_id)
        if config.positions == "learned":
            self.position_embeddings = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        if config.type_vocab_size > 0:
            self.token_type_embeddings = nn.Embedding(config.type_vocab_size, config.hidden_size)
        self.LayerNorm = (
            nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps) if config.embedding_layer_norm else None
        )
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        T = input_ids.shape[1]
        if T > self.max_positions:  # a static shape check: no graph break, no host sync
            raise ConfigError(f"sequence of {T} tokens but max_position_embeddings is {self.max_positions}")
        x = self.word_embeddings(input_ids)  # (B, T, d)
        if self.positions == "learned":
            positions = torch.arange(T, device=input_ids.device)  # no buffer: nothing to re-materialise after meta init
            x = x + self.position_embeddings(positions)
        else:
            pe = sinusoidal_positions(
                T, x.shape[-1], medium_bug=self.positions == "sinusoidal-medium", device=input_ids.device
            )
            x = x + pe.to(x.dtype)
        if hasattr(self, "token_type_embeddings"):
            if token_type_ids is None:
                x = x + self.token_type_embeddings.weight[0]  # every token in segment 0
            else:
                x = x + self.token_type_embeddings(token_type_ids)
        if self.LayerNorm is not None:
            x = self.LayerNorm(x)
        return self.dropout(x)


class BertSelfAttention(nn.Module):
    """Multi-head self-attention through ``F.scaled_dot_product_attention`` (HF's ``attention.self``)."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.num_attention_heads = config.num_attention_heads
        self.attention_head_size = config.head_size
        self.query = nn.Linear(config.hidden_size, config.hidden_size)
        self.key = nn.Linear(config.hidden_size, config.hidden_size)
        self.value = nn.Linear(config.hidden_size, config.hidden_size)
        self.dropout_prob = config.attention_probs_dropout_prob

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        B, T, D = x.shape
        shape = (B, T, self.num_attention_heads, self.attention_head_size)
        q = self.query(x).view(shape).transpose(1, 2)  # (B, H, T, hs)
        k = self.key(x).view(shape).transpose(1, 2)
        v = self.value(x).view(shape).transpose(1, 2)
        # mask: (B, 1, 1, T) bool, True = attend; None = no padding (lets SDPA pick flash / efficient kernels).
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, dropout_p=self.dropout_prob if self.training else 0.0
        )  # (B, H, T, hs)
        return y.transpose(1, 2).reshape(B, T, D)


class BertSelfOutput(nn.Module):
    """Attention output projection, dropout, residual, post-LN (HF's ``attention.output``)."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, hidden: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dropout(self.dense(hidden)) + residual)


class BertAttention(nn.Module):
    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.self = BertSelfAttention(config)
        self.output = BertSelfOutput(config)
        self.pre_ln = config.layer_norm_position == "pre"

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        if self.pre_ln:  # x + dropout(dense(Attn(LN(x)))): output.LayerNorm acts before the sublayer
            out = self.output
            return x + out.dropout(out.dense(self.self(out.LayerNorm(x), mask)))
        return self.output(self.self(x, mask), x)


class BertIntermediate(nn.Module):
    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.intermediate_size)
        self.intermediate_act_fn = ACTIVATIONS[config.hidden_act]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.intermediate_act_fn(self.dense(x))


class BertOutput(nn.Module):
    """FFN output projection, dropout, residual, post-LN (HF's ``layer.N.output``)."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.intermediate_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, hidden: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dropout(self.dense(hidden)) + residual)


class BertLayer(nn.Module):
    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.attention = BertAttention(config)
        self.intermediate = BertIntermediate(config)
        self.output = BertOutput(config)
        self.pre_ln = config.layer_norm_position == "pre"

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        x = self.attention(x, mask)
        if self.pre_ln:  # x + dropout(dense(act(dense(LN(x)))))
            out = self.output
            return x + out.dropout(out.dense(self.intermediate(out.LayerNorm(x))))
        return self.output(self.intermediate(x), x)


class BertEncoder(nn.Module):
    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.layer = nn.ModuleList(BertLayer(config) for _ in range(config.num_hidden_layers))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        for layer in self.layer:
            x = layer(x, mask)
        return x


class BertPooler(nn.Module):
    """tanh(dense(hidden state of the first token, [CLS]))."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.activation = nn.Tanh()

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.activation(self.dense(hidden[:, 0]))


class BertModel(nn.Module):
    """The encoder: embeddings, L post-LN layers, and (optionally) the pooler. ``forward`` returns ``(B, T, d)``."""

    def __init__(self, config: BertConfig, add_pooling_layer: bool = True) -> None:
        super().__init__()
        self.config = config
        self.embeddings = BertEmbeddings(config)
        self.encoder = BertEncoder(config)
        self.pooler = BertPooler(config) if add_pooling_layer else None

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        mask = None if attention_mask is None else attention_mask.bool()[:, None, None, :]  # (B, 1, 1, T)
        return self.encoder(self.embeddings(input_ids, token_type_ids), mask)


class BertPredictionHeadTransform(nn.Module):
    """dense → activation → LayerNorm, applied to the rows that are predicted."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.transform_act_fn = ACTIVATIONS[config.hidden_act]
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.transform_act_fn(self.dense(x)))


class _LayerNormOnly(nn.Module):
    """The ``ln-linear`` head's transform: LayerNorm alone (my-best-day/medium ``masked_language_model.py``)."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(x)


class BertLMPredictionHead(nn.Module):
    """Transform, then the decoder whose weight is the word embedding and whose bias is ``bias`` (both tied);
    ``mlm_head = "ln-linear"``: LayerNorm, then a decoder with its own weight (untied) and ``bias``."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.tied = config.mlm_head == "bert"
        self.transform = BertPredictionHeadTransform(config) if self.tied else _LayerNormOnly(config)
        self.decoder = nn.Linear(config.hidden_size, config.vocab_size)  # tied: weight re-pointed by tie_weights()
        self.bias = nn.Parameter(torch.zeros(config.vocab_size))
        self.decoder.bias = self.bias


class BertPreTrainingHeads(nn.Module):
    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.predictions = BertLMPredictionHead(config)
        self.seq_relationship = nn.Linear(config.hidden_size, 2)


def _init_module(module: nn.Module, std: float) -> None:
    """Hugging Face's BERT init: normal(0, std) weights, zero biases, LayerNorm ones/zeros, zero padding row."""
    if isinstance(module, nn.Linear):
        nn.init.normal_(module.weight, mean=0.0, std=std)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Embedding):
        nn.init.normal_(module.weight, mean=0.0, std=std)
        if module.padding_idx is not None:
            with torch.no_grad():
                module.weight[module.padding_idx].zero_()
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
    elif isinstance(module, BertLMPredictionHead):
        nn.init.zeros_(module.bias)


def _init_module_xavier(module: nn.Module) -> None:
    """my-best-day/medium's init (``task_handler_common.py``): ``xavier_uniform_`` Linear weights over PyTorch's
    defaults (biases uniform(±1/√fan_in), embeddings N(0, 1) with a zero padding row, LayerNorm ones/zeros)."""
    if isinstance(module, (nn.Linear, nn.Embedding, nn.LayerNorm)):
        module.reset_parameters()
    if isinstance(module, nn.Linear):
        nn.init.xavier_uniform_(module.weight)
    elif isinstance(module, BertLMPredictionHead):
        nn.init.zeros_(module.bias)


class _BertPreTrainedBase(nn.Module):
    config: BertConfig

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        """Initialise one module as Hugging Face does (the tied decoder is skipped: it owns no weights); with
        ``init = "xavier"`` as my-best-day/medium does (its MLM decoder at normal(0, 0.02), zero bias)."""
        predictions = getattr(getattr(self, "cls", None), "predictions", None)
        decoder = getattr(predictions, "decoder", None)
        if module is decoder:
            if not predictions.tied:  # the untied ln-linear head owns its weight
                nn.init.normal_(module.weight, mean=0.0, std=0.02)
            return
        if getattr(self.config, "init", "bert") == "xavier":
            _init_module_xavier(module)
            return
        _init_module(module, self.config.initializer_range)

    def init_weights(self) -> None:
        """(Re-)initialise every parameter (HF init)."""
        for module in self.modules():
            self._init_weights(module)


class _WithPretrainingHeads(_BertPreTrainedBase):
    """An encoder under ``bert`` (BERT's or NarrowBERT's) with BERT's MLM head, tied to the word embedding, and NSP
    head under ``cls`` (Hugging Face's key names)."""

    def __init__(self, config: BertConfig, encoder: nn.Module) -> None:
        super().__init__()
        self.config = config
        self.bert = encoder
        self.cls = BertPreTrainingHeads(config)
        self.tie_weights()
        self.init_weights()

    def tie_weights(self) -> None:
        """Point the decoder at the word embedding and ``cls.predictions.bias`` (as HF's ``_tied_weights_keys``);
        the ``ln-linear`` head keeps its own weight."""
        predictions = self.cls.predictions
        if predictions.tied:
            predictions.decoder.weight = self.bert.embeddings.word_embeddings.weight
        predictions.decoder.bias = predictions.bias

    def encode(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The last layer's hidden states ``(B, T, d)`` (NarrowBERT: every token a query, as costly as BERT)."""
        return self.bert(input_ids, attention_mask, token_type_ids)


class _WithClassifier(_BertPreTrainedBase):
    """An encoder under ``bert`` + dropout + a linear ``classifier`` (Hugging Face's key names)."""

    def __init__(
        self, config: BertConfig, encoder: nn.Module, num_labels: int, classifier_dropout: float | None
    ) -> None:
        super().__init__()
        check_num_labels(num_labels)
        self.config = config
        self.num_labels = num_labels
        self.bert = encoder
        self.dropout = nn.Dropout(config.hidden_dropout_prob if classifier_dropout is None else classifier_dropout)
        self.classifier = nn.Linear(config.hidden_size, num_labels)
        self.init_weights()


class BertForPreTraining(_WithPretrainingHeads):
    """BERT with the MLM head (tied to the word embedding) and the NSP head; ``forward`` follows the batch contract
    of ``bertkit.models.base`` and returns a ``PretrainingOutput``."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__(config, BertModel(config))

    def _gather(self, hidden: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        return hidden.reshape(-1, hidden.shape[-1]).index_select(0, positions)  # (M, d)

    def mlm_logits(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        positions: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Full-vocabulary logits ``(P, V)`` at ``positions`` (flat indices into B*T; None = every token)."""
        hidden = self.encode(input_ids, attention_mask, token_type_ids)
        rows = hidden.reshape(-1, hidden.shape[-1]) if positions is None else self._gather(hidden, positions)
        predictions = self.cls.predictions
        return F.linear(predictions.transform(rows), predictions.decoder.weight, predictions.bias)

    def flops_per_token(self, seq_len: int, head_fraction: float = 0.15) -> float:
        """Training FLOPs (forward + backward) per input token in DeepSpeed's convention (docs/ANCHORS.md):
        ``6·N_enc + 12·S·d·L + 6·(d·V + d²)·f`` with ``f`` the fraction of tokens sent through the MLM head
        (embeddings, pooler and NSP head not counted). Multiply by tokens/s and divide by the peak for MFU."""
        c = self.config
        d, L = c.hidden_size, c.num_hidden_layers
        n_enc = L * (4 * d * d + 2 * d * c.intermediate_size)
        return 6.0 * n_enc + 12.0 * seq_len * d * L + 6.0 * (d * c.vocab_size + d * d) * head_fraction

    def nsp_logits(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """NSP logits ``(B, 2)`` (index 0 = IsNext, 1 = NotNext)."""
        hidden = self.encode(input_ids, attention_mask, token_type_ids)
        return self.cls.seq_relationship(self.bert.pooler(hidden))

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
        if mlm_positions is None or mlm_labels is None:
            raise TypeError("BertForPreTraining.forward needs mlm_positions and mlm_labels")
        hidden = self.encode(input_ids, attention_mask, token_type_ids)  # (B, T, d)
        predictions = self.cls.predictions
        rows = predictions.transform(self._gather(hidden, mlm_positions))  # (M, d): masked rows only
        out = mlm_output(
            rows,
            predictions.decoder.weight,
            predictions.bias,
            mlm_labels,
            label_smoothing=label_smoothing,
            return_predictions=return_predictions,
        )
        if next_sentence_label is not None:
            add_nsp_loss(out, self.cls.seq_relationship(self.bert.pooler(hidden)), next_sentence_label)  # (B, 2)
        return out


class BertForSequenceClassification(_WithClassifier):
    """BERT + dropout + linear classifier on the pooled [CLS] (HF's keys: ``bert.*``, ``classifier.*``).

    ``num_labels == 1`` is regression (MSE); otherwise cross-entropy over ``num_labels`` classes.
    """

    def __init__(self, config: BertConfig, num_labels: int = 2, classifier_dropout: float | None = None) -> None:
        super().__init__(config, BertModel(config), num_labels, classifier_dropout)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
    ) -> SequenceClassificationOutput:
        hidden = self.bert(input_ids, attention_mask, token_type_ids)
        logits = self.classifier(self.dropout(self.bert.pooler(hidden)))  # (B, num_labels)
        return SequenceClassificationOutput(sequence_classification_loss(logits, labels, self.num_labels), logits)

    def load_pretrained_encoder(self, model: nn.Module) -> None:
        """Copy the encoder (and pooler) of a pretrained ``BertForPreTraining`` into this classifier."""
        _copy_encoder(self.bert, model)


class BertForTokenClassification(_WithClassifier):
    """BERT + dropout + linear classifier on the hidden states at the given positions (HF's keys: ``bert.*``
    without the pooler, ``classifier.*``); follows the token-classification contract of ``bertkit.models.base``."""

    def __init__(self, config: BertConfig, num_labels: int = 2, classifier_dropout: float | None = None) -> None:
        super().__init__(config, BertModel(config, add_pooling_layer=False), num_labels, classifier_dropout)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        positions: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
    ) -> TokenClassificationOutput:
        if positions is None:
            raise TypeError("BertForTokenClassification.forward needs positions (flat indices of the queried tokens)")
        hidden = self.bert(input_ids, attention_mask, token_type_ids)  # (B, T, d)
        rows = hidden.reshape(-1, hidden.shape[-1]).index_select(0, positions)  # (N, d)
        logits = self.classifier(self.dropout(rows))  # (N, num_labels)
        return TokenClassificationOutput(token_classification_loss(logits, labels), logits)

    def load_pretrained_encoder(self, model: nn.Module) -> None:
        """Copy the encoder of a pretrained ``BertForPreTraining`` into this classifier (the pooler is not used)."""
        _copy_encoder(self.bert, model)


def _copy_encoder(target: BertModel, model: nn.Module) -> None:
    source = getattr(model, "bert", None)
    if not isinstance(source, BertModel):
        raise ConfigError(f"cannot load the encoder of a {type(model).__name__} into a BERT classifier")
    state = source.state_dict()
    if target.pooler is None:
        state = {k: v for k, v in state.items() if not k.startswith("pooler.")}
    try:
        target.load_state_dict(state)
    except RuntimeError as e:
        raise ConfigError(f"the pretrained encoder does not fit this classifier's config: {e}") from None


def num_parameters(model: nn.Module, exclude_embeddings: bool = False) -> int:
    """Distinct parameters (tied ones counted once); optionally without the embedding tables."""
    params = {id(p): p for p in model.parameters()}
    if exclude_embeddings:
        for m in model.modules():
            if isinstance(m, nn.Embedding):
                params.pop(id(m.weight), None)
    return sum(p.numel() for p in params.values())
