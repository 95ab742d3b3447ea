"""The bench's baselines and budgets: in-memory pipelines shuffle every epoch, windows hold whole
epochs, input-bound fractions come from the recorded medians; `make_dataset` under a global seed."""
from __future__ import annotations

import itertools
import os

import numpy as np
import pytest

from pipeline.bench import baselines, load, train
from pipeline.bench import grid as grid_module


def _ids(n: int):
    """Frames whose every pixel is the sample's index, and labels = index: (n, 2, 2, 2), (n,)."""
    ids = np.arange(n, dtype=np.uint8)
    return np.broadcast_to(ids[:, None, None, None], (n, 2, 2, 2)).copy(), ids


def _epochs(batches, n: int, batch: int, epochs: int) -> list[np.ndarray]:
    steps = n // batch
    flat = []
    for frames, labels in itertools.islice(batches, steps * epochs):
        frames, labels = np.asarray(frames), np.asarray(labels)
        assert frames.shape == (batch, 2, 2, 2) and (frames[:, 0, 0, 0] == labels).all()
        flat.append(labels)
    flat = np.concatenate(flat)
    return [flat[e * steps * batch:(e + 1) * steps * batch] for e in range(epochs)]


@pytest.mark.parametrize("form", ["tf.data", "numpy"])
def test_in_memory_baseline_permutes_every_epoch(form):
    frames, labels = _ids(32)
    make = baselines.in_memory_dataset if form == "tf.data" else baselines.in_memory_batches
    first, second, third = _epochs(iter(make(frames, labels, 4, seed=3)), 32, 4, 3)
    for epoch in (first, second, third):
        assert sorted(epoch) == list(range(32))  # every sample exactly once
    assert list(first) != list(range(32))  # shuffled
    assert list(first) != list(second) and list(second) != list(third)  # a new order each epoch
    again = _epochs(iter(make(frames, labels, 4, seed=3)), 32, 4, 1)[0]
    assert list(again) == list(first)  # the same seed, the same order


@pytest.mark.parametrize("form", ["tf.data", "numpy"])
def test_in_memory_baseline_unshuffled_keeps_stored_order_and_drops_the_remainder(form):
    frames, labels = _ids(10)
    make = baselines.in_memory_dataset if form == "tf.data" else baselines.in_memory_batches
    epochs = _epochs(iter(make(frames, labels, 4, shuffle=False)), 10, 4, 2)
    assert [list(e) for e in epochs] == [list(range(8))] * 2


def test_a_batch_larger_than_the_arrays_is_refused():
    frames, labels = _ids(3)
    with pytest.raises(ValueError, match="at least one whole batch"):
        next(baselines.in_memory_batches(frames, labels, 4))


def test_synthetic_feed_repeats_one_batch_on_the_device():
    frames, labels = _ids(4)
    feed = baselines.synthetic("tensorflow", frames, labels)
    a, b = next(feed), next(feed)
    assert a[0] is b[0] and "CPU" in a[0].device or "GPU" in a[0].device
    assert (a[0].numpy() == frames).all()


def test_from_generator_baseline_visits_every_block_once_per_epoch(tiny_dataset):
    from pipeline.bench.data import shard_paths

    paths = shard_paths(tiny_dataset)  # 96 train samples in 3 shards of 32
    it = iter(baselines.from_generator_dataset(paths, 8, 8, seed=1))
    epochs = []
    for _ in range(2):
        epochs.append([bytes(next(it)[0].numpy()) for _ in range(12)])
    assert sorted(epochs[0]) == sorted(epochs[1]) and len(set(epochs[0])) == 12
    assert epochs[0] != epochs[1]


def test_input_bound_fraction_is_measured_against_synthetic():
    medians = {"ours": 25.0, "ours-packed": 20.0, "in-memory": 22.0, "synthetic": 20.0, "synthetic-packed": 19.0}
    bound = train.input_bound(medians)
    assert bound["ours"] == (pytest.approx(1 - 20 / 25), "synthetic")
    assert bound["in-memory"] == (pytest.approx(1 - 20 / 22), "synthetic")
    assert bound["ours-packed"] == (pytest.approx(1 - 19 / 20), "synthetic-packed")
    assert train.input_bound({"ours": 25.0}) == {}


def test_a_load_window_holds_whole_epochs_and_shuffle_windows():
    grid = grid_module.Grid(sizes=(50,), batch_sizes=(32,), dataset_samples=4096, load_min_epochs=3,
                            load_min_windows=5)
    assert load.window_batches(grid, 32, 1000) * 32 == 3 * 4096  # three epochs hold more
    assert load.window_batches(grid, 32, 3000) == -(-5 * 3000 // 32)  # five windows hold more
    assert load.window_batches(grid, 32, 10 ** 6) * 32 == 5 * 4096  # a window holds at most the epoch
    assert load.window_batches(grid, 100, 1000) * 100 >= 3 * (4096 // 100) * 100  # whole batches only


def test_each_timed_window_follows_an_untimed_read_of_all_a_pipeline_may_hold_ready():
    from pipeline.input.loader import PREFETCH_BATCHES

    ours_cell = load.LoadCell("ours-packed", 50, 32, readers=2)
    assert load.buffered_bound(ours_cell, "tensorflow", 3200, 4096) == 5 * 3200 + (PREFETCH_BATCHES + 2) * 32
    assert load.buffered_bound(ours_cell, "tensorflow", 10 ** 6, 4096) == 5 * 4096 + (PREFETCH_BATCHES + 2) * 32
    group = -(-(4 << 20) // (50 ** 3 // 8))  # the NumPy front end's lists of batches cut ahead
    assert load.buffered_bound(ours_cell, "jax", 3200, 4096) == (5 * 3200 + (PREFETCH_BATCHES + 2) * 32
                                                                 + PREFETCH_BATCHES * (group + 32))
    in_memory = load.LoadCell("in-memory", 50, 32)
    assert load.buffered_bound(in_memory, "tensorflow", 3200, 4096) == (PREFETCH_BATCHES + os.cpu_count()) * 32
    assert load.buffered_bound(in_memory, "jax", 3200, 4096) == 0


def test_load_cells_cover_mechanisms_readers_and_unshuffled_twins():
    grid = grid_module.PRESETS["full"]
    assert not {c for c in load.cells(grid_module.PRESETS["default"], 50, 32, "tensorflow") if not c.shuffle}
    cells = load.cells(grid, 50, 32, "tensorflow")
    names = {(c.impl, c.shuffle, c.readers) for c in cells}
    assert {("ours-packed", True, None), ("ours", True, None), ("ours-graph-packed", True, None),
            ("ours-packed", True, 1), ("in-memory", True, None), ("from_generator", True, None),
            ("ours-packed", False, None), ("ours", False, None), ("ours-graph-packed", False, None),
            ("in-memory", False, None)} <= names
    jax_cells = load.cells(grid, 50, 32, "jax")
    assert all(c.impl in ("ours", "ours-packed", "in-memory") for c in jax_cells)
    keys = [c.key("jax", "nbit-gzip") for c in jax_cells if c.ours]
    assert {(k["front_end"], k["mechanism"]) for k in keys} == {("numpy", "isal")}
    assert {k["readers"] for k in keys} == set(grid.reader_counts()) and all(k.get("workers") is None for k in keys)
    assert {c.key("tensorflow", "nbit-gzip")["front_end"] for c in cells} == {"tf.data"}


def test_make_dataset_works_under_a_global_keras_seed(tiny_dataset):
    """The train suite seeds with keras.utils.set_random_seed: the loader must not mind a global seed."""
    import keras

    from pipeline.bench.ours import tf_dataset

    keras.utils.set_random_seed(0)
    try:
        for options in (dict(), dict(packed=True), dict(mechanism="graph", packed=True)):
            it = iter(tf_dataset(tiny_dataset, 8, **options))
            frames, labels = next(it)
            assert frames.shape[0] == 8 and labels.shape == (8,)
    finally:
        pass
