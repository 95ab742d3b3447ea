"""Data parallelism over this process's devices: one model replica per device, the global batch
split evenly among them, gradients averaged.

JAX: `keras.distribution.DataParallel` over the first N of `jax.devices()` (Keras shards each
global batch along its first axis). TensorFlow: `tf.distribute.MirroredStrategy` over the first N
GPUs, or over N logical CPU devices where there is no GPU (configured here, before TensorFlow
starts, which is how the tests run several devices on one CPU); the loader then runs under
`distribute_datasets_from_function`, yielding per-replica batches of `batch / N` whose N
consecutive ones make up the global batch that one device would take. Those pipelines run
endless passes of whole batches, as one device does with `--steps`; without `--steps` one device
takes one pass per epoch, its short last batch included, so epoch ends are cut differently.
"""
from __future__ import annotations

import contextlib

from pipeline.errors import UsageError


def default_devices() -> int:
    """Every visible accelerator; 1 on a CPU."""
    from pipeline.runtime.devices import gpus

    return max(1, len(gpus()))


def check(devices: int, batch_size: int) -> None:
    """UsageError unless the global batch splits evenly over `devices`."""
    if batch_size % devices:
        raise UsageError(f"--batch-size {batch_size} is the global batch: it must split evenly over "
                         f"--devices {devices}")


def logical_cpus(count: int) -> None:
    """Let TensorFlow see `count` logical CPU devices (before it first runs; a no-op for 1)."""
    if count < 2:
        return
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * count)


def strategy_scope(backend: str, devices: int):
    """A context in which to build and compile the model for `devices` replicas, and the TensorFlow
    strategy (None under JAX or with one device)."""
    if devices == 1:
        return contextlib.nullcontext(), None
    if backend == "jax":
        import jax
        import keras

        visible = jax.devices()
        if len(visible) < devices:
            raise UsageError(f"--devices {devices}: JAX sees {len(visible)} device(s)")
        keras.distribution.set_distribution(keras.distribution.DataParallel(devices=visible[:devices]))
        return contextlib.nullcontext(), None
    import tensorflow as tf

    kind = "GPU" if tf.config.list_physical_devices("GPU") else "CPU"
    if kind == "CPU":
        logical_cpus(devices)
    visible = tf.config.list_logical_devices(kind)
    if len(visible) < devices:
        raise UsageError(f"--devices {devices}: TensorFlow sees {len(visible)} {kind} device(s)")
    strategy = tf.distribute.MirroredStrategy([d.name for d in visible[:devices]])
    return strategy.scope(), strategy


def distributed(strategy, make_dataset, batch_size: int):
    """The dataset `make_dataset(per_replica_batch)` under `strategy`, one pipeline per worker."""
    import tensorflow as tf

    return strategy.distribute_datasets_from_function(
        lambda context: make_dataset(context.get_per_replica_batch_size(batch_size)),
        tf.distribute.InputOptions(experimental_fetch_to_device=True))
