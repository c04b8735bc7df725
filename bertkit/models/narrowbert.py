"""NarrowBERT (Li, Keung, Cheng, Kasai, Smith; ACL 2023): after ``full_layers`` ordinary BERT layers, the remaining
"narrow" layers compute only the rows that are predicted (the *queries*).

Queries are the masked positions for MLM pretraining (plus [CLS] when NSP labels are given), [CLS] for sequence
classification and the given positions (word-start tokens) for token classification. They always come from explicit
positions, never from the labels, so inference needs no labels (the original takes them from ``labels > -100``).

Two variants (``NarrowBertConfig.variant``), in the paper's sandwich notation (s = attention sublayer, f = FFN):

- ``sparse-queries`` (the released code; the default): ``(sf)^k`` full layers over all T tokens give ``H``; each of
  the ``n = L - k`` narrow layers is cross-attention from the query rows to the **fixed** ``H`` (q = x·W_q,
  k = H·W_k, v = H·W_v with the layer's own weights, the padding mask of ``H``), then the output projection,
  residual and LayerNorm, FFN, residual and LayerNorm, on the query rows only. ``H`` is never updated: every narrow
  layer attends to the output of the last full layer.
- ``context-first`` (described in the paper, never released): ``(sf)^k`` full layers, then the ``n`` attention
  sublayers over **all** tokens (``s^n``, ordinary post-LN self-attention with residual), then the query rows are
  gathered and the ``n`` FFN sublayers run on them alone (``f^n``). Our reading of the paper's "attention sublayers
  first, then feedforward sublayers only on the masked tokens": the k leading full layers are kept as in
  SparseQueries (``full_layers`` means the same in both variants), and narrow layer j's attention sublayer is the
  j-th ``s``, its FFN sublayer the j-th ``f``.

Both variants have exactly the parameters of a BERT of the same shape, under BERT's names (``bert.embeddings.*``,
``bert.encoder.layer.{i}.*`` for the full layers, ``bert.encoder_narrow.layer.{j}.*`` for the narrow ones, as the
original code names them, ``bert.pooler.*``, ``cls.*``): BERT layer ``k + j`` maps onto narrow layer ``j``.

Query batching (SparseQueries). Every per-row operation of a narrow layer (query projection, output projection,
LayerNorms, FFN) runs on the flat ``[N, d]`` query rows: no padding at all. Only attention needs the queries grouped
by sequence: they are gathered into a ``[B, Q, d]`` block once per forward (:func:`query_layout`), each narrow layer
runs one ``F.scaled_dot_product_attention`` of ``[B, H, Q, hs]`` queries against ``[B, H, T, hs]`` keys/values of
``H`` with the padding mask, and the outputs are gathered back to the flat rows. The layout is computed on the
device (sort, prefix sums; repeated positions, such as the contract's padding entries pointing at index 0, share
one slot since their outputs are identical). ``Q`` is

- by default the largest number of distinct queries in a row, rounded up to a multiple of 8: **one** host sync per
  forward (the original does one per row, boolean indexing + ``pad_sequence``, and pads every layer's FFN too); the
  padding costs only attention scores, never projections or FFN rows;
- with ``static_queries=True``, T: no host sync and shapes that depend only on (B, T, M), for ``torch.compile``
  ``fullgraph`` / CUDA graphs, at the price of full-length attention scores in the narrow layers (their projections
  and FFN still run on the N rows only).

[CLS]-only queries (sequence classification) are one row per sequence: ``Q = 1`` and no layout at all.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from bertkit.exceptions import ConfigError
from bertkit.models import bert
from bertkit.models.base import (
    PretrainingOutput,
    SequenceClassificationOutput,
    TokenClassificationOutput,
    add_nsp_loss,
    mlm_output,
    sequence_classification_loss,
    token_classification_loss,
)
from bertkit.models.bert import (
    BertConfig,
    BertEmbeddings,
    BertEncoder,
    BertLayer,
    BertPooler,
    _WithClassifier,
    _WithPretrainingHeads,
)

__all__ = [
    "PRESETS",
    "VARIANTS",
    "NarrowBertConfig",
    "NarrowBertForPreTraining",
    "NarrowBertForSequenceClassification",
    "NarrowBertForTokenClassification",
    "NarrowBertModel",
    "QueryLayout",
    "query_layout",
]

VARIANTS = ("sparse-queries", "context-first")


@dataclass(frozen=True)
class NarrowBertConfig(BertConfig):
    """BERT's fields and defaults (bert-base-uncased) plus the narrow layout; ``num_hidden_layers`` is the total."""

    full_layers: int = 2  # k: leading full (sf) layers; the other num_hidden_layers - k layers are narrow
    variant: str = "sparse-queries"  # one of VARIANTS
    static_queries: bool = False  # SparseQueries query block [B, T] (no host sync) instead of [B, max row count]

    def __post_init__(self) -> None:
        try:
            super().__post_init__()
        except ConfigError as e:  # BERT's checks name BertConfig
            raise ConfigError(str(e).replace("BertConfig.", "NarrowBertConfig.", 1)) from None
        k = self.full_layers
        if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k < self.num_hidden_layers:
            raise ConfigError(
                f"NarrowBertConfig.full_layers must be an integer in [1, num_hidden_layers - 1] = "
                f"[1, {self.num_hidden_layers - 1}] (at least one full and one narrow layer), got {k!r}"
            )
        if self.variant not in VARIANTS:
            raise ConfigError(f"NarrowBertConfig.variant {self.variant!r} is not one of {', '.join(VARIANTS)}")
        if not isinstance(self.static_queries, bool):
            raise ConfigError(f"NarrowBertConfig.static_queries must be true or false, got {self.static_queries!r}")
        if self.layer_norm_position != "post" or self.positions != "learned" or self.init != "bert":
            raise ConfigError(
                "NarrowBertConfig: layer_norm_position, positions and init are BERT model options (the narrow layers "
                "are post-LN BERT layers with learned positions); leave them at their defaults"
            )

    @property
    def narrow_layers(self) -> int:
        return self.num_hidden_layers - self.full_layers

    def replace(self, **changes: object) -> NarrowBertConfig:
        """A copy with ``changes`` applied (validated; unknown keys are ConfigErrors)."""
        return NarrowBertConfig.from_dict({**self.to_dict(), **changes})

    def bert_config(self, **changes: object) -> BertConfig:
        """The BERT fields as a :class:`BertConfig` (with ``changes``): a BERT of the same shape, or the config of
        the full-layer stack."""
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(BertConfig)}
        return BertConfig.from_dict({**fields, **changes})


# BERT's presets; base = the paper's 2 full + 10 narrow. The 2-layer tiny preset keeps 1 full + 1 narrow layer.
PRESETS: dict[str, dict[str, int]] = {
    "tiny": {**bert.PRESETS["tiny"], "full_layers": 1},
    "small": {**bert.PRESETS["small"], "full_layers": 2},
    "base": {**bert.PRESETS["base"], "full_layers": 2},
    "large": {**bert.PRESETS["large"], "full_layers": 2},
}


# ------------------------------------------------------------------------------------------------ query layout


@dataclass
class QueryLayout:
    """Where the flat query rows go in the ``[B * Q, d]`` attention block, and back."""

    queries_per_row: int
    """Q: slots per sequence in the block."""
    gather: torch.Tensor | None
    """``[B * Q]`` int64: the query row that fills each slot (empty slots repeat row 0; their outputs are unused).
    None when the rows already are the block (one query per row, or every token)."""
    scatter: torch.Tensor | None
    """``[N]`` int64: the slot of each query row. None like ``gather``."""

    def to_block(self, rows: torch.Tensor) -> torch.Tensor:
        return rows if self.gather is None else rows.index_select(0, self.gather)

    def from_block(self, block: torch.Tensor) -> torch.Tensor:
        return block if self.scatter is None else block.index_select(0, self.scatter)


def query_layout(positions: torch.Tensor, batch_size: int, seq_len: int, *, static: bool = False) -> QueryLayout:
    """The block layout of queries at flat ``positions`` (``b * T + t``, any order, repeats allowed).

    Computed on the device: sort the positions, number the distinct ones, subtract each row's first number to get
    the slot within the row. Repeated positions share the slot of their first occurrence (only that one fills it, so
    its gradient is the sum over the repeats, as if each had its own slot). Q is T when ``static``, else the largest
    count of distinct positions in a row rounded up to a multiple of 8 (one host sync; fewer distinct block shapes
    for compilation).
    """
    device = positions.device
    order = torch.argsort(positions, stable=True)
    ordered = positions.index_select(0, order)
    first = torch.ones_like(ordered, dtype=torch.bool)
    first[1:] = ordered[1:] != ordered[:-1]
    rows = torch.div(ordered, seq_len, rounding_mode="floor")
    distinct = torch.cumsum(first, 0) - 1  # number of each distinct position, in sorted order
    per_row = torch.zeros(batch_size, dtype=torch.int64, device=device).index_add_(0, rows, first.to(torch.int64))
    row_start = torch.cumsum(per_row, 0) - per_row
    slot = distinct - row_start.index_select(0, rows)
    if static:
        Q = seq_len
    else:
        Q = min(-(-int(per_row.max()) // 8) * 8, seq_len)  # the one host sync
    block = rows * Q + slot  # (N,) in sorted order
    scatter = torch.empty_like(block).scatter_(0, order, block)
    trash = batch_size * Q  # an extra slot that the repeats fill, then dropped
    gather = torch.zeros(trash + 1, dtype=torch.int64, device=device)
    gather.scatter_(0, torch.where(first, block, torch.full_like(block, trash)), order)
    return QueryLayout(Q, gather[:trash], scatter)


# ----------------------------------------------------------------------------------------------------- layers


class NarrowBertLayer(BertLayer):
    """A BERT layer (same modules, same parameter names) with the two narrow ways of running it."""

    def forward_queries(
        self, x: torch.Tensor, context: torch.Tensor, mask: torch.Tensor | None, layout: QueryLayout
    ) -> torch.Tensor:
        """SparseQueries: the query rows ``x`` ``(N, d)`` cross-attend to ``context`` ``(B, T, d)``, then FFN."""
        attn = self.attention.self
        B, T, D = context.shape
        Hn, hs, Q = attn.num_attention_heads, attn.attention_head_size, layout.queries_per_row
        q = layout.to_block(attn.query(x)).view(B, Q, Hn, hs).transpose(1, 2)  # (B, H, Q, hs)
        k = attn.key(context).view(B, T, Hn, hs).transpose(1, 2)  # (B, H, T, hs)
        v = attn.value(context).view(B, T, Hn, hs).transpose(1, 2)
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, dropout_p=attn.dropout_prob if self.training else 0.0
        )  # (B, H, Q, hs)
        y = layout.from_block(y.transpose(1, 2).reshape(B * Q, D))  # (N, d)
        return self.feed_forward(self.attention.output(y, x))

    def attend(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """ContextFirst's attention sublayer: self-attention over all tokens ``(B, T, d)`` (+ residual, LayerNorm)."""
        return self.attention(x, mask)

    def feed_forward(self, x: torch.Tensor) -> torch.Tensor:
        """The FFN sublayer (+ residual, LayerNorm) on rows ``(..., d)``."""
        return self.output(self.intermediate(x), x)


class NarrowBertEncoder(nn.Module):
    """The narrow layers (``bert.encoder_narrow.layer.{j}``)."""

    def __init__(self, config: NarrowBertConfig) -> None:
        super().__init__()
        self.layer = nn.ModuleList(NarrowBertLayer(config) for _ in range(config.narrow_layers))


class NarrowBertModel(nn.Module):
    """Embeddings, the full layers, the narrow layers and (optionally) the pooler; returns query rows."""

    def __init__(self, config: NarrowBertConfig, add_pooling_layer: bool = True) -> None:
        super().__init__()
        self.config = config
        self.embeddings = BertEmbeddings(config)
        self.encoder = BertEncoder(config.bert_config(num_hidden_layers=config.full_layers))
        self.encoder_narrow = NarrowBertEncoder(config)
        self.pooler = BertPooler(config) if add_pooling_layer else None

    def context(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``H`` ``(B, T, d)``, the output of the full layers, and the attention mask ``(B, 1, 1, T)`` (or None)."""
        mask = None if attention_mask is None else attention_mask.bool()[:, None, None, :]
        return self.encoder(self.embeddings(input_ids, token_type_ids), mask), mask

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        positions: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Last hidden states ``(N, d)`` of the queries at flat ``positions`` ``(N,)``; None = every token is a
        query, ``(B, T, d)``."""
        hidden, mask = self.context(input_ids, attention_mask, token_type_ids)
        B, T, D = hidden.shape
        if positions is not None and positions.numel() == 0:
            return hidden.new_zeros(0, D)
        if self.config.variant == "context-first":
            out = self._context_first(hidden, mask, positions)
        elif positions is None:
            out = self._sparse_queries(hidden.reshape(B * T, D), hidden, mask, QueryLayout(T, None, None))
        else:
            rows = hidden.reshape(B * T, D).index_select(0, positions)
            layout = query_layout(positions, B, T, static=self.config.static_queries)
            out = self._sparse_queries(rows, hidden, mask, layout)
        return out.view(B, T, D) if positions is None else out

    def cls_hidden(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Last hidden state ``(B, d)`` of [CLS] with [CLS] the only query of each sequence."""
        hidden, mask = self.context(input_ids, attention_mask, token_type_ids)
        if self.config.variant == "context-first":
            return self._context_first(hidden, mask, None, cls_only=True)
        return self._sparse_queries(hidden[:, 0], hidden, mask, QueryLayout(1, None, None))

    def _sparse_queries(
        self, rows: torch.Tensor, hidden: torch.Tensor, mask: torch.Tensor | None, layout: QueryLayout
    ) -> torch.Tensor:
        for layer in self.encoder_narrow.layer:
            rows = layer.forward_queries(rows, hidden, mask, layout)
        return rows

    def _context_first(
        self, hidden: torch.Tensor, mask: torch.Tensor | None, positions: torch.Tensor | None, cls_only: bool = False
    ) -> torch.Tensor:
        for layer in self.encoder_narrow.layer:  # s^n over all tokens
            hidden = layer.attend(hidden, mask)
        if cls_only:
            rows = hidden[:, 0]
        elif positions is None:
            rows = hidden.reshape(-1, hidden.shape[-1])
        else:
            rows = hidden.reshape(-1, hidden.shape[-1]).index_select(0, positions)
        for layer in self.encoder_narrow.layer:  # f^n on the queries
            rows = layer.feed_forward(rows)
        return rows


# ------------------------------------------------------------------------------------------------------ heads


class NarrowBertForPreTraining(_WithPretrainingHeads):
    """NarrowBERT with BERT's MLM head (tied to the word embedding) and NSP head; ``forward`` follows the batch
    contract of ``bertkit.models.base``: the ``mlm_positions`` are the queries (plus each sequence's [CLS] when
    ``next_sentence_label`` is given), and only those rows reach ``bertkit.ops.masked_lm_loss``."""

    def __init__(self, config: NarrowBertConfig) -> None:
        super().__init__(config, NarrowBertModel(config))

    def mlm_logits(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        positions: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Full-vocabulary logits ``(P, V)`` at flat ``positions`` (the queries; None = every token)."""
        rows = self.bert(input_ids, attention_mask, token_type_ids, positions)
        rows = rows.reshape(-1, rows.shape[-1])
        predictions = self.cls.predictions
        return F.linear(predictions.transform(rows), predictions.decoder.weight, predictions.bias)

    def flops_per_token(self, seq_len: int, head_fraction: float = 0.15) -> float:
        """Training FLOPs (forward + backward) per input token in DeepSpeed's convention (docs/ANCHORS.md), with
        the narrow cost model below: ``head_fraction`` f is the fraction of tokens that are queries (and reach the
        head).

        Full layer: ``6·(4d² + 2·d·d_ff) + 12·S·d``. SparseQueries narrow layer: K/V of all tokens ``6·2d²`` plus,
        per query, Q/output projections and FFN ``6·(2d² + 2·d·d_ff)`` and attention over S keys ``12·S·d``.
        ContextFirst narrow layer: the whole attention sublayer ``6·4d² + 12·S·d`` plus the FFN ``6·2·d·d_ff`` per
        query. Head: ``6·(d·V + d²)·f``. (The padding of the query block and the NSP [CLS] query are not counted.)
        """
        c = self.config
        d, S, f, d_ff = c.hidden_size, seq_len, head_fraction, c.intermediate_size
        full = 6.0 * (4 * d * d + 2 * d * d_ff) + 12.0 * S * d
        if c.variant == "context-first":
            narrow = 6.0 * 4 * d * d + 12.0 * S * d + f * 6.0 * 2 * d * d_ff
        else:
            narrow = 6.0 * 2 * d * d + f * (6.0 * (2 * d * d + 2 * d * d_ff) + 12.0 * S * d)
        head = 6.0 * (d * c.vocab_size + d * d) * f
        return c.full_layers * full + c.narrow_layers * narrow + head

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
            raise TypeError("NarrowBertForPreTraining.forward needs mlm_positions and mlm_labels (the queries)")
        B, T = input_ids.shape
        M = mlm_positions.shape[0]
        queries = mlm_positions
        if next_sentence_label is not None:  # each sequence's [CLS] is one more query
            cls_positions = torch.arange(B, device=input_ids.device, dtype=mlm_positions.dtype) * T
            queries = torch.cat([mlm_positions, cls_positions])
        rows = self.bert(input_ids, attention_mask, token_type_ids, queries)  # (M [+ B], d)
        predictions = self.cls.predictions
        out = mlm_output(
            predictions.transform(rows[:M]),
            predictions.decoder.weight,
            predictions.bias,
            mlm_labels,
            label_smoothing=label_smoothing,
            return_predictions=return_predictions,
        )
        if next_sentence_label is not None:
            pooled = self.bert.pooler(rows[M:, None])  # the pooler reads row 0 of (B, 1, d)
            add_nsp_loss(out, self.cls.seq_relationship(pooled), next_sentence_label)  # (B, 2)
        return out


class NarrowBertForSequenceClassification(_WithClassifier):
    """NarrowBERT with [CLS] as the only query of the narrow layers, BERT's tanh pooler, dropout and a linear
    classifier (``num_labels == 1``: regression with MSE)."""

    def __init__(self, config: NarrowBertConfig, num_labels: int = 2, classifier_dropout: float | None = None) -> None:
        super().__init__(config, NarrowBertModel(config), num_labels, classifier_dropout)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
    ) -> SequenceClassificationOutput:
        cls = self.bert.cls_hidden(input_ids, attention_mask, token_type_ids)  # (B, d)
        logits = self.classifier(self.dropout(self.bert.pooler(cls[:, None])))  # (B, num_labels)
        return SequenceClassificationOutput(sequence_classification_loss(logits, labels, self.num_labels), logits)

    def load_pretrained_encoder(self, model: nn.Module) -> None:
        """Copy the encoder (and pooler) of a pretrained ``NarrowBertForPreTraining`` into this classifier."""
        _copy_encoder(self.bert, model)


class NarrowBertForTokenClassification(_WithClassifier):
    """NarrowBERT with the given positions (the first sub-token of each labelled word) as the queries, dropout and
    a linear classifier; follows the token-classification contract of ``bertkit.models.base``."""

    def __init__(self, config: NarrowBertConfig, num_labels: int = 2, classifier_dropout: float | None = None) -> None:
        super().__init__(config, NarrowBertModel(config, add_pooling_layer=False), num_labels, classifier_dropout)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        positions: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
    ) -> TokenClassificationOutput:
        if positions is None:
            raise TypeError("NarrowBertForTokenClassification.forward needs positions (the queried tokens)")
        rows = self.bert(input_ids, attention_mask, token_type_ids, positions)  # (N, d)
        logits = self.classifier(self.dropout(rows))  # (N, num_labels)
        return TokenClassificationOutput(token_classification_loss(logits, labels), logits)

    def load_pretrained_encoder(self, model: nn.Module) -> None:
        """Copy the encoder of a pretrained ``NarrowBertForPreTraining`` into this classifier (no pooler)."""
        _copy_encoder(self.bert, model)


def _copy_encoder(target: NarrowBertModel, model: nn.Module) -> None:
    source = getattr(model, "bert", None)
    if not isinstance(source, NarrowBertModel):
        raise ConfigError(f"cannot load the encoder of a {type(model).__name__} into a NarrowBERT classifier")
    ours, theirs = target.config, source.config
    if (ours.full_layers, ours.variant) != (theirs.full_layers, theirs.variant):
        raise ConfigError(
            f"the pretrained encoder is {theirs.variant} with {theirs.full_layers} full layers, this classifier "
            f"{ours.variant} with {ours.full_layers}: the layers would be used differently than in pretraining"
        )
    state = source.state_dict()
    if target.pooler is None:
        state = {k: v for k, v in state.items() if not k.startswith("pooler.")}
    try:
        target.load_state_dict(state)
    except RuntimeError as e:
        raise ConfigError(f"the pretrained encoder does not fit this classifier's config: {e}") from None
