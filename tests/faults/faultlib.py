"""Helpers for the fault trials: Dask clusters as separate processes, byte comparisons.

The general ones (command runner, processes, waiting, hashes) live in tests/helpers.py.
"""
from __future__ import annotations

import socket
import subprocess
from pathlib import Path

from helpers import PY, kill_group, manifest_hashes, spawn

BIN = Path(PY).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class DaskCluster:
    """`dask scheduler` and `dask worker --no-nanny --nthreads 1` processes on loopback, each in its own session."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.port = free_port()
        self.address = f"tcp://127.0.0.1:{self.port}"
        self.workers: list[subprocess.Popen] = []
        log = open(workdir / "scheduler.log", "w")
        self.scheduler = spawn([BIN / "dask", "scheduler", "--host", "127.0.0.1", "--port", self.port,
                                "--dashboard-address", "127.0.0.1:0", "--no-show"],
                               stdout=log, stderr=subprocess.STDOUT)

    def add_worker(self) -> subprocess.Popen:
        log = open(self.workdir / f"worker-{len(self.workers)}.log", "w")
        proc = spawn([BIN / "dask", "worker", self.address, "--nthreads", "1", "--no-nanny",
                      "--host", "127.0.0.1", "--dashboard-address", "127.0.0.1:0", "--no-dashboard"],
                     stdout=log, stderr=subprocess.STDOUT)
        self.workers.append(proc)
        return proc

    def wait_for_workers(self, n: int, timeout: float = 60):
        from dask.distributed import Client

        with Client(self.address, timeout="30s") as client:
            client.wait_for_workers(n, timeout=timeout)

    def stop(self):
        for proc in [*self.workers, self.scheduler]:
            kill_group(proc)


# ---------------------------------------------------------------- datasets

def file_bytes(directory: Path) -> dict:
    return {p.name: p.read_bytes() for p in sorted(directory.glob("*.h5"))}


def bytes_lost(reference: Path, candidate: Path) -> int:
    """Bytes of `reference`'s shards that `candidate` lacks, holds differently, or records under another hash."""
    ref, got = file_bytes(reference), file_bytes(candidate)
    ref_hash = manifest_hashes(reference)
    try:
        got_hash = manifest_hashes(candidate)
    except (OSError, ValueError, KeyError):
        got_hash = {}
    return sum(len(data) for name, data in ref.items() if got.get(name) != data or got_hash.get(name) != ref_hash[name])


def shard_difference(a: Path, b: Path) -> str:
    """Where two shard files differ: each stored chunk (of frames, labels, rows, cols) whose bytes differ,
    with both sizes, or, when every chunk is the same, the first differing byte of HDF5's own metadata.
    A chunk of the same data stored differently points at its encoder; same chunks, at the HDF5 writer."""
    import h5py
    import numpy as np

    def chunks(path):
        with h5py.File(path, "r") as f, open(path, "rb") as raw:
            found = {}
            for name, dataset in f.items():
                for k in range(dataset.id.get_num_chunks()):
                    info = dataset.id.get_chunk_info(k)
                    raw.seek(info.byte_offset)
                    found[f"{name} chunk {k}"] = raw.read(info.size)
            return found

    ours, theirs = chunks(a), chunks(b)
    differing = [f"{key} ({len(ours[key])} vs {len(theirs.get(key, b''))} bytes)" for key in ours
                 if theirs.get(key) != ours[key]]
    if differing:
        return f"{a.name}: {', '.join(differing)}"
    x, y = np.fromfile(a, np.uint8), np.fromfile(b, np.uint8)
    n = min(len(x), len(y))
    at = np.flatnonzero(x[:n] != y[:n])
    first = int(at[0]) if at.size else n
    return f"{a.name}: every chunk the same; {len(x)} vs {len(y)} bytes, HDF5 metadata differs from byte {first}"
