"""pipeline.input.background.in_background: the same items in order, pulled `size` ahead by a thread
of its own, errors raised at their item, closing stops the thread."""
from __future__ import annotations

import threading
import time

import pytest

from pipeline.errors import DataError
from pipeline.input.background import in_background


def settled(count, expected, timeout=5.0) -> int:
    """`count()` once it equals `expected` (the thread works in the background), or after `timeout`."""
    deadline = time.monotonic() + timeout
    while count() != expected and time.monotonic() < deadline:
        time.sleep(0.001)
    time.sleep(0.02)  # and it stays there: the thread pulls no further
    return count()


def test_yields_the_same_items_in_order_transformed_when_asked():
    assert list(in_background(iter(range(7)), 2)) == list(range(7))
    assert list(in_background(range(4), 1, transform=lambda x: -x)) == [0, -1, -2, -3]
    assert list(in_background(iter([]), 3)) == []


@pytest.mark.parametrize("size", [1, 2, 3])
def test_pulls_size_items_ahead_of_the_caller(size):
    consumed = []

    def source():
        for i in range(6):
            consumed.append(i)
            yield i

    it = in_background(source(), size)
    assert consumed == []  # a generator: nothing is read before the first item is asked for
    for k in range(6 - size):
        next(it)
        # item k is out, items k+1..k+size are ready
        assert settled(lambda: len(consumed), k + 1 + size) == k + 1 + size
    assert len(list(it)) == size and len(consumed) == 6


def test_the_source_is_pulled_off_the_callers_thread():
    threads = set()

    def source():
        for i in range(4):
            threads.add(threading.current_thread())
            yield i

    assert len(list(in_background(source(), 2))) == 4
    assert threading.current_thread() not in threads


def test_an_error_of_the_source_reaches_the_caller_at_its_item():
    def source():
        yield from range(2)
        raise DataError("shard-3.h5: corrupt chunk")

    it = in_background(source(), 2)
    assert [next(it), next(it)] == [0, 1]
    with pytest.raises(DataError, match="shard-3.h5"):
        next(it)


def test_closing_stops_the_thread_and_closes_the_source():
    closed = threading.Event()

    def source():
        try:
            while True:
                yield 1
        finally:
            closed.set()

    it = in_background(source(), 2)
    next(it)
    before = threading.active_count()
    it.close()
    assert closed.wait(5) and threading.active_count() == before - 1


@pytest.mark.parametrize("size", [0, -1, True, 1.5])
def test_bad_size_raises(size):
    with pytest.raises(ValueError, match="size"):
        next(in_background(range(2), size))
