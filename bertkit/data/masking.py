"""MLM masking on the batch's device: a share of each row's real tokens, no host sync, static shapes.

`mask_tokens` picks the masked positions of a `[B, T]` batch as the top of random scores, where positions that
may not be masked (special tokens, padding) score below every eligible one (Cramming's static-count trick: no
`nonzero`, no `.item()`, so the step can be compiled or captured in a CUDA graph). Positions are grouped before
scoring, and every token of a group shares its group's score and its 80/10/10 decision:

- `"token"`: every token is its own group (BERT / Hugging Face masking).
- `"wwm"`: whole-word masking; a group is a word (`word_start` marks the first piece of each word, the `##`
  pieces continue it). Whole words are taken in score order until the budget M is spent, so **the last word
  taken may be cut** (only some of its pieces masked): the budget is fixed, words are not.
- `"span"`: span masking (ELC-BERT); each row is tiled by random spans whose lengths are
  `min(Geometric(1 / span_mean), max_span)` (`span_lengths="clipped"`; the mean after the cut is slightly below
  `span_mean`: `(1 - (1 - p) ** max_span) / p` with `p = 1 / span_mean`) or Geometric(1 / span_mean) conditioned
  on `<= max_span` (`span_lengths="truncated"`: ELC-BERT's `Geometric(1/3) % 10` with its empty spans skipped is
  exactly this law with span_mean 3, max_span 9), and whole spans are taken in score order (the last one may be cut,
  as for words). Special tokens inside a span are never masked; the rest of the span is.

How many positions (`count`), always counted on the **real** tokens of a row (not special, not padding):

- `"fixed"`: each row masks `min(max_per_row, rate · r)` of its r real tokens, `rate · r` rounded stochastically
  (down, or up with probability equal to its fractional part), so the share of real tokens masked is `rate` in
  expectation whatever the padding and the specials. The groups are taken in score order and the last one is cut
  to the row's count. Google's `create_pretraining_data.py` takes `min(max_predictions_per_seq,
  max(1, round(len · p)))` per sequence with `len` counting [CLS]/[SEP] (bertkit's static instances do that); on
  the device the count of a row is its real tokens' share, so that mlm, nsp and padded rows all mask `rate` of what
  they hold. With `num_masked` instead, exactly that many positions of the whole batch (the top scores over the
  eligible tokens): the old per-batch budget, kept for callers that want a fixed number.
- `"binomial"` (ELC-BERT's `SpanMaskingStrategy`; `"token"` and `"span"` only): each row draws its target
  ~ Binomial(eligible tokens of the row, `rate`) (capped at `max_per_row`) and takes its groups in score order
  while its count is below the target, so the last group is taken whole (the original's loop overshoots the same
  way). The output keeps a fixed size M (`num_masked`, or :func:`binomial_capacity`: the expected count plus four
  standard deviations, overshoot included); entries beyond a batch's count are -100 padding, and in the rare batch
  whose count exceeds M the lowest-scored picks stay unmasked. ELC-BERT's spans sit at random offsets and may
  overlap; here they tile the row (no overlaps), which leaves the count law and the per-span replacement as they
  are.

Shapes stay static (no `nonzero`, no `.item()`): with `count="fixed"` the output has
`M = B · min(max_per_row, ceil(rate · T))` entries (:func:`fixed_capacity`), which bounds every row's count; the
entries beyond the rows' counts point at unmasked positions and carry label -100.

The 80/10/10 decision (`mask_p` → [MASK], `random_p` → a random id, the rest kept) is drawn per group for `"wwm"`
and `"span"` (the corrected whole-word behaviour; ELC-BERT decides per span) unless `per_span_replacement=False`,
which draws it per token (Google's faithful whole-word quirk, google-research/bert#910). Random ids are drawn per
token from `[random_ids_low, vocab_size)`, optionally skipping the ids in `random_ids_exclude_special`.

If fewer than M positions are eligible, the extra entries of `mlm_positions` point at ineligible positions, carry
label -100 and leave their input unchanged (the model contract: padding entries have label -100).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from bertkit.exceptions import ConfigError

__all__ = [
    "COUNTS",
    "SPAN_LENGTHS",
    "STRATEGIES",
    "binomial_capacity",
    "fixed_capacity",
    "mask_tokens",
    "random_span_ids",
    "span_length_pmf",
    "word_ids",
]

STRATEGIES = ("token", "wwm", "span")
COUNTS = ("fixed", "binomial")
SPAN_LENGTHS = ("clipped", "truncated")
IGNORE_INDEX = -100


def word_ids(word_start: Tensor) -> Tensor:
    """`[B, T]` int64 word index within each row: a new word begins wherever `word_start` is True."""
    return torch.cumsum(word_start.to(torch.int64), dim=1)


def span_length_pmf(span_mean: float = 3.0, max_span: int = 10, span_lengths: str = "clipped") -> list[float]:
    """Probabilities of the span lengths 1 … max_span (index 0 = length 1) of :func:`random_span_ids`."""
    p = 1.0 / span_mean
    q = [(1.0 - p) ** (length - 1) * p for length in range(1, max_span + 1)]
    if span_lengths == "truncated":
        total = sum(q)
        return [x / total for x in q]
    q[-1] = (1.0 - p) ** (max_span - 1)  # clipped: every longer span counts as max_span
    return q


def binomial_capacity(
    n: int,
    rows: int,
    rate: float,
    *,
    strategy: str = "token",
    span_mean: float = 3.0,
    max_span: int = 10,
    span_lengths: str = "clipped",
) -> int:
    """Output size M of ``count="binomial"`` for ``rows`` rows of ``n`` tokens in all: the mean count plus four
    standard deviations. A row's count is Binomial(eligible, rate) (at most ``rate * n`` in mean over the batch)
    plus, for spans, the overshoot O of its last span, taken whole: for a span covering the target the span is
    length-biased and O is uniform below its length, so ``E[O] = Σ q(l) l (l-1) / 2 / E[L]`` and
    ``E[O²] = Σ q(l) l (l-1) (2l-1) / 6 / E[L]``."""
    mean, var = rate * n, rate * (1.0 - rate) * n
    if strategy == "span":
        q = span_length_pmf(span_mean, max_span, span_lengths)
        lengths = range(1, max_span + 1)
        e_len = sum(ql * length for ql, length in zip(q, lengths, strict=True))
        e_o = sum(ql * length * (length - 1) / 2 for ql, length in zip(q, lengths, strict=True)) / e_len
        e_o2 = sum(ql * length * (length - 1) * (2 * length - 1) / 6 for ql, length in zip(q, lengths, strict=True))
        mean += rows * e_o
        var += rows * (e_o2 / e_len - e_o * e_o)
    return min(n, math.ceil(mean + 4.0 * math.sqrt(var)))


def fixed_capacity(rows: int, seq_len: int, rate: float, max_per_row: int | None = None) -> int:
    """Output size M of ``count="fixed"``: ``rows · min(max_per_row, ceil(rate · seq_len))`` (a row of r <= T real
    tokens masks at most ``ceil(rate · r)``)."""
    per_row = min(seq_len, math.ceil(rate * seq_len - 1e-9))
    if max_per_row is not None:
        per_row = min(per_row, int(max_per_row))
    return rows * per_row


def random_span_ids(
    shape: tuple[int, int],
    *,
    span_mean: float = 3.0,
    max_span: int = 10,
    span_lengths: str = "clipped",
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    """`[B, T]` int64 span index within each row: rows tiled by consecutive spans of random length.

    Lengths follow Geometric(p) on {1, 2, ...} with `p = 1 / span_mean`, either clipped at `max_span`
    (`"clipped"`: `min(Geometric(p), max_span)`) or conditioned on `<= max_span` (`"truncated"`), drawn
    independently (T draws per row always suffice, since every span covers at least one token).
    """
    B, T = shape
    p = 1.0 / span_mean
    u = torch.rand((B, T), generator=generator, device=device, dtype=torch.float64)
    if p >= 1.0:
        lengths = torch.ones((B, T), dtype=torch.int64, device=device)
    else:
        log_q = torch.log1p(torch.tensor(-p, dtype=torch.float64))
        if span_lengths == "truncated":  # inverse CDF of the geometric law restricted to {1, …, max_span}
            u = u * -torch.expm1(max_span * log_q)
        # Inverse CDF of the geometric distribution on {1, 2, ...}: ceil(log(1 - u) / log(1 - p)).
        lengths = torch.ceil(torch.log1p(-u) / log_q).to(torch.int64)
        lengths = lengths.clamp(min=1, max=max_span)
    ends = torch.cumsum(lengths, dim=1)  # exclusive end of span k
    positions = torch.arange(T, device=device, dtype=torch.int64).expand(B, T).contiguous()
    return torch.searchsorted(ends, positions, right=True)


def _check_options(
    strategy: str,
    rate: float,
    mask_p: float,
    random_p: float,
    span_mean: float,
    max_span: int,
    vocab_size: int,
    count: str,
    span_lengths: str,
) -> None:
    if strategy not in STRATEGIES:
        raise ConfigError(f"unknown masking strategy {strategy!r} (one of {', '.join(STRATEGIES)})")
    if count not in COUNTS:
        raise ConfigError(f"unknown masking count {count!r} (one of {', '.join(COUNTS)})")
    if count == "binomial" and strategy == "wwm":
        raise ConfigError("count='binomial' is for token and span masking (whole words have no length model)")
    if span_lengths not in SPAN_LENGTHS:
        raise ConfigError(f"unknown span_lengths {span_lengths!r} (one of {', '.join(SPAN_LENGTHS)})")
    if not 0.0 <= rate <= 1.0:
        raise ConfigError(f"masking rate must be in [0, 1], got {rate}")
    if mask_p < 0 or random_p < 0 or mask_p + random_p > 1.0 + 1e-9:
        raise ConfigError(f"mask_p ({mask_p}) and random_p ({random_p}) must be >= 0 with a sum <= 1")
    if strategy == "span" and (span_mean < 1.0 or max_span < 1):
        raise ConfigError(f"span masking needs span_mean >= 1 and max_span >= 1, got {span_mean} and {max_span}")
    if vocab_size < 1:
        raise ConfigError(f"vocab_size must be positive, got {vocab_size}")


def _random_ids(
    shape: torch.Size,
    low: int,
    high: int,
    exclude: Tensor | None,
    generator: torch.Generator | None,
    device: torch.device,
) -> Tensor:
    """Uniform ids from [low, high) minus the ids in `exclude`, without a host sync.

    Draw r uniformly below the number of allowed ids, then walk the sorted excluded ids upwards, stepping over
    each one at or below the candidate: the r-th allowed id. The count of valid excluded ids stays on the device.
    """
    u = torch.rand(shape, generator=generator, device=device, dtype=torch.float64)
    if exclude is None or exclude.numel() == 0:
        return low + torch.floor(u * (high - low)).to(torch.int64)
    e = torch.sort(torch.as_tensor(exclude, device=device).reshape(-1).to(torch.int64)).values
    first = torch.ones_like(e, dtype=torch.bool)
    first[1:] = e[1:] != e[:-1]
    valid = first & (e >= low) & (e < high)
    n_allowed = (high - low) - valid.sum()
    r = torch.floor(u * n_allowed.to(torch.float64)).to(torch.int64)
    ids = low + torch.minimum(r, (n_allowed - 1).clamp(min=0))
    for i in range(e.numel()):  # k is small (the specials); each step is one elementwise op
        ids = ids + (valid[i] & (ids >= e[i])).to(torch.int64)
    return ids


def _fixed_selection(
    scores: Tensor, eligible: Tensor, rate: float, generator: torch.Generator | None, max_per_row: int | None
) -> Tensor:
    """`[B, T]` bool: per row, its `min(max_per_row, rate · r)` best-scored eligible positions (r = the row's
    eligible tokens; `rate · r` rounded stochastically, so its mean is exactly `rate · r`). Positions of a group
    share a score and rank next to each other (a stable sort), so only the row's last group can be cut."""
    B, T = scores.shape
    real = eligible.sum(dim=1).to(torch.float64)
    expected = real * float(rate)
    u = torch.rand((B,), generator=generator, device=scores.device, dtype=torch.float64)
    targets = torch.floor(expected + u)  # floor(x + U) is x rounded up with probability frac(x)
    targets = torch.minimum(targets, real)
    if max_per_row is not None:
        targets = targets.clamp(max=float(max_per_row))
    order = torch.argsort(scores, dim=1, descending=True, stable=True)
    ranks = torch.arange(T, device=scores.device).expand(B, T)
    rank = torch.empty_like(order).scatter_(1, order, ranks)
    return eligible & (rank.to(torch.float64) < targets[:, None])


def _binomial_selection(
    scores: Tensor,
    eligible: Tensor,
    groups: Tensor,
    rate: float,
    generator: torch.Generator | None,
    max_per_row: int | None = None,
) -> Tensor:
    """`[B, T]` bool: per row, the groups taken in score order while the row's count is below its
    Binomial(eligible, rate) target (the last one whole). A group is taken when the eligible tokens ranked before
    its first token number fewer than the target; ineligible positions rank last."""
    B, T = scores.shape
    targets = torch.binomial(
        eligible.sum(dim=1).to(torch.float64),
        torch.full((B,), float(rate), dtype=torch.float64, device=scores.device),
        generator=generator,
    )  # (B,)
    if max_per_row is not None:
        targets = targets.clamp(max=float(max_per_row))
    order = torch.argsort(scores, dim=1, descending=True)
    ranks = torch.arange(T, device=scores.device).expand(B, T)
    rank = torch.empty_like(order).scatter_(1, order, ranks)  # rank of each position within its row
    first = torch.full((B, T + 1), T, dtype=torch.int64, device=scores.device)
    first = first.scatter_reduce(1, groups, rank, reduce="amin")  # the best rank of each group
    return eligible & (torch.gather(first, 1, groups).to(torch.float64) < targets[:, None])


def mask_tokens(
    input_ids: Tensor,
    special_tokens_mask: Tensor,
    *,
    vocab_size: int,
    mask_id: int,
    rate: float = 0.15,
    num_masked: int | None = None,
    strategy: str = "token",
    word_start: Tensor | None = None,
    mask_p: float = 0.8,
    random_p: float = 0.1,
    span_mean: float = 3.0,
    max_span: int = 10,
    per_span_replacement: bool | None = None,
    random_ids_low: int = 0,
    random_ids_exclude_special: Tensor | None = None,
    count: str = "fixed",
    span_lengths: str = "clipped",
    max_per_row: int | None = None,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Mask a `[B, T]` batch; returns `(masked_input_ids [B, T], mlm_positions [M], mlm_labels [M])`.

    `special_tokens_mask` (bool `[B, T]`) marks the positions never masked (specials and padding).
    `mlm_positions` are flat indices `b * T + t` in increasing order; `mlm_labels` the original ids there, or
    -100 for entries beyond the masked positions. `generator` (on the batch's device) makes it deterministic.
    `random_ids_exclude_special` is a 1-D tensor of ids never drawn as random replacements. `max_per_row` caps
    the masked positions of each row (Google's `max_predictions_per_seq`). See the module docstring for the
    strategies, `count` and `span_lengths`.
    """
    _check_options(strategy, rate, mask_p, random_p, span_mean, max_span, vocab_size, count, span_lengths)
    if input_ids.dim() != 2 or special_tokens_mask.shape != input_ids.shape:
        raise ConfigError(
            f"input_ids must be [B, T] and special_tokens_mask the same shape, got {tuple(input_ids.shape)} "
            f"and {tuple(special_tokens_mask.shape)}"
        )
    if not 0 <= random_ids_low < vocab_size:
        raise ConfigError(f"random_ids_low ({random_ids_low}) must be in [0, vocab_size={vocab_size})")
    B, T = input_ids.shape
    n = B * T
    if max_per_row is not None and (
        isinstance(max_per_row, bool) or not isinstance(max_per_row, int) or not 1 <= max_per_row <= T
    ):
        raise ConfigError(
            f"max_per_row (max_predictions_per_seq) must be an integer in [1, seq_len = {T}], got {max_per_row!r}"
        )
    if num_masked is not None:
        M = int(num_masked)
    elif count == "binomial":
        M = binomial_capacity(
            n, B, rate, strategy=strategy, span_mean=span_mean, max_span=max_span, span_lengths=span_lengths
        )
        if max_per_row is not None:
            overshoot = max_span - 1 if strategy == "span" else 0
            M = min(M, B * min(T, max_per_row + overshoot))
    else:
        M = fixed_capacity(B, T, rate, max_per_row)
    if not 0 <= M <= n:
        raise ConfigError(f"num_masked ({M}) must be in [0, B*T = {n}]")
    device = input_ids.device

    if strategy == "token":
        groups = torch.arange(T, device=device, dtype=torch.int64).expand(B, T)
    elif strategy == "wwm":
        if word_start is None:
            raise ConfigError("whole-word masking (strategy='wwm') needs word_start")
        if word_start.shape != input_ids.shape:
            raise ConfigError(f"word_start has shape {tuple(word_start.shape)}, expected {tuple(input_ids.shape)}")
        groups = word_ids(word_start.to(device))
    else:
        groups = random_span_ids(
            (B, T),
            span_mean=span_mean,
            max_span=max_span,
            span_lengths=span_lengths,
            generator=generator,
            device=device,
        )
    per_group = strategy != "token" if per_span_replacement is None else bool(per_span_replacement)

    # One score per group (float64: ties between groups, which could interleave two cut groups, are negligible).
    # Ineligible positions get distinct negative scores, so the selection is fully determined by the generator.
    group_scores = torch.rand((B, T + 1), generator=generator, device=device, dtype=torch.float64)
    scores = torch.gather(group_scores, 1, groups)
    eligible = ~special_tokens_mask.to(device=device, dtype=torch.bool)
    below = -1.0 - torch.arange(n, device=device, dtype=torch.float64).reshape(B, T) / n
    scores = torch.where(eligible, scores, below)
    if count == "binomial":
        selected = _binomial_selection(scores, eligible, groups, rate, generator, max_per_row)
        scores = torch.where(selected, scores, below)
    elif num_masked is None:
        scores = torch.where(_fixed_selection(scores, eligible, rate, generator, max_per_row), scores, below)
    scores = scores.reshape(-1)

    chosen = torch.topk(scores, M, sorted=False).indices
    positions = torch.sort(chosen).values
    valid = scores[positions] >= 0

    flat = input_ids.reshape(-1)
    original = flat[positions]
    labels = torch.where(valid, original, torch.full_like(original, IGNORE_INDEX)).to(torch.int64)

    # The 80/10/10 decision: one draw per group (or per token), looked up at the chosen positions.
    if per_group:
        decision_table = torch.rand((B, T + 1), generator=generator, device=device)
        decision = torch.gather(decision_table, 1, groups).reshape(-1)[positions]
    else:
        decision = torch.rand((M,), generator=generator, device=device)
    random_ids = _random_ids(
        positions.shape, random_ids_low, vocab_size, random_ids_exclude_special, generator, device
    ).to(flat.dtype)
    replaced = torch.where(
        decision < mask_p,
        torch.full_like(original, mask_id),
        torch.where(decision < mask_p + random_p, random_ids, original),
    )
    replaced = torch.where(valid, replaced, original)
    masked = flat.clone().scatter_(0, positions, replaced).reshape(B, T)
    return masked, positions.to(torch.int64), labels
