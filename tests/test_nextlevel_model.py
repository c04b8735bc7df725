"""The NextLevel model: chunk masking (80/10/10, in-batch random), the four losses against hand computations,
packing of documents into blocks, initialisation from the encoder's weights, and config errors."""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("bertkit._core")

pytest_plugins = ["nextlevel_fixtures"]  # the nl_world / nl_run fixtures

from bertkit.encode.blocks import ChunkBlocks  # noqa: E402
from bertkit.encode.store import open_store  # noqa: E402
from bertkit.exceptions import ConfigError  # noqa: E402
from bertkit.models import build_config, build_model, get_architecture  # noqa: E402
from bertkit.models.nextlevel import (  # noqa: E402
    SPECIAL,
    NextLevelConfig,
    NextLevelForPreTraining,
    chunk_loss,
    mask_chunks,
)


def _batch(B=64, T=64, E=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    emb = torch.randn(B, T, E, generator=g)
    special = torch.full((B, T), -1, dtype=torch.long)
    special[:, 0] = SPECIAL["cls"]
    special[:, T // 2] = SPECIAL["sep"]
    emb[special >= 0] = 0.0
    return emb, special


def test_masking_80_10_10_with_in_batch_random():
    emb, special = _batch()
    g = torch.Generator().manual_seed(1)
    inputs, new_special, positions, targets = mask_chunks(emb, special, generator=g)
    B, T, E = emb.shape
    candidates = int((special == -1).sum())
    assert abs(len(positions) / candidates - 0.15) < 0.02
    flat_special = special.reshape(-1)
    assert bool((flat_special[positions] == -1).all())  # never [CLS] / [SEP]
    torch.testing.assert_close(targets, emb.reshape(-1, E)[positions])
    masked = new_special.reshape(-1)[positions] == SPECIAL["mask"]
    changed = ~masked & (inputs.reshape(-1, E)[positions] != targets).any(-1)
    kept = ~masked & ~changed
    n = len(positions)
    assert abs(masked.sum().item() / n - 0.8) < 0.04
    assert abs(changed.sum().item() / n - 0.1) < 0.03 and abs(kept.sum().item() / n - 0.1) < 0.03
    # a random replacement is another chunk vector of the batch, never a special position's zeros, never itself
    pool = emb.reshape(-1, E)[flat_special == -1]
    for p in positions[changed].tolist():
        row = inputs.reshape(-1, E)[p]
        match = (pool == row).all(-1).nonzero().squeeze(1)
        assert len(match) == 1 and not torch.equal(row, emb.reshape(-1, E)[p])
    # nothing else changed; special ids elsewhere unchanged
    untouched = torch.ones(B * T, dtype=torch.bool)
    untouched[positions] = False
    torch.testing.assert_close(inputs.reshape(-1, E)[untouched], emb.reshape(-1, E)[untouched])
    assert torch.equal(new_special.reshape(-1)[untouched], flat_special[untouched])
    # keyed: the same seed gives the same masks, another seed others
    again = mask_chunks(emb, special, generator=torch.Generator().manual_seed(1))
    other = mask_chunks(emb, special, generator=torch.Generator().manual_seed(2))
    assert torch.equal(again[2], positions) and not torch.equal(other[2], positions)


def test_masking_chooses_at_least_one_chunk():
    emb, special = _batch(B=1, T=6, E=4)
    for seed in range(20):
        _, _, positions, _ = mask_chunks(emb, special, rate=1e-9, generator=torch.Generator().manual_seed(seed))
        assert len(positions) == 1 and int(special.reshape(-1)[positions[0]]) == -1


def test_random_replacement_with_two_chunks_swaps_them():
    emb = torch.tensor([[[0.0, 0.0], [1.0, 2.0], [3.0, 4.0]]])
    special = torch.tensor([[1, -1, -1]])
    inputs, _, positions, _ = mask_chunks(emb, special, rate=1.0, mask_p=0.0, random_p=1.0)
    assert positions.tolist() == [1, 2]
    assert inputs[0, 1].tolist() == [3.0, 4.0] and inputs[0, 2].tolist() == [1.0, 2.0]


def test_original_random_pool_draws_any_position_of_the_batch():
    # next-level-bert's insert_special_vectors: sentences[randperm(B*T)], so [CLS]/[SEP] zero vectors and the
    # position itself can replace a chosen chunk; "other-chunks" never gives either.
    emb, special = _batch(B=8, T=8, E=4, seed=3)
    flat = emb.reshape(-1, 4)
    for pool, original in (("batch", True), ("other-chunks", False)):
        zero = same = n = 0
        for seed in range(20):
            inputs, _, positions, _ = mask_chunks(
                emb, special, rate=1.0, mask_p=0.0, random_p=1.0, random_pool=pool,
                generator=torch.Generator().manual_seed(seed),
            )  # fmt: skip
            rows = inputs.reshape(-1, 4)[positions]
            zero += int((rows == 0).all(-1).sum())
            same += int((rows == flat[positions]).all(-1).sum())
            n += len(positions)
        if original:  # every position of the batch is a source with the same probability (16 of 64 are zeros)
            assert same > 0 and abs(zero / n - 0.25) < 0.06, (zero, same, n)
        else:
            assert zero == 0 and same == 0
    with pytest.raises(ConfigError, match="random_pool"):
        mask_chunks(emb, special, random_pool="vocab")
    from bertkit.train.config import TrainConfig

    with pytest.raises(ConfigError, match="chunk_random_pool = 'vocab' is not one of other-chunks, batch"):
        TrainConfig(arch="nextlevel", chunk_random_pool="vocab")


@pytest.mark.parametrize("loss", ["smoothl1", "l1", "mse", "cosine"])
def test_losses_against_hand_computation(loss):
    pred = torch.tensor([[0.5, -2.0], [1.0, 1.0], [0.0, 3.0]])
    target = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    rows = torch.tensor([0, 0, 1])  # sequence 0 has two chosen chunks, sequence 1 one, sequence 2 none

    def per_chunk(p, t):
        if loss == "smoothl1":
            return sum((0.5 * d * d if abs(d) < 1 else abs(d) - 0.5) for d in (p - t).tolist()) / len(p)
        if loss == "l1":
            return sum(abs(d) for d in (p - t).tolist()) / len(p)
        if loss == "mse":
            return sum(d * d for d in (p - t).tolist()) / len(p)
        dot = float((p * t).sum())
        return 1.0 - dot / max(math.hypot(*p.tolist()) * math.hypot(*t.tolist()), 1e-8)

    c = [per_chunk(pred[i], target[i]) for i in range(3)]
    want = ((c[0] + c[1]) / 2 + c[2]) / 2  # mean within a sequence, then over sequences with chosen chunks
    got = chunk_loss(pred, target, rows, batch_size=3, loss=loss)
    assert got.item() == pytest.approx(want, rel=1e-6)


def test_smooth_l1_beta_and_unknown_loss():
    pred, target, rows = torch.tensor([[3.0]]), torch.tensor([[0.0]]), torch.tensor([0])
    assert chunk_loss(pred, target, rows, 1, "smoothl1", beta=4.0).item() == pytest.approx(0.5 * 9 / 4)
    with pytest.raises(ConfigError, match="unknown loss"):
        chunk_loss(pred, target, rows, 1, "hinge")
    with pytest.raises(ConfigError, match="loss 'hinge'"):
        NextLevelConfig(loss="hinge")


def test_forward_backward_and_in_batch_accuracy():
    model = build_model("nextlevel", "tiny", embedding_dim=8, max_position_embeddings=64)
    emb, special = _batch(B=4, T=32, E=8)
    inputs, special2, positions, targets = mask_chunks(emb, special, generator=torch.Generator().manual_seed(0))
    out = model(inputs, special2, None, positions, targets)
    assert out.loss.ndim == 0 and math.isfinite(out.loss.item()) and out.mlm_count.item() == len(positions)
    out.loss.backward()
    grad = model.embeddings.special_embeddings.weight.grad
    assert grad[SPECIAL["pad"]].abs().sum() == 0  # the pad row is never used in packed training
    assert grad[SPECIAL["cls"]].abs().sum() > 0 and grad[SPECIAL["mask"]].abs().sum() > 0
    # predictions equal to their targets → every chosen chunk retrieves its own target
    from bertkit.models.nextlevel import _in_batch_hits

    t = torch.randn(7, 8)
    assert _in_batch_hits(t.clone(), t).item() == 7
    assert _in_batch_hits(t.roll(1, 0), t).item() == 0
    with pytest.raises(ConfigError, match="label_smoothing"):
        model(inputs, special2, None, positions, targets, label_smoothing=0.1)


def test_document_embeddings_ignore_specials_and_padding():
    model = build_model("nextlevel", "tiny", embedding_dim=8, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    model.eval()
    chunks = torch.randn(3, 8)
    special = torch.tensor([[1, -1, -1, -1, 2, 0, 0]])
    emb = torch.zeros(1, 7, 8)
    emb[0, 1:4] = chunks
    mask = special != SPECIAL["pad"]
    padded = model.document_embeddings(emb, special, mask)
    exact = model.document_embeddings(emb[:, :5], special[:, :5])
    torch.testing.assert_close(padded, exact, atol=1e-5, rtol=1e-5)
    hidden = model.encode(emb[:, :5], special[:, :5])
    torch.testing.assert_close(exact, hidden[:, 1:4].mean(1), atol=1e-6, rtol=1e-6)


def test_init_copies_the_encoder_weights(nl_world):
    from bertkit.export.hf import load_hf_bert

    encoder_dir, _, store, _ = nl_world
    _, state = load_hf_bert(encoder_dir)
    data = ChunkBlocks(store, seq_len=16, batch_size=2)
    model = NextLevelForPreTraining.for_data(data, "minilm", {})
    c = model.config
    assert (c.hidden_size, c.num_hidden_layers, c.embedding_dim, c.init_from_encoder) == (32, 2, 32, True)
    assert c.encoder == str(encoder_dir.resolve()) and c.encoder_checksum == open_store(store).encoder["checksum"]
    assert c.chunk_size == 16 and model.embeddings.input_projection is None
    own = model.state_dict()
    copied = [k for k in own if k.startswith("encoder.")]
    assert copied and all(torch.equal(own[k], state[f"bert.{k}"]) for k in copied)
    for k in ("embeddings.token_type_embeddings.weight", "embeddings.LayerNorm.weight", "embeddings.LayerNorm.bias"):
        assert torch.equal(own[k], state[f"bert.{k}"])
    # positions are re-initialised (the paper), not the encoder's
    assert not torch.equal(
        own["embeddings.position_embeddings.weight"][:64], state["bert.embeddings.position_embeddings.weight"]
    )
    # a shape override that contradicts the encoder is refused
    with pytest.raises(ConfigError, match="fixes"):
        NextLevelForPreTraining.for_data(data, "minilm", {"num_hidden_layers": 4})
    fresh = NextLevelForPreTraining.for_data(data, "tiny", {})
    assert fresh.config.init_from_encoder is False and fresh.config.hidden_size == 32


def test_fresh_parts_initialised_as_bert_or_as_the_original(nl_world):
    # the original builds positions, special vectors and head after loading the encoder and leaves them at
    # PyTorch's defaults (N(0, 1) embeddings, Kaiming-uniform linears); "bert" gives them normal(0, 0.02)
    from bertkit.export.hf import load_hf_bert

    data = ChunkBlocks(nl_world[2], seq_len=16, batch_size=2)
    _, state = load_hf_bert(nl_world[0])
    torch.manual_seed(0)
    bert = NextLevelForPreTraining.for_data(data, "minilm", {})
    original = NextLevelForPreTraining.for_data(data, "minilm", {"fresh_init": "original"})
    for model, std in ((bert, 0.02), (original, 1.0)):
        e = model.embeddings
        for table in (e.position_embeddings.weight, e.special_embeddings.weight[1:]):
            assert abs(table.std().item() - std) < 0.25 * std
        assert torch.count_nonzero(e.special_embeddings.weight[SPECIAL["pad"]]) == 0
        own = model.state_dict()
        assert all(torch.equal(own[k], state[f"bert.{k}"]) for k in own if k.startswith("encoder."))
    bound = 1 / math.sqrt(original.head.dense.in_features)  # Kaiming-uniform(a=sqrt(5)): U(-1/sqrt(fan_in), ...)
    w = original.head.dense.weight
    assert w.abs().max() <= bound and w.abs().max() > 0.9 * bound and original.head.dense.bias.abs().max() > 0
    assert bert.head.dense.bias.abs().max() == 0 and abs(bert.head.dense.weight.std().item() - 0.02) < 0.005
    with pytest.raises(ConfigError, match="fresh_init 'torch' is not one of bert, original"):
        build_config("nextlevel", "tiny", fresh_init="torch")


def test_store_dimension_must_match_the_model(nl_world):
    data = ChunkBlocks(nl_world[2], seq_len=16, batch_size=2)
    with pytest.raises(ConfigError, match="has dimension 32 but the model's embedding_dim is 16"):
        NextLevelForPreTraining.for_data(data, "tiny", {"embedding_dim": 16})
    projected = NextLevelForPreTraining.for_data(data, "tiny", {"hidden_size": 64, "intermediate_size": 128})
    assert projected.embeddings.input_projection is not None and projected.head.decoder.out_features == 32


def test_registry_and_presets():
    arch = get_architecture("nextlevel")
    assert arch.data_kind == "embeddings" and {"tiny", "small", "minilm"} <= set(arch.preset_names())
    paper = build_config("nextlevel", "minilm")
    assert (paper.hidden_size, paper.num_hidden_layers, paper.max_position_embeddings) == (384, 6, 512)
    assert paper.loss == "smoothl1" and paper.init_from_encoder
    with pytest.raises(ConfigError, match="multiple of num_attention_heads"):
        build_config("nextlevel", "tiny", hidden_size=33)
    with pytest.raises(ConfigError, match="chunk_size"):
        build_config("nextlevel", "tiny", chunk_size=2)


# ------------------------------------------------------------------------------------------------ packing


def _stream(store, d0, d1):
    """The packed stream by hand: each document's chunk vectors, then a [SEP] (None)."""
    out = []
    for d in range(d0, d1):
        out.extend(np.asarray(store.document(d), dtype=np.float32))
        out.append(None)
    return out


def test_packing_matches_the_hand_built_stream(nl_world):
    store = open_store(nl_world[2])
    blocks = ChunkBlocks(nl_world[2], seq_len=9, batch_size=3, eval_fraction=0.2, seed=5)
    n_train = int(np.floor(0.8 * len(store)))
    stream = _stream(store, 0, n_train)
    assert blocks.stream_length == len(stream)
    starts = blocks._starts(0)
    L = 8
    assert len(starts) == (len(stream) - starts.min()) // L and sorted(np.diff(np.sort(starts))) == [L] * (
        len(starts) - 1
    )
    batch = blocks.materialise(starts[:3])
    assert batch["chunk_embeddings"].shape == (3, 9, 32) and batch["special_ids"].shape == (3, 9)
    for row, s in enumerate(starts[:3].tolist()):
        assert batch["special_ids"][row, 0] == SPECIAL["cls"]
        for j in range(L):
            item = stream[s + j]
            if item is None:
                assert batch["special_ids"][row, j + 1] == SPECIAL["sep"]
                assert not batch["chunk_embeddings"][row, j + 1].any()
            else:
                assert batch["special_ids"][row, j + 1] == -1
                np.testing.assert_array_equal(batch["chunk_embeddings"][row, j + 1], item)
    # another epoch: another shift and order; eval: the held-out documents from position 0, in order
    assert not np.array_equal(blocks._starts(1), starts)
    ev = ChunkBlocks(nl_world[2], seq_len=9, batch_size=3, eval_fraction=0.2, split="eval")
    assert ev.stream_length == len(_stream(store, n_train, len(store)))
    assert ev._starts(0).tolist() == list(range(0, ev.stream_length - L + 1, L))


def test_blocks_resume_and_ranks(nl_world):
    from bertkit.data.loader import StreamState

    data = ChunkBlocks(nl_world[2], seq_len=9, batch_size=2, seed=1)
    it = data.batches()
    seen = [next(it) for _ in range(data.num_batches(0) + 2)]  # into epoch 1
    assert seen[data.num_batches(0) - 1][1] == StreamState(1, 0)
    for k in (1, data.num_batches(0) + 1):
        resumed, _ = next(data.batches(seen[k - 1][1]))
        np.testing.assert_array_equal(resumed["chunk_embeddings"], seen[k][0]["chunk_embeddings"])
    r0 = ChunkBlocks(nl_world[2], seq_len=9, batch_size=1, seed=1, rank=0, world_size=2)
    r1 = ChunkBlocks(nl_world[2], seq_len=9, batch_size=1, seed=1, rank=1, world_size=2)
    a, b = next(r0.batches())[0], next(r1.batches())[0]
    np.testing.assert_array_equal(np.concatenate([a["special_ids"], b["special_ids"]]), seen[0][0]["special_ids"])


def test_blocks_bad_input(nl_world, tmp_path):
    from bertkit.exceptions import FormatError

    with pytest.raises(ConfigError, match="too few chunks for one global batch"):
        ChunkBlocks(nl_world[2], seq_len=400, batch_size=64)
    with pytest.raises(FormatError, match="no such embedding store"):
        ChunkBlocks(tmp_path / "missing")
    with pytest.raises(FormatError, match="not an embedding store"):
        ChunkBlocks(nl_world[1])
