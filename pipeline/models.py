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
  same weights, same outputs to float rounding (see their docstrings). Options:
  ``mixed_precision`` (default: on GPUs with tensor cores only); ``jit_compile`` (XLA; default
  per device, see ``default_jit_compile``). ``fast`` accepts the ``book`` model's weights
  unchanged (``fast.set_weights(book.get_weights())``).
* ``rowcol`` the row/column architecture of arXiv 1611.07890 (fig. 2): per frame a
  CNN feature map ``(H', W', C)`` is read as a matrix; each of its rows is a sequence over
  columns fed to one LSTM, each column a sequence over rows fed to another, and the two
  outputs are concatenated into the frame's feature vector. Frames are then combined across
  time by a third LSTM (our choice; the figure classifies single images) -> Dense sigmoid.
  The CNN is the book's small one or a ``keras.applications`` backbone without its top.
"""
from __future__ import annotations

import os

import keras
import numpy as np
from keras import layers, ops

MODEL_NAMES = ("book", "fast", "rowcol")
BOOK_STYLES = ("nested", "per_layer")
BACKBONES = ("book", "vgg16", "mobilenetv2")
LSTM_UNITS = 50


# ---------------------------------------------------------------- layers shared by the models

@keras.saving.register_keras_serializable(package="pipeline")
class FramesToFloat(layers.Layer):
    """uint8 frames ``(B, T, S, S)`` -> compute dtype ``(B, T, S, S, 1)``; no parameters."""

    def call(self, frames):
        return ops.expand_dims(ops.cast(frames, self.compute_dtype), -1)

    def compute_output_shape(self, input_shape):
        return (*input_shape, 1)


@keras.saving.register_keras_serializable(package="pipeline")
class UnpackFrames(layers.Layer):
    """Bit-packed sequences uint8 (B, S**3 / 8), bits MSB-first, -> uint8 frames (B, T, S, S) of 0/1.

    What the loader yields with `packed=True` (nbit-gzip datasets): unpacking here puts it on
    the compute device, so the host and the host-to-device copy move 8x fewer bytes.
    """

    def __init__(self, size: int, **kwargs):
        super().__init__(**kwargs)
        self.size = size
        self.bits_of_byte = np.unpackbits(np.arange(256, dtype=np.uint8)[:, None], axis=1)  # (256, 8)

    def call(self, packed):
        bits = ops.take(ops.convert_to_tensor(self.bits_of_byte), ops.cast(packed, "int32"), axis=0)
        return ops.reshape(bits, (-1, self.size, self.size, self.size))

    def get_config(self):
        return {**super().get_config(), "size": self.size}


@keras.saving.register_keras_serializable(package="pipeline")
class FoldTime(layers.Layer):
    """``(B, T, ...)`` -> ``(B*T, ...)``: every frame of every sequence becomes one batch item."""

    def call(self, x):
        return ops.reshape(x, (-1, *x.shape[2:]))

    def compute_output_shape(self, input_shape):
        batch, steps = input_shape[:2]
        folded = None if batch is None or steps is None else batch * steps
        return (folded, *input_shape[2:])


@keras.saving.register_keras_serializable(package="pipeline")
class UnfoldTime(layers.Layer):
    """``(B*T, ...)`` -> ``(B, T, ...)`` for a fixed number of steps T."""

    def __init__(self, steps: int, **kwargs):
        super().__init__(**kwargs)
        self.steps = int(steps)

    def call(self, x):
        return ops.reshape(x, (-1, self.steps, *x.shape[1:]))

    def compute_output_shape(self, input_shape):
        batch = None if input_shape[0] is None else input_shape[0] // self.steps
        return (batch, self.steps, *input_shape[1:])

    def get_config(self):
        return {**super().get_config(), "steps": self.steps}


@keras.saving.register_keras_serializable(package="pipeline")
class ConvPool(layers.Layer):
    """``Conv2D(filters, (2, 2), relu)`` then ``MaxPooling2D(2)`` then ``Flatten``, computed in one pass.

    Same weights (kernel ``(2, 2, 1, filters)``, bias ``(filters,)``) and same outputs as the
    book's three layers on ``(N, S, S, 1)`` input, but without the ``(N, S-1, S-1, filters)``
    intermediate: pooled cell ``(i, j)`` only depends on the 3x3 input patch at ``(2i, 2j)``,
    so the 9 stride-2 shifted views of the input, times a ``(9, 4 * filters)`` matrix built
    from the kernel, give the 4 conv outputs of every pooling window at once; max over the
    window, add the bias, relu (both commute with the max). Output ``(N, P*P*filters)``,
    ``P = (S - 1) // 2``, flattened in the same (row, column, channel) order as ``Flatten``.
    """

    def __init__(self, filters: int = 2, **kwargs):
        super().__init__(**kwargs)
        self.filters = int(filters)
        # scatter[dy, dx, k, w]: kernel tap (dy, dx) of pooling-window cell w reads patch pixel k
        scatter = [[[[0.0] * 4 for _ in range(9)] for _ in range(2)] for _ in range(2)]
        for w, (a, b) in enumerate(((0, 0), (0, 1), (1, 0), (1, 1))):
            for dy in range(2):
                for dx in range(2):
                    scatter[dy][dx][(a + dy) * 3 + (b + dx)][w] = 1.0
        self._scatter = scatter
        # block tap (by, bx) and block channel (ry, rx) hold patch pixel (2 by + ry, 2 bx + rx)
        # when it is in the 3x3 patch
        index, mask = [], []
        for by in range(2):
            for bx in range(2):
                for ry in range(2):
                    for rx in range(2):
                        r, c = 2 * by + ry, 2 * bx + rx
                        index.append(3 * r + c if r < 3 and c < 3 else 0)
                        mask.append(1.0 if r < 3 and c < 3 else 0.0)
        self._patch_index = index
        self._patch_mask = [[[[m] for m in mask[i * 4:(i + 1) * 4]] for i in range(2 * b, 2 * b + 2)] for b in range(2)]

    def build(self, input_shape):
        self.kernel = self.add_weight(name="kernel", shape=(2, 2, 1, self.filters), initializer="glorot_uniform")
        self.bias = self.add_weight(name="bias", shape=(self.filters,), initializer="zeros")

    def call(self, x):
        size = x.shape[1]
        pooled = (size - 1) // 2
        blocks = pooled + 1
        x = x[:, :2 * blocks, :2 * blocks, 0]
        if 2 * blocks > size:  # odd size: one zero row/column that no pooled cell reads
            x = ops.pad(x, ((0, 0), (0, 2 * blocks - size), (0, 2 * blocks - size)))
        # space-to-depth: (N, 2B, 2B) -> (N, B, B, 4), channel k = 2 * (row % 2) + (col % 2)
        x = ops.reshape(x, (-1, blocks, 2, blocks, 2))
        x = ops.reshape(ops.transpose(x, (0, 1, 3, 2, 4)), (-1, blocks, blocks, 4))
        scatter = ops.convert_to_tensor(self._scatter, dtype=self.compute_dtype)
        kernel = ops.einsum("yxf,yxkw->kwf", ops.cast(self.kernel[:, :, 0, :], self.compute_dtype), scatter)
        # patch pixel k = 3 * r + c of a 3x3 window lies in block (r // 2, c // 2), channel 2 * (r % 2) + (c % 2)
        kernel = ops.take(ops.reshape(kernel, (9, 4 * self.filters)), self._patch_index, axis=0)
        mask = ops.convert_to_tensor(self._patch_mask, self.compute_dtype)
        kernel = ops.reshape(kernel, (2, 2, 4, 4 * self.filters)) * mask
        conv = ops.conv(x, kernel, strides=1, padding="valid")  # (N, P, P, 4 * filters)
        conv = ops.max(ops.reshape(conv, (-1, pooled, pooled, 4, self.filters)), axis=3)
        out = ops.relu(conv + ops.cast(self.bias, self.compute_dtype))
        return ops.reshape(out, (-1, pooled * pooled * self.filters))

    def compute_output_shape(self, input_shape):
        pooled = (input_shape[1] - 1) // 2
        return (input_shape[0], pooled * pooled * self.filters)

    def get_config(self):
        return {**super().get_config(), "filters": self.filters}


@keras.saving.register_keras_serializable(package="pipeline")
class LookupConvPool(ConvPool):
    """``ConvPool`` for 0/1 frames: uint8 ``(N, S, S)`` -> ``(N, P*P*filters)``, ``P = (S - 1) // 2``.

    Same weights and outputs as ``ConvPool`` (and the book's three layers) when every pixel is
    0 or 1, as in the datasets. A pooled cell depends only on its 3x3 input patch, and a 0/1
    patch is one of 512, so each call computes the 512 possible outputs from the kernel (a
    ``(512, filters)`` table, ~4k multiply-adds) and the frames only index it: the patch of each
    cell is read as a 9-bit number with integer ops. No float copy of the frames, no
    convolution; gradients reach the kernel and bias through the table. It pays off under XLA
    (``default_jit_compile``), where a training step's CNN runs faster than with ``ConvPool``;
    without XLA the two are about even.
    """

    def __init__(self, filters: int = 2, **kwargs):
        super().__init__(filters, **kwargs)  # ConvPool's weights, output shape and config
        bits = (np.arange(512)[:, None] >> np.arange(9)[None, :]) & 1  # patch pixel k = 3 * row + col is bit k
        # taps[p, w, t]: for patch p, the pixel under kernel tap t of pooling-window cell w
        taps = np.zeros((512, 4, 4), np.float32)
        for w, (a, b) in enumerate(((0, 0), (0, 1), (1, 0), (1, 1))):
            for t, (dy, dx) in enumerate(((0, 0), (0, 1), (1, 0), (1, 1))):
                taps[:, w, t] = bits[:, 3 * (a + dy) + (b + dx)]
        self._taps = taps

    def call(self, frames):
        pooled = (frames.shape[1] - 1) // 2
        x = ops.cast(frames, "int32")
        patch = 0
        for r in range(3):
            for c in range(3):
                patch = patch + x[:, r:r + 2 * pooled:2, c:c + 2 * pooled:2] * (1 << (3 * r + c))
        # The table stays float32 under mixed precision: its gradient sums every pooled cell of the
        # batch into 512 rows (a scatter-add of millions of terms), too many to accumulate in float16.
        kernel = ops.reshape(ops.cast(self.kernel, "float32"), (4, self.filters))
        conv = ops.einsum("pwt,tf->pwf", ops.convert_to_tensor(self._taps, "float32"), kernel)
        table = ops.relu(ops.max(conv, axis=1) + ops.cast(self.bias, "float32"))  # (512, filters)
        cells = ops.take(table, patch, axis=0)
        return ops.cast(ops.reshape(cells, (-1, pooled * pooled * self.filters)), self.compute_dtype)


@keras.saving.register_keras_serializable(package="pipeline")
class ProjectedLSTM(layers.Layer):
    """``keras.layers.LSTM(units)`` (last output only) with the input projection hoisted out of the loop.

    Same weights in the same order (kernel ``(F, 4u)``, recurrent_kernel ``(u, 4u)``, bias
    ``(4u,)``, gates i, f, c, o), same initialisers, same outputs. ``x @ kernel`` for all T
    steps is one ``(B*T, F) x (F, 4u)`` matrix product instead of T small ones; the recurrence
    is a loop over the static T steps (``recurrence``). For CPUs; on GPU use ``LSTM`` (cuDNN).
    """

    def __init__(self, units: int, **kwargs):
        super().__init__(**kwargs)
        self.units = int(units)

    def build(self, input_shape):
        u = self.units
        self.kernel = self.add_weight(name="kernel", shape=(input_shape[-1], 4 * u), initializer="glorot_uniform")
        self.recurrent_kernel = self.add_weight(name="recurrent_kernel", shape=(u, 4 * u), initializer="orthogonal")

        def forget_ones(shape, dtype=None):  # unit_forget_bias=True, as keras.layers.LSTM
            return ops.concatenate([ops.zeros((u,), dtype), ops.ones((u,), dtype), ops.zeros((2 * u,), dtype)])

        self.bias = self.add_weight(name="bias", shape=(4 * u,), initializer=forget_ones)

    def call(self, x):
        z = ops.matmul(x, ops.cast(self.kernel, x.dtype)) + ops.cast(self.bias, x.dtype)  # (B, T, 4u)
        recurrent = ops.cast(self.recurrent_kernel, x.dtype)

        def step(carry, z_t):
            h, c = carry
            i, f, g, o = ops.split(z_t + ops.matmul(h, recurrent), 4, axis=-1)
            c = ops.sigmoid(f) * c + ops.sigmoid(i) * ops.tanh(g)
            return ops.sigmoid(o) * ops.tanh(c), c

        zeros = ops.zeros_like(z[:, 0, :self.units])
        h, _ = recurrence(step, (zeros, zeros), ops.transpose(z, (1, 0, 2)))
        return h

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.units)

    def get_config(self):
        return {**super().get_config(), "units": self.units}


# ---------------------------------------------------------------- helpers

def recurrence(step, init, xs):
    """Final carry of ``carry = step(carry, xs[t])`` for t in 0..T-1; ``xs`` ``(T, ...)`` with T static.

    A loop, not T unrolled steps (an unrolled recurrence compiles far slower under XLA), that XLA
    compiles and differentiates on either backend. The two backends need different loop ops:
    TensorFlow's gradient of a loop under XLA needs a bound on its iterations
    (``ops.while_loop(maximum_iterations=T)``; ``ops.scan`` and ``ops.fori_loop`` pass none), and
    JAX differentiates ``lax.scan`` (``ops.scan``) but not ``lax.while_loop`` in reverse mode.
    """
    steps = xs.shape[0]
    if keras.backend.backend() == "tensorflow":
        def body(t, carry):
            return t + 1, tuple(step(carry, xs[t]))

        return ops.while_loop(lambda t, carry: t < steps, body, (0, tuple(init)), maximum_iterations=steps)[1]
    carry, _ = ops.scan(lambda carry, x_t: (tuple(step(carry, x_t)), None), tuple(init), xs)
    return carry

def default_jit_compile() -> bool | str:
    """XLA or not for ``fast`` on this device.

    CPU: True: under XLA a ``fast`` training step runs faster, for one compilation per new batch
    shape. GPU: "auto" (Keras decides; a cuDNN LSTM turns XLA off). ``jit_compile=False`` turns it off.
    """
    from pipeline import devices

    return "auto" if devices.has_gpu() else True


def compile_model(model: keras.Model, *, learning_rate: float = 1e-3, jit_compile: bool | str = "auto") -> keras.Model:
    """Binary cross-entropy, Adam, accuracy (the book's compile), returning the model."""
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=learning_rate), loss="binary_crossentropy",
                  metrics=["accuracy"], jit_compile=jit_compile)
    return model


def _check_size(size) -> int:
    if isinstance(size, bool) or not isinstance(size, int) or size < 2:
        raise ValueError(f"size must be an integer >= 2, got {size!r}")
    return size


def book_cnn_layers(dtype=None) -> list[layers.Layer]:
    """The book's per-frame CNN: Conv2D(2, (2, 2), relu) -> MaxPooling2D(2) -> Flatten."""
    return [layers.Conv2D(2, (2, 2), activation="relu", dtype=dtype, name="conv"),
            layers.MaxPooling2D(pool_size=(2, 2), dtype=dtype, name="pool"),
            layers.Flatten(dtype=dtype, name="flatten")]


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
    out = layers.Dense(1, activation="sigmoid", name="dense")(x)
    return keras.Model(frames, out, name=f"book_{style}")


def precision_policy(mixed_precision: bool | str | None) -> str | None:
    """The Keras dtype policy for ``mixed_precision``: None -> ``devices.default_mixed_precision()``
    (GPUs with tensor cores only); True -> "mixed_float16"; a policy name such as "mixed_bfloat16"
    as given; False -> None (float32)."""
    from pipeline import devices

    if mixed_precision is None:
        mixed_precision = devices.default_mixed_precision()
    if mixed_precision is True:
        mixed_precision = "mixed_float16"
    return mixed_precision or None


def fold_time_model(size: int, frame_layers: list, sequence_layer: layers.Layer, *, dtype: str | None = None,
                    name: str = "fast") -> keras.Model:
    """``fast``'s shape around given layers; not compiled.

    uint8 frames ``(B, T, S, S)`` -> ``FoldTime`` -> ``frame_layers`` (uint8 ``(B*T, S, S)`` in,
    features ``(B*T, F)`` out) -> ``UnfoldTime`` -> ``sequence_layer`` (``(B, T, F)`` -> ``(B, U)``)
    -> ``Dense(1, sigmoid)`` in float32. ``build_fast`` picks the layers; other picks serve to
    compare implementations (``pipeline.fast_variants``).
    """
    if size < 3:
        raise ValueError(f"size must be >= 3 for the fast model (2x2 conv then 2x2 pool), got {size}")
    frames = keras.Input(shape=(size, size, size), dtype="uint8", name="frames")
    x = FoldTime(name="fold")(frames)
    for layer in frame_layers:
        x = layer(x)
    x = UnfoldTime(size, dtype=dtype, name="unfold")(x)
    x = sequence_layer(x)
    out = layers.Dense(1, activation="sigmoid", dtype="float32", name="dense")(x)
    return keras.Model(frames, out, name=name)


def build_fast(size: int, *, mixed_precision: bool | str | None = None) -> keras.Model:
    """The book's mathematics with time folded into the batch for the CNN; not compiled.

    The per-frame CNN is ``LookupConvPool`` (the frames index a table of the 512 possible 3x3 0/1
    patches). The LSTM is ``keras.layers.LSTM`` on a GPU under TensorFlow (cuDNN: default
    activations, no recurrent dropout, not unrolled) and ``ProjectedLSTM`` otherwise (CPUs, and
    JAX, whose cuDNN LSTM takes float32 only). mixed_precision: see ``precision_policy``; the
    sigmoid output stays float32 either way.
    """
    from pipeline import devices

    dtype = precision_policy(mixed_precision)
    if devices.has_gpu() and keras.backend.backend() == "tensorflow":
        lstm = layers.LSTM(LSTM_UNITS, dtype=dtype, name="lstm")
    else:
        lstm = ProjectedLSTM(LSTM_UNITS, dtype=dtype, name="lstm")
    return fold_time_model(size, [LookupConvPool(2, dtype=dtype, name="conv_pool")], lstm, dtype=dtype)


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
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
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
    out = layers.Dense(1, activation="sigmoid", name="dense")(x)
    return keras.Model(frames, out, name=f"rowcol_{backbone}")


def build_model(name: str, size: int, *, learning_rate: float = 1e-3, jit_compile: bool | str | None = None,
                **options) -> keras.Model:
    """A compiled model named ``name`` for ``size x size`` frames, taking uint8 ``(B, T, S, S)``.

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
    model = builders[name](size, **options)
    if packed_input:  # the same model behind an unpacking layer: same weights, same parameter count
        if size % 2:
            raise ValueError(f"packed_input needs an even size (size**3 bits in whole bytes), got {size}")
        packed = keras.Input((size ** 3 // 8,), dtype="uint8", name="packed_frames")
        model = keras.Model(packed, model(UnpackFrames(size, name="unpack")(packed)), name=f"{model.name}_packed")
    if jit_compile is None:
        jit_compile = default_jit_compile() if name == "fast" else keras.backend.backend() == "jax"
    return compile_model(model, learning_rate=learning_rate, jit_compile=jit_compile)
