"""Provenance of a benchmark result: device, CPU, library versions, host, git commit, datasets.

`collect()` returns a JSON-ready dict saved in every result file, so tables from
different machines can be merged and every number traced to its code and data.
"""
from __future__ import annotations

import importlib.metadata
import os
import platform
import socket
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
LIBRARIES = {"tensorflow": ("tensorflow", "tensorflow-cpu"), "jax": ("jax",), "jaxlib": ("jaxlib",),
             "keras": ("keras",), "numpy": ("numpy",), "h5py": ("h5py",), "hdf5plugin": ("hdf5plugin",),
             "isal": ("isal",), "dask": ("dask",), "distributed": ("distributed",), "psutil": ("psutil",),
             "pytest-benchmark": ("pytest-benchmark",)}


def versions() -> dict[str, str | None]:
    """Python and library versions (None for a library that is not installed)."""
    out = {"python": platform.python_version()}
    for name, dists in LIBRARIES.items():
        out[name] = None
        for dist in dists:
            try:
                out[name] = importlib.metadata.version(dist)
                break
            except importlib.metadata.PackageNotFoundError:
                continue
    return out


def git_info(repo: Path = REPO) -> dict:
    """{'commit': sha or None, 'dirty': bool or None} of the checkout this package runs from."""
    def git(*args):
        return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True,
                              timeout=20, check=True).stdout.strip()
    try:
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
        return {"commit": commit, "dirty": dirty}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def host() -> str:
    return socket.gethostname()


def describe_device(backend: str = "tensorflow") -> dict:
    """The compute device as `backend` sees it: `pipeline.devices.describe()` for TensorFlow; for JAX
    the same keys from `jax.devices()` (no TensorFlow imported). `name` is what tables group rows by."""
    from pipeline import devices

    if backend != "jax":
        return devices.describe()
    import jax

    cpu = {"cpu_model": devices.cpu_model(), "cpu_cores": os.cpu_count()}
    found = [d for d in jax.devices() if d.platform == "gpu"]
    if not found:
        return {"kind": "cpu", "name": f"CPU: {devices.cpu_model()} ({os.cpu_count()} cores)", **cpu}
    first = found[0]
    stats = getattr(first, "memory_stats", lambda: None)() or {}
    return {"kind": "gpu", "name": first.device_kind, "gpu_count": len(found), **cpu,
            "compute_capability": getattr(first, "compute_capability", None),
            "gpu_memory_mb": round(stats["bytes_limit"] / 2 ** 20) if "bytes_limit" in stats else None}


def collect(datasets: dict[str, Path] | None = None, *, device: dict | None = None,
            backend: str = "tensorflow") -> dict:
    """Everything a result file records about where it was measured.

    datasets: name -> dataset directory; each gets its manifest SHA-256.
    device: `describe_device(backend)` (computed here when None).
    backend: the Keras backend the measurements ran on.
    """
    from pipeline import devices
    from pipeline.manifest import manifest_sha256

    if device is None:
        device = describe_device(backend)
    lib = versions()
    return {
        "device": device,
        "backend": {"name": backend, "version": lib.get(backend)},
        "cpu": {"model": devices.cpu_model(), "cores": os.cpu_count(), "machine": platform.machine()},
        "platform": platform.platform(),
        "host": host(),
        "versions": lib,
        "git": git_info(),
        "argv": sys.argv,
        "datasets": {name: {"path": str(path), "manifest_sha256": manifest_sha256(path)}
                     for name, path in (datasets or {}).items()},
    }
