"""Resuming a stream: `start_step` yields exactly the batches an uninterrupted stream yields from
that step on, reads nothing before the window that holds it, and `state()` says where to resume
(tested at every step of two epochs, as Grain tests its iterators)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from pipeline.dataset.generate import run_generation
from pipeline.dataset.manifest import DatasetParams
from pipeline.input.reader import WindowReader, batch_stream
from pipeline.input.source import open_dataset

SAMPLES = 150  # shards of 64 and 22 samples: chunks of 16 and shorter ones, windows of unequal sizes


@pytest.fixture(scope="module")
def src(tmp_path_factory):
    d = tmp_path_factory.mktemp("position") / "d"
    run_generation(d, DatasetParams(size=10, samples=SAMPLES, test_samples=20, shard_size=64, chunk=16, seed=3),
                   workers=1, progress=False)
    return open_dataset(d, "train")


def stream(src, **options):
    return batch_stream(None, "train", options.pop("batch_size", 12), source=src, seed=5, epochs=2,
                        shuffle_window=40, **options)


def same(a, b):
    assert len(a) == len(b)
    for (fa, la), (fb, lb) in zip(a, b):
        np.testing.assert_array_equal(fa, fb)
        np.testing.assert_array_equal(la, lb)


@pytest.mark.parametrize("batch_size, drop_remainder", [(12, False), (16, True), (7, False)])
def test_every_step_of_two_epochs_resumes_to_the_same_batches(src, batch_size, drop_remainder):
    whole = list(stream(src, batch_size=batch_size, drop_remainder=drop_remainder))
    for k in range(len(whole) + 1):
        same(list(stream(src, batch_size=batch_size, drop_remainder=drop_remainder, start_step=k)), whole[k:])


def test_a_resumed_stream_reads_nothing_before_the_window_that_holds_its_step(src, monkeypatch):
    reads = []
    original = WindowReader.read
    monkeypatch.setattr(WindowReader, "read", lambda self, e, w: reads.append((e, w)) or original(self, e, w))
    reader = WindowReader(src, seed=5, window_samples=40)
    for k in (0, 4, 13, 20):
        reads.clear()
        it = stream(src, start_step=k, prefetch=0, readers=1)
        next(it)
        it.close()
        epoch, window, skip = reader.locate(k * 12)
        assert reads[0] == (epoch, window) and skip < 48  # a window holds at most 3 chunks of 16
        assert all((e, w) >= (epoch, window) for e, w in reads)


def test_locate_counts_samples_across_windows_and_epochs(src):
    reader = WindowReader(src, seed=5, window_samples=40)
    sizes = [len(reader.read(e, w)[1]) for e in (0, 1) for w in range(reader.windows_per_epoch())]
    starts = np.cumsum([0, *sizes])
    for sample in range(2 * SAMPLES):
        epoch, w, skip = reader.locate(sample)
        flat = epoch * reader.windows_per_epoch() + w
        assert starts[flat] + skip == sample and 0 <= skip < sizes[flat]


def test_state_names_the_next_step_and_resumes_there(src):
    whole = list(stream(src))
    it = stream(src)
    for _ in range(7):
        next(it)
    state = json.loads(json.dumps(it.state()))
    it.close()
    assert state == {"seed": 5, "batch_size": 12, "step": 7, "epoch": 0, "next_sample": 84}
    resumed = stream(src, start_step=state["step"])
    same(list(resumed), whole[7:])
    assert resumed.state()["step"] == len(whole) and resumed.state()["epoch"] == 2


@pytest.mark.parametrize("packed", [False, True])
def test_the_tf_data_front_end_resumes_at_the_same_batches(src, packed):
    from pipeline.input.loader import make_dataset

    endless = batch_stream(None, "train", 12, source=src, seed=5, epochs=None, shuffle_window=40, packed=packed,
                           drop_remainder=True)
    whole = [next(endless) for _ in range(30)]
    endless.close()
    for k in (0, 1, 5, 12, 13, 24):
        ds = make_dataset(None, "train", 12, source=src, seed=5, repeat=True, shuffle_window=40, packed=packed,
                          drop_remainder=True, start_step=k)
        same([(f.numpy(), y.numpy()) for f, y in ds.take(30 - k)], whole[k:])


def test_without_repeat_the_first_iteration_is_the_rest_of_the_epoch(src):
    from pipeline.input.loader import make_dataset

    whole = list(stream(src))  # 300 samples in batches of 12: epoch 0 is batches 0-11 and half of 12
    ds = make_dataset(None, "train", 12, source=src, seed=5, shuffle_window=40, start_step=10)
    first = [(f.numpy(), y.numpy()) for f, y in ds]
    assert [len(y) for _, y in first] == [12, 12, 6]
    same(first[:2], whole[10:12])
    np.testing.assert_array_equal(first[2][1], whole[12][1][:6])
    second = [y.numpy() for _, y in ds]
    assert len(second) == 13  # the next iteration is the whole next epoch


def test_bad_start_steps_are_refused(src):
    from pipeline.input.loader import make_dataset

    for bad in (-1, True, 1.5):
        with pytest.raises(ValueError, match="start_step must be a non-negative integer"):
            stream(src, start_step=bad)
        with pytest.raises(ValueError, match="start_step must be a non-negative integer"):
            make_dataset(None, "train", 12, source=src, start_step=bad)
    with pytest.raises(ValueError, match="start_step needs mechanism 'isal' or 'process'"):
        make_dataset(None, "train", 12, source=src, mechanism="graph", start_step=3)
