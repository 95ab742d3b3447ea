"""Which Keras backend the bench runs on, and the few things that differ between backends.

Selecting one is `pipeline.backends.use` (the same as `train`'s `--backend`): set before Keras
is imported, refused where Keras already runs on another; with JAX, TensorFlow is never imported.
"""
from __future__ import annotations

import importlib.metadata
import importlib.util

from pipeline.bench.grid import BACKENDS

DISTRIBUTIONS = {"tensorflow": ("tensorflow", "tensorflow-cpu"), "jax": ("jax",)}


def select(name: str) -> str:
    """Make `name` Keras's backend in this process (before Keras is imported); UsageError if it cannot be."""
    from pipeline.backends import use

    use(name)
    return name


def importable() -> tuple[str, ...]:
    """The backends installed here, in BACKENDS order."""
    return tuple(b for b in BACKENDS if importlib.util.find_spec(b) is not None)


def version(name: str) -> str | None:
    for dist in DISTRIBUTIONS.get(name, (name,)):
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def materialize(x) -> None:
    """Wait until `x` (NumPy, a TensorFlow tensor or a JAX array) exists on its device."""
    if hasattr(x, "block_until_ready"):
        x.block_until_ready()
    elif hasattr(x, "numpy"):
        x.numpy()


def on_device(backend: str, *arrays):
    """`arrays` copied once to the compute device, as the backend's tensors (the synthetic feed)."""
    if backend == "jax":
        import jax

        out = tuple(jax.device_put(a) for a in arrays)
        for a in out:
            a.block_until_ready()
        return out
    import tensorflow as tf

    from pipeline.devices import compute_device

    with tf.device(compute_device()):
        return tuple(tf.identity(tf.constant(a)) for a in arrays)


def precision_policy(precision: str) -> str:
    """Keras dtype policy for a bench precision: float32, or mixed_bfloat16 (variables stay float32)."""
    return {"float32": "float32", "bfloat16": "mixed_bfloat16"}[precision]
