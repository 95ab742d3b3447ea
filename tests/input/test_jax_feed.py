"""pipeline.input.jax_feed.prefetch_to_device: same batches, same order, `size` batches transferred ahead."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest

jax = pytest.importorskip("jax")

from pipeline.errors import DataError  # noqa: E402
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


def settled(count, expected, timeout=5.0) -> int:
    """`count()` once it equals `expected` (the feed's thread works in the background), or after `timeout`."""
    deadline = time.monotonic() + timeout
    while count() != expected and time.monotonic() < deadline:
        time.sleep(0.001)
    time.sleep(0.02)  # and it stays there: the thread pulls no further
    return count()


@pytest.mark.parametrize("size", [1, 2, 3])
def test_transfers_size_batches_ahead_of_the_consumer(size):
    consumed = []

    def source():
        for i, b in enumerate(batches(6)):
            consumed.append(i)
            yield b

    feed = prefetch_to_device(source(), size=size)
    assert consumed == []  # a generator: nothing is read before the first batch is asked for
    for k in range(6 - size):
        next(feed)
        # batch k is out, batches k+1..k+size are on the device
        assert settled(lambda: len(consumed), k + 1 + size) == k + 1 + size
    assert len(list(feed)) == size and len(consumed) == 6


def test_the_source_is_pulled_off_the_callers_thread():
    threads = set()

    def source():
        for b in batches(4):
            threads.add(threading.current_thread())
            yield b

    assert len(list(prefetch_to_device(source()))) == 4
    assert threading.current_thread() not in threads


def test_an_error_of_the_source_reaches_the_caller_at_its_batch():
    def source():
        yield from batches(2)
        raise DataError("shard-3.h5: corrupt chunk")

    feed = prefetch_to_device(source(), size=2)
    assert len([next(feed), next(feed)]) == 2
    with pytest.raises(DataError, match="shard-3.h5"):
        next(feed)


def test_closing_the_feed_stops_its_thread_and_closes_the_source():
    closed = threading.Event()

    def source():
        try:
            while True:
                yield batches(1)[0]
        finally:
            closed.set()

    feed = prefetch_to_device(source(), size=2)
    next(feed)
    before = threading.active_count()
    feed.close()
    assert closed.wait(5) and threading.active_count() == before - 1


def test_puts_batches_on_the_given_device_and_takes_short_sources():
    device = jax.devices()[0]
    out = list(prefetch_to_device(batches(1), size=4, device=device))
    assert len(out) == 1 and out[0][0].devices() == {device}
    assert list(prefetch_to_device(iter([]))) == []


@pytest.mark.parametrize("size", [0, -1, True, 1.5])
def test_bad_size_raises(size):
    with pytest.raises(ValueError, match="size"):
        next(prefetch_to_device(batches(2), size=size))
