"""tf.data loader: stream a dataset's HDF5 shards as batches of uint8 frames.

    ds = make_dataset("datasets/moving-square-50", "train", 32, repeat=True)
    model.fit(ds, steps_per_epoch=..., epochs=...)      # elements: frames (B,T,S,S) uint8, labels (B,) uint8

`open_dataset` validates the whole split before any training (manifest, every shard's
presence, shapes, dtypes, counts, size, SHA-256 against the manifest) and indexes every
chunk of `frames`: byte offset, length and a fingerprint of its stored bytes.

Reading: `readers` chunks (isal, process) or shards (graph) at a time; each chunk is decoded by
one of three mechanisms, chosen by codec (README "Loader" has the measurements):

* isal (nbit-gzip, gzip; the default for them): each chunk's bytes read with `os.pread` and
  inflated by ISA-L inside a `tf.numpy_function`, in tf.data's threads, which run in parallel
  because ISA-L releases the GIL (3-5x faster than TensorFlow's own inflate, measured). Not
  under tf.data service, which accepts only graph ops: use "graph" there.
* graph (nbit-gzip, gzip, none): `tf.io.read_file` + `tf.strings.substr` +
  `tf.io.decode_compressed` ("ZLIB") + `tf.io.decode_raw`, all TensorFlow ops: parallel
  without the GIL or h5py's lock, and the mechanism that runs under tf.data service.
* process (zstd-fast, zstd, lz4, blosc-lz4): the process's shared `pipeline.chunk_reader`
  pool of `readers` worker processes, each with its own h5py, decoding into shared memory;
  reached through `tf.py_function`, so not under tf.data service.

An nbit-gzip chunk inflates to bit-packed frames (1 bit per pixel), unpacked on the host, or,
with `packed=True`, handed on packed so the model unpacks them on the device
(`pipeline.models.UnpackFrames`): 8x fewer bytes through the pipeline and to the device.

Either way a chunk whose bytes differ from those indexed at open raises an error naming the
shard, never zeros. Order: per epoch the shard order and each shard's chunk order are
permuted with stateless seeds drawn from `seed`, then blocks of `shuffle_buffer` samples are permuted;
`deterministic=True` gives the same order for the same seed, epochs differ.
Memory: a shuffle block and its permuted copy, `readers` chunks in flight and the prefetch buffer.
"""
from __future__ import annotations

import hashlib
import os
import zlib
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from pipeline import codecs  # noqa: F401  (registers plugin filters)
from pipeline.codecs import BIT_PACKED
from pipeline.errors import DataError
from pipeline.manifest import MANIFEST, load_manifest
from pipeline.shards import check_shard

GRAPH_CODECS = ("nbit-gzip", "gzip", "none")  # decodable by TensorFlow ops
ISAL_CODECS = ("nbit-gzip", "gzip")  # zlib streams, inflated by ISA-L
MECHANISMS = ("auto", "isal", "graph", "process")
SHUFFLE_BUFFER_BYTES = 256 << 20  # default shuffle block: ~256 MB of frames


@dataclass(frozen=True)
class Source:
    """A validated split: its shards and a table of every chunk of `frames`.

    Chunk table (one entry per chunk, in manifest order): `shard` index into `paths`,
    `start` first sample within the shard, `count` samples, `offset`/`nbytes` of the stored
    bytes in the file, `crc` (zlib CRC-32) and `fingerprint` (TF farmhash) of those bytes,
    `first` index of its first sample within the split (into `labels`).
    """

    directory: Path
    split: str
    size: int
    codec: str
    chunk: int
    paths: tuple[str, ...]
    labels: np.ndarray
    shard: np.ndarray
    start: np.ndarray
    count: np.ndarray
    offset: np.ndarray
    nbytes: np.ndarray
    crc: np.ndarray
    fingerprint: np.ndarray
    first: np.ndarray

    @property
    def samples(self) -> int:
        return len(self.labels)

    @property
    def frame_shape(self) -> tuple[int, int, int]:
        return (self.size, self.size, self.size)

    @property
    def chunks(self) -> int:
        return len(self.shard)


def open_dataset(data_dir, split: str, expected_size: int | None = None, *, check_hashes: bool = True) -> Source:
    """Validate split `split` of the dataset in `data_dir` and index its chunks.

    Raises DataError naming the file on: a missing or malformed manifest, an incomplete
    dataset, a size other than `expected_size`, a missing shard, wrong shapes/dtypes, counts
    that disagree with the manifest, a file whose length or SHA-256 (`check_hashes`) differs
    from the manifest, a chunk outside its file or with a skipped filter.
    """
    directory = Path(data_dir)
    manifest = load_manifest(directory)
    params = manifest.params
    if split not in manifest.shards:
        raise ValueError(f"split must be one of {', '.join(manifest.shards)}, got {split!r}")
    if not manifest.complete:
        raise DataError(f"{directory / MANIFEST}: dataset is incomplete (generation still running or interrupted)")
    if expected_size is not None and params.size != expected_size:
        raise DataError(f"{directory / MANIFEST}: dataset has size {params.size}, expected {expected_size}")
    size, chunk = params.size, min(params.chunk, params.shard_size)
    paths, labels, table = [], [], []
    first = 0
    plans = {plan.name: plan for plan in params.plans()}
    for index, entry in enumerate(manifest.shards[split]):
        path = directory / entry["path"]
        n = entry["samples"]
        check_shard(path, plans[entry["path"]])
        raw = path.read_bytes()
        if entry.get("bytes") is not None and len(raw) != entry["bytes"]:
            raise DataError(f"{path}: {len(raw):,} bytes, the manifest says {entry['bytes']:,} (truncated or replaced?)")
        if check_hashes and entry.get("sha256") and hashlib.sha256(raw).hexdigest() != entry["sha256"]:
            raise DataError(f"{path}: SHA-256 differs from the manifest (corrupt or replaced)")
        with h5py.File(path, "r") as f:
            frames = f["frames"]
            step = min(chunk, n)  # the writer's chunk, smaller in a shard of fewer samples
            if frames.chunks != (step, size, size, size):
                raise DataError(f"{path}: frames chunked as {frames.chunks}, expected {(step, size, size, size)}")
            filters = frames.id.get_create_plist()
            if _filter_ids(filters) != EXPECTED_FILTERS.get(params.codec, _filter_ids(filters)):
                raise DataError(f"{path}: frames filters do not match codec {params.codec!r}")
            expected_chunks = -(-n // step)
            if frames.id.get_num_chunks() != expected_chunks:
                raise DataError(f"{path}: {frames.id.get_num_chunks()} chunks stored, expected {expected_chunks}")
            shard_labels = f["labels"][:]
            for k in range(expected_chunks):
                info = frames.id.get_chunk_info(k)
                start = info.chunk_offset[0]
                if info.filter_mask != 0:
                    raise DataError(f"{path}: chunk at sample {start} was stored with a filter skipped")
                if info.byte_offset + info.size > len(raw):
                    raise DataError(f"{path}: chunk at sample {start} lies past the end of the file")
                stored = raw[info.byte_offset:info.byte_offset + info.size]
                table.append((index, start, min(step, n - start), info.byte_offset, info.size,
                              zlib.crc32(stored), stored, first + start))
        if len(shard_labels) != n:
            raise DataError(f"{path}: {len(shard_labels)} labels, the manifest says {n}")
        paths.append(str(path.resolve()))
        labels.append(shard_labels)
        first += n
    if not table:
        raise DataError(f"{directory / MANIFEST}: split {split!r} has no shards")
    if params.codec in GRAPH_CODECS:
        fingerprints = _fingerprints([row[6] for row in table])
    else:
        fingerprints = np.zeros(len(table), np.int64)
    cols = list(zip(*table))
    return Source(directory, split, size, params.codec, chunk, tuple(paths),
                  np.concatenate(labels).astype(np.uint8),
                  shard=np.array(cols[0], np.int32), start=np.array(cols[1], np.int64),
                  count=np.array(cols[2], np.int32), offset=np.array(cols[3], np.int64),
                  nbytes=np.array(cols[4], np.int64), crc=np.array(cols[5], np.int64),
                  fingerprint=fingerprints, first=np.array(cols[7], np.int64))


EXPECTED_FILTERS = {"nbit-gzip": (h5py.h5z.FILTER_NBIT, h5py.h5z.FILTER_DEFLATE),
                    "gzip": (h5py.h5z.FILTER_DEFLATE,), "none": ()}  # graph codecs: TF decodes exactly these


def _filter_ids(plist) -> tuple[int, ...]:
    return tuple(plist.get_filter(i)[0] for i in range(plist.get_nfilters()))


def packed_width(size: int) -> int:
    """Bytes per bit-packed sequence of side `size` (size**3 bits); needs an even size to be whole."""
    if size % 2:
        raise ValueError(f"packed frames need an even size (size**3 bits in whole bytes), got size {size}")
    return size ** 3 // 8


def _fingerprints(blobs: list[bytes]) -> np.ndarray:
    import tensorflow as tf

    return tf.strings.to_hash_bucket_fast(tf.constant(blobs), 2**62).numpy()


def default_shuffle_buffer(sample_bytes: int, chunk: int) -> int:
    """Samples in ~SHUFFLE_BUFFER_BYTES of frames of `sample_bytes` each, at least two chunks."""
    return max(2 * chunk, SHUFFLE_BUFFER_BYTES // sample_bytes)


def make_dataset(data_dir, split: str, batch_size: int, *, shuffle: bool = True, seed: int = 0,
                 repeat: bool = False, drop_remainder: bool = False, deterministic: bool = True,
                 readers: int | None = None, shuffle_buffer: int | None = None, steps: int | None = None,
                 prefetch: bool = True, expected_size: int | None = None, mechanism: str = "auto",
                 source: Source | None = None, packed: bool = False, splittable: bool = False):
    """Batches `(frames uint8 (B,T,S,S), labels uint8 (B,))` of split `split`, as a tf.data.Dataset.

    splittable: one epoch whose source is the (seed-permuted) shard list, so tf.data service's
      `processing_mode="distributed_epoch"` hands each shard to one worker: every sample once
      per epoch across all workers. Needs repeat=False (the service repeats).
    packed: (nbit-gzip datasets of even size) yield frames bit-packed, uint8 (B, S**3 / 8), for a
      model that unpacks them on the device (`pipeline.models.build_model(..., packed_input=True)`).

    shuffle: permute shard order and chunk order each epoch, then cut the samples into blocks
      of `shuffle_buffer` samples and permute each block (default ~256 MB of frames; 0: chunk
      permutations only). Same order for the same `seed` when `deterministic`.
    repeat: endless epochs; steps: stop after that many batches.
    readers: chunks (isal, process) or shards (graph) read in parallel (default: all cores).
    mechanism: "auto" (isal for nbit-gzip/gzip, or graph when `splittable`; graph for none;
      process otherwise), "isal", "graph" (TensorFlow ops only: what tf.data service runs) or "process".
    prefetch: prefetch to the accelerator when one is present, else a plain prefetch;
      pass False before `distribute` to tf.data service.
    source: an already opened `open_dataset` result (skips re-validation).
    """
    import tensorflow as tf

    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if steps is not None and (not isinstance(steps, int) or steps < 1):
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    if mechanism not in MECHANISMS:
        raise ValueError(f"mechanism must be one of {', '.join(MECHANISMS)}, got {mechanism!r}")
    if readers is None:
        readers = os.cpu_count() or 1
    if not isinstance(readers, int) or readers < 1:
        raise ValueError(f"readers must be a positive integer, got {readers!r}")
    src = source or open_dataset(data_dir, split, expected_size)
    if mechanism == "auto":
        mechanism = mechanism_for(src.codec, splittable)
    for name, allowed in (("graph", GRAPH_CODECS), ("isal", ISAL_CODECS)):
        if mechanism == name and src.codec not in allowed:
            raise ValueError(f"mechanism {name!r} decodes only {', '.join(allowed)}, this dataset is {src.codec!r}")
    if splittable and mechanism != "graph":
        raise ValueError(f"splittable=True is for tf.data service, which runs only TensorFlow ops: "
                         f"use mechanism 'graph' (a {src.codec} dataset), not {mechanism!r}")
    if packed and src.codec not in BIT_PACKED:
        raise ValueError(f"packed=True needs a bit-packed codec ({', '.join(BIT_PACKED)}), this dataset is {src.codec!r}")
    if packed:
        packed_width(src.size)  # raises for an odd size
        if mechanism == "process":
            raise ValueError("packed=True reads the stored bits itself: use mechanism 'isal' or 'graph', not 'process'")
    if shuffle_buffer is None:
        shuffle_buffer = default_shuffle_buffer(packed_width(src.size) if packed else src.size ** 3, src.chunk)
    if not isinstance(shuffle_buffer, int) or shuffle_buffer < 0:
        raise ValueError(f"shuffle_buffer must be a non-negative integer, got {shuffle_buffer!r}")

    if mechanism == "graph":
        read_shard, shards_of = _graph_reader(src, packed), _chunk_ranges(src)
    else:
        decode = _isal_reader(src, packed) if mechanism == "isal" else _process_reader(src, readers)
        chunk_shard = tf.constant(src.shard, tf.int64)

    def one_epoch(epoch_seed):
        if mechanism != "graph":  # every chunk decoded on its own: `readers` at a time
            order = (_chunk_order(chunk_shard, len(src.paths), epoch_seed) if shuffle
                     else tf.range(src.chunks, dtype=tf.int64))
            chunks = tf.data.Dataset.from_tensor_slices(order).map(
                decode, num_parallel_calls=readers, deterministic=deterministic)
        else:  # each shard read whole, once: `readers` shards at a time
            order = tf.range(len(src.paths), dtype=tf.int64)
            if shuffle:
                order = tf.random.experimental.stateless_shuffle(order, seed=tf.stack([epoch_seed, -1]))

            def chunks_of(shard):
                lo, hi = shards_of[0][shard], shards_of[1][shard]
                ids = tf.range(lo, hi)
                if shuffle:
                    ids = tf.random.experimental.stateless_shuffle(ids, seed=tf.stack([epoch_seed, shard]))
                return read_shard(shard, tf.data.Dataset.from_tensor_slices(ids))

            chunks = tf.data.Dataset.from_tensor_slices(order).interleave(
                chunks_of, cycle_length=readers, block_length=1, num_parallel_calls=readers,
                deterministic=deterministic)
        if shuffle and shuffle_buffer > 0:  # within the epoch: every sample once per epoch
            return _shuffle_blocks(chunks, shuffle_buffer, epoch_seed)
        return chunks

    if splittable:
        if repeat:
            raise ValueError("splittable=True builds one epoch for tf.data service to split; pass repeat=False")
        ds = one_epoch(tf.constant(seed, tf.int64))  # an eager permutation: a source the service can split
    else:
        # One int64 per epoch; rerandomized on every iteration, so model.fit epochs differ.
        epochs = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)
        ds = (epochs if repeat else epochs.take(1)).flat_map(one_epoch)
    ds = ds.rebatch(batch_size, drop_remainder=drop_remainder)
    if steps is not None:
        ds = ds.take(steps)
    options = tf.data.Options()
    options.deterministic = deterministic
    ds = ds.with_options(options)
    if prefetch:
        from pipeline.devices import compute_device, has_gpu

        if has_gpu():
            ds = ds.apply(tf.data.experimental.prefetch_to_device(compute_device(), buffer_size=2))
        else:
            ds = ds.prefetch(tf.data.AUTOTUNE)
    return ds


def mechanism_for(codec: str, splittable: bool = False) -> str:
    """What `mechanism="auto"` reads `codec` with: the fastest one, or graph ops for tf.data service."""
    if codec in ISAL_CODECS and not splittable:
        return "isal"
    return "graph" if codec in GRAPH_CODECS else "process"


def _shuffle_blocks(chunks, block: int, epoch_seed):
    """Cut the stream of (frames, labels) chunks into blocks of `block` samples and permute each block.

    Whole-tensor ops only: the sample-by-sample `unbatch().shuffle()` it replaces cost more CPU
    than reading and inflating (57 against 25 µs per packed size-50 sample, README "Loader").
    """
    import tensorflow as tf

    def permute(index, frames, labels):
        order = tf.random.experimental.stateless_shuffle(tf.range(tf.shape(labels, tf.int64)[0]),
                                                         seed=tf.stack([epoch_seed, index]))
        return tf.gather(frames, order), tf.gather(labels, order)

    return chunks.rebatch(block).enumerate().map(lambda i, batch: permute(i, *batch))


def _chunk_order(chunk_shard, shards: int, epoch_seed):
    """Every chunk id once: shard after shard in a permuted shard order, each shard's chunks permuted.

    chunk_shard: int64 (chunks,), the shard of each chunk. Stateless: the same `epoch_seed`, the same order.
    """
    import tensorflow as tf

    shard_order = tf.random.experimental.stateless_shuffle(tf.range(shards, dtype=tf.int64),
                                                           seed=tf.stack([epoch_seed, -1]))
    rank = tf.math.invert_permutation(shard_order)  # position of each shard in this epoch's order
    within = tf.random.stateless_uniform(tf.shape(chunk_shard), seed=tf.stack([epoch_seed, -2]), dtype=tf.float64)
    key = tf.cast(tf.gather(rank, chunk_shard), tf.float64) + within  # shard position, then a random fraction
    return tf.cast(tf.argsort(key), tf.int64)


def _chunk_ranges(src: Source):
    """Per shard, [lo, hi) of its chunks in the chunk table, as int64 constants."""
    import tensorflow as tf

    lo = np.searchsorted(src.shard, np.arange(len(src.paths)), side="left")
    hi = np.searchsorted(src.shard, np.arange(len(src.paths)), side="right")
    return tf.constant(lo, tf.int64), tf.constant(hi, tf.int64)


def _labels_of(src: Source):
    import tensorflow as tf

    labels, first, count = tf.constant(src.labels), tf.constant(src.first), tf.constant(src.count)

    def labels_of(c):
        return tf.slice(labels, [first[c]], [tf.cast(count[c], tf.int64)])

    return labels_of


def _chunk_table(src: Source) -> np.ndarray:
    """int64 (chunks, 6): shard, start, count, offset, nbytes, crc of each chunk, for reading in Python."""
    return np.stack([src.shard, src.start, src.count, src.offset, src.nbytes, src.crc], axis=1).astype(np.int64)


def _isal_reader(src: Source, packed: bool = False):
    """chunk id -> (frames, labels), the chunk read and inflated by ISA-L in a tf.data thread (ISAL_CODECS).

    frames: uint8 (count, T, S, S), or (count, S**3 / 8) bit-packed when `packed`. Python runs
    only to issue the read, the CRC-32 check and the inflate, which release the GIL.
    """
    import tensorflow as tf
    from isal import isal_zlib

    from pipeline import malloc

    malloc.keep_buffers_on_heap()  # chunk-sized buffers otherwise cost page faults on every chunk
    table = _chunk_table(src)
    bit_packed = src.codec in BIT_PACKED
    sample_bits = src.size ** 3
    shape = (-1, sample_bits // 8) if packed else (-1, *src.frame_shape)
    labels_of = _labels_of(src)

    def read(c):
        shard, start, count, offset, nbytes, crc = (int(v) for v in table[c])
        path = src.paths[shard]
        fd = os.open(path, os.O_RDONLY)
        try:
            stored = os.pread(fd, nbytes, offset)
        finally:
            os.close(fd)
        if len(stored) != nbytes:
            raise DataError(f"{path}: truncated, the chunk at sample {start} ends past the end of the file")
        if isal_zlib.crc32(stored) != crc:
            raise DataError(f"{path}: corrupt chunk at sample {start} (CRC-32 differs from the one read at open)")
        data = np.frombuffer(isal_zlib.decompress(stored), np.uint8)
        if packed:
            return data[:count * sample_bits // 8].reshape(shape)
        if bit_packed:  # the chunk's sequences are its first count * S**3 bits; zero padding follows
            return np.unpackbits(data, count=count * sample_bits).reshape(shape)
        return data.reshape(shape)[:count]

    def decode(c):
        frames = tf.numpy_function(read, [c], tf.uint8, stateful=False)
        frames.set_shape((None, *shape[1:]))
        return frames, labels_of(c)

    return decode


def _graph_reader(src: Source, packed: bool = False):
    """(shard, dataset of its chunk ids) -> (frames, labels) with TensorFlow ops only (GRAPH_CODECS).

    Runs under tf.data service. The shard is read whole, once, and its chunks cut from it.

    frames: uint8 (count, T, S, S), or (count, S**3 / 8) bit-packed when `packed`.
    """
    import tensorflow as tf

    paths = tf.constant(src.paths)
    offset, nbytes = tf.constant(src.offset), tf.constant(src.nbytes)
    fingerprint, count, start = tf.constant(src.fingerprint), tf.constant(src.count), tf.constant(src.start)
    chunk_shape = (-1, *src.frame_shape)
    labels_of = _labels_of(src)
    zlib_coded = src.codec in ("gzip", *BIT_PACKED)
    bit_packed = src.codec in BIT_PACKED
    sample_bits = src.size ** 3
    bits_of_byte = tf.constant(np.unpackbits(np.arange(256, dtype=np.uint8)[:, None], axis=1))  # (256, 8)

    shard_end = np.zeros(len(src.paths), np.int64)  # where each shard's last chunk ends
    np.maximum.at(shard_end, src.shard, src.offset + src.nbytes)
    shard_end = tf.constant(shard_end)

    def read_chunk(shard, ids):
        content = tf.io.read_file(paths[shard])  # one read per shard (~0.5% of its raw bytes)
        # checked once per shard: per chunk it cost ~9% more CPU on the packed path (A/B, interleaved passes)
        fits = tf.debugging.Assert(shard_end[shard] <= tf.cast(tf.strings.length(content), tf.int64),
                                   ["truncated shard", paths[shard]])
        with tf.control_dependencies([fits]):
            content = tf.identity(content)

        def decode(c):
            stored = tf.strings.substr(content, offset[c], nbytes[c])
            same = tf.debugging.Assert(tf.strings.to_hash_bucket_fast(stored, 2**62) == fingerprint[c],
                                       ["corrupt chunk in shard", paths[shard], "at sample", start[c]])
            with tf.control_dependencies([same]):
                raw = tf.io.decode_compressed(stored, "ZLIB") if zlib_coded else tf.identity(stored)
            data = tf.io.decode_raw(raw, tf.uint8)
            if packed:
                frames = tf.reshape(data[:count[c] * sample_bits // 8], (-1, sample_bits // 8))
            elif bit_packed:  # the chunk's sequences are its first count * S**3 bits; zero padding follows
                bits = tf.gather(bits_of_byte, tf.cast(data[:(count[c] * sample_bits + 7) // 8], tf.int32))
                frames = tf.reshape(tf.reshape(bits, [-1])[:count[c] * sample_bits], chunk_shape)
            else:
                frames = tf.reshape(data, chunk_shape)[:count[c]]
            return frames, labels_of(c)

        return ids.map(decode)

    return read_chunk


def _process_reader(src: Source, readers: int):
    """chunk id -> (frames, labels), decoded by worker processes (any codec h5py reads)."""
    import tensorflow as tf

    from pipeline.chunk_reader import shared_reader

    reader = shared_reader(readers)
    paths = src.paths
    table = _chunk_table(src)
    labels_of = _labels_of(src)
    frame_shape = src.frame_shape

    def read(c):
        shard, *rest = (int(v) for v in table[int(c)])
        return reader.read(paths[shard], *rest, frame_shape)

    def decode(c):
        frames = tf.py_function(read, [c], tf.uint8)
        frames.set_shape((None, *frame_shape))
        return frames, labels_of(c)

    return decode
