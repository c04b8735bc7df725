"""Training blocks over an embedding store: documents packed as in NextLevelBERT, epochs, ranks, exact resume.

The stream of a split is its documents' chunk vectors in order with a [SEP] after every document (the original
inserts a zero vector there that becomes the SEP vector). A block is ``seq_len - 1`` consecutive stream positions
with [CLS] in front, so blocks are always full: no padding, attention over everything, exactly the original's
packing. Each training epoch cuts the stream at an epoch-keyed shift in ``[0, seq_len - 1)`` and visits the blocks
in a keyed permutation of ``(seed, epoch)``; a position ``(epoch, cursor)`` (``bertkit.data.loader.StreamState``)
resumes it exactly, like the token views.

Held-out split: the last ``eval_fraction`` of the documents (``floor((1 - eval_fraction) * n)`` onwards), cut from
position 0 in order. Distributed: global batch g covers blocks ``[g*B*W, (g+1)*B*W)``, rank r takes its B.

Batch dict (numpy): ``chunk_embeddings`` float32 ``[B, T, E]`` (zeros at special positions) and ``special_ids``
int64 ``[B, T]`` (-1 = chunk vector, 1 = [CLS], 2 = [SEP]).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from typing import Any

import numpy as np

from bertkit.exceptions import ConfigError

__all__ = ["ChunkBlocks"]

_BLOCK_ORDER = 0x424C4B  # "BLK": purpose word of the keyed permutations and shifts; never change it
_CLS, _SEP, _CHUNK = 1, 2, -1


class ChunkBlocks:
    """Numpy batches of packed chunk-embedding blocks for one rank; see the module docstring."""

    def __init__(
        self,
        store: str | os.PathLike[str],
        *,
        seq_len: int = 512,
        batch_size: int = 32,
        seed: int = 0,
        split: str = "train",
        eval_fraction: float = 0.01,
        rank: int = 0,
        world_size: int = 1,
        drop_last: bool = True,
        verify_data: bool = True,
    ) -> None:
        from bertkit.encode.store import open_store

        if split not in ("train", "eval"):
            raise ConfigError(f"unknown split {split!r} (train or eval)")
        if not isinstance(seq_len, int) or seq_len < 3:
            raise ConfigError(f"seq_len must be an integer >= 3 ([CLS] + at least two positions), got {seq_len!r}")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}")
        if not 0.0 <= eval_fraction < 1.0:
            raise ConfigError(f"eval_fraction must be in [0, 1), got {eval_fraction}")
        if not isinstance(world_size, int) or world_size < 1 or not 0 <= rank < world_size:
            raise ConfigError(f"need 0 <= rank < world_size, got rank {rank!r} and world_size {world_size!r}")
        self.store = open_store(store, verify_checksums=verify_data)
        self.path = self.store.path
        self.seq_len, self.batch_size, self.seed = seq_len, batch_size, seed
        self.split, self.rank, self.world_size, self.drop_last = split, rank, world_size, drop_last
        self.dim = self.store.dim
        n = len(self.store)
        boundary = int(math.floor((1.0 - eval_fraction) * n))
        d0, d1 = (0, boundary) if split == "train" else (boundary, n)
        offsets = self.store.document_offsets
        self._chunk0 = int(offsets[d0])
        # stream position of each document's [SEP]: its chunks end there, one SEP per earlier document before it
        self._sep = (offsets[d0 + 1 : d1 + 1] - self._chunk0) + np.arange(d1 - d0, dtype=np.int64)
        self.stream_length = int(self._sep[-1]) + 1 if d1 > d0 else 0
        self._epochs: dict[int, np.ndarray] = {}
        if split == "train" and self.num_batches(0) == 0:
            raise ConfigError(
                f"{self.path}: too few chunks for one global batch: {d1 - d0} training documents make a stream of "
                f"{self.stream_length} positions, {self.num_samples(0)} block(s) of {seq_len - 1}, but a global "
                f"batch is {batch_size} x {world_size} rank(s); lower batch_size / seq_len or encode more text"
            )

    # ------------------------------------------------------------------------------------------ blocks

    def _starts(self, epoch: int) -> np.ndarray:
        if epoch not in self._epochs:
            L, S = self.seq_len - 1, self.stream_length
            if self.split == "eval":
                starts = np.arange(0, S - L + 1, L, dtype=np.int64) if S >= L else np.zeros(0, np.int64)
            else:
                rng = np.random.Generator(np.random.PCG64([self.seed, epoch, _BLOCK_ORDER]))
                shift = int(rng.integers(0, L)) if S - L >= L else 0  # a shift only when it keeps >= 1 block
                count = max(S - shift, 0) // L
                starts = shift + L * rng.permutation(count).astype(np.int64)
            if len(self._epochs) >= 2:
                self._epochs.pop(min(self._epochs))
            self._epochs[epoch] = starts
        return self._epochs[epoch]

    def num_samples(self, epoch: int = 0) -> int:
        """Blocks of the epoch (all ranks together)."""
        return len(self._starts(epoch if self.split == "train" else 0))

    def num_batches(self, epoch: int = 0) -> int:
        """Global batches of the epoch (the last partial one counts unless drop_last)."""
        n, g = self.num_samples(epoch), self.batch_size * self.world_size
        return n // g if self.drop_last else -(-n // g)

    def batches(self, state: Any = None) -> Iterator[tuple[dict[str, np.ndarray], Any]]:
        """This rank's batches from ``state`` (a StreamState) on, each with the state after it; train streams go on
        forever (epoch after epoch), eval makes one pass."""
        from bertkit.data.loader import StreamState

        state = state if state is not None else StreamState()
        epoch, cursor = state.epoch, state.cursor
        if epoch < 0 or cursor < 0:
            raise ConfigError(f"invalid stream state {state}")
        while True:
            e = epoch if self.split == "train" else 0
            starts, n = self._starts(e), self.num_batches(e)
            if cursor > n:
                raise ConfigError(f"{self.path}: stream state {state} is past the end of epoch {epoch} ({n} batches)")
            g_size = self.batch_size * self.world_size
            for g in range(cursor, n):
                lo = g * g_size + self.rank * self.batch_size
                chosen = starts[lo : min(lo + self.batch_size, len(starts))]
                after = StreamState(epoch, g + 1)
                if self.split == "train" and g + 1 == n:
                    after = StreamState(epoch + 1, 0)
                yield self.materialise(chosen), after
            if self.split == "eval":
                return
            epoch, cursor = epoch + 1, 0

    def materialise(self, starts: np.ndarray) -> dict[str, np.ndarray]:
        """The blocks beginning at stream positions ``starts`` as a batch dict."""
        B, T = len(starts), self.seq_len
        positions = np.asarray(starts, dtype=np.int64)[:, None] + np.arange(T - 1, dtype=np.int64)[None, :]
        docs_before = np.searchsorted(self._sep, positions, side="left")  # SEPs strictly before each position
        is_sep = self._sep[np.minimum(docs_before, len(self._sep) - 1)] == positions
        special = np.full((B, T), _CHUNK, dtype=np.int64)
        special[:, 0] = _CLS
        special[:, 1:][is_sep] = _SEP
        embeddings = np.zeros((B, T, self.dim), dtype=np.float32)
        chunk = ~is_sep
        embeddings[:, 1:][chunk] = self.store.gather(self._chunk0 + (positions - docs_before)[chunk])
        return {"chunk_embeddings": embeddings, "special_ids": special}
