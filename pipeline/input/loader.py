"""tf.data loader: stream a dataset's HDF5 shards as shuffled batches of uint8 frames.

    ds = make_dataset("datasets/moving-square-50", "train", 32, repeat=True)
    model.fit(ds, steps_per_epoch=..., epochs=...)      # elements: frames (B,T,S,S) uint8, labels (B,) uint8

`pipeline.input.source.open_dataset` validates the split before any training, from its manifest,
its chunk index and one `stat` per shard (no shard is read unless it changed). Two ways to read it:

* the reading core (`pipeline.input.reader.WindowReader`, mechanisms "isal" and "process"): each
  epoch visits every chunk once in a random order and permutes the samples of each window of
  chunks (`pipeline.input.order`); `readers` windows are decoded at once in tf.data's threads (one
  `tf.numpy_function` call per window of thousands of samples, so tf.data's per-element cost
  is paid per window, not per sample), and `rebatch` cuts batches across windows while the
  next windows decode. Not under tf.data service, which runs no Python.
* graph (nbit-gzip, gzip, none): TensorFlow ops only (`FixedLengthRecordDataset` reads of byte
  ranges, `decode_compressed`, `decode_raw`), what tf.data service runs. Each epoch reads the
  shards in a random order, GRAPH_CYCLE at a time, each shard's chunks in stored order from a
  random one on (wrapping around), read in blocks as the pipeline needs them, and permutes the
  samples of each window; windows are assembled `readers` ahead of the one being consumed.

nbit-gzip stores frames bit-packed (1 bit per pixel). With `packed=True` batches stay packed,
uint8 (B, S**3 / 8), and the model unpacks them on the device (`pipeline.models.layers.UnpackFrames`):
8x fewer bytes through the pipeline and to the device. Otherwise batches are unpacked in the
pipeline's threads.

Either way a chunk whose bytes differ from those indexed (CRC-32; Adler-32 in graph ops) raises
an error naming the shard, never zeros. Same seed, same batches in the same order, for any `readers`; epochs differ.
The core's batches equal `pipeline.input.reader.batch_stream`'s.
Sharded (core; `shard_index`, `shard_count`): each process yields its rows of every global batch
(`pipeline.input.sharding`) and decodes the chunks holding any of them: at the default chunk of 32,
nearly all of each window, so a process decodes (and holds) about as much as one unsharded pipeline.
Memory (core): at most `2 * readers + 1` windows of rows (`shuffle_window` samples each,
48 MiB by default) plus `PREFETCH_BATCHES` batches, whatever the dataset's size; the process
may also keep up to `pipeline.runtime.malloc.TRIM_THRESHOLD` (256 MiB) of freed buffers for reuse.
Memory (graph, `graph_memory_bound`): the chunk table and labels (about 120 bytes per chunk and
2 per sample: at size 50, 6 MB per million sequences), 2 * readers + 3 windows, for each of up to
2 * GRAPH_CYCLE shards being read 6 blocks of GRAPH_BLOCK (256 KiB, or the largest chunk) and 2
decoded chunks, PREFETCH_BATCHES + readers batches, and the same 256 MiB of freed buffers, in a
process that leaves glibc's allocator thresholds as they are (see `graph_memory_bound`).
"""
from __future__ import annotations

import numpy as np

from pipeline.dataset.codecs import BIT_PACKED
from pipeline.errors import require_positive_int
from pipeline.input.background import PREFETCH_BATCHES
from pipeline.input.python_calls import guarded
from pipeline.input.reader import (
    ISAL_CODECS,
    RAW_CODECS,
    WindowReader,
    decode_for,
    default_window,
    row_bytes,
    unpack_rows,
)
from pipeline.input.sharding import Shard
from pipeline.input.source import Source, open_dataset, packed_width
from pipeline.runtime.cpus import default_readers

GRAPH_CODECS = ("nbit-gzip", "gzip", "none")  # decodable by TensorFlow ops
MECHANISMS = ("auto", "isal", "graph", "process")
GRAPH_CYCLE = 8  # shards the graph mechanism reads interleaved: fixed, so the order does not depend on readers
GRAPH_BLOCK = 256 << 10  # bytes the graph mechanism reads from a shard at a time (or its largest chunk)


def make_dataset(data_dir, split: str, batch_size: int, *, shuffle: bool = True, seed: int = 0,
                 repeat: bool = False, drop_remainder: bool = False, readers: int | None = None,
                 shuffle_window: int | None = None, prefetch: bool = True, expected_size: int | None = None,
                 mechanism: str = "auto", source: Source | None = None, packed: bool = False, splittable: bool = False,
                 start_step: int = 0, shard_index: int = 0, shard_count: int = 1):
    """Batches `(frames uint8 (B,T,S,S), labels uint8 (B,))` of split `split`, as a tf.data.Dataset.

    shuffle: a new order each epoch (see the module docstring); `shuffle_window` samples are
      permuted together (default: the whole chunks in 48 MiB of stored rows).
    repeat: endless epochs (`.take(n)` for n batches). Batches run across epochs.
      Without repeat, each new iteration (e.g. each `model.fit` epoch) is the next epoch.
    start_step: the first batch, counted from the stream's start across epochs (the step a
      `pipeline.input.reader.BatchStream.state()` gives): the batches an uninterrupted pipeline
      yields from that step on, nothing read before the window that holds it. Without repeat,
      the first iteration is the rest of that batch's epoch. Not with mechanism "graph".
    shard_index, shard_count: this process's rows [i*b, (i+1)*b) of every global batch of
      `batch_size`, b = batch_size / shard_count (`pipeline.input.sharding`; `input_context_shard`
      gives tf.distribute's), clipped where a batch is short (possibly to none). Not with mechanism
      "graph" (tf.data service shards by itself).
    packed: (nbit-gzip datasets of even size) yield frames bit-packed, uint8 (B, S**3 / 8), for a
      model that unpacks them on the device (`pipeline.models.networks.build_model(..., packed_input=True)`).
    readers: windows (isal, process) or shards (graph) decoded in parallel (default: this process's share
      of the CPUs it may use, `pipeline.runtime.cpus.default_readers`).
    mechanism: "auto" (isal for nbit-gzip, gzip and none, or graph when `splittable`; process otherwise),
      "isal", "graph" (TensorFlow ops only: what tf.data service runs) or "process".
    splittable: one epoch whose source is the seed-permuted shard list, so tf.data service's
      `processing_mode="distributed_epoch"` hands each shard to one worker: every sample once
      per epoch across all workers. Needs repeat=False (the service repeats).
    prefetch: prefetch `PREFETCH_BATCHES` batches, onto the accelerator when one is present;
      pass False before `distribute` to tf.data service.
    source: an already opened `open_dataset` result (skips re-validation).
    """
    import tensorflow as tf

    require_positive_int("batch_size", batch_size)
    shard = Shard(batch_size, shard_index, shard_count)
    if mechanism not in MECHANISMS:
        raise ValueError(f"mechanism must be one of {', '.join(MECHANISMS)}, got {mechanism!r}")
    if readers is None:
        readers = default_readers()
    require_positive_int("readers", readers)
    require_positive_int("shuffle_window", shuffle_window, optional=True)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    src = source or open_dataset(data_dir, split, expected_size)
    if mechanism == "auto":
        mechanism = mechanism_for(src.codec, splittable)
    for name, allowed in (("graph", GRAPH_CODECS), ("isal", ISAL_CODECS + RAW_CODECS)):
        if mechanism == name and src.codec not in allowed:
            raise ValueError(f"mechanism {name!r} decodes only {', '.join(allowed)}, this dataset is {src.codec!r}")
    if splittable and mechanism != "graph":
        raise ValueError(f"splittable=True is for tf.data service, which runs only TensorFlow ops: "
                         f"use mechanism 'graph' (a {src.codec} dataset), not {mechanism!r}")
    if splittable and repeat:
        raise ValueError("splittable=True builds one epoch for tf.data service to split; pass repeat=False")
    if isinstance(start_step, bool) or not isinstance(start_step, int) or start_step < 0:
        raise ValueError(f"start_step must be a non-negative integer, got {start_step!r}")
    if start_step and mechanism == "graph":
        raise ValueError("start_step needs mechanism 'isal' or 'process': the graph mechanism's order "
                         "interleaves whole shards and cannot start mid-stream without reading what comes before")
    if not shard.whole and mechanism == "graph":
        raise ValueError("shard_count > 1 needs mechanism 'isal' or 'process': the graph mechanism is for "
                         "tf.data service, which shards among its workers itself")
    if packed and src.codec not in BIT_PACKED:
        raise ValueError(f"packed=True needs a bit-packed codec ({', '.join(BIT_PACKED)}), "
                         f"this dataset is {src.codec!r}")
    if packed:
        packed_width(src.size)  # raises for an odd size
        if mechanism == "process":
            raise ValueError("packed=True reads the stored bits itself: use mechanism 'isal' or 'graph', not 'process'")
    window = shuffle_window or default_window(src)

    if mechanism == "graph":
        ds = _graph_epochs(src, seed, repeat, splittable, shuffle, window, readers, packed)
    else:
        reader = WindowReader(src, seed=seed, shuffle=shuffle, window_samples=window,
                              decode=decode_for(mechanism, src.codec), readers=readers)
        ds = _core_epochs(reader, repeat, readers, reader.locate(start_step * batch_size), shard,
                          start_step * batch_size)
    ds = ds.rebatch(batch_size, drop_remainder=drop_remainder)
    if not shard.whole:  # this process's rows of each global batch (Python slicing: clipped where it is short)
        lo, hi = shard.rows.start, shard.rows.stop
        ds = ds.map(lambda rows, labels: (rows[lo:hi], labels[lo:hi]))
    if row_bytes(src) == src.size ** 3:  # rows are frames already
        ds = ds.map(lambda rows, labels: (tf.reshape(rows, (-1, *src.frame_shape)), labels))
    elif not packed:  # unpacked here, in the pipeline's threads: unpacking costs more than inflating
        ds = ds.map(_unpacker(src.size, graph_ops=mechanism == "graph"), num_parallel_calls=readers)
    return prefetch_ahead(ds) if prefetch else ds


def prefetch_ahead(ds):
    """`ds` with `PREFETCH_BATCHES` batches made ready ahead, on the accelerator when one is present.
    A fixed count, not AUTOTUNE: tf.data's autotuned prefetch grows while the consumer outpaces it, up
    to a RAM budget of half the machine per iterator."""
    import tensorflow as tf

    from pipeline.runtime.devices import compute_device, has_gpu

    if has_gpu():
        return ds.apply(tf.data.experimental.prefetch_to_device(compute_device(), buffer_size=PREFETCH_BATCHES))
    return ds.prefetch(PREFETCH_BATCHES)


def _unpacker(size: int, graph_ops: bool):
    """(rows uint8 (B, S**3 / 8), labels) -> (frames uint8 (B, S, S, S) of 0/1, labels).

    graph_ops: TensorFlow ops only (tf.data service runs no Python); else NumPy's unpackbits.
    """
    import tensorflow as tf

    bits_of_byte = tf.constant(np.unpackbits(np.arange(256, dtype=np.uint8)[:, None], axis=1))  # (256, 8)

    def unpack(rows, labels):
        if graph_ops:  # a table lookup: in TensorFlow cheaper than shifting and masking each byte 8 times
            return tf.reshape(tf.gather(bits_of_byte, tf.cast(rows, tf.int32)), (-1, size, size, size)), labels
        frames = tf.numpy_function(guarded(lambda r: unpack_rows(r, size)), [rows], tf.uint8, stateful=False)
        return tf.ensure_shape(frames, (None, size, size, size)), labels

    return unpack


def mechanism_for(codec: str, splittable: bool = False) -> str:
    """What `mechanism="auto"` reads `codec` with: the fastest one, or graph ops for tf.data service.
    The reading core ("isal") also reads raw chunks, with one pread each and no decoding."""
    if codec in ISAL_CODECS + RAW_CODECS and not splittable:
        return "isal"
    return "graph" if codec in GRAPH_CODECS else "process"


def _epoch_ids(repeat: bool, first: int = 0):
    """int64 epoch numbers: first, first + 1, ... with `repeat`; else one per iteration, the next on each new one."""
    import tensorflow as tf

    if repeat:
        return tf.data.Dataset.counter(start=first)
    iterations = tf.Variable(first, dtype=tf.int64, trainable=False)
    return tf.data.Dataset.range(1).map(lambda _: iterations.assign_add(1) - 1)


def _core_epochs(reader: WindowReader, repeat: bool, readers: int, start: tuple[int, int, int], shard: Shard,
                 origin: int):
    """Windows of rows (n, row_bytes) and labels (n,), decoded by `reader` in tf.data's threads, from
    `start` (epoch, window, samples of it to skip: `WindowReader.locate`), sample `origin` of the
    stream (counted from epoch 0's start). Sharded, only the chunks holding `shard`'s rows are
    decoded; the other rows are left unset, for the caller to cut away."""
    import tensorflow as tf

    windows = tf.constant(reader.windows_per_epoch(), tf.int64)
    first_epoch, first_window, skip = (tf.constant(v, tf.int64) for v in start)
    samples, origin = tf.constant(reader.src.samples, tf.int64), tf.constant(origin, tf.int64)

    def read_shard(epoch, w, batch_origin):
        return reader.read(epoch, w, reader.shard_need(shard, epoch, w, batch_origin))

    def decode(epoch, w, skip):
        if shard.whole:
            rows, labels = tf.numpy_function(guarded(reader.read), [epoch, w], (tf.uint8, tf.uint8),
                                             stateful=False)
        else:  # without repeat each iteration, an epoch, is batched from its own start
            batch_origin = origin if repeat else tf.where(epoch == first_epoch, origin, epoch * samples)
            rows, labels = tf.numpy_function(guarded(read_shard), [epoch, w, batch_origin], (tf.uint8, tf.uint8),
                                             stateful=False)
        return tf.ensure_shape(rows, (None, reader.row_bytes))[skip:], tf.ensure_shape(labels, (None,))[skip:]

    def windows_of(e):
        begin = tf.where(e == first_epoch, first_window, 0)
        return tf.data.Dataset.range(begin, windows).map(
            lambda w: (e, w, tf.where((e == first_epoch) & (w == first_window), skip, 0)))

    return _epoch_ids(repeat, start[0]).flat_map(windows_of).map(decode, num_parallel_calls=readers)


def _graph_epochs(src: Source, seed: int, repeat: bool, splittable: bool, shuffle: bool, window: int,
                  readers: int, packed: bool):
    """Windows of rows and labels with TensorFlow ops only (GRAPH_CODECS); rows (n, row_bytes) as the core's.

    Each epoch: the shards in a random order, GRAPH_CYCLE interleaved; each shard's chunks in stored
    order from a random one on, wrapping around (`_graph_reader`); the samples of each window permuted.
    """
    import tensorflow as tf

    read_shard = _graph_reader(src, packed)
    chunks_in = tf.constant(np.bincount(src.shard, minlength=len(src.paths)), tf.int64)
    seed_value, seed = seed, tf.constant(seed, tf.int64)

    def one_epoch(epoch):
        key = tf.stack([seed, epoch])  # every random draw of the epoch folds a tag into this key
        fold = tf.random.experimental.stateless_fold_in
        order = tf.range(len(src.paths), dtype=tf.int64)
        if shuffle:
            order = tf.random.experimental.stateless_shuffle(order, seed=fold(key, 0))

        def chunks_of(shard):
            first = tf.constant(0, tf.int64)
            if shuffle:
                first = tf.random.stateless_uniform([], fold(fold(key, 1), shard), minval=0,
                                                    maxval=chunks_in[shard], dtype=tf.int64)
            return read_shard(shard, first)

        chunks = tf.data.Dataset.from_tensor_slices(order).interleave(
            chunks_of, cycle_length=min(GRAPH_CYCLE, len(src.paths)), block_length=1,
            num_parallel_calls=min(readers, GRAPH_CYCLE, len(src.paths)))
        if not shuffle:
            return chunks

        def permute(w, window):
            rows, labels = window
            perm = tf.random.experimental.stateless_shuffle(tf.range(tf.shape(labels, tf.int64)[0]),
                                                            seed=fold(fold(key, 2), w))
            return tf.gather(rows, perm), tf.gather(labels, perm)

        # the next windows are assembled and permuted while the current one is consumed
        return (chunks.rebatch(window).enumerate()
                .map(permute, num_parallel_calls=readers).prefetch(1))

    if splittable:
        return one_epoch(tf.constant(0, tf.int64))  # an eager permutation: a source the service can split
    # Under tf.data service a dataset holds no variables: iterations draw epoch seeds at random.
    if repeat:
        epochs = tf.data.Dataset.counter()
    else:
        epochs = tf.data.Dataset.random(seed=seed_value, rerandomize_each_iteration=True).take(1)
    return epochs.flat_map(one_epoch)


def graph_block_bytes(src: Source) -> np.ndarray:
    """int64 (shards,): the bytes the graph mechanism reads from each shard at a time: GRAPH_BLOCK, or
    the shard's largest stored chunk where that is larger."""
    block = np.full(len(src.paths), GRAPH_BLOCK, np.int64)
    np.maximum.at(block, src.shard, src.nbytes)
    return block


# What the graph mechanism's memory bound counts (see `graph_memory_bound`):
GRAPH_TABLE_BYTES = 8 * 8 + 7 * 8 + 1  # per chunk: the Source's table, and its copy as graph constants
GRAPH_READ_BLOCKS = 6  # blocks a shard being read holds: the reader's buffer, its record, the cut's input and output
GRAPH_WINDOWS = 3  # windows beside the 2 per reader the permutation holds: one being assembled, one prefetched, one cut


def graph_memory_bound(src: Source, batch_size: int, *, readers: int | None = None, window: int | None = None,
                       packed: bool = False) -> int:
    """Bytes the graph mechanism holds for `src` at most, beyond what the process held before the open.

    The chunk table and labels (`GRAPH_TABLE_BYTES` per chunk, 2 bytes per sample, as the Source's
    arrays and as graph constants); for each of up to 2 * GRAPH_CYCLE shards being read (the
    interleave's cycle and as many opened ahead) GRAPH_READ_BLOCKS blocks (`graph_block_bytes`) and
    2 decoded chunks; 2 * readers + GRAPH_WINDOWS windows of rows (`window` samples: default
    `default_window`); PREFETCH_BATCHES + readers batches (unpacked unless `packed`); and
    `pipeline.runtime.malloc.TRIM_THRESHOLD` of freed buffers glibc may keep for reuse. Only the
    table grows with the dataset.
    It holds under glibc's own allocator thresholds, which this mechanism leaves alone. In a process that
    keeps buffers on the heap (the other mechanisms call `pipeline.runtime.malloc.keep_buffers_on_heap`;
    or MALLOC_TRIM_THRESHOLD_ / MALLOC_MMAP_THRESHOLD_ in its environment) each of glibc's arenas, one
    per busy thread up to 8 per core, may keep TRIM_THRESHOLD of freed tensors.
    """
    from pipeline.runtime.malloc import TRIM_THRESHOLD

    readers = readers or default_readers()
    window = window or default_window(src)
    rows = row_bytes(src)
    table = src.chunks * GRAPH_TABLE_BYTES + 2 * src.samples + sum(len(p) for p in src.paths)
    reading = 2 * GRAPH_CYCLE * (GRAPH_READ_BLOCKS * int(graph_block_bytes(src).max()) + 2 * src.chunk * rows)
    windows = (2 * readers + GRAPH_WINDOWS) * window * rows
    batches = (PREFETCH_BATCHES + readers) * batch_size * (rows if packed else src.size ** 3)
    return table + reading + windows + batches + TRIM_THRESHOLD


def _graph_reader(src: Source, packed: bool):
    """(shard, first chunk) -> dataset of (rows, labels) per chunk, with TensorFlow ops only (GRAPH_CODECS).

    Runs under tf.data service. The shard's chunks come in stored order from chunk `first` to the
    last, then from the first up to `first`. Each run of those chunks that lie in the file one after
    another (all of a shard, but where the writer placed a chunk out of turn) is read front to back in
    blocks (`graph_block_bytes`) by a `FixedLengthRecordDataset`, its chunks cut out as they complete:
    nothing but the chunk index (and the labels) is held for chunks not being read.
    FixedLengthRecordDataset skips to a run's start by reading the bytes before it, so a shard costs
    up to twice its size in reads (more only for runs broken by misplaced chunks). Each chunk is
    checked against its Adler-32 from the index, and a run that ends early (a shard truncated since
    open) fails, naming the shard.
    rows: uint8 (count, S**3 / 8) bit-packed at even sizes of nbit-gzip, else (count, S**3).
    """
    import tensorflow as tf

    ends = src.offset + src.nbytes
    opens_run = np.ones(src.chunks, bool)  # chunk c does not follow chunk c - 1 of its shard in the file
    opens_run[1:] = (src.shard[1:] != src.shard[:-1]) | (src.offset[1:] < ends[:-1])
    lo = np.searchsorted(src.shard, np.arange(len(src.paths)), side="left")
    hi = np.searchsorted(src.shard, np.arange(len(src.paths)), side="right")
    lo, hi, opens_run = tf.constant(lo, tf.int64), tf.constant(hi, tf.int64), tf.constant(opens_run)
    offset, nbytes, end = tf.constant(src.offset), tf.constant(src.nbytes), tf.constant(ends)
    paths, file_bytes = tf.constant(src.paths), tf.constant(src.file_bytes, tf.int64)
    block = tf.constant(graph_block_bytes(src), tf.int64)
    count, start = tf.constant(src.count), tf.constant(src.start)
    adler, first = tf.constant(src.adler, tf.int64), tf.constant(src.first)
    labels = tf.constant(src.labels)
    zlib_coded = src.codec in ("gzip", *BIT_PACKED)
    width = row_bytes(src)
    bits_of_byte = tf.constant(np.unpackbits(np.arange(256, dtype=np.uint8)[:, None], axis=1))  # (256, 8)

    def runs(a, b):
        """int64 (runs, 2): [start, stop) of the runs of chunks [a, b); one empty run if a == b."""
        inner = tf.range(tf.minimum(a + 1, b), b)
        edges = tf.concat([[a], tf.boolean_mask(inner, tf.gather(opens_run, inner)), [b]], 0)
        return tf.stack([edges[:-1], edges[1:]], 1)

    def read_run(shard, a, b):
        """(chunk id, stored bytes) of chunks [a, b), which lie in the file in that order, read front to back."""
        path, size, blk = paths[shard], file_bytes[shard], block[shard]
        begin, stop = offset[a], end[b - 1]
        n = (stop - begin + blk - 1) // blk
        padded = begin + n * blk <= size  # whole blocks, the last one running past the run
        full = tf.where(padded, n, n - 1)
        tail = tf.where(padded, tf.constant(0, tf.int64), stop - begin - full * blk)
        blocks = tf.data.FixedLengthRecordDataset(path, blk, header_bytes=begin, footer_bytes=size - begin - full * blk,
                                                  buffer_size=blk)
        last = tf.data.Dataset.range(tf.cast(tail > 0, tf.int64)).flat_map(  # a shorter block to end on
            lambda _: tf.data.FixedLengthRecordDataset(path, tail, header_bytes=begin + full * blk,
                                                       footer_bytes=size - stop, buffer_size=blk))
        pieces = blocks.concatenate(last).map(lambda piece: (piece, False)).concatenate(
            tf.data.Dataset.from_tensors((tf.constant(b""), True)))  # marks the end

        def cut(state, element):
            pending, at, done = state  # bytes kept from file position `at` on; chunks before `done` cut
            piece, ended = element
            data = tf.strings.join([pending, piece])
            held = tf.cast(tf.strings.length(data), tf.int64)
            whole = a + tf.searchsorted(end[a:b], tf.reshape(at + held, [1]), side="right", out_type=tf.int64)[0]
            ready = tf.range(done, whole)
            chunks = tf.strings.substr(data, tf.gather(offset, ready) - at, tf.gather(nbytes, ready))
            keep = tf.where(whole < b, offset[tf.minimum(whole, b - 1)], at + held)  # the next chunk's start
            drop = tf.clip_by_value(keep - at, 0, held)
            complete = tf.debugging.Assert(tf.logical_or(tf.logical_not(ended), whole == b),
                                           ["truncated shard", path, "ends before byte", stop])
            with tf.control_dependencies([complete]):
                ready = tf.identity(ready)
            return (tf.strings.substr(data, drop, held - drop), at + drop, whole), (ready, chunks)

        return pieces.scan((tf.constant(b""), begin, a), cut).unbatch()

    def read_shard(shard, first_chunk):
        a, b = lo[shard], hi[shard]
        pairs = tf.concat([runs(a + first_chunk, b), runs(a, a + first_chunk)], 0)
        chunks = tf.data.Dataset.from_tensor_slices(pairs).filter(lambda r: r[0] < r[1]).flat_map(
            lambda r: read_run(shard, r[0], r[1]))

        def decode(c, data):
            same = tf.debugging.Assert(_adler32(data) == adler[c],
                                       ["corrupt chunk in shard", paths[shard], "at sample", start[c]])
            with tf.control_dependencies([same]):
                raw = tf.io.decode_compressed(data, "ZLIB") if zlib_coded else tf.identity(data)
            n = tf.cast(count[c], tf.int64)
            if src.bit_packed and width == src.size ** 3:  # odd size: sequences are not whole bytes
                data = tf.io.decode_raw(raw, tf.uint8)
                bits = tf.gather(bits_of_byte, tf.cast(data[:(n * width + 7) // 8], tf.int32))
                rows = tf.reshape(tf.reshape(bits, [-1])[:n * width], (-1, width))
            else:  # the chunk's sequences, cut before decode_raw: the rows own their buffer, not a slice of one
                whole = tf.strings.substr(raw, tf.constant(0, tf.int64), n * width)
                rows = tf.reshape(tf.io.decode_raw(whole, tf.uint8), (-1, width))
            return rows, tf.slice(labels, [first[c]], [n])

        return chunks.map(decode)

    return read_shard


ADLER_ROW = 2048  # bytes summed per row in int32 by `_adler32`: sum(j * byte) over a row stays below 2**31


def _adler32(data):
    """zlib's Adler-32 of the bytes of scalar string `data` (int64 scalar), in TensorFlow ops.

    A = 1 + sum(d_i), B = n + sum((n - i) * d_i), both mod 65521, Adler = B * 65536 + A. The bytes
    are summed in rows of ADLER_ROW in int32 (9 bytes of memory per byte of data), the rows in int64.
    """
    import tensorflow as tf

    d = tf.io.decode_raw(data, tf.uint8)
    n = tf.size(d, out_type=tf.int64)
    rows = (n + ADLER_ROW - 1) // ADLER_ROW
    d = tf.reshape(tf.cast(tf.pad(d, [[0, rows * ADLER_ROW - n]]), tf.int32), (-1, ADLER_ROW))
    sums = tf.cast(tf.reduce_sum(d, axis=1), tf.int64)
    weighted = tf.cast(tf.reduce_sum(d * tf.range(ADLER_ROW, dtype=tf.int32), axis=1), tf.int64)
    # byte j of row r is byte i = r * ADLER_ROW + j: (n - i) * d_i = (n - r * ADLER_ROW) * d_i - j * d_i
    lead = tf.math.floormod(n - tf.range(rows, dtype=tf.int64) * ADLER_ROW, 65521)
    a = tf.math.floormod(1 + tf.reduce_sum(sums), 65521)
    b = tf.math.floormod(n + tf.reduce_sum(lead * tf.math.floormod(sums, 65521) - weighted), 65521)
    return b * 65536 + a
