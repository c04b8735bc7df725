"""NarrowBERT for Hugging Face ``transformers`` (``trust_remote_code=True``), written by ``bertkit export hf``.

This file is self-contained: it needs only torch and transformers (bertkit copies it next to the weights).

NarrowBERT (Li, Keung, Cheng, Kasai, Smith, "NarrowBERT: Accelerating Masked Language Model Pretraining and
Inference", ACL 2023): ``full_layers`` ordinary post-LN BERT layers over all tokens give H; the other layers are
"narrow": they compute only the query rows. ``variant``:

- ``sparse-queries`` (the authors' released code): each narrow layer is cross-attention from the query rows to the
  fixed H (the output of the last full layer; keys and values from H with the layer's own weights), then the
  output projection, residual, LayerNorm, FFN, residual, LayerNorm, on the query rows only.
- ``context-first`` (described in the paper): the narrow layers' attention sublayers run over all tokens first,
  then their FFN sublayers run on the query rows only.

Here every position is a query (a row's result is the same whichever other rows are queried), so the models give
hidden states and logits for every token, as the usual ``transformers`` heads do; sequence classification reads
the [CLS] row through BERT's tanh pooler. Parameter names are BERT's (``bert.embeddings.*``,
``bert.encoder.layer.N.*``), with the narrow layers under ``bert.encoder_narrow.layer.N.*`` as in the authors' code.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import (
    BaseModelOutputWithPooling,
    MaskedLMOutput,
    SequenceClassifierOutput,
    TokenClassifierOutput,
)

VARIANTS = ("sparse-queries", "context-first")


def _gelu_tanh(x: torch.Tensor) -> torch.Tensor:
    return F.gelu(x, approximate="tanh")


ACTIVATIONS = {"gelu": F.gelu, "gelu_new": _gelu_tanh, "gelu_pytorch_tanh": _gelu_tanh, "relu": F.relu}


class NarrowBertConfig(PretrainedConfig):
    model_type = "narrowbert"

    def __init__(
        self,
        vocab_size: int = 30522,
        hidden_size: int = 768,
        num_hidden_layers: int = 12,
        num_attention_heads: int = 12,
        intermediate_size: int = 3072,
        hidden_act: str = "gelu",
        hidden_dropout_prob: float = 0.1,
        attention_probs_dropout_prob: float = 0.1,
        max_position_embeddings: int = 512,
        type_vocab_size: int = 2,
        layer_norm_eps: float = 1e-12,
        initializer_range: float = 0.02,
        pad_token_id: int = 0,
        full_layers: int = 2,
        variant: str = "sparse-queries",
        classifier_dropout: float | None = None,
        **kwargs,
    ) -> None:
        kwargs.setdefault("tie_word_embeddings", False)  # the decoder reads the word embedding directly
        super().__init__(pad_token_id=pad_token_id, **kwargs)
        if variant not in VARIANTS:
            raise ValueError(f"variant {variant!r} is not one of {', '.join(VARIANTS)}")
        if not 1 <= full_layers < num_hidden_layers:
            raise ValueError(f"full_layers must be in [1, num_hidden_layers - 1], got {full_layers}")
        if hidden_act not in ACTIVATIONS:
            raise ValueError(f"hidden_act {hidden_act!r} is not one of {', '.join(ACTIVATIONS)}")
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.intermediate_size = intermediate_size
        self.hidden_act = hidden_act
        self.hidden_dropout_prob = hidden_dropout_prob
        self.attention_probs_dropout_prob = attention_probs_dropout_prob
        self.max_position_embeddings = max_position_embeddings
        self.type_vocab_size = type_vocab_size
        self.layer_norm_eps = layer_norm_eps
        self.initializer_range = initializer_range
        self.full_layers = full_layers
        self.variant = variant
        self.classifier_dropout = classifier_dropout


class BertEmbeddings(nn.Module):
    def __init__(self, config: NarrowBertConfig) -> None:
        super().__init__()
        self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden_size, padding_idx=config.pad_token_id)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None) -> torch.Tensor:
        T = input_ids.shape[1]
        if T > self.position_embeddings.num_embeddings:
            raise ValueError(
                f"sequence of {T} tokens but max_position_embeddings is {self.position_embeddings.num_embeddings}"
            )
        x = self.word_embeddings(input_ids) + self.position_embeddings(torch.arange(T, device=input_ids.device))
        if token_type_ids is None:
            x = x + self.token_type_embeddings.weight[0]
        else:
            x = x + self.token_type_embeddings(token_type_ids)
        return self.dropout(self.LayerNorm(x))


class BertSelfAttention(nn.Module):
    def __init__(self, config: NarrowBertConfig) -> None:
        super().__init__()
        self.num_attention_heads = config.num_attention_heads
        self.attention_head_size = config.hidden_size // config.num_attention_heads
        self.query = nn.Linear(config.hidden_size, config.hidden_size)
        self.key = nn.Linear(config.hidden_size, config.hidden_size)
        self.value = nn.Linear(config.hidden_size, config.hidden_size)
        self.dropout_prob = config.attention_probs_dropout_prob

    def forward(self, queries: torch.Tensor, context: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """``queries (B, Q, d)`` attend to ``context (B, T, d)`` (the same tensor for self-attention)."""
        B, Q, D = queries.shape
        T = context.shape[1]
        H, hs = self.num_attention_heads, self.attention_head_size
        q = self.query(queries).view(B, Q, H, hs).transpose(1, 2)  # (B, H, Q, hs)
        k = self.key(context).view(B, T, H, hs).transpose(1, 2)
        v = self.value(context).view(B, T, H, hs).transpose(1, 2)
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, dropout_p=self.dropout_prob if self.training else 0.0
        )
        return y.transpose(1, 2).reshape(B, Q, D)


class BertSelfOutput(nn.Module):
    def __init__(self, config: NarrowBertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, hidden: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dropout(self.dense(hidden)) + residual)


class BertAttention(nn.Module):
    def __init__(self, config: NarrowBertConfig) -> None:
        super().__init__()
        self.self = BertSelfAttention(config)
        self.output = BertSelfOutput(config)


class BertIntermediate(nn.Module):
    def __init__(self, config: NarrowBertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.intermediate_size)
        self.intermediate_act_fn = ACTIVATIONS[config.hidden_act]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.intermediate_act_fn(self.dense(x))


class BertOutput(nn.Module):
    def __init__(self, config: NarrowBertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.intermediate_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, hidden: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dropout(self.dense(hidden)) + residual)


class BertLayer(nn.Module):
    def __init__(self, config: NarrowBertConfig) -> None:
        super().__init__()
        self.attention = BertAttention(config)
        self.intermediate = BertIntermediate(config)
        self.output = BertOutput(config)

    def attend(self, queries: torch.Tensor, context: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """The attention sublayer (+ residual, LayerNorm) of ``queries`` over ``context``."""
        return self.attention.output(self.attention.self(queries, context, mask), queries)

    def feed_forward(self, x: torch.Tensor) -> torch.Tensor:
        """The FFN sublayer (+ residual, LayerNorm)."""
        return self.output(self.intermediate(x), x)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        return self.feed_forward(self.attend(x, x, mask))


class BertEncoder(nn.Module):
    def __init__(self, config: NarrowBertConfig, num_layers: int) -> None:
        super().__init__()
        self.layer = nn.ModuleList(BertLayer(config) for _ in range(num_layers))


class BertPooler(nn.Module):
    def __init__(self, config: NarrowBertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.activation = nn.Tanh()

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.activation(self.dense(hidden[:, 0]))


class NarrowBertPreTrainedModel(PreTrainedModel):
    config_class = NarrowBertConfig
    base_model_prefix = "bert"

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        """BERT's init: normal(0, initializer_range) weights, zero biases, LayerNorm ones / zeros."""
        std = self.config.initializer_range
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=std)
            if module.padding_idx is not None:
                module.weight[module.padding_idx].zero_()
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, BertLMPredictionHead):
            nn.init.zeros_(module.bias)


class NarrowBertModel(NarrowBertPreTrainedModel):
    """Embeddings, the full layers (``encoder``), the narrow layers (``encoder_narrow``) and the pooler; every
    position is a query of the narrow layers."""

    def __init__(self, config: NarrowBertConfig, add_pooling_layer: bool = True) -> None:
        super().__init__(config)
        self.embeddings = BertEmbeddings(config)
        self.encoder = BertEncoder(config, config.full_layers)
        self.encoder_narrow = BertEncoder(config, config.num_hidden_layers - config.full_layers)
        self.pooler = BertPooler(config) if add_pooling_layer else None
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embeddings.word_embeddings

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.embeddings.word_embeddings = value

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> BaseModelOutputWithPooling:
        mask = None if attention_mask is None else attention_mask.bool()[:, None, None, :]  # (B, 1, 1, T)
        hidden = self.embeddings(input_ids, token_type_ids)
        states = [hidden]
        for layer in self.encoder.layer:
            hidden = layer(hidden, mask)
            states.append(hidden)
        if self.config.variant == "sparse-queries":
            rows = hidden  # every position is a query; keys and values stay those of H = the last full layer
            for layer in self.encoder_narrow.layer:
                rows = layer.feed_forward(layer.attend(rows, hidden, mask))
                states.append(rows)
        else:  # context-first: the attention sublayers over all tokens, then the FFN sublayers on the queries
            for layer in self.encoder_narrow.layer:
                hidden = layer.attend(hidden, hidden, mask)
            rows = hidden
            for layer in self.encoder_narrow.layer:
                rows = layer.feed_forward(rows)
                states.append(rows)
        pooled = self.pooler(rows) if self.pooler is not None else None
        return BaseModelOutputWithPooling(
            last_hidden_state=rows, pooler_output=pooled, hidden_states=tuple(states) if output_hidden_states else None
        )


class BertPredictionHeadTransform(nn.Module):
    def __init__(self, config: NarrowBertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.transform_act_fn = ACTIVATIONS[config.hidden_act]
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.transform_act_fn(self.dense(x)))


class BertLMPredictionHead(nn.Module):
    """Transform, then the decoder: the word embedding as weight, ``bias`` as bias."""

    def __init__(self, config: NarrowBertConfig) -> None:
        super().__init__()
        self.transform = BertPredictionHeadTransform(config)
        self.bias = nn.Parameter(torch.zeros(config.vocab_size))

    def forward(self, x: torch.Tensor, word_embedding: torch.Tensor) -> torch.Tensor:
        return F.linear(self.transform(x), word_embedding, self.bias)


class BertOnlyMLMHead(nn.Module):
    def __init__(self, config: NarrowBertConfig) -> None:
        super().__init__()
        self.predictions = BertLMPredictionHead(config)


class NarrowBertForMaskedLM(NarrowBertPreTrainedModel):
    _keys_to_ignore_on_load_unexpected = [r"cls\.seq_relationship", r"bert\.pooler", r"cls\.predictions\.decoder"]

    def __init__(self, config: NarrowBertConfig) -> None:
        super().__init__(config)
        self.bert = NarrowBertModel(config, add_pooling_layer=False)
        self.cls = BertOnlyMLMHead(config)
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
        out = self.bert(input_ids, attention_mask, token_type_ids, output_hidden_states=output_hidden_states)
        logits = self.cls.predictions(out.last_hidden_state, self.bert.embeddings.word_embeddings.weight)
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits.flatten(0, 1).float(), labels.flatten(), ignore_index=-100)
        return MaskedLMOutput(loss=loss, logits=logits, hidden_states=out.hidden_states)


def _classification_loss(config: NarrowBertConfig, logits: torch.Tensor, labels: torch.Tensor | None):
    if labels is None:
        return None
    if config.num_labels == 1:
        return F.mse_loss(logits.float().squeeze(-1), labels.float())
    return F.cross_entropy(logits.float().view(-1, config.num_labels), labels.view(-1), ignore_index=-100)


class NarrowBertForSequenceClassification(NarrowBertPreTrainedModel):
    _keys_to_ignore_on_load_unexpected = [r"cls\."]

    def __init__(self, config: NarrowBertConfig) -> None:
        super().__init__(config)
        self.bert = NarrowBertModel(config)
        drop = config.hidden_dropout_prob if config.classifier_dropout is None else config.classifier_dropout
        self.dropout = nn.Dropout(drop)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
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
        out = self.bert(input_ids, attention_mask, token_type_ids, output_hidden_states=output_hidden_states)
        logits = self.classifier(self.dropout(out.pooler_output))
        return SequenceClassifierOutput(
            loss=_classification_loss(self.config, logits, labels), logits=logits, hidden_states=out.hidden_states
        )


class NarrowBertForTokenClassification(NarrowBertPreTrainedModel):
    _keys_to_ignore_on_load_unexpected = [r"cls\.", r"bert\.pooler"]

    def __init__(self, config: NarrowBertConfig) -> None:
        super().__init__(config)
        self.bert = NarrowBertModel(config, add_pooling_layer=False)
        drop = config.hidden_dropout_prob if config.classifier_dropout is None else config.classifier_dropout
        self.dropout = nn.Dropout(drop)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
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
        out = self.bert(input_ids, attention_mask, token_type_ids, output_hidden_states=output_hidden_states)
        logits = self.classifier(self.dropout(out.last_hidden_state))  # (B, T, num_labels)
        return TokenClassifierOutput(
            loss=_classification_loss(self.config, logits, labels), logits=logits, hidden_states=out.hidden_states
        )
