"""pipeline.input.order: every chunk once per epoch, windows, per-window permutations, and how well it mixes."""
from __future__ import annotations

import numpy as np
import pytest

from pipeline.input.order import EpochOrder, window_chunks_for

COUNTS = np.array([32] * 40 + [16] + [32] * 23 + [8], np.int64)  # shards end in short chunks


def test_every_chunk_once_and_windows_partition_the_epoch():
    order = EpochOrder(COUNTS, window_chunks=6, seed=3, epoch=0)
    assert sorted(order.chunk_order) == list(range(len(COUNTS)))
    assert order.windows == -(-len(COUNTS) // 6)
    windows = [order.window(w) for w in range(order.windows)]
    np.testing.assert_array_equal(np.concatenate(windows), order.chunk_order)
    for w, chunks in enumerate(windows):
        assert sorted(order.permutation(w)) == list(range(int(COUNTS[chunks].sum())))
    with pytest.raises(IndexError):
        order.window(order.windows)


def test_same_seed_same_order_other_seed_or_epoch_differ():
    a = EpochOrder(COUNTS, 4, seed=1, epoch=0)
    assert np.array_equal(a.chunk_order, EpochOrder(COUNTS, 4, seed=1, epoch=0).chunk_order)
    assert np.array_equal(a.permutation(2), EpochOrder(COUNTS, 4, seed=1, epoch=0).permutation(2))
    assert not np.array_equal(a.chunk_order, EpochOrder(COUNTS, 4, seed=1, epoch=1).chunk_order)
    assert not np.array_equal(a.chunk_order, EpochOrder(COUNTS, 4, seed=2, epoch=0).chunk_order)
    assert not np.array_equal(a.permutation(0), a.permutation(1)[:len(a.permutation(0))])


def test_unshuffled_is_stored_order():
    order = EpochOrder(COUNTS, 5, seed=1, epoch=3, shuffle=False)
    np.testing.assert_array_equal(order.chunk_order, np.arange(len(COUNTS)))
    assert order.permutation(0) is None


def test_window_chunks_round_up_to_whole_chunks():
    assert [window_chunks_for(n, 32) for n in (1, 32, 33, 4096)] == [1, 1, 2, 128]


@pytest.mark.parametrize("bad", [dict(window_chunks=0), dict(seed=-1), dict(epoch=-2)])
def test_bad_arguments(bad):
    with pytest.raises(ValueError, match=next(iter(bad))):
        EpochOrder(COUNTS, **({"window_chunks": 4, "seed": 0, "epoch": 0} | bad))


def stored_positions(order: EpochOrder) -> np.ndarray:
    """The epoch's samples as stored positions (index in the split), in the order the epoch yields them."""
    first = np.concatenate([[0], np.cumsum(COUNTS)[:-1]])
    out = []
    for w in range(order.windows):
        samples = np.concatenate([first[c] + np.arange(COUNTS[c]) for c in order.window(w)])
        out.append(samples[order.permutation(w)])
    return np.concatenate(out)


@pytest.mark.parametrize("window", [16, 48])
def test_mixing_against_a_perfect_shuffle(window):
    """A batch's samples lie as far apart in stored order as those of a uniform permutation of the
    whole split, and come from as many distinct chunks as uniform draws from a window's chunks give."""
    batch, n = 32, int(COUNTS.sum())
    chunk_of = np.repeat(np.arange(len(COUNTS)), COUNTS)
    rng = np.random.default_rng(0)

    def spread(positions):
        batches = positions[:len(positions) // batch * batch].reshape(-1, batch)
        distance = np.mean([np.abs(b[:, None] - b[None, :]).sum() / (batch * (batch - 1)) for b in batches])
        chunks = np.mean([len(np.unique(chunk_of[b])) for b in batches])
        return distance, chunks

    ours = spread(stored_positions(EpochOrder(COUNTS, window_chunks=window, seed=5, epoch=0)))
    perfect = spread(rng.permutation(n))
    stored = spread(np.arange(n))
    assert ours[0] > 0.9 * perfect[0] and stored[0] < 0.05 * perfect[0]  # mean pairwise distance ~ n/3
    uniform_draws = window * (1 - (1 - 1 / window) ** batch)  # expected distinct chunks among `batch` draws
    assert 0.9 * uniform_draws < ours[1] <= perfect[1] * 1.05 and stored[1] <= 2
