"""ELC-BERT's span masking as an option of bertkit.data.masking: Binomial counts per row with whole last spans,
the truncated span-length law (= Geometric(1/3) % 10 without empty spans), a static output size."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")

from test_masking import MASK, SPECIALS, V, categories, make_batch  # noqa: E402

from bertkit.data.masking import binomial_capacity, mask_tokens, random_span_ids, span_length_pmf  # noqa: E402
from bertkit.exceptions import ConfigError  # noqa: E402

ELC = dict(strategy="span", count="binomial", span_mean=3.0, max_span=9, span_lengths="truncated")


def test_truncated_law_is_the_originals_geometric_mod_10_without_empty_spans():
    g = torch.Generator().manual_seed(0)
    draws = torch.empty(400_000).geometric_(1 / 3, generator=g).long() % 10  # the original's span_length
    draws = draws[draws > 0]  # an empty span masks nothing: the original just tries again
    empirical = torch.bincount(draws, minlength=10)[1:].double() / draws.numel()
    pmf = torch.tensor(span_length_pmf(3.0, 9, "truncated"), dtype=torch.float64)
    assert torch.allclose(empirical, pmf, atol=3e-3), (empirical, pmf)
    # random_span_ids draws that law (the last span of a row is cut by the row's end: left out)
    span = random_span_ids((300, 128), span_mean=3.0, max_span=9, span_lengths="truncated", generator=g)
    lengths = torch.cat([torch.bincount(row)[torch.bincount(row) > 0][:-1] for row in span])
    assert lengths.min() >= 1 and lengths.max() <= 9
    got = torch.bincount(lengths, minlength=10)[1:].double() / lengths.numel()
    assert torch.allclose(got, pmf, atol=0.01), (got, pmf)
    clipped = span_length_pmf(3.0, 10, "clipped")
    assert sum(clipped) == pytest.approx(1.0) and clipped[-1] == pytest.approx((2 / 3) ** 9)


def test_binomial_counts_per_row_follow_the_eligible_tokens():
    ids, special, _ = make_batch(256, 64, seed=3)  # rows padded to random lengths: eligible counts differ
    B, T = ids.shape
    rate = 0.2
    _, pos, labels = mask_tokens(
        ids,
        special,
        vocab_size=V,
        mask_id=MASK,
        rate=rate,
        count="binomial",
        generator=torch.Generator().manual_seed(4),
    )
    assert pos.numel() == binomial_capacity(B * T, B, rate)  # static: depends on the shape only
    valid = labels != -100
    counts = torch.bincount(pos[valid] // T, minlength=B).double()
    eligible = (~special).sum(1).double()
    z = (counts - rate * eligible) / torch.sqrt(rate * (1 - rate) * eligible)
    assert abs(z.mean().item()) < 4 / math.sqrt(B) and 0.7 < z.var().item() < 1.3  # Binomial(eligible, rate)
    assert not bool(special.reshape(-1)[pos[valid]].any())
    assert torch.equal(labels[valid], ids.reshape(-1)[pos[valid]])


def test_elc_span_masking_takes_whole_spans_until_each_row_reaches_its_target():
    ids, special, _ = make_batch(96, 128, seed=8, pad_rows=False)
    B, T = ids.shape
    masked, pos, labels = mask_tokens(
        ids,
        special,
        vocab_size=V,
        mask_id=MASK,
        generator=torch.Generator().manual_seed(9),
        random_ids_exclude_special=SPECIALS,
        **ELC,
    )
    # the spans are the generator's first draw inside mask_tokens (white box: same seed, same draw)
    span = random_span_ids(
        (B, T), span_mean=3.0, max_span=9, span_lengths="truncated", generator=torch.Generator().manual_seed(9)
    )
    valid = labels != -100
    chosen = torch.zeros(B * T, dtype=torch.bool)
    chosen[pos[valid]] = True
    chosen = chosen.reshape(B, T)
    cat = categories(ids, masked)
    partial = mixed = 0
    for b in range(B):
        for s in torch.unique(span[b][chosen[b]]).tolist():
            members = (span[b] == s) & ~special[b]
            partial += int(not bool(chosen[b][members].all()))
            mixed += int(torch.unique(cat[b][members]).numel() > 1)
    assert partial == 0 and mixed == 0  # whole spans, one 80/10/10 decision per span
    assert torch.equal(masked.reshape(-1)[~chosen.reshape(-1)], ids.reshape(-1)[~chosen.reshape(-1)])
    # per row: Binomial(126, 0.15) = 18.9 in mean, plus the overshoot of the last span taken whole
    counts = chosen.sum(1).double()
    pmf = span_length_pmf(3.0, 9, "truncated")
    e_len = sum(q * (i + 1) for i, q in enumerate(pmf))
    overshoot = sum(q * (i + 1) * i / 2 for i, q in enumerate(pmf)) / e_len
    assert counts.mean().item() == pytest.approx(0.15 * 126 + overshoot, abs=4 * 4.5 / math.sqrt(B))
    assert pos.numel() == binomial_capacity(B * T, B, 0.15, **{k: ELC[k] for k in ELC if k != "count"})
    assert valid.sum() < pos.numel()  # capacity covers the batch with room to spare


def test_a_small_capacity_cuts_the_lowest_scored_picks_and_leaves_them_unmasked():
    ids, special, _ = make_batch(8, 64, seed=1)
    masked, pos, labels = mask_tokens(
        ids, special, vocab_size=V, mask_id=MASK, num_masked=5, generator=torch.Generator().manual_seed(2), **ELC
    )
    assert pos.numel() == 5 and bool((labels != -100).all())
    outside = torch.ones(ids.numel(), dtype=torch.bool)
    outside[pos] = False
    assert torch.equal(masked.reshape(-1)[outside], ids.reshape(-1)[outside])


def test_bad_count_and_span_lengths_are_config_errors():
    ids, special, word_start = make_batch(2, 16)
    kw = dict(vocab_size=V, mask_id=MASK)
    with pytest.raises(ConfigError, match="one of fixed, binomial"):
        mask_tokens(ids, special, count="poisson", **kw)
    with pytest.raises(ConfigError, match="token and span"):
        mask_tokens(ids, special, strategy="wwm", word_start=word_start, count="binomial", **kw)
    with pytest.raises(ConfigError, match="one of clipped, truncated"):
        mask_tokens(ids, special, strategy="span", span_lengths="mod", **kw)
