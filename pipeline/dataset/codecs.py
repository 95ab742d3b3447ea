"""How `frames` is stored: HDF5 filters by name, and the writer for each.

`nbit-gzip` (the default) stores each 0/1 frame value as one bit: HDF5's built-in N-bit
filter (precision 1) followed by deflate. Both filters are part of HDF5 itself, so plain
h5py reads `frames` back as uint8 0/1 without any plugin, and a chunk's stored bytes are
zlib(bit-packed frames), which TensorFlow decodes natively (`tf.io.decode_compressed`):
the loader moves 8x fewer bytes and leaves unpacking to the device. We write those chunks
directly (`write_direct_chunk`): `np.packbits` plus ISA-L deflate is much faster than
HDF5's own filter path, and gives the same bytes HDF5 would decode.

The other codecs are kept for comparison (`bench/generation.py` times them all) and
for readers that prefer them. Zstd/LZ4/Blosc need `import hdf5plugin`
before opening a file (this module does that on import).
"""
from __future__ import annotations

import zlib

import h5py
import hdf5plugin
import numpy as np
from isal import isal_zlib

CODECS = ("nbit-gzip", "zstd-fast", "zstd", "lz4", "blosc-lz4", "gzip", "none")
DEFAULT_CODEC = "nbit-gzip"
DEFAULT_CHUNK = 32  # sequences per HDF5 chunk; 64 falls off the CPU caches and writes slower
BIT_PACKED = ("nbit-gzip",)  # codecs whose chunks decode to bit-packed frames
_NBIT = 5  # H5Z_FILTER_NBIT


def filter_options(codec: str) -> dict:
    """Keyword arguments for h5py `create_dataset` that apply `codec` (for the codecs h5py can express)."""
    if codec == "zstd-fast":
        return dict(hdf5plugin.Zstd(clevel=-3))
    if codec == "zstd":
        return dict(hdf5plugin.Zstd(clevel=1))
    if codec == "lz4":
        return dict(hdf5plugin.LZ4())
    if codec == "blosc-lz4":
        return dict(hdf5plugin.Blosc(cname="lz4", clevel=5, shuffle=hdf5plugin.Blosc.BITSHUFFLE))
    if codec == "gzip":
        return {"compression": "gzip", "compression_opts": 1}
    if codec == "none":
        return {}
    raise ValueError(f"codec must be one of {', '.join(CODECS)}, got {codec!r}")


def describe(codec: str) -> dict:
    """The filter pipeline of `codec`, for the manifest (JSON-safe)."""
    if codec == "nbit-gzip":
        return {"filters": ["nbit (precision 1)", "deflate"], "hdf5_filter_ids": [_NBIT, 1]}
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in filter_options(codec).items()}


def create_frames(group: h5py.Group, shape: tuple, chunk: int, codec: str) -> h5py.Dataset:
    """An empty uint8 `frames` dataset of `shape` (n, T, S, S), chunked by `chunk` whole sequences."""
    chunks = (chunk, *shape[1:])
    if codec not in BIT_PACKED:
        return group.create_dataset("frames", shape, np.uint8, chunks=chunks, track_times=False,
                                    **filter_options(codec))
    bit = h5py.h5t.NATIVE_UINT8.copy()
    bit.set_precision(1)
    dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
    dcpl.set_chunk(chunks)
    dcpl.set_filter(_NBIT, 0)
    dcpl.set_deflate(1)
    dcpl.set_obj_track_times(False)
    dataset = h5py.h5d.create(group.id, b"frames", bit, h5py.h5s.create_simple(shape), dcpl)
    return h5py.Dataset(dataset)


def write_frames(dataset: h5py.Dataset, start: int, block: np.ndarray, codec: str) -> None:
    """Store `block` (k, T, S, S) uint8 0/1 at sequence `start`, which begins a chunk; k <= the chunk length."""
    if codec not in BIT_PACKED:
        dataset[start:start + len(block)] = block
        return
    write_packed_frames(dataset, start, np.packbits(block.reshape(-1)))


def write_packed_frames(dataset: h5py.Dataset, start: int, packed: np.ndarray) -> None:
    """Store bit-packed frames of a BIT_PACKED dataset at sequence `start`, which begins a chunk.

    packed: uint8, `np.packbits` of k whole sequences (k <= the chunk length), with or without zero
    bytes after them; HDF5 stores edge chunks whole, so the rest of the chunk is zeros.
    """
    size = nbit_bytes(int(np.prod(dataset.chunks)))
    if len(packed) < size:
        packed = np.concatenate([packed, np.zeros(size - len(packed), np.uint8)])
    dataset.id.write_direct_chunk((start, 0, 0, 0), isal_zlib.compress(packed[:size], 1))


def nbit_bytes(values: int) -> int:
    """Bytes of the N-bit filter's encoding of `values` 1-bit values: the bits MSB-first, then zero bytes
    up to values//8 + 1."""
    return values // 8 + 1


def create_small(group: h5py.Group, name: str, values: np.ndarray) -> h5py.Dataset:
    """A per-sample array (labels, rows, cols) as one chunk, byte-shuffled and deflated: what h5py's
    `compression="gzip", shuffle=True` stores, written directly (no chunk cache, so a fixed file layout).

    Python's zlib, not ISA-L: ISA-L has been seen to encode the same small chunk differently in one
    worker process (valid, 1 byte longer), and a shard's bytes must not depend on the process that
    wrote it.
    """
    dataset = group.create_dataset(name, values.shape, values.dtype, chunks=values.shape, compression="gzip",
                                   compression_opts=1, shuffle=values.itemsize > 1, track_times=False)
    shuffled = values.view(np.uint8).reshape(-1, values.itemsize).T  # HDF5's shuffle: byte k of every value together
    dataset.id.write_direct_chunk((0,) * values.ndim, zlib.compress(np.ascontiguousarray(shuffled), 1))
    return dataset


def pack_bits(block: np.ndarray) -> bytes:
    """The N-bit filter's encoding of a whole chunk, a uint8 0/1 array."""
    packed = np.packbits(block.reshape(-1)).tobytes()
    return packed + b"\0" * (nbit_bytes(block.size) - len(packed))
