"""Data parallelism: one model replica per device, the global batch split evenly among them,
gradients averaged; the devices of this process, or of several (`pipeline.training.processes`).

JAX: `keras.distribution.DataParallel` over the first N devices of each process, processes in
order (Keras shards each global batch along its first axis). TensorFlow: `tf.distribute.MirroredStrategy`
over the first N GPUs, or over N logical CPU devices where there is no GPU (configured here,
before TensorFlow starts, which is how the tests run several devices on one CPU); on several
processes the `MultiWorkerMirroredStrategy` that `processes.join` made. The loader then runs under
`distribute_datasets_from_function`, one pipeline per process yielding that process's rows of each
global batch, cut into per-replica batches of `batch / replicas` that its replicas take in turn.
Every pipeline runs one endless stream of whole batches across epochs, as one device does.
"""
from __future__ import annotations

import contextlib

from pipeline.errors import UsageError


def default_devices() -> int:
    """Every accelerator this process drives; 1 on a CPU."""
    from pipeline.runtime.devices import gpus

    found = gpus()
    if found and hasattr(found[0], "process_index"):  # JAX lists every process's devices
        import jax

        found = [d for d in found if d.process_index == jax.process_index()]
    return max(1, len(found))


def check(devices: int, batch_size: int, processes: int = 1) -> None:
    """UsageError unless the global batch splits evenly over `devices` on each of `processes`."""
    if batch_size % (devices * processes):
        over = f"--devices {devices}" if processes == 1 else f"{processes} processes x --devices {devices}"
        raise UsageError(f"--batch-size {batch_size} is the global batch: it must split evenly over {over}")


def logical_cpus(count: int) -> None:
    """Let TensorFlow see `count` logical CPU devices (before it first runs; a no-op for 1)."""
    if count < 2:
        return
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * count)


def strategy_scope(backend: str, devices: int, cluster=None):
    """A context in which to build and compile the model for `devices` replicas on each process of
    `cluster` (a `processes.Cluster`; None: this process alone), and the TensorFlow strategy (None
    under JAX, or on one device of one process)."""
    processes = 1 if cluster is None else cluster.count
    if devices == 1 and processes == 1:
        return contextlib.nullcontext(), None
    if backend == "jax":
        import keras

        keras.distribution.set_distribution(keras.distribution.DataParallel(devices=jax_devices(devices),
                                                                            auto_shard_dataset=False))
        return contextlib.nullcontext(), None
    if processes > 1:
        return cluster.strategy.scope(), cluster.strategy
    import tensorflow as tf

    kind = "GPU" if tf.config.list_physical_devices("GPU") else "CPU"
    if kind == "CPU":
        logical_cpus(devices)
    visible = tf.config.list_logical_devices(kind)
    if len(visible) < devices:
        raise UsageError(f"--devices {devices}: TensorFlow sees {len(visible)} {kind} device(s)")
    strategy = tf.distribute.MirroredStrategy([d.name for d in visible[:devices]])
    return strategy.scope(), strategy


def jax_devices(devices: int) -> list:
    """The first `devices` devices of every JAX process, process 0's first: the mesh's order, so that
    process i's rows of a global batch (`pipeline.input.sharding`) are the i-th block of its batch axis."""
    import jax

    by_process: dict[int, list] = {}
    for d in jax.devices():
        by_process.setdefault(d.process_index, []).append(d)
    fewest = min(len(found) for found in by_process.values())
    if fewest < devices:
        raise UsageError(f"--devices {devices}: a JAX process sees {fewest} device(s)")
    return [d for p in sorted(by_process) for d in sorted(by_process[p], key=lambda d: d.id)[:devices]]


def distributed(strategy, per_process):
    """The dataset `per_process(context)` (a `tf.distribute.InputContext`: which process, how many, the
    per-replica batch) under `strategy`, one pipeline per process."""
    import tensorflow as tf

    return strategy.distribute_datasets_from_function(per_process,
                                                      tf.distribute.InputOptions(experimental_fetch_to_device=True))


def fit_on_workers(model) -> None:
    """Let `model.fit` run under a `MultiWorkerMirroredStrategy` of several workers, where Keras 3's
    TensorFlow trainer fails twice (keras-team/keras#20585):

    * fit first builds the model on its first batch, got by `strategy.reduce("MEAN", (x, y))`; across
      workers the strategy all-reduces that tuple as one tensor ("Attempt to convert a value
      (PerReplica:...) with an unsupported type ... to a Tensor"). The build needs only the batch's
      shapes and dtypes: here it takes this worker's first replica's part, with no collective (the
      stream is read again from its start afterwards, as on Keras's own path).
    * each step's logs (scalars per replica) are averaged by `strategy.reduce("MEAN", v, axis=0)`
      ("Invalid reduction dimension 0 for input with 0 dimensions"). Here the train step returns
      them with shape (1,), so that the same reduce averages them over the replicas: a scalar each.
    """
    import types

    import tensorflow as tf

    def first_replicas(value):
        if isinstance(value, tf.distribute.DistributedValues):
            return model.distribute_strategy.experimental_local_results(value)[0]
        return value

    def maybe_symbolic_build(self, iterator=None, data_batch=None):
        if iterator is not None:
            for _, _, it in iterator:
                data_batch = tf.nest.map_structure(first_replicas, next(it))
                break
        with self.distribute_strategy.scope():
            self._symbolic_build(data_batch=data_batch)

    train_step = model.train_step

    def train_step_of_vectors(data):
        return tf.nest.map_structure(lambda v: tf.reshape(v, (1,)) if v.shape.rank == 0 else v, train_step(data))

    model._maybe_symbolic_build = types.MethodType(maybe_symbolic_build, model)
    model.train_step = train_step_of_vectors
