"""Helpers for the fault trials: processes in their own sessions, Dask clusters as separate processes, byte comparisons."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PY = sys.executable
BIN = Path(PY).parent



def cli(*args, timeout=300, cwd=ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([PY, "-m", "pipeline", *map(str, args)], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)


def spawn(argv, **kw) -> subprocess.Popen:
    """A process in its own session (so its whole group, Dask workers included, can be killed at once)."""
    return subprocess.Popen([str(a) for a in argv], cwd=ROOT, start_new_session=True, **kw)


def kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=30)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout: float, what: str, interval: float = 0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout} s waiting for {what}")


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

def shard_hashes(directory: Path) -> dict:
    """{shard path: sha256 recorded in the manifest}."""
    doc = json.loads((directory / "manifest.json").read_text())
    return {e["path"]: e["sha256"] for s in doc["splits"].values() for e in s["shards"]}


def file_bytes(directory: Path) -> dict:
    return {p.name: p.read_bytes() for p in sorted(directory.glob("*.h5"))}


def bytes_lost(reference: Path, candidate: Path) -> int:
    """Bytes of `reference`'s shards that `candidate` lacks, holds differently, or records under another hash."""
    ref, got = file_bytes(reference), file_bytes(candidate)
    ref_hash = shard_hashes(reference)
    try:
        got_hash = shard_hashes(candidate)
    except (OSError, ValueError, KeyError):
        got_hash = {}
    return sum(len(data) for name, data in ref.items() if got.get(name) != data or got_hash.get(name) != ref_hash[name])
