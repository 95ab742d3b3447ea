"""The few things the bench does differently per Keras backend: placing the synthetic feed on the
device.

The backend itself is chosen by `pipeline.runtime.backends.use`, as `train`'s `--backend` is.
"""
from __future__ import annotations


def on_device(backend: str, *arrays):
    """`arrays` copied once to the compute device, as the backend's tensors (the synthetic feed)."""
    if backend == "jax":
        import jax

        out = tuple(jax.device_put(a) for a in arrays)
        for a in out:
            a.block_until_ready()
        return out
    import tensorflow as tf

    from pipeline.runtime.devices import compute_device

    with tf.device(compute_device()):
        return tuple(tf.identity(tf.constant(a)) for a in arrays)
