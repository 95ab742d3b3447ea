"""Our loader as each backend's users call it: endless, shuffled, whole batches only.

TensorFlow: `pipeline.input.loader.make_dataset` (tf.data). JAX: `pipeline.input.reader.batch_stream`
NumPy batches through `pipeline.input.jax_feed.prefetch_to_device` (the next batches already on the
device while the current step runs). Batches are `(frames, labels)`: frames uint8
(B, T, S, S), or bit-packed (B, S**3 / 8) with `packed`.
"""
from __future__ import annotations


def tf_dataset(directory, batch_size: int, *, packed: bool = False, mechanism: str = "auto",
               readers: int | None = None, shuffle: bool = True, seed: int = 0):
    from pipeline.input.loader import make_dataset

    return make_dataset(directory, "train", batch_size, shuffle=shuffle, seed=seed, repeat=True,
                        drop_remainder=True, packed=packed, mechanism=mechanism, readers=readers)


def numpy_batches(directory, batch_size: int, *, packed: bool = False, readers: int | None = None,
                  shuffle: bool = True, seed: int = 0):
    from pipeline.input.reader import batch_stream

    return batch_stream(directory, "train", batch_size, shuffle=shuffle, seed=seed, epochs=None,
                        drop_remainder=True, readers=readers, packed=packed)


def jax_batches(directory, batch_size: int, *, packed: bool = False, readers: int | None = None,
                shuffle: bool = True, seed: int = 0):
    from pipeline.input.jax_feed import prefetch_to_device

    return prefetch_to_device(numpy_batches(directory, batch_size, packed=packed, readers=readers,
                                            shuffle=shuffle, seed=seed))


def batches(backend: str, directory, batch_size: int, **options):
    """An iterator of our batches for `backend` (options as `tf_dataset`; JAX ignores `mechanism`)."""
    if backend == "jax":
        options.pop("mechanism", None)
        return jax_batches(directory, batch_size, **options)
    return iter(tf_dataset(directory, batch_size, **options))
