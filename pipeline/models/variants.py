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
    precision_scope,
)

CNNS = ("lookup", "fused", "keras")
LSTMS = ("projected", "keras")


def build_fast_variant(size: int, *, cnn: str = "lookup", lstm: str = "projected",
                       precision: str | None = None, jit_compile: bool | str | None = None,
                       learning_rate: float = 1e-3) -> keras.Model:
    """A compiled ``fast`` with the given CNN and LSTM, taking uint8 ``(B, T, S, S)`` frames.

    precision: as ``build_model``; jit_compile: None -> ``default_jit_compile()``.
    """
    if cnn not in CNNS:
        raise ValueError(f"cnn must be one of {', '.join(CNNS)}, got {cnn!r}")
    if lstm not in LSTMS:
        raise ValueError(f"lstm must be one of {', '.join(LSTMS)}, got {lstm!r}")
    with precision_scope(precision) as precision:
        if cnn == "lookup":  # reads the uint8 frames themselves
            frame_layers = [LookupConvPool(2, name="conv_pool")]
        elif cnn == "fused":
            frame_layers = [FramesToFloat(name="to_float"), ConvPool(2, name="conv_pool")]
        else:
            frame_layers = [FramesToFloat(name="to_float"), *book_cnn_layers()]
        if lstm == "keras":
            # JAX's cuDNN LSTM fails to lower in 16-bit floats instead of falling back
            use_cudnn = False if keras.backend.backend() == "jax" and precision != "float32" else "auto"
            sequence = layers.LSTM(LSTM_UNITS, use_cudnn=use_cudnn, name="lstm")
        else:
            sequence = ProjectedLSTM(LSTM_UNITS, name="lstm")
        model = fold_time_model(size, frame_layers, sequence, name=f"fast_{cnn}_{lstm}")
    if jit_compile is None:
        jit_compile = default_jit_compile()
    return compile_model(model, learning_rate=learning_rate, jit_compile=jit_compile)
