"""One HDF5 shard: write it atomically, check it, hash it, index its chunks.

A shard holds, for n sequences of side S (T = S frames):

* ``frames`` uint8 (n, T, S, S), values 0/1, chunked in whole samples, compressed;
* ``labels`` uint8 (n,), 1 = left-to-right;
* ``rows`` / ``cols`` int16 (n, T), the pixel drawn at each step;
* attributes: the generation parameters, the split, the shard index and the
  index of its first sample within the split.

A shard is written to ``NAME.tmp-<pid>``, flushed to disk and renamed to ``NAME``:
a file under its final name is always complete. Its writer also indexes it (`ShardIndex`:
where each chunk of ``frames`` lies, their CRC-32 and Adler-32, the labels), from the bytes it
hashed, for the split's chunk index (`pipeline.dataset.chunk_index`).

A dataset owns only files with the names below (shards, the chunk indexes, their temporary
files); anything else in its directory is the user's and is never deleted.
"""
from __future__ import annotations

import hashlib
import mmap
import os
import re
import zlib
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from pipeline.dataset import codecs  # also registers the plugin filters for every reader of a shard
from pipeline.dataset.synth import SequenceSpec, bit_renderer, render, trajectories
from pipeline.errors import DataError

FORMAT_VERSION = 1
TMP_MARK = ".tmp-"
SPLIT_KEYS = {"train": 0, "test": 1}
SHARD_NAME = re.compile(r"(train|test)-\d{5}\.h5")
INDEX_NAME = re.compile(r"index-(train|test)\.npz")
_TEMPORARY_NAME = re.compile(r"((train|test)-\d{5}\.h5|manifest\.json|index-(train|test)\.npz)\.tmp-\d+")
# The filters a `frames` chunk of each codec passed through, for the codecs whose chunks readers decode
# outside HDF5 (zlib streams, or raw bytes): a shard that skipped one would decode to garbage.
EXPECTED_FILTERS = {"nbit-gzip": (h5py.h5z.FILTER_NBIT, h5py.h5z.FILTER_DEFLATE),
                    "gzip": (h5py.h5z.FILTER_DEFLATE,), "none": ()}


def is_shard_name(name: str) -> bool:
    """True for a file name a shard can have (`train-00012.h5`)."""
    return SHARD_NAME.fullmatch(name) is not None


def is_index_name(name: str) -> bool:
    """True for the name of a split's chunk index (`index-train.npz`)."""
    return INDEX_NAME.fullmatch(name) is not None


def is_temporary_name(name: str) -> bool:
    """True for the name of a shard, manifest or chunk index that a writer had not yet renamed
    (`train-00012.h5.tmp-4242`)."""
    return _TEMPORARY_NAME.fullmatch(name) is not None


def temporary_files(directory: Path) -> list[Path]:
    """The writers' temporary files in `directory`, sorted; other files with `.tmp-` in their name are left out."""
    return sorted(p for p in Path(directory).glob(f"*{TMP_MARK}*") if is_temporary_name(p.name))


@dataclass(frozen=True)
class ShardPlan:
    """Everything needed to (re)create one shard's bytes, and nothing else."""

    split: str
    index: int
    first_sample: int
    samples: int
    seed: int
    spec: SequenceSpec
    chunk: int
    codec: str

    @property
    def name(self) -> str:
        return f"{self.split}-{self.index:05d}.h5"

    def attributes(self) -> dict:
        """The HDF5 attributes the shard carries: its generation parameters and its place in the split."""
        spec = self.spec
        return dict(format_version=FORMAT_VERSION, size=spec.size, variant=spec.variant, square=spec.square,
                    wrap=spec.wrap, seed=self.seed, split=self.split, shard_index=self.index,
                    first_sample=self.first_sample, chunk=self.chunk, codec=self.codec)

    def rng(self) -> np.random.Generator:
        """The shard's own stream: a function of (root seed, split, shard index) only."""
        return np.random.default_rng([self.seed, SPLIT_KEYS[self.split], self.index])


@dataclass(frozen=True)
class ShardIndex:
    """One shard's entry in its split's chunk index: what a reader needs to fetch and check any chunk
    of `frames` without opening the file as HDF5, and the file's identity when those bytes were read.

    name: the shard's file name; sha256, bytes: of the whole file; mtime_ns, inode: its `os.stat`
    signature, taken before its bytes were read (a file rewritten, copied in or renamed over it since
    has another). Per chunk, in stored order (chunk k holds samples [k*c, (k+1)*c), c the shard's
    chunk): offset, nbytes int64 (chunks,) where its stored bytes lie in the file; crc, adler uint32
    (chunks,) their zlib CRC-32 and Adler-32 (TensorFlow ops can compute the latter). labels uint8
    (samples,).
    """

    name: str
    sha256: str
    bytes: int
    mtime_ns: int
    inode: int
    offset: np.ndarray
    nbytes: np.ndarray
    crc: np.ndarray
    adler: np.ndarray
    labels: np.ndarray


@dataclass(frozen=True)
class ShardRecord:
    """What the manifest keeps of a finished shard, and its chunk index entry."""

    path: str
    samples: int
    sha256: str
    bytes: int
    peak_rss_bytes: int  # of the process that wrote it, when it finished (not kept in the manifest)
    index: ShardIndex | None = None


def sha256_of(path: Path, block: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(block):
            digest.update(chunk)
    return digest.hexdigest()


def peak_rss_bytes() -> int:
    """Peak resident memory of this process so far (Linux reports ru_maxrss in KiB)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def write_shard(directory: Path, plan: ShardPlan) -> ShardRecord:
    """Render, compress and write one shard under a temporary name, then rename it into place.

    Memory: trajectories for the whole shard (4 bytes x T per sample) plus one chunk of frames
    (one bit per pixel for BIT_PACKED codecs, one byte otherwise).
    """
    directory = Path(directory)
    final = directory / plan.name
    tmp = directory / f"{plan.name}{TMP_MARK}{os.getpid()}"
    spec = plan.spec
    labels, rows, cols = trajectories(plan.rng(), plan.samples, spec)
    try:
        with h5py.File(tmp, "w") as f:
            frames = codecs.create_frames(f, (plan.samples, *spec.frame_shape), min(plan.chunk, plan.samples),
                                          plan.codec)
            bit_packed = plan.codec in codecs.BIT_PACKED  # rendered straight to bits, 8x fewer bytes
            chunk = min(plan.chunk, plan.samples)
            if bit_packed:
                render_bits = bit_renderer(spec, chunk)
            else:
                buffer = np.empty((chunk, *spec.frame_shape), np.uint8)  # reused per chunk
            for start in range(0, plan.samples, plan.chunk):
                stop = min(start + plan.chunk, plan.samples)
                if bit_packed:
                    bits = render_bits(rows[start:stop], cols[start:stop], zero_byte=True)
                    codecs.write_packed_frames(frames, start, bits)
                else:
                    block = render(rows[start:stop], cols[start:stop], spec, out=buffer[:stop - start])
                    codecs.write_frames(frames, start, block, plan.codec)
            for name, values in (("labels", labels), ("rows", rows), ("cols", cols)):
                # raw chunks, not through HDF5's chunk cache: chunks left there are placed at close in
                # an order that varies from process to process, and the shard's bytes with it
                codecs.create_small(f, name, values)
            attrs = f.attrs
            for key, value in plan.attributes().items():
                attrs[key] = value
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        # the rename keeps the file's inode and mtime: the index's stat signature holds for `final`
        index = index_shard(tmp, plan, labels=labels, name=plan.name)
        record = ShardRecord(plan.name, plan.samples, index.sha256, index.bytes, peak_rss_bytes(), index)
        os.replace(tmp, final)
        return record
    except RuntimeError as e:  # h5py reports some HDF5 I/O failures (e.g. closing a file on a full disk) as a
        # RuntimeError with the errno only in its text: turned back into the OSError it is
        io_errno = re.search(r"errno = (\d+)", str(e))
        if not io_errno:
            raise
        raise OSError(int(io_errno[1]), os.strerror(int(io_errno[1])), str(tmp)) from e
    finally:
        tmp.unlink(missing_ok=True)


def check_shard(path: Path, plan: ShardPlan) -> None:
    """Raise DataError naming `path` unless it opens with the plan's datasets, shapes, dtypes and attributes,
    and its trajectories follow the rules.

    The attributes catch a shard from another dataset (other seed, variant, ...) under the right name.
    Trajectories: labels 0/1; rows and cols in 0..size-1; rows move by at most 1 per step; cols are
    0, 1, ..., size-1 for label 1 and the reverse for label 0 (with wrap: any start, then +1 or -1 per
    step modulo size). Reads labels, rows and cols whole (4 bytes x T per sample), not the frames.
    """
    samples, size = plan.samples, plan.spec.size
    expected = {
        "frames": ((samples, size, size, size), np.uint8),
        "labels": ((samples,), np.uint8),
        "rows": ((samples, size), np.int16),
        "cols": ((samples, size), np.int16),
    }
    if not path.exists():
        raise DataError(f"{path}: missing")
    try:
        with h5py.File(path, "r") as f:
            for name, (shape, dtype) in expected.items():
                if name not in f:
                    raise DataError(f"{path}: no dataset {name!r}")
                d = f[name]
                if d.shape != shape or d.dtype != dtype:
                    raise DataError(f"{path}: {name} is {d.dtype}{d.shape}, expected {np.dtype(dtype)}{shape}")
            for key, value in plan.attributes().items():
                found = f.attrs.get(key)
                found = found.decode() if isinstance(found, bytes) else getattr(found, "item", lambda: found)()
                if found is None or found != value:
                    raise DataError(f"{path}: attribute {key} is {found!r}, the manifest's parameters say {value!r}")
            labels, rows, cols = f["labels"][:], f["rows"][:], f["cols"][:]
    except DataError:
        raise
    except (OSError, RuntimeError) as e:  # not HDF5, or a damaged chunk of labels/rows/cols
        raise DataError(f"{path}: cannot be opened as HDF5 ({e})") from None
    problem = trajectory_problem(labels, rows, cols, plan.spec)
    if problem:
        raise DataError(f"{path}: {problem}")


def index_shard(path: Path, plan: ShardPlan, *, labels: np.ndarray | None = None, name: str | None = None,
                sha256: str | None = None) -> ShardIndex:
    """Hash `path` whole and index the chunks of its `frames`; DataError naming `path` if they are not
    what a reader can fetch: chunked as the plan says (whole samples), the codec's filters, one chunk
    per `plan.chunk` samples, none with a filter skipped, each inside the file, none overlapping.

    sha256: the digest the file must have (the manifest's); DataError if it differs.
    labels: the shard's labels if the caller holds them (else read from the file). The file is
    memory-mapped, so its bytes pass through the page cache rather than this process's heap.
    Does not check attributes or trajectories (`check_shard`).
    """
    st = os.stat(path)  # before the bytes are read: a change while reading shows at the next check
    n, size = plan.samples, plan.spec.size
    if st.st_size == 0:
        raise DataError(f"{path}: empty file")
    try:
        with h5py.File(path, "r") as f:
            frames = f["frames"]
            step = min(plan.chunk, n)
            if frames.chunks != (step, size, size, size):
                raise DataError(f"{path}: frames chunked as {frames.chunks}, expected {(step, size, size, size)}")
            plist = frames.id.get_create_plist()
            filters = tuple(plist.get_filter(i)[0] for i in range(plist.get_nfilters()))
            if filters != EXPECTED_FILTERS.get(plan.codec, filters):
                raise DataError(f"{path}: frames filters do not match codec {plan.codec!r}")
            expected = -(-n // step)
            if frames.id.get_num_chunks() != expected:
                raise DataError(f"{path}: {frames.id.get_num_chunks()} chunks stored, expected {expected}")
            infos = [frames.id.get_chunk_info(k) for k in range(expected)]
            if labels is None:
                labels = f["labels"][:]
    except DataError:
        raise
    except (OSError, RuntimeError, KeyError) as e:  # not HDF5, no frames, a damaged chunk of labels
        raise DataError(f"{path}: cannot be opened as HDF5 ({e})") from None
    if len(labels) != n:
        raise DataError(f"{path}: {len(labels)} labels, the manifest says {n}")
    offset = np.array([info.byte_offset for info in infos], np.int64)
    nbytes = np.array([info.size for info in infos], np.int64)
    for k, info in enumerate(infos):
        if info.chunk_offset[0] != k * step:
            raise DataError(f"{path}: chunk {k} holds sample {info.chunk_offset[0]}, expected {k * step}")
        if info.filter_mask != 0:
            raise DataError(f"{path}: chunk at sample {k * step} was stored with a filter skipped")
        if info.byte_offset + info.size > st.st_size:
            raise DataError(f"{path}: chunk at sample {k * step} lies past the end of the file")
    ends = np.sort(offset + nbytes)
    if np.any(np.sort(offset)[1:] < ends[:-1]):
        raise DataError(f"{path}: chunks of frames overlap")
    crc, adler = np.empty(expected, np.uint32), np.empty(expected, np.uint32)
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
        with memoryview(mapped) as view:
            digest = hashlib.sha256(view).hexdigest()
            for k in range(expected):
                stored = view[offset[k]:offset[k] + nbytes[k]]
                crc[k], adler[k] = zlib.crc32(stored), zlib.adler32(stored)
                stored.release()
    if sha256 is not None and digest != sha256:
        raise DataError(f"{path}: SHA-256 differs from the manifest (corrupt or replaced)")
    return ShardIndex(name or Path(path).name, digest, st.st_size, st.st_mtime_ns, st.st_ino, offset, nbytes,
                      crc, adler, np.asarray(labels, np.uint8))


def trajectory_problem(labels: np.ndarray, rows: np.ndarray, cols: np.ndarray, spec: SequenceSpec) -> str | None:
    """What is wrong with labels (n,), rows and cols (n, T) as trajectories of `spec`, or None if nothing."""
    size = spec.size
    if labels.size and labels.max() > 1:
        return f"labels hold {int(labels.max())}, expected 0 or 1"
    for name, values in (("rows", rows), ("cols", cols)):
        if values.size and (values.min() < 0 or values.max() >= size):
            return f"{name} hold values outside 0..{size - 1} ({int(values.min())}..{int(values.max())})"
    if size > 1 and rows.size and np.abs(np.diff(rows.astype(np.int32), axis=1)).max() > 1:
        return "rows move by more than 1 in a step"
    step = np.where(labels == 1, 1, -1)[:, None] * np.arange(size)
    start = cols[:, :1].astype(np.int32) if spec.wrap else np.where(labels == 1, 0, size - 1)[:, None]
    wrong = np.flatnonzero(((start + step) % size != cols).any(axis=1))
    if wrong.size:
        return (f"cols of sample {int(wrong[0])} do not follow its direction (label {int(labels[wrong[0]])})"
                + (f", and {wrong.size - 1} more" if wrong.size > 1 else ""))
    return None


def read_sequences(path: Path, start: int = 0, stop: int | None = None) -> dict[str, np.ndarray]:
    """frames, labels, rows, cols of samples [start, stop) of one shard, as NumPy arrays."""
    with h5py.File(path, "r") as f:
        return {name: f[name][start:stop] for name in ("frames", "labels", "rows", "cols")}
