"""A validated split of a dataset and the table of its stored chunks; no TensorFlow.

`open_dataset` reads the manifest and the split's chunk index (`pipeline.dataset.chunk_index`:
where every chunk of `frames` lies in its shard, its CRC-32 and Adler-32, the labels) and `stat`s
each shard; it reads no shard unless one changed. A reader then fetches and checks one chunk with
a single `pread`, outside HDF5 and its process-wide lock. Opening costs about the same for 10
thousand sequences as for 10 million: the index (~1 byte per sample) and one `stat` per shard.

What is found where (each a DataError naming the file, never zeros):

* at open: a missing, malformed or incomplete manifest; a missing shard; a shard whose size
  differs from the manifest's (truncated, extended); a manifest whose SHA-256 for a shard differs
  from the index's (edited, or the dataset regenerated); and any shard whose stat signature
  (size, mtime, inode) differs from the index's, i.e. rewritten, copied in or renamed over
  another: it is checked in full (datasets, shapes, attributes, trajectories, chunk layout,
  SHA-256 against the manifest) and re-indexed. A dataset copied elsewhere is therefore checked
  in full once, at its first open, like one written before indexes existed.
* while reading: every chunk's stored bytes against its CRC-32 (mechanisms isal, process) or
  Adler-32 (graph) from the index: damage that left the stat signature alone (the disk's own, or
  a write that restored the mtime) and any change after open.
* only by `verify` or `open_dataset(..., check_hashes=True)` (which reads and hashes everything):
  damage outside the chunks of `frames` (labels, trajectories, HDF5 metadata) that left the stat
  signature alone; readers never use those bytes.
"""
from __future__ import annotations

import os
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.dataset import chunk_index, codecs  # noqa: F401  (codecs registers plugin filters)
from pipeline.dataset.codecs import BIT_PACKED
from pipeline.dataset.manifest import MANIFEST, SPLITS, load_manifest
from pipeline.errors import DataError


@dataclass(frozen=True)
class Source:
    """A validated split: its shards and a table of every chunk of `frames`.

    Chunk table (int64 (chunks,), one entry per chunk, in stored order: shard after shard): `shard`
    index into `paths`, `start` first sample within the shard, `count` samples, `offset`/`nbytes`
    of the stored bytes in the file, `crc`/`adler` (zlib CRC-32 / Adler-32 of those bytes), `first`
    index of its first sample within the split (into `labels`). `file_bytes` int64 (shards,): each
    shard's size.
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
    first: np.ndarray
    adler: np.ndarray
    file_bytes: np.ndarray

    @property
    def samples(self) -> int:
        return len(self.labels)

    @property
    def frame_shape(self) -> tuple[int, int, int]:
        return (self.size, self.size, self.size)

    @property
    def chunks(self) -> int:
        return len(self.shard)

    @property
    def bit_packed(self) -> bool:
        """Chunks inflate to bit-packed frames (1 bit per pixel)."""
        return self.codec in BIT_PACKED

    def stored(self, c: int) -> bytes:
        """The stored bytes of chunk `c`, checked against its CRC-32 in the index; DataError naming
        the shard if they differ."""
        path = self.paths[self.shard[c]]
        try:
            with open(path, "rb") as f:
                f.seek(int(self.offset[c]))
                data = f.read(int(self.nbytes[c]))
        except OSError as e:
            raise DataError(f"{path}: unreadable since the dataset was opened ({e.strerror})") from None
        if zlib.crc32(data) != self.crc[c]:
            raise DataError(f"{path}: corrupt chunk at sample {self.start[c]} (CRC-32 differs from the index)")
        return data


def packed_width(size: int) -> int:
    """Bytes per bit-packed sequence of side `size` (size**3 bits); needs an even size to be whole."""
    if size % 2:
        raise ValueError(f"packed frames need an even size (size**3 bits in whole bytes), got size {size}")
    return size ** 3 // 8


def open_dataset(data_dir, split: str, expected_size: int | None = None, *, check_hashes: bool = False) -> Source:
    """Validate split `split` of the dataset in `data_dir` and load its chunk table from the index.

    Raises DataError naming the file on: a missing or malformed manifest, an incomplete dataset,
    a size other than `expected_size`, a missing shard, a shard whose length differs from the
    manifest's, and, for a shard that changed since it was indexed (or every shard, with
    `check_hashes`): wrong datasets, shapes, dtypes, attributes or trajectories, counts that
    disagree with the manifest, a chunk outside its file or with a skipped filter, a SHA-256
    other than the manifest's. See the module docstring for what is found at open and what while
    reading. An index made anew is kept beside the shards, or in a per-user cache where the
    directory is not writable (`pipeline.dataset.chunk_index.keep`).

    check_hashes: read and hash every shard (and check every chunk) as `verify` does, whatever
    the index says: the cost of reading the whole split.
    """
    directory = Path(data_dir)
    manifest = load_manifest(directory)
    params = manifest.params
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    if not manifest.complete:
        raise DataError(f"{directory / MANIFEST}: dataset is incomplete (generation still running or interrupted)")
    if expected_size is not None and params.size != expected_size:
        raise DataError(f"{directory / MANIFEST}: dataset has size {params.size}, expected {expected_size}")
    rows = manifest.shards.get(split, [])
    if not rows:
        why = " (generated with --test-samples 0)" if split == "test" and params.test_samples == 0 else ""
        raise DataError(f"{directory / MANIFEST}: split {split!r} has no samples{why}")
    index = chunk_index.refresh(directory, manifest, split, check_all=check_hashes)
    chunk = min(params.chunk, params.shard_size)
    samples = np.array([row["samples"] for row in rows], np.int64)
    step = np.minimum(chunk, samples)  # the writer's chunk, smaller in a shard of fewer samples
    shard = np.repeat(np.arange(len(rows), dtype=np.int64), index.chunks)
    first_chunk = np.concatenate([[0], np.cumsum(index.chunks)[:-1]])
    start = (np.arange(len(shard), dtype=np.int64) - first_chunk[shard]) * step[shard]
    count = np.minimum(step[shard], samples[shard] - start)
    first = np.concatenate([[0], np.cumsum(samples)[:-1]])[shard] + start
    root = str(directory.resolve())
    paths = tuple(os.path.join(root, row["path"]) for row in rows)
    return Source(directory, split, params.size, params.codec, chunk, paths, index.labels, shard=shard, start=start,
                  count=count, offset=index.offset, nbytes=index.nbytes, crc=index.crc.astype(np.int64), first=first,
                  adler=index.adler.astype(np.int64), file_bytes=index.bytes)
