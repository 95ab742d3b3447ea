"""Read HDF5 chunks of `frames` in worker processes, around h5py's one-lock-per-process limit.

h5py serializes every HDF5 call in a process behind one lock, decompression included, so
threads do not read a Zstd dataset in parallel. Each worker process here opens the shards
with its own h5py, checks a chunk's stored bytes against the CRC-32 taken when the dataset
was opened, decodes the chunk into its slot of shared memory, and the parent copies the slot
out once. A slot is a file under /dev/shm removed as soon as it is made: parent and worker
share it through an inherited descriptor, so nothing is left there when either is killed.
A worker that dies is replaced and the chunk read again once; a second death is an error
naming the chunk. Nothing here imports TensorFlow.

    reader = shared_reader(workers=2)        # one pool per process, shared by every dataset
    frames = reader.read(path, start, count, offset, nbytes, crc, frame_shape)   # (count, T, S, S) uint8
"""
from __future__ import annotations

import atexit
import mmap
import os
import queue
import subprocess
import sys
import tempfile
import threading
import zlib

import numpy as np

from pipeline.errors import DataError, require_positive_int

_SHM_DIR = "/dev/shm" if os.path.isdir("/dev/shm") else None
OPEN_FILES = 64  # shards each worker keeps open


class ChunkReader:
    """Worker processes, each decoding one chunk at a time into its own shared-memory slot.

    Workers are plain `python -m pipeline.input.chunk_reader` subprocesses talking over pipes (no
    multiprocessing: it would re-import the caller's main module, and fork is unsafe under
    TensorFlow's threads). They start on demand, are shared by every dataset of the process
    (`shared_reader`), and exit when the parent closes their stdin or dies.
    Memory: one chunk of shared memory per worker plus one h5py chunk cache per worker.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._workers: list[_Worker] = []
        self._idle: queue.Queue = queue.Queue()

    def grow(self, workers: int) -> None:
        """Have at least `workers` worker processes."""
        with self._lock:
            while len(self._workers) < workers:
                self._workers.append(_Worker())
                self._idle.put(len(self._workers) - 1)

    def read(self, path: str, start: int, count: int, offset: int, nbytes: int, crc: int,
             frame_shape: tuple[int, ...]) -> np.ndarray:
        """Samples [start, start+count) of `frames` in shard `path`; DataError naming it if corrupt."""
        slot = self._idle.get()
        try:
            try:
                return self._workers[slot].read(path, start, count, offset, nbytes, crc, frame_shape)
            except WorkerDied:  # a fresh worker in its place, and the chunk once more
                self._workers[slot].close()
                self._workers[slot] = _Worker()
                try:
                    return self._workers[slot].read(path, start, count, offset, nbytes, crc, frame_shape)
                except WorkerDied as again:
                    raise DataError(str(again)) from None
        finally:
            self._idle.put(slot)

    def close(self) -> None:
        with self._lock:
            for worker in self._workers:
                worker.close()
            self._workers.clear()
            self._idle = queue.Queue()


class WorkerDied(RuntimeError):
    """A worker process exited (or closed its pipe) before answering."""


def _mapping(fd: int, size: int) -> np.ndarray:
    """The first `size` bytes of the shared file `fd`, mapped read-write: uint8 (size,)."""
    return np.frombuffer(mmap.mmap(fd, size), np.uint8)


class _Worker:
    def __init__(self):
        fd, path = tempfile.mkstemp(prefix="chunk-reader-", dir=_SHM_DIR)
        os.unlink(path)  # the memory lives while a descriptor or mapping does, the name not at all
        self.fd, self.capacity, self.view = fd, 0, None
        self.proc = subprocess.Popen([sys.executable, "-m", "pipeline.input.chunk_reader", str(fd)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, pass_fds=(fd,))

    def read(self, path, start, count, offset, nbytes, crc, frame_shape) -> np.ndarray:
        needed = count * int(np.prod(frame_shape))
        if needed > self.capacity:
            self.capacity = needed
            os.ftruncate(self.fd, needed)
            self.view = _mapping(self.fd, needed)
        try:
            self.proc.stdin.write(f"{path}\t{start}\t{count}\t{offset}\t{nbytes}\t{crc}\t{self.capacity}\n".encode())
            self.proc.stdin.flush()
            reply = self.proc.stdout.readline().decode()
        except OSError:
            reply = ""
        if not reply:
            try:  # its pipe closed as it died: reap it for its exit status
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
            raise WorkerDied(f"{path}: chunk reader process {self.proc.pid} died (exit status "
                             f"{self.proc.returncode}) reading samples {start}..{start + count}")
        if reply != "ok\n":
            raise DataError(reply.strip())
        return self.view[:needed].copy().reshape(count, *frame_shape)

    def close(self) -> None:
        try:
            self.proc.stdin.close()
        except OSError:  # the worker is gone and the pipe broken
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc.stdout.close()
        self.view = None
        os.close(self.fd)


_shared: ChunkReader | None = None
_shared_lock = threading.Lock()


def shared_reader(workers: int) -> ChunkReader:
    """The process's one ChunkReader, grown to at least `workers` processes; closed at exit."""
    global _shared
    require_positive_int("workers", workers)
    with _shared_lock:
        if _shared is None:
            _shared = ChunkReader()
            atexit.register(_shared.close)
    _shared.grow(workers)
    return _shared


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


def _serve(shm_fd: int) -> None:
    """Worker loop over the shared file `shm_fd`: one request per line (path, start, count, offset,
    nbytes, crc, slot bytes)."""
    import h5py

    from pipeline.dataset import codecs  # noqa: F401  (registers the Zstd/LZ4/Blosc filters)

    stdout = sys.stdout.buffer
    files: dict[str, tuple] = {}
    view, capacity = None, 0
    for line in sys.stdin.buffer:
        path, *numbers = line.decode().rstrip("\n").split("\t")
        start, count, offset, nbytes, crc, size = (int(v) for v in numbers)
        try:
            if size != capacity:
                view, capacity = _mapping(shm_fd, size), size
            if path not in files:
                if len(files) >= OPEN_FILES:
                    raw_file, _ = files.pop(next(iter(files)))
                    raw_file.close()
                files[path] = (open(path, "rb"), h5py.File(path, "r")["frames"])
            raw_file, frames = files[path]
            out = view[:count * int(np.prod(frames.shape[1:]))].reshape(count, *frames.shape[1:])
            _read_chunk(path, raw_file, frames, out, start, count, offset, nbytes, crc)
            reply = "ok"
        except DataError as e:
            reply = str(e)
        except Exception as e:
            reply = f"{path}: cannot read samples {start}..{start + count}: {type(e).__name__}: {e}"
        stdout.write((reply.replace("\n", " ") + "\n").encode())
        stdout.flush()


if __name__ == "__main__":
    _serve(int(sys.argv[1]))
