"""JAX input feed: batches copied to the device ahead of the training step that consumes them."""
from __future__ import annotations

import collections
import itertools
from collections.abc import Iterable, Iterator

from pipeline.errors import require_positive_int


def prefetch_to_device(iterator: Iterable, size: int = 2, device=None) -> Iterator[tuple]:
    """``iterator``'s batches (tuples of NumPy arrays) as tuples of jax arrays on ``device``, in order.

    While the caller holds batch k, batches k+1..k+size are already handed to ``jax.device_put``,
    which returns at once and copies in the background: the host-to-device copies overlap the
    steps before them (as flax's ``jax_utils.prefetch_to_device``). Device memory: size + 1 batches.
    device: a ``jax.Device``, or None: JAX's default device, the arrays left uncommitted, as
      Keras leaves its variables. A jitted step compiles once per mix of committed and
      uncommitted arguments, so batches committed to a device cost Keras's train step extra compiles.
    """
    import jax

    require_positive_int("size", size)
    source = iter(iterator)
    queue: collections.deque = collections.deque()

    def enqueue(n: int) -> None:
        for batch in itertools.islice(source, n):
            queue.append(tuple(jax.device_put(tuple(batch), device)))

    enqueue(size)
    while queue:
        batch = queue.popleft()
        enqueue(1)
        yield batch
