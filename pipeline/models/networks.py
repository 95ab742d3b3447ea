"""CNN-LSTM models for moving-square sequences: ``build_model(name, size, **options)``.

Every model here takes what the loader yields, uint8 frames ``(B, T, S, S)`` with values
0/1 and ``T = S``, and casts them inside the graph (layer ``FramesToFloat``; ``fast`` reads
them as integers in ``LookupConvPool``), so the cast runs on the compute device and the host
ships 1 byte per pixel instead of 8. All are compiled with binary cross-entropy, Adam and accuracy.
Models and layers use Keras ops only: they build, train and load from ``model.keras`` on the
TensorFlow and JAX backends alike, with the same weights giving the same outputs.

Names:

* ``book``   the book's network exactly (240,661 parameters at size 50):
  ``Conv2D(2, (2, 2), relu)`` -> ``MaxPooling2D(2)`` -> ``Flatten`` per frame ->
  ``LSTM(50)`` -> ``Dense(1, sigmoid)``, time axis left dynamic as in the book.
  ``style="nested"`` wraps one CNN sub-model in a single ``TimeDistributed``;
  ``style="per_layer"`` wraps each CNN layer. Same weights give the same outputs.
* ``fast``   the same mathematics and parameter count, faster: time folded into the batch
  axis for the CNN (``(B*T, S, S, 1)`` in one call instead of one call per frame), then
  unfolded to ``(B, T, F)`` for the LSTM; the CNN is one ``LookupConvPool`` layer (a table of
  the 512 possible 3x3 0/1 patches) and, on CPU and under JAX, the LSTM is ``ProjectedLSTM``:
  same weights, same outputs to float rounding (see their docstrings). Option ``jit_compile``
  (XLA; default per device, see ``default_jit_compile``). ``fast`` accepts the ``book`` model's weights
  unchanged (``fast.set_weights(book.get_weights())``).
* ``rowcol`` the row/column architecture of arXiv 1611.07890 (fig. 2): per frame a
  CNN feature map ``(H', W', C)`` is read as a matrix; each of its rows is a sequence over
  columns fed to one LSTM, each column a sequence over rows fed to another, and the two
  outputs are concatenated into the frame's feature vector. Frames are then combined across
  time by a third LSTM (our choice; the figure classifies single images) -> Dense sigmoid.
  The CNN is the book's small one or a ``keras.applications`` backbone without its top.

Every model is built in one ``precision``, a Keras dtype policy (``PRECISIONS``; default
``pipeline.runtime.devices.default_precision()``): float32 variables, float32 sigmoid output,
everything else computed in that policy's dtype; mixed_float16 trains with loss scaling.
``precision_of(model)`` reads back what a model computes in.
"""
from __future__ import annotations

import contextlib
import os

import keras
from keras import layers

from pipeline.errors import require_positive_int
from pipeline.models.layers import FoldTime, FramesToFloat, LookupConvPool, ProjectedLSTM, UnfoldTime, UnpackFrames
from pipeline.runtime.devices import PRECISIONS

MODEL_NAMES = ("book", "fast", "rowcol")
BOOK_STYLES = ("nested", "per_layer")
BACKBONES = ("book", "vgg16", "mobilenetv2")
LSTM_UNITS = 50


def default_jit_compile() -> bool | str:
    """XLA or not for ``fast`` on this device.

    CPU: True: under XLA a ``fast`` training step runs faster, for one compilation per new batch
    shape. GPU: "auto" (Keras decides; a cuDNN LSTM turns XLA off). ``jit_compile=False`` turns it off.
    """
    from pipeline.runtime import devices

    return "auto" if devices.has_gpu() else True


def compile_model(model: keras.Model, *, learning_rate: float = 1e-3, jit_compile: bool | str = "auto") -> keras.Model:
    """Binary cross-entropy, Adam, accuracy (the book's compile), returning the model.

    A model computing in float16 gets a ``LossScaleOptimizer``: float16's exponent range loses
    small gradients to zero unless the loss is scaled up first.
    """
    optimizer = keras.optimizers.Adam(learning_rate=learning_rate)
    if precision_of(model) == "mixed_float16":
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    model.compile(optimizer=optimizer, loss="binary_crossentropy", metrics=["accuracy"], jit_compile=jit_compile)
    return model


@contextlib.contextmanager
def precision_scope(precision: str | None):
    """Layers built inside take `precision` (a PRECISIONS policy; None: this device's default)."""
    from pipeline.runtime import devices

    precision = devices.default_precision() if precision is None else precision
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    before = keras.config.dtype_policy()
    keras.config.set_dtype_policy(precision)
    try:
        yield precision
    finally:
        keras.config.set_dtype_policy(before)


def leaf_layers(layer) -> list:
    """The layers inside `layer` that hold no others (nested models and wrappers such as
    `TimeDistributed` opened), in order."""
    inner = getattr(layer, "layers", None) or ([layer.layer] if hasattr(layer, "layer") else [])
    return [leaf for child in inner for leaf in leaf_layers(child)] if inner else [layer]


def precision_of(model: keras.Model) -> str:
    """The dtype policy of the layer holding most of `model`'s parameters (nested models searched):
    what its training step computes in, whatever policy was global when it was built."""
    weighted = [layer for layer in leaf_layers(model) if layer.weights]
    return max(weighted, key=lambda layer: layer.count_params()).dtype_policy.name


def _check_size(size) -> int:
    if isinstance(size, bool) or not isinstance(size, int) or size < 2:
        raise ValueError(f"size must be an integer >= 2, got {size!r}")
    return size


def book_cnn_layers() -> list[layers.Layer]:
    """The book's per-frame CNN: Conv2D(2, (2, 2), relu) -> MaxPooling2D(2) -> Flatten."""
    return [layers.Conv2D(2, (2, 2), activation="relu", name="conv"),
            layers.MaxPooling2D(pool_size=(2, 2), name="pool"), layers.Flatten(name="flatten")]


# ---------------------------------------------------------------- the three models

def build_book(size: int, *, style: str = "per_layer") -> keras.Model:
    """The book's model on uint8 ``(B, T, S, S)`` input, time axis dynamic; not compiled."""
    if style not in BOOK_STYLES:
        raise ValueError(f"style must be one of {', '.join(BOOK_STYLES)}, got {style!r}")
    frames = keras.Input(shape=(None, size, size), dtype="uint8", name="frames")
    x = FramesToFloat(name="to_float")(frames)
    if style == "nested":
        cnn = keras.Sequential([keras.Input(shape=(size, size, 1)), *book_cnn_layers()], name="cnn")
        x = layers.TimeDistributed(cnn, name="td_cnn")(x)
    else:
        for layer in book_cnn_layers():
            x = layers.TimeDistributed(layer, name=f"td_{layer.name}")(x)
    x = layers.LSTM(LSTM_UNITS, name="lstm")(x)
    out = layers.Dense(1, activation="sigmoid", dtype="float32", name="dense")(x)
    return keras.Model(frames, out, name=f"book_{style}")


def fold_time_model(size: int, frame_layers: list, sequence_layer: layers.Layer, *, name: str = "fast") -> keras.Model:
    """``fast``'s shape around given layers; not compiled.

    uint8 frames ``(B, T, S, S)`` -> ``FoldTime`` -> ``frame_layers`` (uint8 ``(B*T, S, S)`` in,
    features ``(B*T, F)`` out) -> ``UnfoldTime`` -> ``sequence_layer`` (``(B, T, F)`` -> ``(B, U)``)
    -> ``Dense(1, sigmoid)`` in float32. ``build_fast`` picks the layers; other picks serve to
    compare implementations (``pipeline.models.variants``).
    """
    if size < 3:
        raise ValueError(f"size must be >= 3 for the fast model (2x2 conv then 2x2 pool), got {size}")
    frames = keras.Input(shape=(size, size, size), dtype="uint8", name="frames")
    x = FoldTime(name="fold")(frames)
    for layer in frame_layers:
        x = layer(x)
    x = UnfoldTime(size, name="unfold")(x)
    x = sequence_layer(x)
    out = layers.Dense(1, activation="sigmoid", dtype="float32", name="dense")(x)
    return keras.Model(frames, out, name=name)


def build_fast(size: int) -> keras.Model:
    """The book's mathematics with time folded into the batch for the CNN; not compiled.

    The per-frame CNN is ``LookupConvPool`` (the frames index a table of the 512 possible 3x3 0/1
    patches). The LSTM is ``keras.layers.LSTM`` on a GPU under TensorFlow (cuDNN: default
    activations, no recurrent dropout, not unrolled) and ``ProjectedLSTM`` otherwise (CPUs, and
    JAX, whose cuDNN LSTM takes float32 only).
    """
    from pipeline.runtime import devices

    if devices.has_gpu() and keras.backend.backend() == "tensorflow":
        lstm = layers.LSTM(LSTM_UNITS, name="lstm")
    else:
        lstm = ProjectedLSTM(LSTM_UNITS, name="lstm")
    return fold_time_model(size, [LookupConvPool(2, name="conv_pool")], lstm)


def _backbone(kind: str, size: int, weights: str | None, frozen: bool | None) -> keras.Model:
    """A ``keras.applications`` CNN without its top on ``(size, size, 3)``; never downloads weights."""
    if weights is not None and not os.path.isfile(weights):
        raise ValueError(f"backbone_weights must be a local file (weights are never downloaded), got {weights!r}")
    if size < 32:
        raise ValueError(f"backbone {kind!r} needs size >= 32, got {size}")
    factory = {"vgg16": keras.applications.VGG16, "mobilenetv2": keras.applications.MobileNetV2}[kind]
    net = factory(include_top=False, weights=None, input_shape=(size, size, 3))
    if weights is not None:
        net.load_weights(weights)
    net.trainable = not (weights is not None if frozen is None else frozen)
    return net


def build_rowcol(size: int, *, backbone: str = "book", backbone_weights: str | None = None,
                 frozen: bool | None = None, row_units: int = 16, col_units: int = 16,
                 time_units: int = LSTM_UNITS) -> keras.Model:
    """Row/column LSTMs over each frame's CNN feature map, then an LSTM over frames; not compiled.

    backbone: "book" (Conv2D(2, 2x2) + MaxPool, any size) or "vgg16" / "mobilenetv2"
      (``include_top=False``, random weights unless ``backbone_weights`` names a local file;
      grayscale is repeated to 3 channels; size >= 32).
    frozen: backbone not trainable; default True when weights are loaded, else False.
    """
    if backbone not in BACKBONES:
        raise ValueError(f"backbone must be one of {', '.join(BACKBONES)}, got {backbone!r}")
    for name, value in (("row_units", row_units), ("col_units", col_units), ("time_units", time_units)):
        require_positive_int(name, value)
    frames = keras.Input(shape=(size, size, size), dtype="uint8", name="frames")
    x = FoldTime(name="fold")(FramesToFloat(name="to_float")(frames))  # (B*T, S, S, 1)
    if backbone == "book":
        x = layers.Conv2D(2, (2, 2), activation="relu", name="conv")(x)
        x = layers.MaxPooling2D(pool_size=(2, 2), name="pool")(x)
    else:
        x = layers.Concatenate(name="to_rgb")([x, x, x])
        x = _backbone(backbone, size, backbone_weights, frozen)(x)
    h, w, c = x.shape[1:]
    # rows: (N, H', W', C) -> N*H' sequences of W' steps; columns: N*W' sequences of H' steps
    rows = layers.Reshape((w, c), name="rows_as_sequences")(FoldTime(name="fold_rows")(x))
    rows = layers.LSTM(row_units, name="row_lstm")(rows)
    rows = layers.Reshape((h * row_units,), name="row_features")(UnfoldTime(h, name="unfold_rows")(rows))
    cols = layers.Permute((2, 1, 3), name="transpose")(x)
    cols = layers.Reshape((h, c), name="cols_as_sequences")(FoldTime(name="fold_cols")(cols))
    cols = layers.LSTM(col_units, name="col_lstm")(cols)
    cols = layers.Reshape((w * col_units,), name="col_features")(UnfoldTime(w, name="unfold_cols")(cols))
    x = layers.Concatenate(name="frame_features")([rows, cols])
    x = UnfoldTime(size, name="unfold")(x)  # (B, T, (H'+W') * units)
    x = layers.LSTM(time_units, name="time_lstm")(x)
    out = layers.Dense(1, activation="sigmoid", dtype="float32", name="dense")(x)
    return keras.Model(frames, out, name=f"rowcol_{backbone}")


def build_model(name: str, size: int, *, precision: str | None = None, learning_rate: float = 1e-3,
                jit_compile: bool | str | None = None, **options) -> keras.Model:
    """A compiled model named ``name`` for ``size x size`` frames, taking uint8 ``(B, T, S, S)``.

    precision: a PRECISIONS policy for every layer but the float32 output; None: this device's
      default (``pipeline.runtime.devices.default_precision``).

    packed_input: take bit-packed uint8 ``(B, S**3 / 8)`` instead (``make_dataset(..., packed=True)``)
      and unpack on the device.
    jit_compile: None -> ``default_jit_compile()`` for ``fast``; for the others False on
      TensorFlow (the book ran without XLA) and True on JAX (whose alternative to XLA is running
      op by op from Python). Remaining options go to ``build_book`` / ``build_fast`` /
      ``build_rowcol``; an unknown option raises TypeError.
    """
    size = _check_size(size)
    builders = {"book": build_book, "fast": build_fast, "rowcol": build_rowcol}
    if name not in builders:
        raise ValueError(f"model must be one of {', '.join(MODEL_NAMES)}, got {name!r}")
    if not learning_rate > 0:
        raise ValueError(f"learning_rate must be positive, got {learning_rate!r}")
    packed_input = options.pop("packed_input", False)
    if packed_input and size % 2:
        raise ValueError(f"packed_input needs an even size (size**3 bits in whole bytes), got {size}")
    with precision_scope(precision):
        model = builders[name](size, **options)
        if packed_input:  # the same model behind an unpacking layer: same weights, same parameter count
            packed = keras.Input((size ** 3 // 8,), dtype="uint8", name="packed_frames")
            model = keras.Model(packed, model(UnpackFrames(size, name="unpack")(packed)), name=f"{model.name}_packed")
    if jit_compile is None:
        jit_compile = default_jit_compile() if name == "fast" else keras.backend.backend() == "jax"
    return compile_model(model, learning_rate=learning_rate, jit_compile=jit_compile)
