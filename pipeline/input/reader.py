"""The loader's reading core, without TensorFlow: decode windows of chunks, shuffle, batch.

    for frames, labels in batch_stream("datasets/moving-square-50", "train", 32, epochs=3):
        ...   # NumPy: frames uint8 (32, T, S, S) (or (32, S**3 // 8) bit-packed), labels uint8 (32,)

`WindowReader` turns window `w` of epoch `e` (`pipeline.input.order.EpochOrder`) into rows: it
reads each chunk's stored bytes with one `os.pread`, checks their CRC-32 against the one
taken at open (a changed chunk raises DataError naming the shard, never zeros), decodes them,
and writes the chunk's samples straight to their shuffled places in the window.
Decoding is ISA-L inflate (nbit-gzip, gzip), a plain copy (none), or h5py in the worker
processes of `pipeline.input.chunk_reader` (Zstd, LZ4, Blosc). pread, inflate and the copies release
the GIL, so `readers` threads decode `readers` windows at once.

A row is one sample as stored after inflating: bit-packed, S**3 / 8 bytes, for nbit-gzip at
even sizes (8x fewer bytes through the pipeline; `unpack_rows` restores 0/1 frames, or the
model does it on the device); otherwise the S**3 bytes of its frames.

`batch_stream` is the NumPy front end (the tf.data one is `pipeline.input.loader.make_dataset`;
both cut the same stream of windows into the same batches): windows are decoded `readers`
ahead of the one being consumed, batches crossing window and epoch boundaries, and a background
thread cuts the batches ahead of the caller (`pipeline.input.background`), handing them over a
few MiB at a time, so that cutting, the copy of a batch that spans two windows and the wait for a
window overlap the caller's step instead of adding to it.

Sharded (`shard_index`, `shard_count`; `pipeline.input.sharding`): the global stream is cut as
above, and each process keeps rows [i*b, (i+1)*b) of every global batch, b = batch_size / shard_count,
decoding only the chunks that hold any of its rows: at the default chunk of 32 samples that is
still nearly every chunk of a window, so a process decodes about as much as an unsharded stream.
Windows stay whole (the rows of chunks not decoded left unset): memory is an unsharded stream's.

Memory: at most `2 * readers + 1` windows of rows (`window_bytes` each) plus batches in flight
(those cut ahead are views into these windows, but for a batch that spans two);
the process may also keep up to `pipeline.runtime.malloc.TRIM_THRESHOLD` of freed buffers for reuse.
"""
from __future__ import annotations

import collections
import itertools
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache

import numpy as np

from pipeline.errors import DataError, require_positive_int
from pipeline.input.background import PREFETCH_BATCHES, in_background
from pipeline.input.order import EpochOrder, check_seed, window_chunks_for
from pipeline.input.sharding import Shard, chunks_needed
from pipeline.input.source import Source, open_dataset, packed_width
from pipeline.runtime import malloc
from pipeline.runtime.cpus import default_readers

ISAL_CODECS = ("nbit-gzip", "gzip")  # zlib streams, inflated by ISA-L
RAW_CODECS = ("none",)
# Default shuffle window: at most 48 MiB of rows. Below malloc.MMAP_THRESHOLD, so that a window's
# buffer is reused from the heap rather than mapped afresh (and page-faulted in) every time.
WINDOW_BYTES = 48 << 20
# Batches are handed from the background thread to the caller in lists of at least this many bytes
# of rows: one handoff per batch costs the caller more than a small batch's own cutting. Rows that
# are unpacked on the way (8x the bytes) go in lists of a quarter of that: a group of 32 MiB of frames
# is written to memory that has left the caches, and page-faulted in, before the caller reads it.
GROUP_BYTES = 4 << 20
UNPACKED_GROUP_BYTES = GROUP_BYTES // 4
ALIGN = 64  # bytes; TensorFlow takes a NumPy array without copying it only when it is this aligned


def row_bytes(src: Source) -> int:
    """Bytes per row: bit-packed when the codec stores bits and the size is even, else S**3."""
    return packed_width(src.size) if src.bit_packed and src.size % 2 == 0 else src.size ** 3


def default_window(src: Source) -> int:
    """Samples per shuffle window: the whole chunks that fit in WINDOW_BYTES of rows, at least two."""
    return max(2, WINDOW_BYTES // (row_bytes(src) * src.chunk)) * src.chunk


def aligned_empty(shape: tuple[int, ...]) -> np.ndarray:
    """An uninitialized uint8 array of `shape` whose data starts on an ALIGN-byte boundary."""
    n = int(np.prod(shape))
    raw = np.empty(n + ALIGN, np.uint8)
    start = -raw.ctypes.data % ALIGN
    return raw[start:start + n].reshape(shape)


def unpack_rows(rows: np.ndarray, size: int) -> np.ndarray:
    """Bit-packed rows uint8 (n, S**3 / 8), bits MSB-first -> 0/1 frames uint8 (n, S, S, S)."""
    return np.unpackbits(rows, axis=1).reshape(-1, size, size, size)


class WindowReader:
    """Decodes the windows of a split's epochs into (rows uint8 (n, row_bytes), labels uint8 (n,)).

    decode: "isal" (ISAL_CODECS), "raw" (RAW_CODECS) or "process" (any codec; h5py in
    `readers` worker processes). `window_samples` is rounded up to whole chunks.
    """

    def __init__(self, src: Source, *, seed: int = 0, shuffle: bool = True, window_samples: int | None = None,
                 decode: str = "isal", readers: int = 1):
        if decode == "isal" and src.codec not in ISAL_CODECS or decode == "raw" and src.codec not in RAW_CODECS:
            raise ValueError(f"decode {decode!r} cannot read a {src.codec!r} dataset")
        if decode not in ("isal", "raw", "process"):
            raise ValueError(f"decode must be isal, raw or process, got {decode!r}")
        if window_samples is None:
            window_samples = default_window(src)
        require_positive_int("window_samples", window_samples)
        self.src, self.seed, self.shuffle, self.decode = src, check_seed(seed), shuffle, decode
        self.window_chunks = window_chunks_for(window_samples, src.chunk)
        # worker processes decode through h5py, which hands back whole frames, packed codec or not
        self.row_bytes = src.size ** 3 if decode == "process" else row_bytes(src)
        self.packed_rows = self.row_bytes != src.size ** 3
        self._table = np.stack([src.shard, src.start, src.count, src.offset, src.nbytes, src.crc, src.first], 1)
        self._process = None
        if decode == "process":
            from pipeline.input.chunk_reader import shared_reader

            self._process = shared_reader(readers)

    @property
    def window_bytes(self) -> int:
        return self.window_chunks * self.src.chunk * self.row_bytes

    def windows_per_epoch(self) -> int:
        return self.order(0).windows

    @lru_cache(maxsize=4)  # noqa: B019 (a reader lives as long as its pipeline; the cache holds 4 small orders)
    def order(self, epoch: int) -> EpochOrder:
        return EpochOrder(self.src.count, self.window_chunks, self.seed, int(epoch), self.shuffle)

    @lru_cache(maxsize=4)  # noqa: B019 (as `order`)
    def window_ends(self, epoch: int) -> np.ndarray:
        """int64 (windows,): samples of epoch `epoch` up to the end of each window."""
        counts = self.src.count[self.order(epoch).chunk_order]
        return np.cumsum(np.add.reduceat(counts, np.arange(0, len(counts), self.window_chunks)))

    def locate(self, sample: int) -> tuple[int, int, int]:
        """(epoch, window, samples before it in that window) of `sample`, counted from the stream's
        start across epochs: what a stream resumed there reads first. Computed from the epoch's
        order alone; nothing is read."""
        epoch, at = divmod(int(sample), self.src.samples)
        ends = self.window_ends(epoch)
        w = int(np.searchsorted(ends, at, side="right"))
        return epoch, w, at - (int(ends[w - 1]) if w else 0)

    def shard_need(self, shard: Shard, epoch: int, w: int, origin: int) -> np.ndarray:
        """bool (n,): the samples of window `w` of `epoch`, in output order, that `shard` takes from a
        stream whose batches are cut from sample `origin` (counted from epoch 0's start)."""
        ends = self.window_ends(int(epoch))
        start = int(ends[w - 1]) if w else 0
        return shard.takes(int(epoch) * self.src.samples + start - int(origin), int(ends[w]) - start)

    def read(self, epoch: int, w: int, need: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Window `w` of epoch `epoch` in its output order: rows uint8 (n, row_bytes), labels uint8 (n,).

        Each chunk's samples go straight to their places in the window's permutation
        (`EpochOrder.permutation`), so a sample is copied once after inflating.
        need: bool (n,), the rows wanted (`shard_need`): only the chunks holding any of them are
        read, and the other rows are left as they were allocated (not zeros).
        """
        if self.decode != "process":
            # again for every window: TensorFlow's from_generator, for one, lowers glibc's trim
            # threshold process-wide when its iterator starts, which would hand each window's
            # buffer back to the OS only to page-fault it in again for the next
            malloc.keep_buffers_on_heap()
        order = self.order(int(epoch))
        chunks = order.window(int(w))
        n = int(self.src.count[chunks].sum())
        perm = order.permutation(int(w))
        to = None if perm is None else np.argsort(perm)  # where stored sample i of the window goes
        wanted = None if need is None else chunks_needed(order, int(w), need)
        rows, labels = aligned_empty((n, self.row_bytes)), aligned_empty((n,))
        at = 0
        for i, c in enumerate(chunks):
            shard, start, count, offset, nbytes, crc, first = (int(v) for v in self._table[c])
            if wanted is None or wanted[i]:
                dest = slice(at, at + count) if to is None else to[at:at + count]
                rows[dest] = self._chunk_rows(shard, start, count, offset, nbytes, crc)
                labels[dest] = self.src.labels[first:first + count]
            at += count
        return rows, labels

    def _chunk_rows(self, shard, start, count, offset, nbytes, crc) -> np.ndarray:
        path = self.src.paths[shard]
        if self._process is not None:
            return self._process.read(path, start, count, offset, nbytes, crc, self.src.frame_shape).reshape(count, -1)
        from isal import isal_zlib

        fd = os.open(path, os.O_RDONLY)
        try:
            stored = os.pread(fd, nbytes, offset)
        finally:
            os.close(fd)
        if len(stored) != nbytes:
            raise DataError(f"{path}: truncated, the chunk at sample {start} ends past the end of the file")
        if isal_zlib.crc32(stored) != crc:
            raise DataError(f"{path}: corrupt chunk at sample {start} (CRC-32 differs from the one read at open)")
        data = np.frombuffer(isal_zlib.decompress(stored) if self.decode == "isal" else stored, np.uint8)
        if self.src.bit_packed and not self.packed_rows:  # odd size: sequences are not whole bytes
            return np.unpackbits(data, count=count * self.row_bytes).reshape(count, -1)
        # a chunk's sequences come first; the N-bit filter's zero padding (or an edge chunk's) follows
        return data[:count * self.row_bytes].reshape(count, -1)


def decode_for(mechanism: str, codec: str) -> str:
    """The WindowReader decode for a reading-core mechanism ("auto", "isal" or "process") and codec:
    "auto" reads zlib and raw codecs itself and the plugin codecs through worker processes."""
    if mechanism == "process" or mechanism == "auto" and codec not in ISAL_CODECS + RAW_CODECS:
        return "process"
    return "raw" if codec in RAW_CODECS else "isal"


def batch_stream(data_dir, split: str, batch_size: int, *, shuffle: bool = True, seed: int = 0,
                 epochs: int | None = 1, drop_remainder: bool = False, readers: int | None = None,
                 packed: bool = False, shuffle_window: int | None = None, expected_size: int | None = None,
                 source: Source | None = None, mechanism: str = "auto",
                 prefetch: int = PREFETCH_BATCHES, start_step: int = 0, shard_index: int = 0,
                 shard_count: int = 1) -> BatchStream:
    """Batches `(frames, labels)` as NumPy uint8: frames (B, T, S, S), or (B, S**3 / 8) when `packed`.

    epochs: passes over the split (None: endless); batches run across epoch boundaries, and
      epoch k (from 0) is `EpochOrder(seed=seed, epoch=k)`: the same batches, in the same
      order, as `pipeline.input.loader.make_dataset` with the same arguments.
    start_step: the first batch to yield, counted from the stream's start across epochs: the
      stream yields exactly the batches an uninterrupted one yields from that step on, and reads
      nothing before the window that holds it (`BatchStream.state()` gives the step to resume at).
    shuffle_window: samples permuted together (default: whole chunks in 48 MiB of rows; see `pipeline.input.order`).
    readers: windows decoded at once, in threads (default: `pipeline.runtime.cpus.default_readers()`).
    mechanism: "auto" (isal where it can, else process), "isal" (nbit-gzip, gzip, none) or
      "process" (any codec; h5py in worker processes).
    prefetch: lists of batches (`rebatch_groups`: at least `GROUP_BYTES` of rows, `UNPACKED_GROUP_BYTES` where
      they are unpacked, or the rest of a window) cut ahead in a background thread; 0: cut in the caller's thread.
    shard_index, shard_count: this process's part of the stream (`pipeline.input.sharding`;
      `jax_shard()` gives JAX's): rows [i*b, (i+1)*b) of every global batch of `batch_size`,
      b = batch_size / shard_count, clipped where the last batch is short (possibly to none).
      `start_step` and `state()` count global batches, so a position taken with n processes resumes with m.
    """
    require_positive_int("batch_size", batch_size)
    shard = Shard(batch_size, shard_index, shard_count)
    require_positive_int("epochs", epochs, optional=True)
    for name, value in (("prefetch", prefetch), ("start_step", start_step)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    if mechanism not in ("auto", "isal", "process"):
        raise ValueError(f"mechanism must be auto, isal or process, got {mechanism!r}")
    readers = readers or default_readers()
    src = source or open_dataset(data_dir, split, expected_size)
    if packed and row_bytes(src) == src.size ** 3:
        raise ValueError(f"packed=True needs a bit-packed codec at an even size; this dataset is {src.codec!r}, "
                         f"size {src.size}")
    reader = WindowReader(src, seed=seed, shuffle=shuffle, window_samples=shuffle_window,
                          decode=decode_for(mechanism, src.codec), readers=readers)
    first_epoch, first_window, skip = reader.locate(start_step * batch_size)
    epoch_ids = range(first_epoch, epochs) if epochs else itertools.count(first_epoch)
    ids = ((e, w, skip if (e, w) == (first_epoch, first_window) else 0) for e in epoch_ids
           for w in range(first_window if e == first_epoch else 0, reader.windows_per_epoch()))
    groups = _cut(reader, ids, batch_size, drop_remainder, readers, packed, shard, start_step * batch_size)
    if prefetch:
        groups = in_background(groups, prefetch, name="batch-stream")
    return BatchStream(_flat(groups), seed=seed, batch_size=batch_size, step=start_step, epoch_samples=src.samples,
                       shard=shard)


def _flat(groups):
    """The batches of `groups`, one by one; closing this closes `groups`."""
    try:
        for group in groups:
            yield from group
    finally:
        groups.close()


class BatchStream:
    """The iterator `batch_stream` returns: its batches, and the position it has reached.

    `batch_size` is the global batch's; `shard_index` and `shard_count` say which of its rows this stream yields.
    """

    def __init__(self, batches: Iterator, *, seed: int, batch_size: int, step: int, epoch_samples: int,
                 shard: Shard | None = None):
        self._batches, self.seed, self.batch_size, self.step = batches, seed, batch_size, step
        self.epoch_samples = epoch_samples
        shard = shard or Shard(batch_size)
        self.shard_index, self.shard_count = shard.index, shard.count

    def __iter__(self) -> BatchStream:
        return self

    def __next__(self) -> tuple[np.ndarray, np.ndarray]:
        batch = next(self._batches)
        self.step += 1
        return batch

    def close(self) -> None:
        """Stop the stream's threads and readers."""
        self._batches.close()

    def state(self) -> dict:
        """Where the stream stands after the batches it has yielded, JSON-able: `step`, the next
        batch from the stream's start (resume with `start_step=step`, the same seed and batch size),
        and the sample it starts at, as `epoch` and `next_sample` within that epoch. Global: the
        same on every shard, and a resume may use any `shard_count`."""
        epoch, next_sample = divmod(self.step * self.batch_size, self.epoch_samples)
        return {"seed": self.seed, "batch_size": self.batch_size, "step": self.step, "epoch": epoch,
                "next_sample": next_sample}


def _cut(reader: WindowReader, ids, batch_size: int, drop_remainder: bool, readers: int, packed: bool,
         shard: Shard, origin: int):
    """Lists of consecutive batches (`rebatch_groups`) of the windows `ids` ((epoch, window, skip)),
    decoded `readers` ahead, as `batch_stream` yields them: `shard`'s rows of each, the stream's
    batches cut from sample `origin` (counted from epoch 0's start)."""
    src = reader.src
    shape = (-1, *src.frame_shape)

    def unpacked(group):
        return [(unpack_rows(rows, src.size).reshape(shape), labels) for rows, labels in group]

    with ThreadPoolExecutor(readers, thread_name_prefix="window") as pool:
        def read(epoch, w, skip):  # window w of the epoch, less its first `skip` samples
            if shard.whole:
                rows, labels = reader.read(epoch, w)
            else:
                rows, labels = reader.read(epoch, w, reader.shard_need(shard, epoch, w, origin))
            return rows[skip:], labels[skip:]

        unpack = reader.packed_rows and not packed
        groups = rebatch_groups(ahead(pool, read, ids, readers), batch_size, drop_remainder,
                                UNPACKED_GROUP_BYTES if unpack else GROUP_BYTES)
        if not shard.whole:  # the global batches, then this shard's rows of each: views, never repeats
            mine = shard.rows
            groups = ([(rows[mine], labels[mine]) for rows, labels in group] for group in groups)
        if unpack:  # in the pool too: unpacking costs more than inflating
            groups = ahead(pool, unpacked, ((g,) for g in groups), readers)
        elif not packed:  # rows are frames
            groups = ([(rows.reshape(shape), labels) for rows, labels in group] for group in groups)
        try:
            yield from groups
        finally:
            pool.shutdown(wait=True, cancel_futures=True)


def ahead(pool: ThreadPoolExecutor, fn, items, depth: int):
    """`fn(*item)` for each item, in order, computed in `pool` up to `depth` items ahead of the caller."""
    pending: collections.deque = collections.deque()
    for item in items:
        pending.append(pool.submit(fn, *item))
        if len(pending) > depth:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


def rebatch(windows, batch_size: int, drop_remainder: bool = False):
    """Cut a stream of (rows, labels) windows into batches of `batch_size`, across window boundaries;
    views into the windows except for a batch that spans two, which copies only its own rows (joining
    the whole next window would copy a window at every boundary). The last, short batch unless
    `drop_remainder`."""
    for group in rebatch_groups(windows, batch_size, drop_remainder, group_bytes=0):
        yield from group


def rebatch_groups(windows, batch_size: int, drop_remainder: bool = False, group_bytes: int = GROUP_BYTES):
    """`rebatch`'s batches, in order, in lists to hand over together: the batches each window
    completes, in lists of at least `group_bytes` of rows (the last of a window's may be smaller;
    0: one batch per list). A list never waits for a window that its batches do not need."""
    rest_rows = rest_labels = None  # the start of a batch that the next window completes
    for rows, labels in windows:
        group, held = [], 0
        at = 0
        if rest_rows is not None:
            at = min(batch_size - len(rest_labels), len(labels))
            rest_rows = np.concatenate([rest_rows, rows[:at]])
            rest_labels = np.concatenate([rest_labels, labels[:at]])
            if len(rest_labels) < batch_size:
                continue
            group, held = [(rest_rows, rest_labels)], rest_rows.nbytes
            rest_rows = rest_labels = None
        full = at + (len(labels) - at) // batch_size * batch_size
        for i in range(at, full, batch_size):
            if group and held >= group_bytes:
                yield group
                group, held = [], 0
            group.append((rows[i:i + batch_size], labels[i:i + batch_size]))
            held += group[-1][0].nbytes
        if group:
            yield group
        if full < len(labels):
            rest_rows, rest_labels = rows[full:], labels[full:]
    if rest_rows is not None and not drop_remainder:
        yield [(rest_rows, rest_labels)]
