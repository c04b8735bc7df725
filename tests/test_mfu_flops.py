"""MFU accounting: each architecture's ``flops_per_token`` (what the trainer multiplies by tokens/s for MFU) against
the FLOPs that ``torch.utils.flop_counter.FlopCounterMode`` counts in a real forward + backward at base shapes.

FlopCounterMode counts matrix products (mm, addmm, bmm, SDPA) at 2 FLOPs per multiply-add, forward and backward,
which is the convention ``flops_per_token`` follows (6·N per token for a weight matrix of N entries, 12·S·d per
layer for attention). Elementwise work (softmax, GELU, LayerNorm, ELC-BERT's layer mixing) is not counted by either.
Costs that do not grow with the batch (LTG-BERT's projection of the relative-position embeddings, once per batch)
matter per token only at tiny batches: the count is taken at batches of 1 and 2 sequences and extrapolated linearly
to the base batch of 256 (every cost is linear in the number of sequences), the batch the MFU figure is measured at.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from bertkit.models import build_model  # noqa: E402

SEQ_LEN = 128
MASKED_PER_SEQUENCE = 19  # round(0.15 · 128) = 19: M = 19 · B, so every cost stays exactly linear in B
BASE_BATCH = 256
VOCAB = 30_522

CASES = [
    ("bert", "base", {}),
    ("narrowbert", "base", {}),
    ("narrowbert", "base", {"variant": "context-first"}),
    ("ltg-bert", "base", {}),
    ("elc-bert", "base", {}),
    ("nextlevel", "small", {}),  # the paper's shape (MiniLM-L6: d 384, 6 layers) without loading the encoder
]
IDS = ["bert", "narrowbert", "narrowbert-context-first", "ltg-bert", "elc-bert", "nextlevel"]


def _batch(arch: str, model, batch: int) -> dict:
    g = torch.Generator().manual_seed(batch)
    rows = MASKED_PER_SEQUENCE * batch
    positions = (
        torch.cat([torch.randperm(SEQ_LEN, generator=g)[:MASKED_PER_SEQUENCE] + b * SEQ_LEN for b in range(batch)])
        .sort()
        .values
    )
    if arch == "nextlevel":
        dim = model.config.input_dim
        special = torch.full((batch, SEQ_LEN), -1)
        special[:, 0] = 1  # [CLS]
        return {
            "chunk_embeddings": torch.randn(batch, SEQ_LEN, dim, generator=g),
            "special_ids": special,
            "mlm_positions": positions,
            "mlm_targets": torch.randn(rows, dim, generator=g),
        }
    return {
        "input_ids": torch.randint(5, VOCAB, (batch, SEQ_LEN), generator=g),
        "token_type_ids": torch.zeros(batch, SEQ_LEN, dtype=torch.long),
        "mlm_positions": positions,
        "mlm_labels": torch.randint(5, VOCAB, (rows,), generator=g),
    }


def _counted(arch: str, model, batch: int) -> int:
    inputs = _batch(arch, model, batch)
    model.zero_grad(set_to_none=True)
    with FlopCounterMode(display=False) as counter:
        model(**inputs).loss.backward()
    return counter.get_total_flops()


@pytest.mark.slow
@pytest.mark.parametrize(("arch", "preset", "overrides"), CASES, ids=IDS)
def test_flops_per_token_matches_flop_counter_at_base_shapes(arch, preset, overrides):
    torch.manual_seed(0)
    extra = {} if arch == "nextlevel" else {"vocab_size": VOCAB}
    model = build_model(arch, preset, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, **extra, **overrides)
    one, two = _counted(arch, model, 1), _counted(arch, model, 2)
    per_sequence, fixed = two - one, 2 * one - two
    # fixed < 0: a cost growing faster than the batch. NextLevel's in-batch retrieval accuracy is one (an M x M
    # product of the chosen chunks' predictions and targets: a metric, not model FLOPs; -0.006 % here)
    assert per_sequence > 0 and fixed >= -1e-3 * one, (one, two)
    counted = (BASE_BATCH * per_sequence + fixed) / (BASE_BATCH * SEQ_LEN)
    claimed = model.flops_per_token(SEQ_LEN, MASKED_PER_SEQUENCE / SEQ_LEN)
    assert claimed == pytest.approx(counted, rel=0.05), f"{arch}: flops_per_token {claimed:.4g}, counted {counted:.4g}"
