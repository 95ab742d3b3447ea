"""JAX input feed: batches copied to the device ahead of the training step that consumes them."""
from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator

from pipeline.errors import require_positive_int

_END = object()  # the source is exhausted


def prefetch_to_device(iterator: Iterable, size: int = 2, device=None) -> Iterator[tuple]:
    """``iterator``'s batches (tuples of NumPy arrays) as tuples of jax arrays on ``device``, in order.

    A background thread pulls the next batches from ``iterator`` and hands them to
    ``jax.device_put`` while the caller holds batch k: batches k+1..k+size are on their way to the
    device. Pulling (cutting a batch, waiting for a window) and copying happen off the caller's
    thread, so they overlap the training step instead of adding to it. Device memory: size + 1
    batches. An exception of ``iterator`` is raised to the caller at the batch where it occurred;
    closing the feed stops the thread and closes ``iterator`` (where it can be closed).
    device: a ``jax.Device``, or None: JAX's default device, the arrays left uncommitted, as
      Keras leaves its variables. A jitted step compiles once per mix of committed and
      uncommitted arguments, so batches committed to a device cost Keras's train step extra compiles.
    """
    import jax

    require_positive_int("size", size)
    ready: queue.Queue = queue.Queue()
    slots = threading.Semaphore(size)  # batches pulled but not yet taken by the caller
    stop = threading.Event()
    source = iter(iterator)

    def produce() -> None:
        try:
            while True:
                slots.acquire()
                if stop.is_set():
                    return
                batch = next(source, _END)
                if batch is _END:
                    break
                ready.put(tuple(jax.device_put(tuple(batch), device)))
            ready.put(_END)
        except BaseException as e:  # handed to the caller, raised at the batch where it happened
            ready.put(e)
        finally:
            getattr(source, "close", lambda: None)()

    thread = threading.Thread(target=produce, name="prefetch-to-device", daemon=True)
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
