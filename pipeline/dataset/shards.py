"""One HDF5 shard: write it atomically, check it, hash it.

A shard holds, for n sequences of side S (T = S frames):

* ``frames`` uint8 (n, T, S, S), values 0/1, chunked in whole samples, compressed;
* ``labels`` uint8 (n,), 1 = left-to-right;
* ``rows`` / ``cols`` int16 (n, T), the pixel drawn at each step;
* attributes: the generation parameters, the split, the shard index and the
  index of its first sample within the split.

A shard is written to ``NAME.tmp-<pid>``, flushed to disk and renamed to ``NAME``:
a file under its final name is always complete.

A dataset owns only files with the names below (shards, their temporary files); anything
else in its directory is the user's and is never deleted.
"""
from __future__ import annotations

import hashlib
import os
import re
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
_TEMPORARY_NAME = re.compile(r"((train|test)-\d{5}\.h5|manifest\.json)\.tmp-\d+")


def is_shard_name(name: str) -> bool:
    """True for a file name a shard can have (`train-00012.h5`)."""
    return SHARD_NAME.fullmatch(name) is not None


def is_temporary_name(name: str) -> bool:
    """True for the name of a shard or manifest that a writer had not yet renamed (`train-00012.h5.tmp-4242`)."""
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
class ShardRecord:
    """What the manifest keeps of a finished shard."""

    path: str
    samples: int
    sha256: str
    bytes: int
    peak_rss_bytes: int  # of the process that wrote it, when it finished (not kept in the manifest)


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
        record = ShardRecord(plan.name, plan.samples, sha256_of(tmp), tmp.stat().st_size, peak_rss_bytes())
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
