"""The order in which one epoch visits a split's samples: a pure function of (seed, epoch).

An epoch is cut into windows of `window_chunks` chunks. Shuffled, the epoch takes every chunk
of the split once in a uniformly random order (a permutation of the whole chunk table, as
MosaicML streaming computes a whole epoch's order up front), and permutes the samples of each
window uniformly (Grain-style index shuffle, over `window_chunks * chunk` samples). So every
sample comes exactly once per epoch, any chunk can follow any other, and a batch of B samples
lies as far apart in stored order as under a perfect shuffle, drawn from as many distinct
chunks as B uniform draws from `window_chunks` chunks give (W * (1 - (1 - 1/W)**B): 28 of
B = 32 for the 100-chunk default window at size 50). Unshuffled,
windows take the chunks in stored order and keep their samples in order.

Nothing here depends on how many readers decode the windows, or in which order they finish:
window `w` of epoch `e` is the same for the same seed, on any machine.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from pipeline.errors import require_positive_int


def check_seed(value, name: str = "seed") -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    return int(value)


@dataclass(frozen=True)
class EpochOrder:
    """Epoch `epoch` of a split whose chunks hold `counts` samples each (int64 (chunks,))."""

    counts: np.ndarray
    window_chunks: int
    seed: int
    epoch: int
    shuffle: bool = True

    def __post_init__(self):
        require_positive_int("window_chunks", self.window_chunks)
        check_seed(self.seed)
        check_seed(self.epoch, "epoch")

    @cached_property
    def chunk_order(self) -> np.ndarray:
        """int64 (chunks,): every chunk id once, in this epoch's order."""
        if not self.shuffle:
            return np.arange(len(self.counts), dtype=np.int64)
        return np.random.default_rng([self.seed, self.epoch]).permutation(len(self.counts))

    @property
    def windows(self) -> int:
        return -(-len(self.counts) // self.window_chunks)

    def window(self, w: int) -> np.ndarray:
        """int64: the chunk ids of window `w`, in order."""
        if not 0 <= w < self.windows:
            raise IndexError(f"window {w} of an epoch of {self.windows}")
        return self.chunk_order[w * self.window_chunks:(w + 1) * self.window_chunks]

    def permutation(self, w: int) -> np.ndarray | None:
        """The order of window `w`'s samples: int64 (n,), output position j takes sample perm[j]
        of the window's samples as stored, chunk after chunk; None when unshuffled (identity)."""
        if not self.shuffle:
            return None
        n = int(self.counts[self.window(w)].sum())
        return np.random.default_rng([self.seed, self.epoch, w]).permutation(n)


def window_chunks_for(window_samples: int, chunk: int) -> int:
    """Whole chunks covering `window_samples` samples (at least one)."""
    return max(1, -(-window_samples // chunk))
