"""On-device MLM masking (bertkit.data.masking): fixed budget, eligibility, 80/10/10, whole words, spans."""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from bertkit.data.masking import _random_ids, fixed_capacity, mask_tokens, random_span_ids, word_ids  # noqa: E402
from bertkit.exceptions import ConfigError  # noqa: E402

PAD, UNK, CLS, SEP, MASK = 0, 100, 101, 102, 103
V = 30522
SPECIALS = torch.tensor([PAD, UNK, CLS, SEP, MASK])


def make_batch(B: int, T: int, seed: int = 0, pad_rows: bool = True, device: str = "cpu"):
    """Rows `[CLS] tokens [SEP] [PAD]...` (some rows padded), a ~70 % word-start pattern, the special mask."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1000, V, (B, T), generator=g)
    lengths = torch.randint(T // 2, T + 1, (B,), generator=g) if pad_rows else torch.full((B,), T)
    j = torch.arange(T)[None, :]
    ids[:, 0] = CLS
    ids = torch.where(j == lengths[:, None] - 1, torch.tensor(SEP), ids)
    ids = torch.where(j >= lengths[:, None], torch.tensor(PAD), ids)
    special = torch.isin(ids, SPECIALS)
    word_start = (torch.rand((B, T), generator=g) < 0.7) | special
    return ids.to(device), special.to(device), word_start.to(device)


def categories(orig: torch.Tensor, masked: torch.Tensor) -> torch.Tensor:
    """0 = [MASK], 1 = random replacement, 2 = kept."""
    return torch.where(masked == MASK, 0, torch.where(masked != orig, 1, 2))


@pytest.mark.parametrize("strategy", ["token", "wwm", "span"])
def test_budget_eligibility_labels(strategy):
    ids, special, ws = make_batch(16, 64)
    g = torch.Generator().manual_seed(1)
    masked, pos, labels = mask_tokens(
        ids, special, vocab_size=V, mask_id=MASK, strategy=strategy, word_start=ws, generator=g
    )
    M = fixed_capacity(16, 64, 0.15)
    assert M == 16 * math.ceil(0.15 * 64)
    assert pos.shape == (M,) and labels.shape == (M,) and masked.shape == ids.shape
    assert pos.dtype == torch.int64 and labels.dtype == torch.int64
    assert torch.unique(pos).numel() == M and bool((pos[1:] > pos[:-1]).all())
    assert int(pos.min()) >= 0 and int(pos.max()) < ids.numel()
    # Each row masks floor or ceil of 15 % of its real tokens; the rest of the capacity is -100 padding.
    real = labels != -100
    flat_special = special.reshape(-1)
    assert not bool(flat_special[pos[real]].any())
    assert torch.equal(labels[real], ids.reshape(-1)[pos[real]])
    rows = torch.bincount(pos[real] // 64, minlength=16)
    expected = 0.15 * (~special).sum(dim=1)
    assert bool((rows >= torch.floor(expected)).all() and (rows <= torch.ceil(expected)).all()), (rows, expected)
    padding = pos[~real]
    assert torch.equal(masked.reshape(-1)[padding], ids.reshape(-1)[padding])
    # Outside the chosen positions (and on every special/pad) the input is untouched.
    untouched = torch.ones(ids.numel(), dtype=torch.bool)
    untouched[pos] = False
    assert torch.equal(masked.reshape(-1)[untouched], ids.reshape(-1)[untouched])
    assert torch.equal(masked[special], ids[special])

    _, pos2, _ = mask_tokens(ids, special, vocab_size=V, mask_id=MASK, num_masked=77, strategy=strategy, word_start=ws)
    assert pos2.shape == (77,)


def test_proportions_80_10_10():
    ids, special, _ = make_batch(512, 128, seed=2)
    g = torch.Generator().manual_seed(3)
    masked, pos, labels = mask_tokens(
        ids, special, vocab_size=V, mask_id=MASK, generator=g, random_ids_exclude_special=SPECIALS
    )
    cat = categories(ids.reshape(-1)[pos], masked.reshape(-1)[pos])
    frac = torch.bincount(cat, minlength=3).double() / cat.numel()
    assert pos.numel() == fixed_capacity(512, 128, 0.15)
    real = labels != -100
    cat = cat[real]
    frac = torch.bincount(cat, minlength=3).double() / cat.numel()
    assert abs(frac[0] - 0.8) < 0.015 and abs(frac[1] - 0.1) < 0.01 and abs(frac[2] - 0.1) < 0.01, frac
    randoms = masked.reshape(-1)[pos][real][cat == 1]
    assert not bool(torch.isin(randoms, SPECIALS).any())
    # The custom split: 50 % mask, 50 % random, nothing kept.
    masked, pos, labels = mask_tokens(ids, special, vocab_size=V, mask_id=MASK, mask_p=0.5, random_p=0.5, generator=g)
    pos = pos[labels != -100]
    cat = categories(ids.reshape(-1)[pos], masked.reshape(-1)[pos])
    frac = torch.bincount(cat, minlength=3).double() / cat.numel()
    assert abs(frac[0] - 0.5) < 0.02 and frac[2] < 0.001, frac


def test_random_ids_skip_excluded_uniformly():
    g = torch.Generator().manual_seed(4)
    exclude = torch.tensor([9, 0, 3, 3, 12, -1])  # unsorted, a duplicate and ids outside [0, 10)
    ids = _random_ids(torch.Size([70000]), 0, 10, exclude, g, torch.device("cpu"))
    counts = torch.bincount(ids, minlength=10)
    assert counts.numel() == 10
    allowed = [1, 2, 4, 5, 6, 7, 8]
    assert int(counts[[0, 3, 9]].sum()) == 0
    assert all(abs(int(counts[a]) - 10000) < 450 for a in allowed), counts
    low = _random_ids(torch.Size([5000]), 5, 10, None, g, torch.device("cpu"))
    assert int(low.min()) == 5 and int(low.max()) == 9


def test_wwm_takes_whole_words():
    ids, special, ws = make_batch(32, 64, seed=5)
    g = torch.Generator().manual_seed(6)
    masked, pos, labels = mask_tokens(
        ids, special, vocab_size=V, mask_id=MASK, strategy="wwm", word_start=ws, generator=g
    )
    B, T = ids.shape
    chosen = torch.zeros(B * T, dtype=torch.bool)
    chosen[pos[labels != -100]] = True
    chosen = chosen.reshape(B, T)
    wid = word_ids(ws)
    eligible = ~special
    partial = 0
    for b in range(B):
        for w in torch.unique(wid[b][chosen[b]]).tolist():
            members = (wid[b] == w) & eligible[b]
            if not bool(chosen[b][members].all()):
                partial += 1
    assert partial <= B  # only the word at a row's cut may be incomplete
    # Corrected WWM: one 80/10/10 decision per word.
    cat = categories(ids, masked)
    mixed = 0
    for b in range(B):
        for w in torch.unique(wid[b][chosen[b]]).tolist():
            members = (wid[b] == w) & chosen[b]
            mixed += int(torch.unique(cat[b][members]).numel() > 1)
    assert mixed == 0
    # Google's faithful quirk: per-token decisions inside whole words give mixed words.
    masked_q, pos_q, _ = mask_tokens(
        ids,
        special,
        vocab_size=V,
        mask_id=MASK,
        strategy="wwm",
        word_start=ws,
        per_span_replacement=False,
        generator=torch.Generator().manual_seed(6),
    )
    assert torch.equal(pos_q, pos)
    cat_q = categories(ids, masked_q)
    mixed_q = sum(
        int(torch.unique(cat_q[b][(wid[b] == w) & chosen[b]]).numel() > 1)
        for b in range(B)
        for w in torch.unique(wid[b][chosen[b]]).tolist()
    )
    assert mixed_q > 0


def test_span_lengths_distribution():
    g = torch.Generator().manual_seed(7)
    span = random_span_ids((400, 128), span_mean=3.0, max_span=10, generator=g)
    lengths = []
    for row in span:
        counts = torch.bincount(row)
        counts = counts[counts > 0]
        lengths.extend(counts[:-1].tolist())  # the last span of a row is cut by the row's end
    lengths = np.array(lengths)
    p = 1 / 3
    expected = (1 - (1 - p) ** 10) / p  # mean of min(Geometric(1/3), 10) = 2.948
    assert lengths.min() >= 1 and lengths.max() <= 10
    assert abs(lengths.mean() - expected) < 0.05, lengths.mean()
    assert abs((lengths == 1).mean() - p) < 0.02
    assert abs((lengths == 10).mean() - (1 - p) ** 9) < 0.01
    long = random_span_ids((200, 128), span_mean=6.0, max_span=4, generator=g)
    assert int(torch.bincount(long[0]).max()) <= 4


def test_span_masking_whole_spans_and_per_span_replacement():
    ids, special, _ = make_batch(32, 128, seed=8)
    masked, pos, labels = mask_tokens(
        ids,
        special,
        vocab_size=V,
        mask_id=MASK,
        strategy="span",
        generator=torch.Generator().manual_seed(9),
        random_ids_exclude_special=SPECIALS,
    )
    # The spans are the generator's first draw inside mask_tokens (white box: same seed, same draw).
    span = random_span_ids(tuple(ids.shape), generator=torch.Generator().manual_seed(9))
    B, T = ids.shape
    chosen = torch.zeros(B * T, dtype=torch.bool)
    chosen[pos[labels != -100]] = True
    chosen = chosen.reshape(B, T)
    cat = categories(ids, masked)
    partial = mixed = taken = 0
    for b in range(B):
        for s in torch.unique(span[b][chosen[b]]).tolist():
            members = (span[b] == s) & ~special[b]
            taken += 1
            partial += int(not bool(chosen[b][members].all()))
            mixed += int(torch.unique(cat[b][(span[b] == s) & chosen[b]]).numel() > 1)
    assert taken > 100 and partial <= B and mixed == 0
    real = labels != -100
    assert torch.equal(labels[real], ids.reshape(-1)[pos[real]])
    assert not bool(special.reshape(-1)[pos[real]].any())
    # Per-token decisions when asked: spans then mix [MASK] with kept/random tokens.
    masked_t, _, _ = mask_tokens(
        ids,
        special,
        vocab_size=V,
        mask_id=MASK,
        strategy="span",
        per_span_replacement=False,
        generator=torch.Generator().manual_seed(9),
    )
    cat_t = categories(ids, masked_t)
    mixed_t = sum(
        int(torch.unique(cat_t[b][(span[b] == s) & chosen[b]]).numel() > 1)
        for b in range(B)
        for s in torch.unique(span[b][chosen[b]]).tolist()
    )
    assert mixed_t > 0


@pytest.mark.parametrize("strategy", ["token", "wwm", "span"])
def test_deterministic_with_generator(strategy):
    ids, special, ws = make_batch(8, 32, seed=10)

    def run(seed):
        return mask_tokens(
            ids,
            special,
            vocab_size=V,
            mask_id=MASK,
            strategy=strategy,
            word_start=ws,
            generator=torch.Generator().manual_seed(seed),
        )

    a, b, c = run(11), run(11), run(12)
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    assert not torch.equal(a[1], c[1])


def test_fewer_eligible_than_budget():
    ids = torch.tensor([[CLS, 2000, 2001, SEP, PAD, PAD], [CLS, 2002, SEP, PAD, PAD, PAD]])
    special = torch.isin(ids, SPECIALS)
    for strategy in ("token", "wwm", "span"):
        masked, pos, labels = mask_tokens(
            ids,
            special,
            vocab_size=V,
            mask_id=MASK,
            num_masked=7,
            strategy=strategy,
            word_start=torch.ones_like(special),
            generator=torch.Generator().manual_seed(0),
        )
        assert pos.shape == (7,) and torch.unique(pos).numel() == 7
        real = labels != -100
        assert int(real.sum()) == 3
        assert sorted(pos[real].tolist()) == [1, 2, 7]
        assert sorted(labels[real].tolist()) == [2000, 2001, 2002]
        fake = pos[~real]
        assert torch.equal(masked.reshape(-1)[fake], ids.reshape(-1)[fake])
    # No eligible position at all, and a zero budget.
    _, pos, labels = mask_tokens(ids, torch.ones_like(special), vocab_size=V, mask_id=MASK, num_masked=3)
    assert pos.shape == (3,) and bool((labels == -100).all())
    masked, pos, labels = mask_tokens(ids, special, vocab_size=V, mask_id=MASK, num_masked=0)
    assert pos.shape == (0,) and torch.equal(masked, ids)


def test_config_errors():
    ids, special, ws = make_batch(2, 16)
    kw = {"vocab_size": V, "mask_id": MASK}
    with pytest.raises(ConfigError, match="strategy"):
        mask_tokens(ids, special, strategy="bogus", **kw)
    with pytest.raises(ConfigError, match="word_start"):
        mask_tokens(ids, special, strategy="wwm", **kw)
    with pytest.raises(ConfigError, match="num_masked"):
        mask_tokens(ids, special, num_masked=33, **kw)
    with pytest.raises(ConfigError, match="mask_p"):
        mask_tokens(ids, special, mask_p=0.9, random_p=0.2, **kw)
    with pytest.raises(ConfigError, match="rate"):
        mask_tokens(ids, special, rate=1.5, **kw)
    with pytest.raises(ConfigError, match="shape"):
        mask_tokens(ids, special[:, :3], **kw)
    with pytest.raises(ConfigError, match="span_mean"):
        mask_tokens(ids, special, strategy="span", span_mean=0.5, **kw)


def test_rate_default_budget_rounds():
    ids, special, _ = make_batch(3, 10)
    _, pos, labels = mask_tokens(ids, special, vocab_size=V, mask_id=MASK, rate=0.25)
    assert pos.numel() == 3 * math.ceil(0.25 * 10) == 9


@pytest.mark.parametrize("T", [128, 512])
@pytest.mark.parametrize("strategy", ["token", "wwm", "span"])
def test_share_of_real_tokens_is_the_rate(T, strategy):
    # Padded rows (half to full length) with [CLS]/[SEP]: the share of the real tokens masked is the rate, not
    # rate · T / real (what a budget over B · T gives: ~20 % here).
    ids, special, ws = make_batch(256, T, seed=T)
    g = torch.Generator().manual_seed(1)
    _, pos, labels = mask_tokens(
        ids, special, vocab_size=V, mask_id=MASK, strategy=strategy, word_start=ws, generator=g
    )
    share = int((labels != -100).sum()) / int((~special).sum())
    assert abs(share - 0.15) < 0.005, share


def test_max_per_row_caps_each_row():
    ids, special, ws = make_batch(64, 128, seed=3, pad_rows=False)
    g = torch.Generator().manual_seed(2)
    _, pos, labels = mask_tokens(ids, special, vocab_size=V, mask_id=MASK, rate=0.3, max_per_row=20, generator=g)
    assert pos.numel() == 64 * 20
    rows = torch.bincount(pos[labels != -100] // 128, minlength=64)
    assert int(rows.max()) == 20 and int(rows.min()) == 20  # 0.3 · 126 = 37.8 > 20: every row at the cap
    for bad in (0, 129, 2.5, True):
        with pytest.raises(ConfigError, match="max_per_row"):
            mask_tokens(ids, special, vocab_size=V, mask_id=MASK, max_per_row=bad)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("strategy", ["token", "wwm", "span"])
def test_cuda_no_host_sync(strategy):
    ids, special, ws = make_batch(64, 128, seed=12, device="cuda")
    excl = SPECIALS.cuda()
    g = torch.Generator(device="cuda").manual_seed(13)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        masked, pos, labels = mask_tokens(
            ids,
            special,
            vocab_size=V,
            mask_id=MASK,
            strategy=strategy,
            word_start=ws,
            generator=g,
            random_ids_exclude_special=excl,
        )
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert masked.device.type == "cuda" and pos.device.type == "cuda"
    assert pos.numel() == fixed_capacity(64, 128, 0.15)
    real = labels != -100
    assert not bool(special.reshape(-1)[pos[real]].any())
    assert torch.equal(labels[real], ids.reshape(-1)[pos[real]])
