"""A validated split of a dataset and the table of its stored chunks; no TensorFlow.

`open_dataset` checks the whole split before anything reads it (manifest, every shard's
presence, shapes, dtypes, counts, length, SHA-256) and indexes every chunk of `frames`: where
its stored bytes lie in the file and their CRC-32, so a reader can fetch and check one chunk
with a single `pread`, outside HDF5 and its process-wide lock.
"""
from __future__ import annotations

import hashlib
import zlib
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from pipeline.dataset import codecs  # noqa: F401  (registers plugin filters)
from pipeline.dataset.codecs import BIT_PACKED
from pipeline.dataset.manifest import MANIFEST, SPLITS, load_manifest
from pipeline.dataset.shards import check_shard
from pipeline.errors import DataError

# The filters whose chunks a reader can decode without HDF5: zlib streams, or raw bytes.
EXPECTED_FILTERS = {"nbit-gzip": (h5py.h5z.FILTER_NBIT, h5py.h5z.FILTER_DEFLATE),
                    "gzip": (h5py.h5z.FILTER_DEFLATE,), "none": ()}


@dataclass(frozen=True)
class Source:
    """A validated split: its shards and a table of every chunk of `frames`.

    Chunk table (one entry per chunk, in stored order: shard after shard): `shard` index into
    `paths`, `start` first sample within the shard, `count` samples, `offset`/`nbytes` of the
    stored bytes in the file, `crc` (zlib CRC-32 of those bytes), `first` index of its first
    sample within the split (into `labels`).
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
        """The stored bytes of chunk `c`, checked against the CRC-32 taken at open; DataError naming
        the shard if they changed since."""
        path = self.paths[self.shard[c]]
        try:
            with open(path, "rb") as f:
                f.seek(int(self.offset[c]))
                data = f.read(int(self.nbytes[c]))
        except OSError as e:
            raise DataError(f"{path}: unreadable since the dataset was opened ({e.strerror})") from None
        if zlib.crc32(data) != self.crc[c]:
            raise DataError(f"{path}: chunk at sample {self.start[c]} changed since the dataset was opened")
        return data


def packed_width(size: int) -> int:
    """Bytes per bit-packed sequence of side `size` (size**3 bits); needs an even size to be whole."""
    if size % 2:
        raise ValueError(f"packed frames need an even size (size**3 bits in whole bytes), got size {size}")
    return size ** 3 // 8


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
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    if not manifest.complete:
        raise DataError(f"{directory / MANIFEST}: dataset is incomplete (generation still running or interrupted)")
    if expected_size is not None and params.size != expected_size:
        raise DataError(f"{directory / MANIFEST}: dataset has size {params.size}, expected {expected_size}")
    size, chunk = params.size, min(params.chunk, params.shard_size)
    paths, labels, table = [], [], []
    first = 0
    plans = {plan.name: plan for plan in params.plans()}
    for index, entry in enumerate(manifest.shards.get(split, [])):
        path = directory / entry["path"]
        n = entry["samples"]
        check_shard(path, plans[entry["path"]])
        raw = path.read_bytes()
        if entry.get("bytes") is not None and len(raw) != entry["bytes"]:
            raise DataError(f"{path}: {len(raw):,} bytes, the manifest says {entry['bytes']:,} "
                            "(truncated or replaced?)")
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
                              zlib.crc32(stored), first + start))
        if len(shard_labels) != n:
            raise DataError(f"{path}: {len(shard_labels)} labels, the manifest says {n}")
        paths.append(str(path.resolve()))
        labels.append(shard_labels)
        first += n
    if not table:
        why = " (generated with --test-samples 0)" if split == "test" and params.test_samples == 0 else ""
        raise DataError(f"{directory / MANIFEST}: split {split!r} has no samples{why}")
    cols = [np.array(c, np.int64) for c in zip(*table)]
    return Source(directory, split, size, params.codec, chunk, tuple(paths),
                  np.concatenate(labels).astype(np.uint8), shard=cols[0], start=cols[1], count=cols[2],
                  offset=cols[3], nbytes=cols[4], crc=cols[5], first=cols[6])


def _filter_ids(plist) -> tuple[int, ...]:
    return tuple(plist.get_filter(i)[0] for i in range(plist.get_nfilters()))
