"""One HDF5 shard: write it atomically, check it, hash it.

A shard holds, for n sequences of side S (T = S frames):

* ``frames`` uint8 (n, T, S, S), values 0/1, chunked in whole samples, compressed;
* ``labels`` uint8 (n,), 1 = left-to-right;
* ``rows`` / ``cols`` int16 (n, T), the pixel drawn at each step;
* attributes: the generation parameters, the split, the shard index and the
  index of its first sample within the split.

A shard is written to ``NAME.tmp-<pid>``, flushed to disk and renamed to ``NAME``:
a file under its final name is always complete.
"""
from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from pipeline import codecs  # also registers the plugin filters for every reader of a shard
from pipeline.errors import DataError
from pipeline.synth import SequenceSpec, bit_renderer, render, trajectories

FORMAT_VERSION = 1
TMP_MARK = ".tmp-"
SPLIT_KEYS = {"train": 0, "test": 1}


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
                    codecs.write_packed_frames(frames, start, render_bits(rows[start:stop], cols[start:stop], zero_byte=True))
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
    except RuntimeError as e:  # h5py reports some HDF5 I/O failures (e.g. closing a file on a full disk) so
        io_errno = re.search(r"errno = (\d+)", str(e))
        if not io_errno:
            raise
        raise OSError(int(io_errno[1]), os.strerror(int(io_errno[1])), str(tmp)) from e
    finally:
        tmp.unlink(missing_ok=True)


def check_shard(path: Path, plan: ShardPlan) -> None:
    """Raise DataError naming `path` unless it opens with the plan's datasets, shapes, dtypes and attributes.

    The attributes catch a shard from another dataset (other seed, variant, ...) under the right name.
    """
    samples, size = plan.samples, plan.spec.size
    expected = {
        "frames": ((samples, size, size, size), np.uint8),
        "labels": ((samples,), np.uint8),
        "rows": ((samples, size), np.int16),
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
    except DataError:
        raise
    except OSError as e:
        raise DataError(f"{path}: cannot be opened as HDF5 ({e})") from None


def read_sequences(path: Path, start: int = 0, stop: int | None = None) -> dict[str, np.ndarray]:
    """frames, labels, rows, cols of samples [start, stop) of one shard, as NumPy arrays."""
    with h5py.File(path, "r") as f:
        return {name: f[name][start:stop] for name in ("frames", "labels", "rows", "cols")}
