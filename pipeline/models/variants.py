"""``fast`` built from other layers: what each of its choices is worth, and that each computes the
same function. For `bench/fast_ablation.py` and the tests; ``build_model("fast")`` is the model to
use, and it picks its layers per device.

CNN (per frame, weights and outputs of the book's Conv2D -> MaxPooling2D -> Flatten):
"lookup" (``LookupConvPool``, what ``fast`` uses), "fused" (``ConvPool``, any input values),
"keras" (the three Keras layers). LSTM: "projected" (``ProjectedLSTM``, ``fast`` on CPUs and
under JAX) or "keras" (``keras.layers.LSTM``, ``fast`` on GPUs under TensorFlow, cuDNN there).
"""
from __future__ import annotations

import keras
from keras import layers

from pipeline.models.layers import ConvPool, FramesToFloat, LookupConvPool, ProjectedLSTM
from pipeline.models.networks import (
    LSTM_UNITS,
    book_cnn_layers,
    compile_model,
    default_jit_compile,
    fold_time_model,
    precision_policy,
)

CNNS = ("lookup", "fused", "keras")
LSTMS = ("projected", "keras")


def build_fast_variant(size: int, *, cnn: str = "lookup", lstm: str = "projected",
                       mixed_precision: bool | str | None = None, jit_compile: bool | str | None = None,
                       learning_rate: float = 1e-3) -> keras.Model:
    """A compiled ``fast`` with the given CNN and LSTM, taking uint8 ``(B, T, S, S)`` frames.

    mixed_precision: as ``build_fast``; jit_compile: None -> ``default_jit_compile()``.
    """
    if cnn not in CNNS:
        raise ValueError(f"cnn must be one of {', '.join(CNNS)}, got {cnn!r}")
    if lstm not in LSTMS:
        raise ValueError(f"lstm must be one of {', '.join(LSTMS)}, got {lstm!r}")
    dtype = precision_policy(mixed_precision)
    if cnn == "lookup":  # reads the uint8 frames themselves
        frame_layers = [LookupConvPool(2, dtype=dtype, name="conv_pool")]
    elif cnn == "fused":
        frame_layers = [FramesToFloat(dtype=dtype, name="to_float"), ConvPool(2, dtype=dtype, name="conv_pool")]
    else:
        frame_layers = [FramesToFloat(dtype=dtype, name="to_float"), *book_cnn_layers(dtype)]
    if lstm == "keras":
        # JAX's cuDNN LSTM fails to lower in float16 instead of falling back
        use_cudnn = False if keras.backend.backend() == "jax" and dtype is not None else "auto"
        sequence = layers.LSTM(LSTM_UNITS, use_cudnn=use_cudnn, dtype=dtype, name="lstm")
    else:
        sequence = ProjectedLSTM(LSTM_UNITS, dtype=dtype, name="lstm")
    model = fold_time_model(size, frame_layers, sequence, dtype=dtype, name=f"fast_{cnn}_{lstm}")
    if jit_compile is None:
        jit_compile = default_jit_compile()
    return compile_model(model, learning_rate=learning_rate, jit_compile=jit_compile)
