"""Vectorized moving-square sequences: a pure function of an RNG and parameters.

The rules are the book's (`next_frame` / `build_frames` / `generate_examples`):
a sequence has ``T = size`` frames of ``size x size`` pixels; the direction is
left-to-right ("Right", label 1) with probability 1/2; step ``i`` draws in
column ``i`` (right) or ``size-1-i`` (left); the first row is uniform over
``0..size-1`` and each next row is uniform over the in-bounds members of
``{r-1, r, r+1}``.

Variants of what a frame shows:

* ``trail``  (the book's): frame ``t`` shows every pixel drawn up to step ``t``.
* ``dot``    : frame ``t`` shows only the pixel of step ``t``.
* ``square`` : frame ``t`` shows a ``square x square`` block centred on the
  pixel of step ``t`` (clipped at the borders): a moving square.

With ``wrap=True`` the path starts in a uniform random column and wraps around
the image edge, so no single frame reveals the direction.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

VARIANTS = ("trail", "dot", "square")
MAX_SIZE = 256  # 256^3 bytes = 16.8 MB per sequence


@dataclass(frozen=True)
class SequenceSpec:
    """What one sequence looks like; validates itself.

    size:   image side in pixels, also the number of frames T.
    variant: one of VARIANTS.
    square: side of the block for the ``square`` variant (ignored otherwise).
    wrap:   random start column, path wraps around the edge.
    """

    size: int = 50
    variant: str = "trail"
    square: int = 3
    wrap: bool = False

    def __post_init__(self):
        if not isinstance(self.size, (int, np.integer)) or not 2 <= self.size <= MAX_SIZE:
            raise ValueError(f"size must be an integer in 2..{MAX_SIZE}, got {self.size!r}")
        if self.variant not in VARIANTS:
            raise ValueError(f"variant must be one of {', '.join(VARIANTS)}, got {self.variant!r}")
        if not isinstance(self.square, (int, np.integer)) or not 1 <= self.square <= self.size:
            raise ValueError(f"square must be an integer in 1..size ({self.size}), got {self.square!r}")

    @property
    def frame_shape(self) -> tuple[int, int, int]:
        """(T, H, W) of one sequence."""
        return (self.size, self.size, self.size)


@dataclass(frozen=True)
class Sequences:
    """A batch of n sequences with their ground truth.

    frames: uint8 (n, T, H, W), values 0/1.
    labels: uint8 (n,), 1 = left-to-right ("Right").
    rows:   int16 (n, T), the row drawn at each step.
    cols:   int16 (n, T), the column drawn at each step.
    """

    frames: np.ndarray
    labels: np.ndarray
    rows: np.ndarray
    cols: np.ndarray


def walk_rows(rng: np.random.Generator, n: int, size: int) -> np.ndarray:
    """Row trajectories, int16 (n, size): uniform start, then uniform over in-bounds {r-1, r, r+1}.

    Step i picks option floor(3u) of three, or floor(2u) of two at an edge, for one uniform u
    per step; a table indexed by (row, both picks) gives the next row in one gather per step.
    """
    rows = np.empty((n, size), dtype=np.int16)
    r = rng.integers(0, size, n)
    rows[:, 0] = r
    u = rng.random((n, size - 1))
    picks = (u * 3).astype(np.intp) * 2 + (u * 2).astype(np.intp)  # 2 * (pick of 3) + (pick of 2), in 0..5
    row = np.arange(size)
    at_edge = (row == 0) | (row == size - 1)
    option = np.where(at_edge[:, None], np.arange(6) % 2, np.arange(6) // 2)  # (size, 6)
    # interior: r-1+option; top edge: r+option (r, r+1); bottom edge: r-1+option (r-1, r)
    next_row = (row[:, None] - 1 + option + (row == 0)[:, None]).reshape(-1)
    for i in range(1, size):
        r = next_row[r * 6 + picks[:, i - 1]]
        rows[:, i] = r
    return rows


def walk_cols(rng: np.random.Generator, labels: np.ndarray, size: int, wrap: bool) -> np.ndarray:
    """Column of each step, int16 (n, size): 0..size-1 for Right, reversed for Left; shifted and wrapped if wrap."""
    n = labels.shape[0]
    steps = np.arange(size)
    start = rng.integers(0, size, n) if wrap else np.where(labels == 1, 0, size - 1)
    direction = np.where(labels == 1, 1, -1)
    return ((start[:, None] + direction[:, None] * steps[None, :]) % size).astype(np.int16)


def render(rows: np.ndarray, cols: np.ndarray, spec: SequenceSpec, out: np.ndarray | None = None) -> np.ndarray:
    """Frames uint8 (n, T, H, W) with values 0/1 from trajectories rows, cols (n, T).

    out: an (n, T, H, W) uint8 array to render into (it is zeroed first). Reusing one buffer
    matters under Dask: its workers set MALLOC_TRIM_THRESHOLD_, which makes every fresh
    multi-megabyte array an mmap paid for in page faults.
    """
    n, size = rows.shape
    if out is None:
        frames = np.zeros((n, size, size, size), dtype=np.uint8)
    else:
        frames = out
        frames.fill(0)
    sample = np.arange(n)
    if spec.variant == "trail":
        # Frame t is frame t-1 plus the pixel of step t: one block copy per step.
        frames[sample, 0, rows[:, 0], cols[:, 0]] = 1
        for t in range(1, size):
            frames[:, t] = frames[:, t - 1]
            frames[sample, t, rows[:, t], cols[:, t]] = 1
        return frames
    step = np.arange(size)[None, :]
    for r, c in _lit_pixels(rows, cols, spec):
        frames[sample[:, None], step, r, c] = 1
    return frames


def _lit_pixels(rows: np.ndarray, cols: np.ndarray, spec: SequenceSpec):
    """(rows, cols) int (n, T) pairs, one per pixel of the block drawn at each step (one pair unless `square`).

    Clipping maps an out-of-image offset onto an edge pixel that offset 0 lights anyway.
    """
    size = spec.size
    side = spec.square if spec.variant == "square" else 1
    low = -((side - 1) // 2)
    for dy in range(low, low + side):
        for dx in range(low, low + side):
            yield np.clip(rows + dy, 0, size - 1), np.clip(cols + dx, 0, size - 1)


def render_bits(rows: np.ndarray, cols: np.ndarray, spec: SequenceSpec) -> np.ndarray:
    """The frames `render` draws, bit-packed: uint8 (ceil(n*T*H*W / 8),), equal to `np.packbits(render(...))`."""
    return bit_renderer(spec, len(rows))(rows, cols)


def bit_renderer(spec: SequenceSpec, capacity: int):
    """The fastest bit renderer for `spec`, for up to `capacity` sequences per call: a `PathMaskRenderer`
    where one applies (the default trail, even sizes), a `BitRenderer` otherwise. Both are called
    as renderer(rows, cols, zero_byte=False) and give the same bytes."""
    if PathMaskRenderer.handles(spec):
        return PathMaskRenderer(spec, capacity)
    return BitRenderer(spec, capacity)


def _check_trajectories(rows: np.ndarray, capacity: int, size: int) -> None:
    """ValueError unless rows is (n, size) with n <= capacity: what a renderer's buffers hold."""
    if rows.shape[0] > capacity or rows.shape[1] != size:
        raise ValueError(f"expected at most {capacity} trajectories of length {size}, got {rows.shape}")


class BitRenderer:
    """Draws up to `capacity` sequences at a time straight to bit-packed frames, into buffers it reuses.

    8x fewer bytes than the (n, T, H, W) frames, so faster than packing them. Each frame is drawn
    as a byte-aligned row of bits (the trail by a cumulative OR over time, 64 bits at a time), then
    the rows are merged into one bit stream in which frame f starts at bit f*H*W. Those offsets
    repeat every `period` frames, so the frames of one phase are shifted alike. The buffers are kept
    because fresh ~256 KB temporaries cost page faults on every call once glibc trims its heap.
    """

    def __init__(self, spec: SequenceSpec, capacity: int):
        self.spec = spec
        size = spec.size
        self.pixels = size * size
        self.period = 8 // math.gcd(self.pixels, 8)  # frames per byte-aligned group
        self.width = -(-(self.pixels // 8 + 2) // 8) * 8  # bytes per row: a frame, room to shift, whole uint64s
        groups = -(-capacity * size // self.period)
        self.capacity = capacity
        self._rows = np.empty(groups * self.period * self.width, np.uint8)
        self._stream = np.zeros(groups * self.period * self.pixels // 8 + 1, np.uint8)
        self._words = np.empty((3, groups * self.width // 8), np.uint64)  # shift scratch
        self._shifted = np.empty(groups * self.width // 8, ">u8")

    def __call__(self, rows: np.ndarray, cols: np.ndarray, zero_byte: bool = False) -> np.ndarray:
        """Bit-packed frames of trajectories rows, cols (n, T), n <= capacity; valid until the next call.

        zero_byte: end with one more zero byte, as HDF5's N-bit filter does (saves the writer a copy).
        """
        n, size = rows.shape
        _check_trajectories(rows, self.capacity, self.spec.size)
        period, pixels, width = self.period, self.pixels, self.width
        frames = n * size
        groups = -(-frames // period)
        bits = self._rows[:groups * period * width].reshape(groups * period, width)
        bits.fill(0)
        per_step = bits[:frames].reshape(n, size, width)
        sample, step = np.arange(n)[:, None], np.arange(size)[None, :]
        for r, c in _lit_pixels(rows, cols, self.spec):
            position = r.astype(np.int64) * size + c
            per_step[sample, step, position >> 3] |= (0x80 >> (position & 7)).astype(np.uint8)
        if self.spec.variant == "trail":
            words = per_step.view(np.uint64)
            np.bitwise_or.accumulate(words, axis=1, out=words)
        grouped = bits.reshape(groups, period, width)
        stream = self._stream[:groups * period * pixels // 8].reshape(groups, period * pixels // 8)
        for phase in range(period):
            first, shift = divmod(phase * pixels, 8)
            length = (shift + pixels + 7) // 8
            row = grouped[:, phase]
            if shift:
                row = self._shift_right(row, shift)
                stream[:, first] |= row[:, 0]  # shared with the previous phase's last byte
                stream[:, first + 1:first + length] = row[:, 1:length]
            else:
                stream[:, first:first + length] = row[:, :length]
        end = (frames * pixels + 7) // 8
        self._stream[end:end + 1] = 0  # a shorter call may follow a longer one
        return self._stream[:end + zero_byte]

    def _shift_right(self, row: np.ndarray, shift: int) -> np.ndarray:
        """row uint8 (g, width) moved right by `shift` bits (0 < shift < 8), as big-endian 64-bit words."""
        g = len(row)
        words, moved, carried = (w[:g * self.width // 8].reshape(g, -1) for w in self._words)
        np.copyto(words, row.view(">u8"))
        np.right_shift(words, np.uint64(shift), out=moved)
        np.left_shift(words[:, :-1], np.uint64(64 - shift), out=carried[:, 1:])
        np.bitwise_or(moved[:, 1:], carried[:, 1:], out=moved[:, 1:])
        shifted = self._shifted[:g * self.width // 8].reshape(g, -1)
        np.copyto(shifted, moved)
        return shifted.view(np.uint8)


class PathMaskRenderer:
    """Bit-packed frames of non-wrapping `trail` and `dot` sequences of even size, with less work per
    sequence than BitRenderer.

    Such a path lights one pixel per column, and the column drawn at step t depends only on t and the
    direction. So frame t is the path's whole image ANDed with a mask of the columns drawn up to step
    t (trail) or at step t (dot), a mask shared by every sequence of that direction. An even size
    keeps each sequence's bits byte-aligned in the stream, and each group of 1 or 2 frames too, so
    a chunk is two passes over its output: copy each sequence's masks, AND in its image.
    """

    def __init__(self, spec: SequenceSpec, capacity: int):
        if not self.handles(spec):
            raise ValueError(f"PathMaskRenderer draws non-wrapping trail and dot sequences of even size, not {spec}")
        size = spec.size
        self.spec, self.capacity = spec, capacity
        self.group = 8 // math.gcd(size * size, 8)  # frames per byte-aligned group: 1 or 2 (a divisor of size)
        step = np.arange(size)
        masks = np.empty((2, size, size, size), bool)  # direction (1 = right), frame, row, column
        for right in (0, 1):
            drawn_at = step if right else step[::-1]  # the step that draws each column
            shown = drawn_at <= step[:, None] if spec.variant == "trail" else drawn_at == step[:, None]
            masks[right] = shown[:, None, :]
        self._masks = np.packbits(masks.reshape(2, size // self.group, -1), axis=-1)  # (2, T / group, bytes)
        self._image = np.zeros((capacity, self.group, size * size), np.uint8)  # the path, once per frame of a group
        self._stream = np.empty(capacity * size ** 3 // 8 + 1, np.uint8)

    @staticmethod
    def handles(spec: SequenceSpec) -> bool:
        return spec.variant in ("trail", "dot") and not spec.wrap and spec.size % 2 == 0

    def __call__(self, rows: np.ndarray, cols: np.ndarray, zero_byte: bool = False) -> np.ndarray:
        """Bit-packed frames of trajectories rows, cols (n, T), n <= capacity; valid until the next call.

        zero_byte: end with one more zero byte, as HDF5's N-bit filter does (saves the writer a copy).
        """
        n, size = rows.shape
        _check_trajectories(rows, self.capacity, self.spec.size)
        image = self._image[:n]
        image.fill(0)
        position = rows.astype(np.intp) * size + cols
        sample = np.arange(n)[:, None]
        for frame in range(self.group):
            image[sample, frame, position] = 1
        packed = np.packbits(image.reshape(n, -1), axis=1)  # (n, bytes of a group)
        end = n * size ** 3 // 8
        stream = self._stream[:end].reshape(n, size // self.group, -1)
        right = (cols[:, 0] == 0).astype(np.intp)  # a left-going path starts in the last column
        np.take(self._masks, right, axis=0, out=stream)
        np.bitwise_and(stream, packed[:, None, :], out=stream)
        self._stream[end] = 0
        return self._stream[:end + zero_byte]


def trajectories(rng: np.random.Generator, n: int, spec: SequenceSpec) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """labels uint8 (n,), rows int16 (n, T), cols int16 (n, T), drawn from rng in a fixed order."""
    if n < 0:
        raise ValueError(f"n must be non-negative, got {n}")
    labels = (rng.random(n) < 0.5).astype(np.uint8)
    rows = walk_rows(rng, n, spec.size)
    cols = walk_cols(rng, labels, spec.size, spec.wrap)
    return labels, rows, cols


def generate(rng: np.random.Generator, n: int, spec: SequenceSpec) -> Sequences:
    """n sequences drawn from rng; the same rng state gives the same bytes."""
    labels, rows, cols = trajectories(rng, n, spec)
    return Sequences(render(rows, cols, spec), labels, rows, cols)
