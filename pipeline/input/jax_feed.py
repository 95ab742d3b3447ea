"""JAX input feed: batches copied to the device ahead of the training step that consumes them."""
from __future__ import annotations

from collections.abc import Iterable, Iterator

from pipeline.input.background import in_background


def prefetch_to_device(iterator: Iterable, size: int = 2, device=None) -> Iterator[tuple]:
    """``iterator``'s batches (tuples of NumPy arrays) as tuples of jax arrays on ``device``, in order.

    A background thread (`pipeline.input.background.in_background`) pulls the next batches from
    ``iterator`` and hands them to ``jax.device_put`` while the caller holds batch k: batches
    k+1..k+size are on their way to the device, and pulling and copying overlap the training step
    instead of adding to it. Device memory: size + 1 batches. An exception of ``iterator`` is
    raised to the caller at the batch where it occurred; closing the feed stops the thread and
    closes ``iterator`` (where it can be closed).
    device: a ``jax.Device``, or None: JAX's default device, the arrays left uncommitted, as
      Keras leaves its variables. A jitted step compiles once per mix of committed and
      uncommitted arguments, so batches committed to a device cost Keras's train step extra compiles.
    """
    import jax

    return in_background(iterator, size, lambda batch: tuple(jax.device_put(tuple(batch), device)),
                         name="prefetch-to-device")
