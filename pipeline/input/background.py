"""An iterator run ahead of its caller in a background thread: the last stage of the NumPy and
JAX front ends, as `prefetch` is of a tf.data pipeline.

Whatever pulling an item costs (cutting a batch out of a window, copying one that spans two,
waiting for the next window, copying it to a device) then happens off the caller's thread and
overlaps the training step instead of adding to it.

The threads are stopped and joined at exit, before the interpreter finalizes: a thread still inside
native code then (a `jax.device_put`) is ended as it asks for the GIL, and C++ that catches the
unwinding aborts the process ("FATAL: exception not rethrown").
"""
from __future__ import annotations

import atexit
import queue
import threading
from collections.abc import Callable, Iterable, Iterator

from pipeline.errors import require_positive_int

# Batches every front end makes ready ahead of its consumer (tf.data's prefetch, and this module's
# thread for NumPy and JAX): a fixed count, so that memory has a bound that does not depend on the pace.
PREFETCH_BATCHES = 2
_END = object()  # the source is exhausted
JOIN_AT_EXIT_S = 5.0  # the longest exit waits for a thread to finish the item it is pulling
_RUNNING: set = set()  # (stop, slots, thread) of every producer not yet closed


@atexit.register
def _stop_running() -> None:
    """Stop every producer and join it (each finishes the item in hand), while the interpreter is whole."""
    running = list(_RUNNING)
    for stop, slots, _ in running:
        stop.set()
        slots.release()
    for _, _, thread in running:
        thread.join(JOIN_AT_EXIT_S)


def in_background(iterable: Iterable, size: int, transform: Callable | None = None,
                  name: str = "prefetch") -> Iterator:
    """The items of `iterable` (each passed through `transform` when given), in order, pulled by a
    background thread up to `size` items ahead of the caller.

    At most `size` items are pulled but not yet taken (the caller holds one more). An exception
    of `iterable` or `transform` is raised to the caller at the item where it occurred; closing
    this iterator stops the thread and closes `iterable` (where it can be closed).
    """
    require_positive_int("size", size)
    ready: queue.Queue = queue.Queue()
    slots = threading.Semaphore(size)  # items pulled but not yet taken by the caller
    stop = threading.Event()
    source = iter(iterable)

    def produce() -> None:
        try:
            while True:
                slots.acquire()
                if stop.is_set():  # closed, or the interpreter exits: an end a consumer further on sees
                    break
                item = next(source, _END)
                if item is _END:
                    break
                ready.put(transform(item) if transform else item)
            ready.put(_END)
        except BaseException as e:  # handed to the caller, raised at the item where it happened
            ready.put(e)
        finally:
            getattr(source, "close", lambda: None)()

    thread = threading.Thread(target=produce, name=name, daemon=True)
    running = (stop, slots, thread)
    _RUNNING.add(running)
    thread.start()
    try:
        while True:
            item = ready.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            slots.release()
            yield item
    finally:
        stop.set()
        slots.release()  # wakes a producer waiting for a slot, so that it sees `stop`
        thread.join()
        _RUNNING.discard(running)
