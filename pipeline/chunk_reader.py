"""Read HDF5 chunks of `frames` in worker processes, around h5py's one-lock-per-process limit.

h5py serializes every HDF5 call in a process behind one lock, decompression included, so
threads do not read a Zstd dataset in parallel. Each worker process here opens the shards
with its own h5py, checks a chunk's stored bytes against the CRC-32 taken when the dataset
was opened, decodes the chunk into a slot of a shared-memory ring (a file under /dev/shm),
and the parent copies the slot out once. Nothing here imports TensorFlow.

    reader = ChunkReader(paths, chunk_shape=(32, 50, 50, 50), workers=2)
    frames = reader.read(shard, start, count, offset, nbytes, crc)   # (count, T, S, S) uint8
"""
from __future__ import annotations

import os
import queue
import subprocess
import sys
import tempfile
import threading
import weakref
import zlib

import numpy as np

from pipeline.errors import DataError

_SHM_DIR = "/dev/shm" if os.path.isdir("/dev/shm") else None


class ChunkReader:
    """`workers` processes, each decoding one chunk at a time into its own shared-memory slot.

    Workers are plain `python -m pipeline.chunk_reader` subprocesses talking over pipes (no
    multiprocessing: it would re-import the caller's main module, and fork is unsafe under
    TensorFlow's threads). They start on the first `read`, so building a dataset costs
    nothing, and exit when the parent closes their stdin or dies.
    Memory: one chunk of shared memory per worker plus one h5py chunk cache per worker.
    """

    def __init__(self, paths: list[str], chunk_shape: tuple[int, ...], workers: int):
        if workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        self.paths = [str(p) for p in paths]
        self.chunk_shape = tuple(chunk_shape)
        self.workers = workers
        self._lock = threading.Lock()
        self._procs: list[subprocess.Popen] = []
        self._idle: queue.Queue = queue.Queue()

    def _start(self) -> None:
        fd, shm_path = tempfile.mkstemp(prefix="chunk-reader-", dir=_SHM_DIR)
        os.ftruncate(fd, self.workers * int(np.prod(self.chunk_shape)))
        os.close(fd)
        self._view = np.memmap(shm_path, np.uint8, "r+", shape=(self.workers, *self.chunk_shape))
        header = "\n".join([shm_path, " ".join(map(str, self.chunk_shape)), *self.paths, ""]).encode()
        for slot in range(self.workers):
            proc = subprocess.Popen([sys.executable, "-m", "pipeline.chunk_reader", str(slot), str(len(self.paths))],
                                    stdin=subprocess.PIPE, stdout=subprocess.PIPE)
            proc.stdin.write(header)
            proc.stdin.flush()
            self._procs.append(proc)
            self._idle.put(slot)
        self._finalizer = weakref.finalize(self, _shutdown, self._procs, shm_path)

    def read(self, shard: int, start: int, count: int, offset: int, nbytes: int, crc: int) -> np.ndarray:
        """Samples [start, start+count) of shard `shard`, decoded; DataError naming the shard if corrupt."""
        with self._lock:
            if not self._procs:
                self._start()
        slot = self._idle.get()
        try:
            proc = self._procs[slot]
            proc.stdin.write(f"{shard} {start} {count} {offset} {nbytes} {crc}\n".encode())
            proc.stdin.flush()
            reply = proc.stdout.readline().decode()
            if reply != "ok\n":
                raise DataError(reply.strip() or f"{self.paths[shard]}: chunk reader process {proc.pid} died "
                                f"(exit status {proc.poll()}) reading samples {start}..{start + count}")
            return np.array(self._view[slot, :count])
        finally:
            self._idle.put(slot)

    def close(self) -> None:
        if self._procs:
            self._finalizer()


def _shutdown(procs: list[subprocess.Popen], shm_path: str) -> None:
    for proc in procs:
        proc.stdin.close()
    for proc in procs:
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        proc.stdout.close()
    try:
        os.unlink(shm_path)
    except FileNotFoundError:
        pass


def _read_chunk(path: str, raw_file, frames, out: np.ndarray, start: int, count: int, offset: int, nbytes: int,
                crc: int) -> None:
    raw = os.pread(raw_file.fileno(), nbytes, offset)
    if len(raw) != nbytes:
        raise DataError(f"{path}: truncated: chunk at samples {start}..{start + count} needs bytes "
                        f"{offset}..{offset + nbytes}, the file ends at {offset + len(raw)}")
    if zlib.crc32(raw) != crc:
        raise DataError(f"{path}: corrupt chunk at samples {start}..{start + count} "
                        f"(its bytes changed since the dataset was opened)")
    try:
        frames.read_direct(out, np.s_[start:start + count], np.s_[0:count])
    except Exception as e:  # h5py/filter errors carry no file name: add it
        raise DataError(f"{path}: cannot read samples {start}..{start + count}: {type(e).__name__}: {e}") from None


def _serve(slot: int, n_paths: int) -> None:
    """Worker loop: header (shm path, chunk shape, shard paths), then one request per line."""
    import h5py

    from pipeline import codecs  # noqa: F401  (registers the Zstd/LZ4/Blosc filters)

    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    shm_path = stdin.readline().decode().rstrip("\n")
    shape = tuple(int(v) for v in stdin.readline().split())
    paths = [stdin.readline().decode().rstrip("\n") for _ in range(n_paths)]
    out = np.memmap(shm_path, np.uint8, "r+", shape=(slot + 1, *shape))[slot]
    files = {}
    for line in stdin:
        shard, start, count, offset, nbytes, crc = (int(v) for v in line.split())
        path = paths[shard]
        try:
            if shard not in files:
                files[shard] = (open(path, "rb"), h5py.File(path, "r")["frames"])
            _read_chunk(path, *files[shard], out, start, count, offset, nbytes, crc)
            reply = "ok"
        except DataError as e:
            reply = str(e)
        except Exception as e:
            reply = f"{path}: cannot read samples {start}..{start + count}: {type(e).__name__}: {e}"
        stdout.write((reply.replace("\n", " ") + "\n").encode())
        stdout.flush()


if __name__ == "__main__":
    _serve(int(sys.argv[1]), int(sys.argv[2]))
