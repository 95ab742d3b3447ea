"""The Keras backend of a command's process: TensorFlow or JAX, chosen before Keras is imported.

Keras reads ``KERAS_BACKEND`` once, when it is first imported, so ``train``, ``evaluate`` and
``predict`` call ``use(args.backend)`` at the start of ``run`` and import Keras after it.
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import sys

from pipeline.errors import UsageError

BACKENDS = ("tensorflow", "jax")


def add_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--backend", default="tensorflow", choices=BACKENDS,
                   help="Keras backend; jax reads the dataset with pipeline.input.reader and never imports TensorFlow")


def installed() -> tuple[str, ...]:
    """The backends importable here, in BACKENDS order."""
    return tuple(b for b in BACKENDS if importlib.util.find_spec(b) is not None)


def use(name: str) -> None:
    """Make ``name`` this process's Keras backend; UsageError if it is not installed, or if Keras
    already runs on another one here.

    Under JAX, TensorFlow is also made unimportable for the rest of the process: Keras imports it
    whenever it is installed (saving's type checks, ``keras.utils.set_random_seed``) and then
    carries on without it when it is absent. A JAX run needs none of it, neither its import time
    and memory nor, on a GPU, a second CUDA runtime beside JAX's.

    Under TensorFlow, GPU memory grows as it is used (``TF_FORCE_GPU_ALLOW_GROWTH``, unless the
    user set it): by default TensorFlow maps nearly all memory of every visible GPU at start, so
    one run on a node would block its other GPUs.
    """
    if name not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {name!r}")
    if name == "tensorflow":
        os.environ.setdefault("TF_FORCE_GPU_ALLOW_GROWTH", "true")  # read when TensorFlow first sees a GPU
    keras = sys.modules.get("keras")
    if keras is None:
        if importlib.util.find_spec(name) is None:
            raise UsageError(f"--backend {name}: {name} is not installed in this environment")
        os.environ["KERAS_BACKEND"] = name
    elif keras.backend.backend() != name:
        raise UsageError(f"--backend {name}: Keras already runs on {keras.backend.backend()} in this process "
                         "(it fixes its backend when first imported)")
    if name == "jax" and "tensorflow" not in sys.modules:
        sys.modules["tensorflow"] = None  # `import tensorflow` now raises ImportError
