"""JAX input feed: batches copied to the device ahead of the training step that consumes them."""
from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

import numpy as np

from pipeline.errors import require_positive_int
from pipeline.input.background import in_background
from pipeline.input.reader import ALIGN, GROUP_BYTES, aligned_empty


def prefetch_to_device(iterator: Iterable, size: int = 2, device=None) -> Iterator[tuple]:
    """``iterator``'s batches (tuples of NumPy arrays) as tuples of jax arrays on ``device``, in order.

    A background thread (`pipeline.input.background.in_background`) pulls the next batches from
    ``iterator`` and hands them to ``jax.device_put`` while the caller holds batch k, so that pulling
    and copying overlap the training step instead of adding to it. Batches travel in groups of at
    least `GROUP_BYTES` (or one batch where a batch is larger), one ``device_put`` and one handoff
    to the caller per group: a call per small batch costs more than copying it. ``size`` groups are
    on their way to the device ahead of the caller's; device memory: size + 1 groups.
    An exception of ``iterator`` is raised to the caller at the batch where it occurred; closing
    the feed stops the thread and closes ``iterator`` (where it can be closed).
    device: a ``jax.Device``, or None: JAX's default device, the arrays left uncommitted, as
      Keras leaves its variables. A jitted step compiles once per mix of committed and
      uncommitted arguments, so batches committed to a device cost Keras's train step extra compiles.
    """
    import jax

    require_positive_int("size", size)

    def put(group):
        return jax.device_put([tuple(map(aligned, batch)) for batch in group], device)

    groups = in_background(_groups(iterator), size, put, name="prefetch-to-device")
    try:
        for group in groups:
            yield from map(tuple, group)
    finally:
        groups.close()


def stopper(feed: Iterator, source) -> Callable[[], None]:
    """A function that stops `feed` (a `prefetch_to_device` over `source`), then `source`. Its thread may
    be inside `source`: closing `source` first raises "generator already executing" there. Closing the
    feed joins the thread, which closes `source`; a feed that never started leaves `source` to close."""
    def stop() -> None:
        feed.close()
        source.close()

    return stop


def _groups(batches: Iterable) -> Iterator[list]:
    """Lists of consecutive batches, each of at least GROUP_BYTES (the last list may hold fewer); an
    exception of `batches` comes after the batches before it."""
    group, held = [], 0
    source = iter(batches)
    try:
        for batch in source:
            group.append(batch)
            held += sum(getattr(a, "nbytes", 0) for a in batch)
            if held >= GROUP_BYTES:
                yield group
                group, held = [], 0
    except Exception as e:
        if group:
            yield group
        raise e
    finally:
        getattr(source, "close", lambda: None)()
    if group:
        yield group


def aligned(array: np.ndarray) -> np.ndarray:
    """`array`, or a copy of it whose data starts on an ALIGN-byte boundary. JAX's CPU client takes an
    aligned array as it is and copies any other itself, several times slower than NumPy copies it (a
    batch's view into a window is aligned only where the batches before it end on a boundary)."""
    if not isinstance(array, np.ndarray) or array.ctypes.data % ALIGN == 0:
        return array
    out = aligned_empty((array.nbytes,)).view(array.dtype).reshape(array.shape)
    out[...] = array
    return out
