"""NextLevelBERT (Czinczoll et al., ACL 2024): masked-chunk modelling over sentence-transformers chunk embeddings.

A document is cut into chunks, each chunk is embedded once by a frozen encoder (``bertkit encode``), and this model,
a BERT encoder whose inputs are those chunk vectors instead of word embeddings, learns to predict masked chunk
vectors from their context. It follows aiintelligentsystems/next-level-bert @b3c983c
(``src/model.py``, ``scripts/pretrain.sh``):

- Input: the chunk vectors plus learned special vectors (index 0 pad, 1 [CLS], 2 [SEP], 3 [MASK]; the pad row stays
  zero as in the original, it is never attended to), then learned positions (re-initialised), the token-type-0
  embedding, LayerNorm and dropout as in BERT's embedding layer. When the chunk dimension differs from the hidden
  size a linear projection maps it in (the paper's MiniLM setting has none: 384 = 384).
- Encoder: BERT layers (``bertkit.models.bert``, SDPA attention), initialised from the chunk encoder's own
  transformer (the paper: MiniLM-L6) when ``init_from_encoder`` (the ``minilm`` preset).
- Objective: Bernoulli(``mask_rate``) over chunks; of those 80 % become [MASK], 10 % another chunk vector of the
  batch, 10 % stay; a head Linear → GELU → Linear predicts the original vectors of the chosen chunks. Loss per chunk
  averaged over dimensions, then over a sequence's chosen chunks, then over sequences: SmoothL1 (β = 1, the
  default), L1, MSE or cosine (1 − cos; the original's CosineEmbeddingLoss with target 1, where its margin plays
  no part).
- Document embedding: the mean of the last hidden states at the chunk positions (not [CLS]/[SEP]/padding).

Batch contract (keywords of ``forward``): ``chunk_embeddings [B, T, E]`` float (anything at special positions),
``special_ids [B, T]`` int64 (-1 = a chunk vector, else the special vector index), ``attention_mask [B, T]`` or
None, ``mlm_positions [M]`` flat indices ``b * T + t`` of the chosen chunks, ``mlm_targets [M, E]`` their original
vectors. ``PretrainingOutput.mlm_correct`` counts the chosen chunks whose prediction is nearer (cosine) to its own
target than to any other chosen chunk's target of the batch: an in-batch retrieval accuracy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from bertkit.exceptions import ConfigError
from bertkit.models.base import ModelConfig, PretrainingOutput, check_transformer_shape
from bertkit.models.bert import ACTIVATIONS, BertConfig, BertEncoder, _init_module

__all__ = [
    "LOSSES",
    "PRESETS",
    "SPECIAL",
    "ChunkBatcher",
    "NextLevelConfig",
    "NextLevelForPreTraining",
    "chunk_loss",
    "mask_chunks",
]

LOSSES = ("smoothl1", "l1", "mse", "cosine")
FRESH_INITS = ("bert", "original")
SPECIAL = {"pad": 0, "cls": 1, "sep": 2, "mask": 3}
"""Rows of the special-vector table; ``special_ids`` is -1 where the input is a chunk vector."""
CHUNK = -1
RANDOM_POOLS = ("other-chunks", "batch")


@dataclass(frozen=True)
class NextLevelConfig(ModelConfig):
    """NextLevelBERT hyper-parameters (BERT's names for the transformer; defaults: the paper's MiniLM-L6 shape)."""

    hidden_size: int = 384  # d
    num_hidden_layers: int = 6
    num_attention_heads: int = 12
    intermediate_size: int = 1536
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    max_position_embeddings: int = 512  # chunk positions of a sequence: [CLS] + chunks/[SEP]s (the paper: 512)
    type_vocab_size: int = 2  # only type 0 is used; kept so that the encoder's table copies over
    layer_norm_eps: float = 1e-12
    initializer_range: float = 0.02
    embedding_dim: int = 0  # E, dimension of the chunk embeddings (0 = hidden_size); the trainer takes the store's
    head_hidden_size: int = 0  # width of the prediction head's hidden layer (0 = hidden_size; the original: 384)
    loss: str = "smoothl1"  # one of LOSSES
    smooth_l1_beta: float = 1.0
    init_from_encoder: bool = False  # the trainer copies the transformer of the store's encoder (the paper: True)
    # Initialisation of the parts the original creates afresh (positions, special vectors, prediction head): "bert"
    # (normal(0, initializer_range), as BERT's own init) or "original" (left at PyTorch's defaults, as the original
    # code leaves them: N(0, 1) embeddings with a zero pad row, Kaiming-uniform linears).
    fresh_init: str = "bert"
    encoder: str = ""  # encoder of the chunk embeddings (name or directory), recorded by the trainer for inference
    encoder_checksum: str = ""  # its weights' xxh3 (bertkit.encode); inference refuses another encoder
    chunk_size: int = 256  # how documents were chunked (0 = sentences); inference cuts texts the same way

    def __post_init__(self) -> None:
        check_transformer_shape(
            self,
            (
                "hidden_size",
                "num_hidden_layers",
                "num_attention_heads",
                "intermediate_size",
                "max_position_embeddings",
                "type_vocab_size",
            ),
        )
        for name in ("embedding_dim", "head_hidden_size", "chunk_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ConfigError(f"NextLevelConfig.{name} must be a non-negative integer, got {value!r}")
        if self.chunk_size in (1, 2):
            raise ConfigError(f"NextLevelConfig.chunk_size must be 0 or >= 3, got {self.chunk_size}")
        if self.max_position_embeddings < 3:
            raise ConfigError("NextLevelConfig.max_position_embeddings must be >= 3 ([CLS] + a chunk + [SEP])")
        if self.hidden_act not in ACTIVATIONS:
            raise ConfigError(f"NextLevelConfig.hidden_act {self.hidden_act!r} is not one of {', '.join(ACTIVATIONS)}")
        if self.fresh_init not in FRESH_INITS:
            raise ConfigError(f"NextLevelConfig.fresh_init {self.fresh_init!r} is not one of {', '.join(FRESH_INITS)}")
        if self.loss not in LOSSES:
            raise ConfigError(f"NextLevelConfig.loss {self.loss!r} is not one of {', '.join(LOSSES)}")
        for name in ("hidden_dropout_prob", "attention_probs_dropout_prob"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
                raise ConfigError(f"NextLevelConfig.{name} must be in [0, 1), got {value!r}")
        for name in ("layer_norm_eps", "initializer_range", "smooth_l1_beta"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ConfigError(f"NextLevelConfig.{name} must be > 0, got {value!r}")
        if not isinstance(self.init_from_encoder, bool):
            raise ConfigError(
                f"NextLevelConfig.init_from_encoder must be true or false, got {self.init_from_encoder!r}"
            )
        for name in ("encoder", "encoder_checksum"):
            if not isinstance(getattr(self, name), str):
                raise ConfigError(f"NextLevelConfig.{name} must be a string")

    @property
    def input_dim(self) -> int:
        """E: the chunk-embedding dimension."""
        return self.embedding_dim or self.hidden_size

    def bert_config(self) -> BertConfig:
        """The transformer part as a BertConfig (for the shared BERT layers)."""
        return BertConfig(
            vocab_size=1,
            hidden_size=self.hidden_size,
            num_hidden_layers=self.num_hidden_layers,
            num_attention_heads=self.num_attention_heads,
            intermediate_size=self.intermediate_size,
            hidden_act=self.hidden_act,
            hidden_dropout_prob=self.hidden_dropout_prob,
            attention_probs_dropout_prob=self.attention_probs_dropout_prob,
            max_position_embeddings=self.max_position_embeddings,
            type_vocab_size=self.type_vocab_size,
            layer_norm_eps=self.layer_norm_eps,
            initializer_range=self.initializer_range,
        )


# Shape fields the encoder's config decides when the model is initialised from it.
ENCODER_SHAPE = (
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "intermediate_size",
    "hidden_act",
    "type_vocab_size",
    "layer_norm_eps",
)

PRESETS: dict[str, dict[str, Any]] = {
    # CPU tests: a [4, 32] batch forward + backward in milliseconds.
    "tiny": {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64},
    # A randomly initialised MiniLM-L6-shaped model (no encoder weights).
    "small": {"hidden_size": 384, "num_hidden_layers": 6, "num_attention_heads": 12, "intermediate_size": 1536},
    # The paper: the transformer of the chunk encoder (all-MiniLM-L6-v2), positions re-initialised, 512 positions.
    "minilm": {"init_from_encoder": True, "max_position_embeddings": 512},
}


# --------------------------------------------------------------------------------------------------- the model


class NextLevelEmbeddings(nn.Module):
    """Chunk vectors → transformer inputs: special vectors, optional projection, positions, type 0, LayerNorm."""

    def __init__(self, config: NextLevelConfig) -> None:
        super().__init__()
        E, d = config.input_dim, config.hidden_size
        self.special_embeddings = nn.Embedding(len(SPECIAL), E, padding_idx=SPECIAL["pad"])
        self.input_projection = nn.Linear(E, d) if E != d else None
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, d)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, d)
        self.LayerNorm = nn.LayerNorm(d, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, chunk_embeddings: torch.Tensor, special_ids: torch.Tensor) -> torch.Tensor:
        T = special_ids.shape[1]
        if T > self.position_embeddings.num_embeddings:
            raise ConfigError(
                f"sequence of {T} chunk positions but max_position_embeddings is "
                f"{self.position_embeddings.num_embeddings}"
            )
        special = self.special_embeddings(special_ids.clamp_min(0))  # (B, T, E)
        x = torch.where((special_ids >= 0).unsqueeze(-1), special, chunk_embeddings.to(special.dtype))
        if self.input_projection is not None:
            x = self.input_projection(x)  # (B, T, d)
        x = x + self.position_embeddings(torch.arange(T, device=x.device)) + self.token_type_embeddings.weight[0]
        return self.dropout(self.LayerNorm(x))


class NextLevelPredictionHead(nn.Module):
    """Linear → GELU → Linear back to the chunk-embedding space (the original's SimpleClsHead)."""

    def __init__(self, config: NextLevelConfig) -> None:
        super().__init__()
        width = config.head_hidden_size or config.hidden_size
        self.dense = nn.Linear(config.hidden_size, width)
        self.decoder = nn.Linear(width, config.input_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(F.gelu(self.dense(x)))


def chunk_loss(
    predictions: torch.Tensor,
    targets: torch.Tensor,
    rows: torch.Tensor,
    batch_size: int,
    loss: str = "smoothl1",
    beta: float = 1.0,
) -> torch.Tensor:
    """The NextLevel loss: per chosen chunk (averaged over dimensions), then per sequence (``rows[m]`` is the
    sequence of chunk m), then over the sequences that have at least one chosen chunk. Computed in fp32."""
    p, t = predictions.float(), targets.float()
    if loss == "smoothl1":
        per = F.smooth_l1_loss(p, t, beta=beta, reduction="none").mean(-1)
    elif loss == "l1":
        per = (p - t).abs().mean(-1)
    elif loss == "mse":
        per = (p - t).square().mean(-1)
    elif loss == "cosine":
        per = 1.0 - F.cosine_similarity(p, t, dim=-1)
    else:
        raise ConfigError(f"unknown loss {loss!r} (one of {', '.join(LOSSES)})")
    sums = torch.zeros(batch_size, device=per.device, dtype=per.dtype).index_add(0, rows, per)
    counts = torch.zeros(batch_size, device=per.device, dtype=per.dtype).index_add(0, rows, torch.ones_like(per))
    per_sequence = sums / counts.clamp_min(1.0)
    return per_sequence.sum() / (counts > 0).sum().clamp_min(1)


def _in_batch_hits(predictions: torch.Tensor, targets: torch.Tensor, block: int = 4096) -> torch.Tensor:
    """Chosen chunks whose prediction is nearest (cosine) to its own target among all chosen targets."""
    p = F.normalize(predictions.float(), dim=-1)
    t = F.normalize(targets.float(), dim=-1)
    hits = torch.zeros((), dtype=torch.int64, device=p.device)
    for lo in range(0, p.shape[0], block):
        best = (p[lo : lo + block] @ t.T).argmax(dim=-1)
        hits += (best == torch.arange(lo, lo + best.shape[0], device=p.device)).sum()
    return hits


class NextLevelForPreTraining(nn.Module):
    """The NextLevel encoder with its masked-chunk prediction head; see the module docstring."""

    def __init__(self, config: NextLevelConfig) -> None:
        super().__init__()
        self.config = config
        self.embeddings = NextLevelEmbeddings(config)
        self.encoder = BertEncoder(config.bert_config())
        self.head = NextLevelPredictionHead(config)
        for module in self.modules():
            _init_module(module, config.initializer_range)
        if config.fresh_init == "original":
            e, h = self.embeddings, self.head
            for module in (e.special_embeddings, e.position_embeddings, h.dense, h.decoder):
                module.reset_parameters()  # PyTorch's default init (the pad row of the special table stays zero)

    # -------------------------------------------------------------------------------------------- building

    @classmethod
    def for_data(
        cls,
        data: Any,
        preset: str,
        overrides: dict[str, Any],
        *,
        init_from: str | None = None,
    ) -> NextLevelForPreTraining:
        """The model the trainer builds for an embedding store (``data.store``): ``embedding_dim``, ``encoder``,
        ``encoder_checksum`` and ``chunk_size`` come from the store; with ``init_from`` (an encoder directory or
        name) or a preset that sets ``init_from_encoder``, the transformer is the encoder's own (its shape too)."""
        from bertkit.models import get_architecture

        store = data.store
        arch = get_architecture("nextlevel")
        given_dim = overrides.get("embedding_dim")
        if given_dim not in (None, 0) and given_dim != store.dim:
            raise ConfigError(
                f"embedding store {store.path} has dimension {store.dim} but the model's embedding_dim is {given_dim}"
            )
        from bertkit.encode.encoder import KNOWN_ENCODERS

        name = str(store.encoder.get("name", ""))
        portable = name.lower().removeprefix("sentence-transformers/") in KNOWN_ENCODERS  # else the absolute path
        recorded = {
            "embedding_dim": store.dim,
            "encoder": name if portable else str(store.encoder.get("path", name)),
            "encoder_checksum": str(store.encoder.get("checksum", "")),
            "chunk_size": int(store.chunk_size),
        }
        config = arch.make_config(preset, **{**overrides, **recorded})
        source = init_from or (store.encoder.get("path") if config.init_from_encoder else None)
        if source is None:
            return cls(config)
        return cls.from_encoder(source, config, explicit=overrides)

    @classmethod
    def from_encoder(
        cls, source: str, config: NextLevelConfig, explicit: dict[str, Any] | None = None
    ) -> NextLevelForPreTraining:
        """A model whose transformer (layers, token-type table, embedding LayerNorm) is copied from the BERT of the
        encoder ``source``; its shape fields are the encoder's (an explicit different one is a ConfigError).
        Positions, special vectors and the head are freshly initialised, as in the paper."""
        from bertkit.encode.encoder import _layout, resolve_encoder
        from bertkit.export.hf import load_hf_bert

        try:
            root = resolve_encoder(source)
        except ConfigError as e:
            raise ConfigError(f"cannot initialise from the encoder: {e} (pass init_from / --init-from)") from None
        bert_config, state = load_hf_bert(_layout(root).transformer_dir)
        shape = {k: getattr(bert_config, k) for k in ENCODER_SHAPE}
        clash = {k: v for k, v in (explicit or {}).items() if k in shape and v != shape[k]}
        if clash:
            raise ConfigError(f"{root}: init from the encoder fixes {clash} to { ({k: shape[k] for k in clash}) }")
        config = NextLevelConfig.from_dict({**config.to_dict(), **shape, "init_from_encoder": True})
        model = cls(config)
        model.copy_encoder_weights(state, source=str(root))
        return model

    @torch.no_grad()
    def copy_encoder_weights(self, state: dict[str, torch.Tensor], source: str = "encoder") -> list[str]:
        """Copy ``bert.encoder.*``, ``bert.embeddings.token_type_embeddings`` and ``bert.embeddings.LayerNorm`` of an
        HF BERT state dict (bertkit keys, ``bert.`` prefix) into this model; returns the copied keys."""
        own = self.state_dict()
        wanted = {k: k for k in own if k.startswith("encoder.")}
        wanted.update(
            {k: k for k in own if k.startswith(("embeddings.token_type_embeddings.", "embeddings.LayerNorm."))}
        )
        missing = [k for k in wanted if f"bert.{k}" not in state]
        if missing:
            raise ConfigError(f"{source}: the encoder lacks {', '.join(missing[:5])}")
        for k in wanted:
            value = state[f"bert.{k}"]
            if tuple(value.shape) != tuple(own[k].shape):
                raise ConfigError(
                    f"{source}: {k} has shape {tuple(value.shape)}, the model needs {tuple(own[k].shape)}"
                )
            own[k].copy_(value.to(own[k].dtype))
        return sorted(wanted)

    # --------------------------------------------------------------------------------------------- forward

    def encode(
        self,
        chunk_embeddings: torch.Tensor,
        special_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Last hidden states ``(B, T, d)``."""
        mask = None if attention_mask is None else attention_mask.bool()[:, None, None, :]  # (B, 1, 1, T)
        return self.encoder(self.embeddings(chunk_embeddings, special_ids), mask)

    def document_embeddings(
        self,
        chunk_embeddings: torch.Tensor,
        special_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``(B, d)``: the mean of the last hidden states at the chunk positions (``special_ids == -1``)."""
        hidden = self.encode(chunk_embeddings, special_ids, attention_mask).float()
        keep = (special_ids == CHUNK).unsqueeze(-1).to(hidden.dtype)
        return (hidden * keep).sum(dim=1) / keep.sum(dim=1).clamp_min(1.0)

    def forward(
        self,
        chunk_embeddings: torch.Tensor,
        special_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        mlm_positions: torch.Tensor | None = None,
        mlm_targets: torch.Tensor | None = None,
        *,
        return_predictions: bool = False,
        label_smoothing: float = 0.0,
    ) -> PretrainingOutput:
        if mlm_positions is None or mlm_targets is None:
            raise TypeError("NextLevelForPreTraining.forward needs mlm_positions and mlm_targets")
        if label_smoothing:
            raise ConfigError("label_smoothing has no meaning for NextLevelBERT's regression loss (set it to 0)")
        B, T = special_ids.shape
        hidden = self.encode(chunk_embeddings, special_ids, attention_mask)
        rows = hidden.reshape(B * T, -1).index_select(0, mlm_positions)  # (M, d): chosen chunks only
        predictions = self.head(rows)  # (M, E)
        c = self.config
        loss = chunk_loss(predictions, mlm_targets, mlm_positions // T, B, c.loss, c.smooth_l1_beta)
        return PretrainingOutput(
            loss=loss,
            mlm_loss=loss,
            mlm_correct=_in_batch_hits(predictions.detach(), mlm_targets),
            mlm_count=torch.tensor(mlm_positions.numel(), device=loss.device),
            mlm_predictions=predictions if return_predictions else None,
        )

    def flops_per_token(self, seq_len: int, head_fraction: float = 0.15) -> float:
        """Training FLOPs per chunk position (as BERT's convention: 6·N_enc + 12·S·d·L + head rows)."""
        c = self.config
        d, L, E = c.hidden_size, c.num_hidden_layers, c.input_dim
        n_enc = L * (4 * d * d + 2 * d * c.intermediate_size) + (E * d if E != d else 0)
        width = c.head_hidden_size or d
        return 6.0 * n_enc + 12.0 * seq_len * d * L + 6.0 * (d * width + width * E) * head_fraction


# ------------------------------------------------------------------------------------------------- masking


def mask_chunks(
    chunk_embeddings: torch.Tensor,
    special_ids: torch.Tensor,
    *,
    rate: float = 0.15,
    mask_p: float = 0.8,
    random_p: float = 0.1,
    random_pool: str = "other-chunks",
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """NextLevel masking: each chunk position (``special_ids == -1``) is chosen with probability ``rate`` (at least
    one per batch); of the chosen, ``mask_p`` get the [MASK] vector, ``random_p`` a random vector of the batch, the
    rest keep theirs. ``random_pool``: ``"other-chunks"`` draws it uniformly from the other chunk positions of the
    batch (never itself, never a special position); ``"batch"`` is the original's (aiintelligentsystems/
    next-level-bert ``src/model.py``, ``insert_special_vectors``: ``sentences[randperm(B * T)]``): the input vector
    at a random permutation of every position of the batch, so [CLS]/[SEP]/padding positions (zero vectors) and the
    position itself can be drawn.

    Returns ``(inputs, special_ids, positions, targets)``: the input vectors with random replacements applied,
    special ids with [MASK] (3) at masked positions, flat positions ``b * T + t`` of the chosen chunks and their
    original vectors ``[M, E]``. Every draw comes from ``generator``: same seed, same masks."""
    B, T, E = chunk_embeddings.shape
    device = chunk_embeddings.device
    flat_emb = chunk_embeddings.reshape(B * T, E)
    candidate = (special_ids == CHUNK).reshape(-1)  # (B*T,)

    def uniform() -> torch.Tensor:
        return torch.rand(B * T, generator=generator, device=device)

    chosen = (uniform() < rate) & candidate
    # at least one chosen chunk per batch (a batch without any would have no loss): the candidate with the top draw
    fallback = torch.where(candidate, uniform(), -1.0).argmax().view(1)
    chosen = chosen | (torch.zeros_like(chosen).scatter(0, fallback, True) & candidate & ~chosen.any())
    action = uniform()
    to_mask = chosen & (action < mask_p)
    to_random = chosen & (action >= mask_p) & (action < mask_p + random_p)
    if random_pool not in RANDOM_POOLS:
        raise ConfigError(f"random_pool = {random_pool!r} is not one of {', '.join(RANDOM_POOLS)}")
    inputs = flat_emb
    if random_pool == "batch":
        source = torch.randperm(B * T, generator=generator, device=device)
        inputs = torch.where(to_random.unsqueeze(-1), flat_emb.index_select(0, source), flat_emb)
    pool = candidate.nonzero().squeeze(1)  # (C,) flat positions of chunk vectors
    draws = torch.randint(0, max(pool.numel() - 1, 1), (B * T,), generator=generator, device=device)
    if random_pool == "other-chunks" and pool.numel() > 1:
        own_rank = candidate.long().cumsum(0) - 1  # rank of each position among the candidates
        draws = draws + (draws >= own_rank).long()  # skip itself: uniform over the other C - 1
        replacement = flat_emb.index_select(0, pool[draws])
        inputs = torch.where(to_random.unsqueeze(-1), replacement, flat_emb)
    positions = chosen.nonzero().squeeze(1)
    targets = flat_emb.index_select(0, positions)
    new_special = torch.where(to_mask.reshape(B, T), SPECIAL["mask"], special_ids)
    return inputs.reshape(B, T, E), new_special, positions, targets


class ChunkBatcher:
    """The trainer's batcher for embedding data: numpy blocks → device tensors, chunk masking on the device."""

    kind = "embeddings"

    def __init__(self, config: Any, data: Any, device: torch.device) -> None:
        if config.masking != "token":
            raise ConfigError(f"masking = {config.masking!r}: NextLevelBERT masks single chunks (masking = 'token')")
        if config.label_smoothing:
            raise ConfigError("label_smoothing has no meaning for NextLevelBERT's regression loss (set it to 0)")
        if config.max_predictions_per_seq is not None:
            raise ConfigError(
                "max_predictions_per_seq caps masked tokens; NextLevelBERT chooses each chunk with p = mask_rate "
                "(leave it unset)"
            )
        self.config = config
        self.device = device
        self.pin = device.type == "cuda"

    def _tensor(self, array: Any) -> torch.Tensor:
        import numpy as np

        t = torch.from_numpy(np.ascontiguousarray(array))
        if self.pin:
            t = t.pin_memory()
        return t.to(self.device, non_blocking=True)

    def units(self, batch: dict[str, Any]) -> int:
        """Chunk positions in the batch (what tokens are for token models)."""
        return int(batch["special_ids"].size)

    def __call__(self, batch: dict[str, Any], seed: int) -> dict[str, torch.Tensor | None]:
        c = self.config
        emb = self._tensor(batch["chunk_embeddings"]).float()
        special = self._tensor(batch["special_ids"]).long()
        attention_mask = self._tensor(batch["attention_mask"]) if "attention_mask" in batch else None
        generator = torch.Generator(device=self.device)
        generator.manual_seed(seed)
        real = (special == CHUNK).sum()
        inputs, special, positions, targets = mask_chunks(
            emb,
            special,
            rate=c.mask_rate,
            mask_p=c.mask_p,
            random_p=c.random_p,
            random_pool=c.chunk_random_pool,
            generator=generator,
        )
        # (masked chunks, chunk positions) of this batch: the step's mask_fraction
        self.last_mask_counts = (torch.tensor(positions.numel(), device=self.device), real)
        return {
            "chunk_embeddings": inputs,
            "special_ids": special,
            "attention_mask": attention_mask,
            "mlm_positions": positions,
            "mlm_targets": targets,
        }
