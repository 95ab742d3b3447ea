"""Provenance: library versions, the git commit this package runs from, the host.

Run directories (`config.json`) and result files record these, so that every number and model
can be traced to its code.
"""
from __future__ import annotations

import importlib.metadata
import platform
import socket
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
LIBRARIES = {"tensorflow": ("tensorflow", "tensorflow-cpu"), "jax": ("jax",), "jaxlib": ("jaxlib",),
             "keras": ("keras",), "numpy": ("numpy",), "h5py": ("h5py",), "hdf5plugin": ("hdf5plugin",),
             "isal": ("isal",), "dask": ("dask",), "distributed": ("distributed",), "psutil": ("psutil",),
             "pytest-benchmark": ("pytest-benchmark",)}


def version(name: str) -> str | None:
    """Installed version of library `name` (a key of LIBRARIES, or a distribution name); None if absent."""
    for dist in LIBRARIES.get(name, (name,)):
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def versions() -> dict[str, str | None]:
    """Python and library versions (None for a library that is not installed)."""
    return {"python": platform.python_version(), **{name: version(name) for name in LIBRARIES}}


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
