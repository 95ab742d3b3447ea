"""pipeline.input.jax_feed.prefetch_to_device: the same batches, in order, as JAX arrays on the device
(the thread that runs ahead is `pipeline.input.background`, tested in test_background)."""
from __future__ import annotations

import threading

import numpy as np
import pytest

jax = pytest.importorskip("jax")

from pipeline.input.jax_feed import prefetch_to_device  # noqa: E402


def batches(n: int):
    return [(np.full((2, 3), i, np.uint8), np.arange(i, i + 2, dtype=np.uint8)) for i in range(n)]


def test_yields_the_same_values_in_the_same_order_as_jax_arrays():
    out = list(prefetch_to_device(iter(batches(5)), size=2))
    assert len(out) == 5
    for got, expected in zip(out, batches(5)):
        assert isinstance(got, tuple) and all(isinstance(a, jax.Array) for a in got)
        for a, b in zip(got, expected):
            assert a.dtype == b.dtype
            np.testing.assert_array_equal(np.asarray(a), b)


def test_batches_are_pulled_and_copied_off_the_callers_thread():
    threads = set()

    def source():
        for b in batches(4):
            threads.add(threading.current_thread())
            yield b

    assert len(list(prefetch_to_device(source()))) == 4
    assert threading.current_thread() not in threads


def test_puts_batches_on_the_given_device_and_takes_short_sources():
    device = jax.devices()[0]
    out = list(prefetch_to_device(batches(1), size=4, device=device))
    assert len(out) == 1 and out[0][0].devices() == {device}
    assert list(prefetch_to_device(iter([]))) == []


@pytest.mark.parametrize("size", [0, -1, True, 1.5])
def test_bad_size_raises(size):
    with pytest.raises(ValueError, match="size"):
        next(prefetch_to_device(batches(2), size=size))


def test_batches_travel_in_groups_of_at_least_group_bytes(monkeypatch):
    from pipeline.input import jax_feed

    calls = []
    real = jax.device_put
    monkeypatch.setattr(jax, "device_put", lambda x, device=None: calls.append(len(x)) or real(x, device))
    monkeypatch.setattr(jax_feed, "GROUP_BYTES", 3 * 8)  # a batch here holds 8 bytes: groups of 3
    out = list(prefetch_to_device(iter(batches(7))))
    assert calls == [3, 3, 1]
    assert [int(np.asarray(f)[0, 0]) for f, _ in out] == list(range(7))


def test_an_error_of_the_source_comes_after_the_batches_before_it():
    def source():
        yield from batches(2)
        raise OSError("shard gone")

    feed = prefetch_to_device(source())
    assert len([next(feed), next(feed)]) == 2
    with pytest.raises(OSError, match="shard gone"):
        next(feed)


def test_unaligned_arrays_are_copied_to_an_aligned_buffer_and_aligned_ones_pass_through():
    from pipeline.input.jax_feed import aligned
    from pipeline.input.reader import ALIGN, aligned_empty

    base = aligned_empty((4 * ALIGN,))
    base[:] = np.arange(4 * ALIGN) % 251
    view = base[1:1 + 2 * ALIGN].view(np.uint16)
    copy = aligned(view)
    assert copy.ctypes.data % ALIGN == 0 and copy.dtype == np.uint16
    np.testing.assert_array_equal(copy, view)
    assert aligned(base) is base


def test_the_stopper_closes_a_source_the_feeds_thread_is_inside_and_one_never_started(monkeypatch):
    import time

    from pipeline.input import jax_feed
    from pipeline.input.jax_feed import stopper

    monkeypatch.setattr(jax_feed, "GROUP_BYTES", 1)  # a group per batch: the thread pulls on ahead

    def slow():
        for b in batches(100):
            time.sleep(0.05)
            yield b

    source = slow()
    feed = prefetch_to_device(source)
    next(feed)
    time.sleep(0.01)  # the thread is inside `source`, pulling the next batch (50 ms each)
    with pytest.raises(ValueError, match="generator already executing"):
        source.close()
    stopper(feed, source)()  # closing `source` first would raise "generator already executing"
    assert source.gi_frame is None
    idle = slow()
    stopper(prefetch_to_device(idle), idle)()
    assert idle.gi_frame is None
