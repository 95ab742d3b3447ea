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
