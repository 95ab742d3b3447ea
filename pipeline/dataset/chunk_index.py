"""A split's chunk index: where every chunk of `frames` lies, its checksums and the labels, in one file.

    DIR/index-train.npz, DIR/index-test.npz      NumPy .npz (uncompressed), replaced atomically

A reader opens a split from its manifest and this one file instead of reading every shard: the
index costs about 1 byte per sample (labels) and 24 bytes per chunk, and a split of 10 million
size-50 sequences opens in the time it takes to read ~20 MB and `stat` its shards. The generator's
client writes it once every shard has landed, from the entries its workers computed from the bytes
they hashed (`pipeline.dataset.shards.index_shard`); a dataset without one (or with one that no
longer fits) gets it on its first open, kept in DIR or, where DIR is not writable, in a per-user
cache (`cache_path`).

Why one file per split, not the manifest or a file beside each shard: the manifest is JSON, rewritten
as each batch of shards lands, and a table of a few hundred thousand chunks would make it slow to
parse and to rewrite; a file per shard would make opening cost one open and read per shard, which
grows with the dataset. The index's own bytes are not reproducible (it holds each shard's stat
signature, which differs from copy to copy); the manifest and the shards are.

Arrays, for a split of M shards, K chunks and n samples (chunks and labels shard after shard):

    version int64 ()            VERSION
    shards str (M,)             file names, in manifest order
    sha256 str (M,)             each file's SHA-256, as the manifest recorded it when indexed
    bytes, mtime_ns, inode int64 (M,)   each file's size and stat signature when its bytes were read
    chunks int64 (M,)           chunks per shard
    offset, nbytes int64 (K,)   where each chunk's stored bytes lie in its shard
    crc, adler uint32 (K,)      zlib CRC-32 and Adler-32 of those bytes
    labels uint8 (n,)
"""
from __future__ import annotations

import hashlib
import os
import threading
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.dataset.manifest import Manifest
from pipeline.dataset.shards import TMP_MARK, ShardIndex, ShardPlan, check_shard, index_shard
from pipeline.errors import DataError

VERSION = 1
_WRITE_LOCK = threading.Lock()  # one writer per process: temporary names carry only the PID
_PER_SHARD = ("bytes", "mtime_ns", "inode", "chunks")
_PER_CHUNK = ("offset", "nbytes", "crc", "adler")


def index_name(split: str) -> str:
    return f"index-{split}.npz"


def cache_path(directory: Path, split: str) -> Path:
    """Where the index of a dataset in a directory this process cannot write is kept:
    $XDG_CACHE_HOME (default ~/.cache)/moving-square/chunk-index/<hash of the directory's real path>-<split>.npz."""
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "moving-square" / "chunk-index"
    key = hashlib.sha256(str(Path(directory).resolve()).encode()).hexdigest()[:24]
    return root / f"{key}-{split}.npz"


@dataclass(frozen=True)
class SplitIndex:
    """The arrays of one index file (see the module docstring), checked for consistent lengths."""

    shards: np.ndarray
    sha256: np.ndarray
    bytes: np.ndarray
    mtime_ns: np.ndarray
    inode: np.ndarray
    chunks: np.ndarray
    offset: np.ndarray
    nbytes: np.ndarray
    crc: np.ndarray
    adler: np.ndarray
    labels: np.ndarray

    @classmethod
    def of(cls, entries: list[ShardIndex]) -> SplitIndex:
        """The index of shards `entries`, in their order."""
        def cat(name, dtype):
            parts = [getattr(e, name) for e in entries]
            return np.concatenate(parts).astype(dtype, copy=False) if parts else np.zeros(0, dtype)

        return cls(shards=np.array([e.name for e in entries], str), sha256=np.array([e.sha256 for e in entries], str),
                   bytes=np.array([e.bytes for e in entries], np.int64),
                   mtime_ns=np.array([e.mtime_ns for e in entries], np.int64),
                   inode=np.array([e.inode for e in entries], np.int64),
                   chunks=np.array([len(e.offset) for e in entries], np.int64),
                   offset=cat("offset", np.int64), nbytes=cat("nbytes", np.int64), crc=cat("crc", np.uint32),
                   adler=cat("adler", np.uint32), labels=cat("labels", np.uint8))

    def entries(self, samples: np.ndarray) -> list[ShardIndex]:
        """Each shard's entry (views into these arrays); `samples` int64 (M,) the shards' sample counts,
        which delimit the labels."""
        c = np.concatenate([[0], np.cumsum(self.chunks)])
        s = np.concatenate([[0], np.cumsum(samples)])
        return [ShardIndex(str(self.shards[i]), str(self.sha256[i]), int(self.bytes[i]), int(self.mtime_ns[i]),
                           int(self.inode[i]), self.offset[c[i]:c[i + 1]], self.nbytes[c[i]:c[i + 1]],
                           self.crc[c[i]:c[i + 1]], self.adler[c[i]:c[i + 1]], self.labels[s[i]:s[i + 1]])
                for i in range(len(self.shards))]

    def same(self, other: SplitIndex) -> bool:
        return all(np.array_equal(getattr(self, name), getattr(other, name)) for name in self.__dataclass_fields__)

    def fits(self, names: list[str], sha256: list, nbytes: list, samples: np.ndarray, chunks: np.ndarray) -> np.ndarray:
        """bool (M,): which shards this index describes as the manifest does (name, SHA-256, size) with
        the chunk count the parameters give; all False if it lists other shards or other sample counts."""
        if (len(self.shards) != len(names) or len(self.labels) != int(samples.sum())
                or not np.array_equal(self.shards, np.array(names, str))):
            return np.zeros(len(names), bool)
        return ((self.sha256 == np.array([h or "" for h in sha256], str))
                & (self.bytes == np.array([b if b is not None else -1 for b in nbytes], np.int64))
                & (self.chunks == chunks))


def load(path: Path) -> SplitIndex | None:
    """The index in `path`, or None if there is none or it cannot be used (another version, damaged:
    every member's zip CRC-32 is checked as it is read, inconsistent lengths): it is then rebuilt."""
    try:
        with np.load(path, allow_pickle=False) as z:
            if int(z["version"]) != VERSION:
                return None
            arrays = {name: z[name] for name in SplitIndex.__dataclass_fields__}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None
    m, k = len(arrays["shards"]), len(arrays["offset"])
    if (any(len(arrays[name]) != m for name in ("sha256", *_PER_SHARD))
            or any(len(arrays[name]) != k for name in _PER_CHUNK) or int(arrays["chunks"].sum()) != k):
        return None
    return SplitIndex(**arrays)


def save(path: Path, index: SplitIndex) -> None:
    """Write `index` to `path` atomically (temporary file, fsync, rename); OSError if it cannot."""
    tmp = path.with_name(f"{path.name}{TMP_MARK}{os.getpid()}")
    with _WRITE_LOCK:
        try:
            with open(tmp, "wb") as f:
                np.savez(f, version=np.int64(VERSION), **{name: getattr(index, name)
                                                          for name in SplitIndex.__dataclass_fields__})
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)


def keep(directory: Path, split: str, index: SplitIndex, anywhere: bool = True) -> Path | None:
    """Save `index` in `directory`, or (`anywhere`) in the per-user cache where that fails (a read-only
    dataset); where it was kept, or None if nowhere (it then lives only in the caller's memory).
    Without `anywhere`, the OSError of a failed save in `directory` is raised."""
    try:
        save(Path(directory) / index_name(split), index)
        return Path(directory) / index_name(split)
    except OSError:
        if not anywhere:
            raise
    try:
        path = cache_path(directory, split)
        path.parent.mkdir(parents=True, exist_ok=True)
        save(path, index)
        return path
    except OSError:
        return None


def refresh(directory: Path, manifest: Manifest, split: str, *, known: dict[str, ShardIndex] | None = None,
            check_all: bool = False, anywhere: bool = True) -> SplitIndex:
    """The index of split `split` with every shard's entry current; DataError naming the file otherwise.

    Costs one `os.stat` per shard and one read of the index when it is current. A shard is missing,
    or its size differs from the manifest's: DataError. Its entry is taken from the index in
    `directory` (or the per-user cache) while that lists the manifest's SHA-256 and size and the
    file's stat signature (size, mtime, inode) is unchanged; else from `known` (entries the caller
    computed, e.g. the generator's workers) under the same conditions; else the shard is checked in
    full (`check_shard`: datasets, shapes, attributes, trajectories; `index_shard`: chunk layout,
    SHA-256 against the manifest's) and indexed anew. check_all: every shard checked in full.
    An index with any entry made anew is kept (`keep`; `anywhere` as there).
    """
    directory = Path(directory)
    rows = manifest.shards[split]
    names = [row["path"] for row in rows]
    samples = np.array([row["samples"] for row in rows], np.int64)
    per_chunk = np.minimum(min(manifest.params.chunk, manifest.params.shard_size), samples)  # as the writer's plans
    chunks = -(-samples // per_chunk)
    plans = {}  # made only for shards that are checked: a manifest's plans cost more than its stats

    def plan_of(name: str) -> ShardPlan:
        if not plans:
            plans.update((plan.name, plan) for plan in manifest.params.plans() if plan.split == split)
        return plans[name]

    stats, base = [], str(directory)
    for row in rows:
        try:
            st = os.stat(os.path.join(base, row["path"]))
        except FileNotFoundError:
            raise DataError(f"{directory / row['path']}: missing") from None
        except OSError as e:
            raise DataError(f"{directory / row['path']}: cannot be read ({e.strerror})") from None
        if row.get("bytes") is not None and st.st_size != row["bytes"]:
            path = directory / row["path"]
            check_shard(path, plan_of(row["path"]))  # names what is wrong with it, where it can
            raise DataError(f"{path}: {st.st_size:,} bytes, the manifest says {row['bytes']:,} "
                            "(truncated or replaced?)")
        stats.append(st)
    mtime = np.array([st.st_mtime_ns for st in stats], np.int64)
    inode = np.array([st.st_ino for st in stats], np.int64)

    def current(index: SplitIndex | None) -> np.ndarray:
        if index is None or check_all:
            return np.zeros(len(rows), bool)
        fits = index.fits(names, [row.get("sha256") for row in rows], [row.get("bytes") for row in rows],
                          samples, chunks)
        return fits & (index.mtime_ns == mtime) & (index.inode == inode)

    index = load(directory / index_name(split))
    fresh = current(index)
    if not fresh.all():
        cached = load(cache_path(directory, split))
        if cached is not None and (in_cache := current(cached)).sum() > fresh.sum():
            index, fresh = cached, in_cache
    if fresh.all():
        return index
    old = index.entries(samples) if index is not None and fresh.any() else None
    entries = []
    for i, row in enumerate(rows):
        if fresh[i]:
            entries.append(old[i])
            continue
        path, plan, st = directory / row["path"], plan_of(row["path"]), stats[i]
        mine = (known or {}).get(row["path"])
        if (mine is not None and not check_all and mine.sha256 == row.get("sha256")
                and (mine.bytes, mine.mtime_ns, mine.inode) == (st.st_size, st.st_mtime_ns, st.st_ino)):
            entries.append(mine)
            continue
        check_shard(path, plan)
        entries.append(index_shard(path, plan, sha256=row.get("sha256") or None))
    rebuilt = SplitIndex.of(entries)
    if index is None or not index.same(rebuilt):  # check_all on a current index rewrites nothing
        keep(directory, split, rebuilt, anywhere)
    return rebuilt
