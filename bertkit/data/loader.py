"""Pretraining batches from a prepared dataset: per-epoch views, held-out split, ranks, exact O(1) resume.

`PretrainingData(dataset, view=...)` turns a dataset into an endless stream of numpy batches (one pass for
`split="eval"`), each yielded with the `StreamState` after it, so a checkpoint stores two integers and a
restart continues with exactly the next batch without replaying anything.

Views (`view=`):

- `"mlm"`: packed rows `[CLS] stream[s : s + seq_len - 2] [SEP]` of the document stream (documents joined by
  [SEP]), cut afresh every epoch at an epoch-keyed shift and visited in the epoch's keyed order
  (`bertkit.data.views.mlm_view`). Rows are always full, so batches carry no `attention_mask`, unless `short_p`
  is set (below).
- `"nsp"`: Google's sentence pairs drawn afresh every epoch (`nsp_view(..., epoch=epoch)`), visited in a keyed
  permutation of the pairs for `(seed, epoch)`; rows `[CLS] A [SEP] B [SEP]` padded with [PAD].
- `"static-nsp"`: the prepared Google instances (already masked): a keyed permutation of the instances per epoch;
  batches add `mlm_positions` / `mlm_labels` (fixed size `B * max_pred`, -100 padding).
- `"static-mlm"`: the prepared packed rows (unmasked), in a keyed permutation per epoch.
- `"elc"`: ELC-BERT's packing (ltgoslo/elc-bert `pre_training/cache_dataset.py`, `bertkit.data.views.elc_view`):
  per document, sentence-aligned rows of at most `seq_len - 2` tokens, the next row starting with the whole
  sentence that overflowed, `[CLS] row [SEP]` padded to `seq_len` (the last row of a document is usually short);
  the same rows every epoch (the original caches them once), visited in a keyed permutation per epoch. Batches
  carry `attention_mask`. Needs sentence boundaries (a dataset prepared with `--splitter none` is refused).

Batch dict (numpy): `input_ids` int64 `[B, T]` (unmasked except for static-nsp), `attention_mask` int64 `[B, T]`
(nsp views only: mlm rows are never padded, which lets SDPA use its fast kernels), `token_type_ids` int64
`[B, T]` (0 through the first [SEP], 1 after, 0 on padding; all 0 for mlm views), `special_tokens_mask` bool
`[B, T]` (ids in `special_ids`, padding included: never masked), `word_start` bool `[B, T]` (False on `##`
continuation pieces), `next_sentence_label` int64 `[B]` (nsp views; 1 = random next), and for static-nsp
`mlm_positions` int64 `[B * max_pred]` (flat `b * T + t`; padding entries point at 0) and `mlm_labels` int64
`[B * max_pred]` (-100 padding).

`short_p` (ELC-BERT, mlm and static-mlm views): each row is, with probability `short_p`, cut to its first
`randint(1, seq_len - 2)` tokens (numpy's `integers(1, seq_len - 2)`, as the original's `torch.randint`), then
[SEP] and [PAD] to `seq_len`; the draws are keyed by (seed, epoch, sample index), so a resumed run cuts the same
rows. Such batches always carry `attention_mask` (1 = token), also when no row of the batch was cut.

Held-out split (disjoint from train, independent of the epoch): mlm → rows starting at or beyond
`floor((1 - eval_fraction) * S)` of the stream of length S are eval, train rows must end before it; nsp → pairs
whose A starts at or beyond `floor((1 - eval_fraction) * N)` of the N corpus tokens are eval, train pairs have A
and B before it; static → the last instances from `floor((1 - eval_fraction) * n)`. Eval samples come from epoch
0's draw, in corpus (instance) order.

Integrity: opening validates every array against the manifest (offsets, id ranges) and, with `verify_data` (the
default), checks each shard's xxh3 before it is first read, so a corrupt shard is named instead of reaching Rust
indexing or the model.

Distributed: global batch g covers samples `[g*B*W, (g+1)*B*W)` of the epoch order; rank r takes
`[g*B*W + r*B, g*B*W + (r+1)*B)`. `num_batches` counts global batches (the same on every rank).
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bertkit.data.dataset import open_dataset
from bertkit.data.format import TOKENIZER_DIR, VOCAB_FILE
from bertkit.exceptions import ConfigError, FormatError

__all__ = ["VIEWS", "PretrainingData", "StreamState", "batch_to_torch"]

VIEWS = ("mlm", "nsp", "static-nsp", "static-mlm", "elc")
SPLITS = ("train", "eval")
MIN_SEQ_LEN = 8
MAX_NSP_SEQ_LEN = 65535  # static NSP positions are uint16

# Purpose constants of the keyed permutations (the third PCG64 seed word); never change them, or resumed runs
# would visit different samples.
_NSP_ORDER = 0x4E5350  # "NSP"
_STATIC_ORDER = 0x535441  # "STA"
_SHORT_ROWS = 0x53484F  # "SHO"
_ELC_ORDER = 0x454C43  # "ELC"


@dataclass(frozen=True)
class StreamState:
    """Where a stream stands: `cursor` global batches of `epoch` already consumed (all ranks together)."""

    epoch: int = 0
    cursor: int = 0


def _keyed_permutation(n: int, seed: int, epoch: int, purpose: int) -> np.ndarray:
    return np.random.Generator(np.random.PCG64([seed, epoch, purpose])).permutation(n)


def _boundary(n: int, eval_fraction: float) -> int:
    """First held-out unit of n: `floor((1 - eval_fraction) * n)`."""
    return int(math.floor((1.0 - eval_fraction) * n))


class PretrainingData:
    """Numpy pretraining batches for one rank; see the module docstring."""

    def __init__(
        self,
        dataset: str | os.PathLike[str],
        *,
        view: str = "mlm",
        seq_len: int = 128,
        batch_size: int = 32,
        seed: int = 0,
        split: str = "train",
        eval_fraction: float = 0.01,
        rank: int = 0,
        world_size: int = 1,
        short_seq_prob: float = 0.1,
        fix_quirks: bool = False,
        drop_last: bool = True,
        short_p: float = 0.0,
        verify_data: bool = True,
    ):
        if view not in VIEWS:
            raise ConfigError(f"unknown view {view!r} (one of {', '.join(VIEWS)})")
        if split not in SPLITS:
            raise ConfigError(f"unknown split {split!r} (one of {', '.join(SPLITS)})")
        if not isinstance(seq_len, int) or seq_len < MIN_SEQ_LEN:
            raise ConfigError(f"seq_len must be an integer >= {MIN_SEQ_LEN}, got {seq_len!r}")
        if view in ("nsp", "static-nsp") and seq_len > MAX_NSP_SEQ_LEN:
            raise ConfigError(f"seq_len for NSP views must be at most {MAX_NSP_SEQ_LEN}, got {seq_len}")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}")
        if not isinstance(seed, int) or seed < 0:
            raise ConfigError(f"seed must be a non-negative integer, got {seed!r}")
        if not 0.0 <= eval_fraction < 1.0:
            raise ConfigError(f"eval_fraction must be in [0, 1), got {eval_fraction}")
        if not isinstance(world_size, int) or world_size < 1 or not isinstance(rank, int) or not 0 <= rank < world_size:
            raise ConfigError(f"need 0 <= rank < world_size, got rank {rank!r} and world_size {world_size!r}")
        if not 0.0 <= short_seq_prob <= 1.0:
            raise ConfigError(f"short_seq_prob must be in [0, 1], got {short_seq_prob}")
        if not 0.0 <= short_p <= 1.0:
            raise ConfigError(f"short_p must be in [0, 1], got {short_p}")
        if short_p > 0 and view not in ("mlm", "static-mlm", "elc"):
            raise ConfigError(f"short_p shortens packed MLM rows (views mlm, static-mlm, elc), not the {view} view")

        self.path = Path(dataset)
        self.view, self.split = view, split
        self.seq_len, self.batch_size = seq_len, batch_size
        self.seed, self.eval_fraction = seed, eval_fraction
        self.rank, self.world_size = rank, world_size
        self.short_seq_prob, self.fix_quirks, self.drop_last = short_seq_prob, fix_quirks, drop_last
        self.short_p = short_p
        self._short: dict[int, np.ndarray] = {}  # epoch → kept tokens per sample (0 = the full row)

        self._ds = open_dataset(self.path, verify_checksums=verify_data)
        self._read_vocab()
        self._epochs: dict[int, np.ndarray] = {}  # epoch → sample order (at most two kept)
        self._nsp: dict[int, dict[str, np.ndarray]] = {}  # epoch → nsp_view arrays
        self._stream: Any = None
        self._elc: dict[str, np.ndarray] | None = None
        self.max_predictions = 0

        if view == "elc":
            self._check_sentence_boundaries()
        if view in ("mlm", "nsp", "elc"):
            if len(self._ds.tokens) == 0:
                raise ConfigError(f"{self.path}: the dataset has no tokens (the {view} view needs a corpus)")
            shards = self._ds.tokens.shards
            self._tok_starts = np.concatenate([[0], np.cumsum([len(s) for s in shards])]).astype(np.int64)
            if view == "mlm":
                from bertkit.data.views import MlmStream

                self._stream = MlmStream(self.path)
        else:
            kind = view.split("-")[1]
            if kind not in self._ds.instance_kinds:
                have = ", ".join(self._ds.instance_kinds) or "none"
                raise ConfigError(
                    f"{self.path}: the {view} view needs prepared {kind} instances, the dataset has: {have}"
                )
            self._inst = self._ds.instances(kind)
            if len(self._inst) == 0:
                raise ConfigError(f"{self.path}: the dataset has no {kind} instances (the {view} view needs some)")
            if view == "static-mlm" and self._inst.seq_len != seq_len:
                raise ConfigError(
                    f"{self.path}: the prepared mlm rows have seq_len {self._inst.seq_len}, not {seq_len} "
                    "(use view='mlm' to pack at another length)"
                )
            if view == "static-nsp":
                self._check_static_nsp()

        if split == "train" and self.num_batches(0) == 0:
            raise ConfigError(
                f"{self.path}: too few {view} training samples ({len(self._samples(0))}) for one global batch of "
                f"{batch_size} x {world_size} rank(s) at seq_len {seq_len}"
            )

    # ---------------------------------------------------------------- vocabulary

    def _read_vocab(self) -> None:
        info = self._ds.tokenizer_info
        manifest = self.path / "manifest.json"
        try:
            self.vocab_size = int(info["vocab_size"])
            ids = info["special_ids"]
            self.pad_id, self.unk_id = int(ids["pad"]), int(ids["unk"])
            self.cls_id, self.sep_id, self.mask_id = int(ids["cls"]), int(ids["sep"]), int(ids["mask"])
        except (KeyError, TypeError, ValueError) as e:
            raise FormatError(f"{manifest}: tokenizer.vocab_size / tokenizer.special_ids incomplete ({e})") from None
        specials = {self.pad_id, self.unk_id, self.cls_id, self.sep_id, self.mask_id}
        specials |= {int(v) for v in (info.get("special_tokens") or {}).values()}
        self.is_continuation = np.zeros(self.vocab_size, dtype=bool)
        if (self.path / TOKENIZER_DIR / VOCAB_FILE).is_file():
            vocab = self._ds.vocab
            if len(vocab) != self.vocab_size:
                raise FormatError(f"{vocab.path}: {len(vocab)} tokens, the manifest says vocab_size {self.vocab_size}")
            prefix = vocab.prefix
            if prefix:
                self.is_continuation[:] = [t.startswith(prefix) and len(t) > len(prefix) for t in vocab.tokens]
            specials |= {i for i, t in enumerate(vocab.tokens) if len(t) > 2 and t[0] == "[" and t[-1] == "]"}
        else:
            warnings.warn(
                f"{self.path}: no {TOKENIZER_DIR}/{VOCAB_FILE}; every token counts as a word start and only the "
                "manifest's special ids are special",
                stacklevel=3,
            )
        bad = sorted(i for i in specials if not 0 <= i < self.vocab_size)
        if bad:
            raise FormatError(f"{manifest}: special ids {bad} are outside the vocabulary ({self.vocab_size})")
        self.special_ids = np.array(sorted(specials), dtype=np.int64)
        # Lookup tables with one extra entry for ids beyond the vocabulary (never masked, a word start).
        self._special_table = np.zeros(self.vocab_size + 1, dtype=bool)
        self._special_table[self.special_ids] = True
        self._special_table[-1] = True
        self._start_table = np.append(~self.is_continuation, True)

    def special_token_id(self, token: str) -> int:
        """The id of special token ``token`` of the dataset's tokenizer (ConfigError naming the dataset if none)."""
        named = self._ds.tokenizer_info.get("special_tokens") or {}
        if token in named:
            return int(named[token])
        if (self.path / TOKENIZER_DIR / VOCAB_FILE).is_file():
            for i, t in enumerate(self._ds.vocab.tokens):
                if t == token and i in set(self.special_ids.tolist()):
                    return i
        raise ConfigError(
            f"{self.path}: the tokenizer has no special token {token!r} (known: {', '.join(sorted(named)) or 'none'})"
        )

    def _features(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        clipped = np.minimum(ids, self.vocab_size)
        return self._special_table[clipped], self._start_table[clipped]

    # ---------------------------------------------------------------- samples per epoch

    def _check_static_nsp(self) -> None:
        lengths, masked = [], []
        for sh in self._inst._shards:
            if len(sh["offsets"]) > 1:
                lengths.append(int(np.diff(sh["offsets"]).max()))
                masked.append(int(np.diff(sh["masked_offsets"]).max()))
        longest = max(lengths, default=0)
        if longest > self.seq_len:
            raise ConfigError(
                f"{self.path}: the prepared nsp instances reach {longest} tokens, more than seq_len {self.seq_len}"
            )
        config_max = self._ds.manifest.config.get("max_predictions_per_seq")
        self.max_predictions = max(max(masked, default=0), int(config_max) if isinstance(config_max, int) else 0)

    def _check_sentence_boundaries(self) -> None:
        config = self._ds.manifest.config or {}
        if config.get("splitter") == "none" and config.get("doc_mode") != "sentences-per-line":
            raise ConfigError(
                f"{self.path}: the elc view packs whole sentences, but the dataset was prepared with --splitter none "
                "(each document is one sentence); prepare it again with --splitter rules (or lines)"
            )

    def _elc_rows(self) -> dict[str, np.ndarray]:
        if self._elc is None:
            from bertkit.data.views import elc_view

            v = elc_view(self.path, seq_len=self.seq_len)
            self._elc = {k: np.asarray(v[k], dtype=np.int64) for k in ("starts", "ends")}
        return self._elc

    def _nsp_pairs(self, epoch: int) -> dict[str, np.ndarray]:
        if epoch not in self._nsp:
            from bertkit.data.views import nsp_view

            v = nsp_view(
                self.path,
                seq_len=self.seq_len,
                seed=self.seed,
                epoch=epoch,
                short_seq_prob=self.short_seq_prob,
                fix_quirks=self.fix_quirks,
            )
            if len(self._nsp) >= 2:
                self._nsp.pop(min(self._nsp))
            self._nsp[epoch] = {k: np.asarray(a, dtype=np.int64) for k, a in v.items()}
        return self._nsp[epoch]

    def _compute_samples(self, epoch: int) -> np.ndarray:
        """The epoch's samples in visiting order: mlm row starts, nsp pair indices, or instance indices."""
        train = self.split == "train"
        e = epoch if train else 0
        if self.view == "mlm":
            S = len(self._stream)
            b = _boundary(S, self.eval_fraction)
            starts = np.asarray(self._stream.view(self.seq_len, self.seed, e), dtype=np.int64)
            if train:
                return starts[starts + (self.seq_len - 2) <= b]
            return np.sort(starts[starts >= b])
        if self.view == "elc":
            rows = self._elc_rows()
            b = _boundary(len(self._ds.tokens), self.eval_fraction)
            if train:
                idx = np.flatnonzero(rows["ends"] <= b)
                return idx[_keyed_permutation(len(idx), self.seed, e, _ELC_ORDER)]
            return np.flatnonzero(rows["starts"] >= b)
        if self.view == "nsp":
            v = self._nsp_pairs(e)
            b = _boundary(len(self._ds.tokens), self.eval_fraction)
            if train:
                idx = np.flatnonzero((v["a_end"] <= b) & (v["b_end"] <= b))
                return idx[_keyed_permutation(len(idx), self.seed, e, _NSP_ORDER)]
            idx = np.flatnonzero(v["a_start"] >= b)
            return idx[np.argsort(v["a_start"][idx], kind="stable")]
        n = len(self._inst)
        b = _boundary(n, self.eval_fraction)
        if train:
            return _keyed_permutation(b, self.seed, e, _STATIC_ORDER)
        return np.arange(b, n, dtype=np.int64)

    def _samples(self, epoch: int) -> np.ndarray:
        key = epoch if self.split == "train" else 0
        if key not in self._epochs:
            if len(self._epochs) >= 2:
                self._epochs.pop(min(self._epochs))
            self._epochs[key] = self._compute_samples(key)
        return self._epochs[key]

    def num_samples(self, epoch: int = 0) -> int:
        """Samples (rows) of the epoch for all ranks together, before batching."""
        return len(self._samples(epoch))

    def num_batches(self, epoch: int = 0) -> int:
        """Global batches of the epoch (the same on every rank; the last partial one counts unless drop_last)."""
        n, g = len(self._samples(epoch)), self.batch_size * self.world_size
        return n // g if self.drop_last else -(-n // g)

    # ---------------------------------------------------------------- batches

    def batches(self, state: StreamState | None = None) -> Iterator[tuple[dict[str, np.ndarray], StreamState]]:
        """This rank's batches from `state` on, each with the state after it.

        Train: to the end of `state.epoch`, then epoch + 1 from cursor 0, forever; the state after an epoch's last
        batch is `(epoch + 1, 0)`. Eval: the remaining batches of the one held-out pass, then stops.
        """
        state = state if state is not None else StreamState()
        if state.epoch < 0 or state.cursor < 0:
            raise ConfigError(f"invalid stream state {state}")
        epoch, cursor = state.epoch, state.cursor
        while True:
            samples = self._samples(epoch)
            n = self.num_batches(epoch)
            if cursor > n:
                raise ConfigError(
                    f"{self.path}: stream state {StreamState(epoch, cursor)} is past the end of epoch {epoch} "
                    f"({n} global batches of {self.batch_size} x {self.world_size}); was it saved with other settings?"
                )
            if self.split == "train" and n == 0:
                raise ConfigError(f"{self.path}: epoch {epoch} has no complete global batch")
            g_size = self.batch_size * self.world_size
            for g in range(cursor, n):
                lo = g * g_size + self.rank * self.batch_size
                chosen = samples[lo : min(lo + self.batch_size, len(samples))]
                batch = self._materialise(chosen, epoch, lo)
                if self.split == "train":
                    after = StreamState(epoch, g + 1) if g + 1 < n else StreamState(epoch + 1, 0)
                else:
                    after = StreamState(epoch, g + 1)
                yield batch, after
            if self.split == "eval":
                return
            epoch, cursor = epoch + 1, 0

    def _short_lengths(self, epoch: int) -> np.ndarray:
        """Per sample of the epoch (visiting order): tokens kept between [CLS] and [SEP], or 0 for a full row."""
        key = epoch if self.split == "train" else 0
        if key not in self._short:
            n = len(self._samples(key))
            rng = np.random.Generator(np.random.PCG64([self.seed, key, _SHORT_ROWS]))
            cut = rng.random(n) < self.short_p
            kept = rng.integers(1, max(2, self.seq_len - 2), n)
            if len(self._short) >= 2:
                self._short.pop(min(self._short))
            self._short[key] = np.where(cut, kept, 0).astype(np.int64)
        return self._short[key]

    def _shorten(self, ids: np.ndarray, epoch: int, first: int) -> dict[str, np.ndarray]:
        """Rows ``[CLS] t tokens [SEP] [PAD]...`` where the epoch's draw cuts them; the attention mask."""
        kept = self._short_lengths(epoch)[first : first + len(ids)][:, None]
        j = np.arange(ids.shape[1], dtype=np.int64)[None, :]
        cut = kept > 0
        ids = np.where(cut & (j == kept + 1), self.sep_id, ids)
        padding = cut & (j > kept + 1)
        ids = np.where(padding, self.pad_id, ids)
        return {"input_ids": ids, "attention_mask": (~padding).astype(np.int64)}

    def _materialise(self, chosen: np.ndarray, epoch: int, first: int) -> dict[str, np.ndarray]:
        """The batch of samples ``chosen`` (``first``: the index of the first one in the epoch's order)."""
        if self.view in ("mlm", "static-mlm"):
            if self.view == "mlm":
                ids = np.asarray(self._stream.rows(chosen.astype(np.uint64), self.seq_len), dtype=np.int64)
            else:
                ids = self._inst.take(chosen).astype(np.int64)
            batch = {"input_ids": ids}
            if self.short_p > 0:
                batch = self._shorten(ids, epoch, first)
            batch["token_type_ids"] = np.zeros_like(ids)
        elif self.view == "elc":
            batch = self._elc_batch(chosen, epoch, first)
        elif self.view == "nsp":
            batch = self._nsp_rows(self._nsp_pairs(epoch if self.split == "train" else 0), chosen)
        else:
            batch = self._static_nsp_rows(chosen)
        special, start = self._features(batch["input_ids"])
        if "attention_mask" in batch:
            special |= batch["attention_mask"] == 0
        batch["special_tokens_mask"] = special
        batch["word_start"] = start
        return batch

    def _gather_tokens(self, positions: np.ndarray) -> np.ndarray:
        """Corpus tokens at global positions (any order), across shards."""
        shards = self._ds.tokens.shards
        if len(shards) == 1:
            return shards[0][positions]
        out = np.empty(len(positions), dtype=np.int64)
        k = np.searchsorted(self._tok_starts, positions, side="right") - 1
        for s in np.unique(k):
            sel = k == s
            out[sel] = shards[s][positions[sel] - self._tok_starts[s]]
        return out

    def _elc_batch(self, chosen: np.ndarray, epoch: int, first: int) -> dict[str, np.ndarray]:
        """ELC-BERT rows ``[CLS] row [SEP] [PAD]...``; with ``short_p`` a row is first cut to its drawn length (the
        original's ``tokens[:target_seq_length]``)."""
        T = self.seq_len
        rows = self._elc_rows()
        start, length = rows["starts"][chosen], rows["ends"][chosen] - rows["starts"][chosen]
        if self.short_p > 0:
            kept = self._short_lengths(epoch)[first : first + len(chosen)]
            length = np.where(kept > 0, np.minimum(length, kept), length)
        start, length = start[:, None], length[:, None]
        j = np.arange(T, dtype=np.int64)[None, :]
        inside = (j >= 1) & (j <= length)
        ids = np.full((len(chosen), T), self.pad_id, dtype=np.int64)
        ids[:, 0] = self.cls_id
        ids[j == length + 1] = self.sep_id
        ids[inside] = self._gather_tokens((start + j - 1)[inside])
        return {
            "input_ids": ids,
            "attention_mask": (j < length + 2).astype(np.int64),
            "token_type_ids": np.zeros_like(ids),
        }

    def _nsp_rows(self, v: dict[str, np.ndarray], chosen: np.ndarray) -> dict[str, np.ndarray]:
        T = self.seq_len
        a0, a1 = v["a_start"][chosen][:, None], v["a_end"][chosen][:, None]
        b0, b1 = v["b_start"][chosen][:, None], v["b_end"][chosen][:, None]
        la, lb = a1 - a0, b1 - b0
        if len(chosen) and int((la + lb).max()) + 3 > T:
            raise FormatError(f"{self.path}: an NSP pair is longer than seq_len {T} (inconsistent view)")
        j = np.arange(T, dtype=np.int64)[None, :]
        in_a = (j >= 1) & (j <= la)
        in_b = (j >= la + 2) & (j < la + 2 + lb)
        pos = np.where(in_a, a0 + j - 1, np.where(in_b, b0 + j - la - 2, -1))
        ids = np.full((len(chosen), T), self.pad_id, dtype=np.int64)
        ids[:, 0] = self.cls_id
        ids[(j == la + 1) | (j == la + lb + 2)] = self.sep_id
        has = pos >= 0
        ids[has] = self._gather_tokens(pos[has])
        length = la + lb + 3
        return {
            "input_ids": ids,
            "attention_mask": (j < length).astype(np.int64),
            "token_type_ids": ((j >= la + 2) & (j < length)).astype(np.int64),
            "next_sentence_label": v["labels"][chosen].astype(np.int64),
        }

    def _static_nsp_rows(self, chosen: np.ndarray) -> dict[str, np.ndarray]:
        B, T, P = len(chosen), self.seq_len, self.max_predictions
        ids = np.full((B, T), self.pad_id, dtype=np.int64)
        types = np.zeros((B, T), dtype=np.int64)
        mask = np.zeros((B, T), dtype=np.int64)
        nsp = np.zeros(B, dtype=np.int64)
        positions = np.zeros(B * P, dtype=np.int64)
        labels = np.full(B * P, -100, dtype=np.int64)
        for r, i in enumerate(chosen.tolist()):
            x = self._inst[i]
            n = len(x["input_ids"])
            ids[r, :n] = x["input_ids"]
            types[r, :n] = x["token_type_ids"]
            mask[r, :n] = 1
            nsp[r] = x["next_sentence_label"]
            p = np.asarray(x["masked_lm_positions"], dtype=np.int64)
            positions[r * P : r * P + len(p)] = r * T + p
            labels[r * P : r * P + len(p)] = x["masked_lm_ids"]
        return {
            "input_ids": ids,
            "attention_mask": mask,
            "token_type_ids": types,
            "next_sentence_label": nsp,
            "mlm_positions": positions,
            "mlm_labels": labels,
        }


def batch_to_torch(batch: dict[str, np.ndarray], device: Any = "cpu", non_blocking: bool = True) -> dict[str, Any]:
    """The batch as torch tensors on `device` (pinned host memory for CUDA, so the copy can overlap compute)."""
    import torch

    out = {}
    for k, a in batch.items():
        t = torch.from_numpy(np.ascontiguousarray(a))
        if torch.device(device).type == "cuda":
            t = t.pin_memory().to(device, non_blocking=non_blocking)
        out[k] = t
    return out
