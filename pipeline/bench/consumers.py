"""How the bench takes batches from an input pipeline: from a Python loop, or from inside a
`tf.function` as `model.fit` does.

Either way a pull returns only once the batch is where a training step would read it: a
TensorFlow batch on the compute device (copied there when the pipeline left it on the host, as
a step would copy it), a JAX array on its device, a NumPy batch on the host. So every pipeline
of a comparison ends in the same place, whichever of them prefetches to the device.
"""
from __future__ import annotations

import functools
from collections.abc import Callable, Iterator

from pipeline.results.format import STEPS_PER_CALL_CONSUMER

# front end -> how training pulls it ("tf.function": as `fit` does, a step per call; "python": a Python loop)
TRAINING_CONSUMER = {"tf.data": "tf.function", "numpy": "python", "jax": "python"}


def materialize(x) -> None:
    """Wait until `x` exists where a step would read it (see the module docstring)."""
    if hasattr(x, "block_until_ready"):
        x.block_until_ready()
    elif hasattr(x, "numpy"):
        _on_compute_device(x)


@functools.lru_cache(maxsize=1)
def _compute_device():
    import tensorflow as tf

    from pipeline.runtime.devices import compute_device

    return tf.DeviceSpec.from_string(compute_device())


def _on_compute_device(x) -> None:
    import tensorflow as tf

    target, here = _compute_device(), tf.DeviceSpec.from_string(x.device)
    if (here.device_type, here.device_index or 0) == (target.device_type, target.device_index or 0) == ("CPU", 0):
        x.numpy()  # already there: a host tensor's numpy() waits for it and copies nothing
        return
    with tf.device(target.to_string()):
        # identity is a no-op where `x` already lives; reading one element back waits for the copy
        tf.reshape(tf.identity(x), (-1,))[0].numpy()


def python_puller(batches: Iterator) -> Callable[[], int]:
    """Pull `(frames, labels)` batches from a Python loop; each pull returns the batch's samples."""
    def pull() -> int:
        frames, labels = next(batches)
        materialize(frames)
        return int(labels.shape[0])

    return pull


def graph_puller(batches, steps: int = 1) -> Callable[..., int]:
    """Pull batches of a tf.data dataset or iterator as Keras's train function does: `next` inside a
    `tf.function`, each batch then read on the compute device; each pull takes `steps` batches in one
    call (as `fit` does with `steps_per_execution`; `pull(k)` takes k instead) and returns their samples."""
    import tensorflow as tf

    from pipeline.runtime.devices import compute_device

    iterator = iter(batches)
    device = compute_device()

    @tf.function
    def pull(it, k):
        samples = tf.constant(0)
        for _ in tf.range(k):
            frames, labels = next(it)
            with tf.device(device):
                first = tf.reshape(tf.identity(frames), (-1,))[0]
            samples += tf.shape(labels)[0] + tf.cast(first, tf.int32) * 0  # once the batch is on the device
        return samples

    return lambda k=steps: int(pull(iterator, tf.constant(k)))


def puller(consumer: str, batches, steps_per_call: int = 1) -> Callable[[], int]:
    """The pull function of `consumer` over `batches`: "python", "tf.function", or `STEPS_PER_CALL_CONSUMER`
    (a `tf.function` call takes `steps_per_call` batches on every `steps_per_call`-th pull; each pull
    accounts one batch's samples)."""
    if consumer == "tf.function":
        return graph_puller(batches)
    if consumer == STEPS_PER_CALL_CONSUMER:
        return _one_at_a_time(graph_puller(batches, steps_per_call), steps_per_call)
    if consumer == "python":
        return python_puller(iter(batches))
    raise ValueError(f"unknown consumer {consumer!r}; consumers are python, tf.function, {STEPS_PER_CALL_CONSUMER}")


def _one_at_a_time(pull_k: Callable[[], int], k: int) -> Callable[[], int]:
    """A pull per batch over a pull of `k` batches: the call is made on every k-th pull."""
    owed: list[int] = []

    def pull() -> int:
        if not owed:
            samples = pull_k()
            owed.extend([samples // k] * k)
        return owed.pop()

    return pull
