"""The pipelines our loader is measured against, used by the bench suites.

* in-memory: uint8 arrays already in memory, a fresh index permutation each epoch and one
  gather per batch (what a user with the whole dataset in RAM runs). `in_memory_dataset` is
  the tf.data form (`tf.random` permutation per epoch, `tf.gather` per batch), `in_memory_batches`
  the NumPy one (for JAX and the NumPy front end).
* from_generator: `tf.data.Dataset.from_generator` yielding batch-sized h5py block reads,
  shard order and block order permuted each epoch (no mixing within a block).
* synthetic: one batch already on the compute device, repeated: no input cost at all, the
  upper bound on training speed (as tf_cnn_benchmarks' `--use_synthetic_data`).

Every pipeline here repeats endlessly and yields only whole batches: an epoch is
`len(labels) // batch_size` batches. The tf.data ones end as our loader does
(`pipeline.input.loader.prefetch_ahead`: as many batches ready, on the accelerator when one is
present), so both sides of a ratio hold as many batches ready, in the same place.
"""
from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np

from pipeline.input.loader import prefetch_ahead


def _steps(n: int, batch_size: int) -> int:
    if batch_size < 1 or n < batch_size:
        raise ValueError(f"need at least one whole batch: {n} samples, batch size {batch_size}")
    return n // batch_size


def in_memory_dataset(frames, labels, batch_size: int, *, shuffle: bool = True, seed: int = 0):
    """tf.data batches `(frames (B, ...), labels (B,))` from arrays (NumPy, or tensors shared between
    pipelines) in memory, a new permutation each epoch."""
    import tensorflow as tf

    n = int(labels.shape[0])
    steps = _steps(n, batch_size)
    x, y = tf.convert_to_tensor(frames), tf.convert_to_tensor(labels)  # tensors pass through, uncopied

    def one_epoch(epoch_seed):
        order = (tf.random.experimental.stateless_shuffle(tf.range(n, dtype=tf.int64), seed=tf.stack([epoch_seed, 0]))
                 if shuffle else tf.range(n, dtype=tf.int64))
        return tf.data.Dataset.from_tensor_slices(tf.reshape(order[:steps * batch_size], (steps, batch_size)))

    # One int64 per epoch, rerandomized on every iteration (as `pipeline.input.loader` draws its epoch seeds).
    epochs = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)
    return (epochs.flat_map(one_epoch)
            .map(lambda idx: (tf.gather(x, idx), tf.gather(y, idx)), num_parallel_calls=tf.data.AUTOTUNE)
            .apply(prefetch_ahead))


def in_memory_batches(frames: np.ndarray, labels: np.ndarray, batch_size: int, *, shuffle: bool = True,
                      seed: int = 0):
    """NumPy batches `(frames (B, ...), labels (B,))` from arrays in memory, a new permutation each epoch."""
    n = len(labels)
    steps = _steps(n, batch_size)
    rng = np.random.default_rng(seed)
    while True:
        order = rng.permutation(n) if shuffle else np.arange(n)
        for s in range(steps):
            idx = order[s * batch_size:(s + 1) * batch_size]
            yield np.take(frames, idx, axis=0), np.take(labels, idx, axis=0)


def from_generator_dataset(paths: list[Path], batch_size: int, size: int, *, shuffle: bool = True, seed: int = 0):
    """`from_generator` over shard files `paths`, yielding batch-sized h5py block reads (no cross-shard batches)."""
    import h5py
    import tensorflow as tf

    def blocks():
        rng = np.random.default_rng(seed)
        while True:
            for s in (rng.permutation(len(paths)) if shuffle else range(len(paths))):
                with h5py.File(paths[s], "r") as f:
                    starts = np.arange(0, f["labels"].shape[0] - batch_size + 1, batch_size)
                    for start in (rng.permutation(starts) if shuffle else starts):
                        yield f["frames"][start:start + batch_size], f["labels"][start:start + batch_size]

    spec = (tf.TensorSpec((batch_size, size, size, size), tf.uint8), tf.TensorSpec((batch_size,), tf.uint8))
    return prefetch_ahead(tf.data.Dataset.from_generator(blocks, output_signature=spec))


def synthetic(backend: str, frames: np.ndarray, labels: np.ndarray):
    """Endless `(frames, labels)`: the same batch, copied to the compute device once."""
    from pipeline.bench.backend import on_device

    return itertools.repeat(on_device(backend, frames, labels))
