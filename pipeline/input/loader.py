"""tf.data loader: stream a dataset's HDF5 shards as shuffled batches of uint8 frames.

    ds = make_dataset("datasets/moving-square-50", "train", 32, repeat=True)
    model.fit(ds, steps_per_epoch=..., epochs=...)      # elements: frames (B,T,S,S) uint8, labels (B,) uint8

`pipeline.input.source.open_dataset` validates the whole split before any training and indexes
every chunk of `frames`. Two ways to read it:

* the reading core (`pipeline.input.reader.WindowReader`, mechanisms "isal" and "process"): each
  epoch visits every chunk once in a random order and permutes the samples of each window of
  chunks (`pipeline.input.order`); `readers` windows are decoded at once in tf.data's threads (one
  `tf.numpy_function` call per window of thousands of samples, so tf.data's per-element cost
  is paid per window, not per sample), and `rebatch` cuts batches across windows while the
  next windows decode. Not under tf.data service, which runs no Python.
* graph (nbit-gzip, gzip, none): TensorFlow ops only (`tf.io.read_file`, `decode_compressed`,
  `decode_raw`), what tf.data service runs. Each epoch reads the shards in a random order,
  GRAPH_CYCLE at a time, each shard's chunks in a random order, and permutes the samples of
  each window; windows are assembled `readers` ahead of the one being consumed.

nbit-gzip stores frames bit-packed (1 bit per pixel). With `packed=True` batches stay packed,
uint8 (B, S**3 / 8), and the model unpacks them on the device (`pipeline.models.layers.UnpackFrames`):
8x fewer bytes through the pipeline and to the device. Otherwise batches are unpacked in the
pipeline's threads.

Either way a chunk whose bytes differ from those indexed at open raises an error naming the
shard, never zeros. Same seed, same batches in the same order, for any `readers`; epochs differ.
The core's batches equal `pipeline.input.reader.batch_stream`'s.
Sharded (core; `shard_index`, `shard_count`): each process yields its rows of every global batch
(`pipeline.input.sharding`) and decodes the chunks holding any of them: at the default chunk of 32,
nearly all of each window, so a process decodes (and holds) about as much as one unsharded pipeline.
Memory (core): at most `2 * readers + 1` windows of rows (`shuffle_window` samples each,
48 MiB by default) plus `PREFETCH_BATCHES` batches, whatever the dataset's size; the process
may also keep up to `pipeline.runtime.malloc.TRIM_THRESHOLD` (256 MiB) of freed buffers for reuse.
"""
from __future__ import annotations

import numpy as np

from pipeline.dataset.codecs import BIT_PACKED
from pipeline.errors import require_positive_int
from pipeline.input.background import PREFETCH_BATCHES
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
    mechanism: "auto" (isal for nbit-gzip/gzip, or graph when `splittable`; graph for none;
      process otherwise), "isal", "graph" (TensorFlow ops only: what tf.data service runs) or "process".
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
        frames = tf.numpy_function(lambda r: unpack_rows(r, size), [rows], tf.uint8, stateful=False)
        return tf.ensure_shape(frames, (None, size, size, size)), labels

    return unpack


def mechanism_for(codec: str, splittable: bool = False) -> str:
    """What `mechanism="auto"` reads `codec` with: the fastest one, or graph ops for tf.data service."""
    if codec in ISAL_CODECS and not splittable:
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
            rows, labels = tf.numpy_function(reader.read, [epoch, w], (tf.uint8, tf.uint8), stateful=False)
        else:  # without repeat each iteration, an epoch, is batched from its own start
            batch_origin = origin if repeat else tf.where(epoch == first_epoch, origin, epoch * samples)
            rows, labels = tf.numpy_function(read_shard, [epoch, w, batch_origin], (tf.uint8, tf.uint8),
                                             stateful=False)
        return tf.ensure_shape(rows, (None, reader.row_bytes))[skip:], tf.ensure_shape(labels, (None,))[skip:]

    def windows_of(e):
        begin = tf.where(e == first_epoch, first_window, 0)
        return tf.data.Dataset.range(begin, windows).map(
            lambda w: (e, w, tf.where((e == first_epoch) & (w == first_window), skip, 0)))

    return _epoch_ids(repeat, start[0]).flat_map(windows_of).map(decode, num_parallel_calls=readers)


def _graph_epochs(src: Source, seed: int, repeat: bool, splittable: bool, shuffle: bool, window: int,
                  readers: int, packed: bool):
    """Windows of rows and labels with TensorFlow ops only (GRAPH_CODECS); rows (n, row_bytes) as the core's."""
    import tensorflow as tf

    read_shard = _graph_reader(src, packed)
    lo = np.searchsorted(src.shard, np.arange(len(src.paths)), side="left")
    hi = np.searchsorted(src.shard, np.arange(len(src.paths)), side="right")
    lo, hi = tf.constant(lo, tf.int64), tf.constant(hi, tf.int64)
    seed_value, seed = seed, tf.constant(seed, tf.int64)

    def one_epoch(epoch):
        key = tf.stack([seed, epoch])  # every random draw of the epoch folds a tag into this key
        fold = tf.random.experimental.stateless_fold_in
        order = tf.range(len(src.paths), dtype=tf.int64)
        if shuffle:
            order = tf.random.experimental.stateless_shuffle(order, seed=fold(key, 0))

        def chunks_of(shard):
            ids = tf.range(lo[shard], hi[shard])
            if shuffle:
                ids = tf.random.experimental.stateless_shuffle(ids, seed=fold(fold(key, 1), shard))
            return read_shard(shard, tf.data.Dataset.from_tensor_slices(ids))

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


def _graph_reader(src: Source, packed: bool):
    """(shard, dataset of its chunk ids) -> (rows, labels) with TensorFlow ops only (GRAPH_CODECS).

    Runs under tf.data service. The shard is read whole, once, and its chunks cut from it; a
    chunk is checked against a fingerprint (farmhash) of the bytes indexed at open.
    rows: uint8 (count, S**3 / 8) bit-packed at even sizes of nbit-gzip, else (count, S**3).
    """
    import tensorflow as tf

    stored = [src.stored(c) for c in range(src.chunks)]  # the bytes open_dataset checked, or DataError
    fingerprint = tf.strings.to_hash_bucket_fast(tf.constant(stored), 2**62)
    paths = tf.constant(src.paths)
    offset, nbytes = tf.constant(src.offset), tf.constant(src.nbytes)
    count, start = tf.constant(src.count), tf.constant(src.start)
    labels = tf.constant(src.labels)
    first = tf.constant(src.first)
    zlib_coded = src.codec in ("gzip", *BIT_PACKED)
    width = row_bytes(src)
    bits_of_byte = tf.constant(np.unpackbits(np.arange(256, dtype=np.uint8)[:, None], axis=1))  # (256, 8)

    shard_end = np.zeros(len(src.paths), np.int64)  # where each shard's last chunk ends
    np.maximum.at(shard_end, src.shard, src.offset + src.nbytes)
    shard_end = tf.constant(shard_end)

    def read_chunk(shard, ids):
        content = tf.io.read_file(paths[shard])
        fits = tf.debugging.Assert(shard_end[shard] <= tf.cast(tf.strings.length(content), tf.int64),
                                   ["truncated shard", paths[shard]])
        with tf.control_dependencies([fits]):  # checked once per shard, not once per chunk
            content = tf.identity(content)

        def decode(c):
            data = tf.strings.substr(content, offset[c], nbytes[c])
            same = tf.debugging.Assert(tf.strings.to_hash_bucket_fast(data, 2**62) == fingerprint[c],
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

        return ids.map(decode)

    return read_chunk
