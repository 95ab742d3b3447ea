"""Keras layers the models share: casting and unpacking frames, folding time into the batch, the
lookup-table CNN and the projected LSTM.

Shapes: frames uint8 ``(B, T, S, S)``; packed frames uint8 ``(B, S**3 / 8)``; folded frames
``(B*T, S, S, 1)``. Every layer is registered under package "pipeline", so a saved
``model.keras`` loads wherever this module has been imported.
"""
from __future__ import annotations

import keras
import numpy as np
from keras import layers, ops


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
