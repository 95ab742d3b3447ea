"""Choosing the Keras backend: installed backends, memory growth under TensorFlow, refusals."""
from __future__ import annotations

import subprocess
import sys

import pytest

from helpers import ROOT
from pipeline.errors import UsageError
from pipeline.runtime import backends


def fresh(code: str, **env) -> str:
    """stdout of `code` in a fresh Python process (Keras not yet imported), with `env` added."""
    import os

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT,
                         env={**{k: v for k, v in os.environ.items() if k != "TF_FORCE_GPU_ALLOW_GROWTH"}, **env})
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout.strip()


def test_installed_backends_are_listed_in_order():
    assert backends.installed() == ("tensorflow", "jax")  # `make setup` installs both


def test_tensorflow_grows_gpu_memory_unless_the_user_chose():
    code = ("import os; from pipeline.runtime import backends; backends.use('tensorflow'); "
            "print(os.environ['KERAS_BACKEND'], os.environ['TF_FORCE_GPU_ALLOW_GROWTH'])")
    assert fresh(code) == "tensorflow true"
    assert fresh(code, TF_FORCE_GPU_ALLOW_GROWTH="false") == "tensorflow false"


def test_jax_makes_tensorflow_unimportable():
    code = ("from pipeline.runtime import backends; backends.use('jax')\n"
            "try:\n    import tensorflow\nexcept ImportError:\n    print('refused')")
    assert fresh(code) == "refused"


def test_another_backend_in_the_same_process_is_refused():
    import keras

    other = "jax" if keras.backend.backend() == "tensorflow" else "tensorflow"
    with pytest.raises(UsageError, match="already runs on"):
        backends.use(other)
    with pytest.raises(ValueError, match="backend must be one of"):
        backends.use("torch")
