"""`make setup` picks CUDA or CPU builds of both backends by the machine's kind, and rebuilds a .venv
made on the other kind. Checked with `make -n` on a copy of the Makefile and a fake `nvidia-smi`."""
from __future__ import annotations

import os
import shutil
import subprocess
import tomllib

import pytest

from helpers import ROOT

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="needs make")


@pytest.fixture
def project(tmp_path):
    """A folder with the project's Makefile and pyproject.toml, and a bin folder for fake tools."""
    for name in ("Makefile", "pyproject.toml"):
        shutil.copy(ROOT / name, tmp_path / name)
    (tmp_path / "bin").mkdir()
    return tmp_path


def dry_setup(project, gpu: bool) -> str:
    """What `make -n setup` would run, with or without an `nvidia-smi` on PATH."""
    path = [str(project / "bin"), *(p for p in os.environ["PATH"].split(os.pathsep)
                                    if not (p and os.path.exists(os.path.join(p, "nvidia-smi"))))]
    fake = project / "bin" / "nvidia-smi"
    if gpu:
        fake.write_text("#!/bin/sh\necho 'GPU 0: NVIDIA H200'\n")
        fake.chmod(0o755)
    elif fake.exists():
        fake.unlink()
    done = subprocess.run(["make", "-n", "setup"], cwd=project, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PATH": os.pathsep.join(path)})
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_each_kind_installs_its_own_builds_of_both_backends(project):
    assert "-e '.[gpu,dev]'" in dry_setup(project, gpu=True)
    assert "-e '.[cpu,dev]'" in dry_setup(project, gpu=False)
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert extras["gpu"] == ["tensorflow[and-cuda]==2.21.*", "jax[cuda12]==0.10.*"]
    assert extras["cpu"] == ["tensorflow-cpu==2.21.*", "jax[cpu]==0.10.*"]


def test_a_venv_of_the_other_kind_is_rebuilt_and_one_of_this_kind_kept(project):
    venv = project / ".venv"
    venv.mkdir()
    (venv / ".installed-cpu").touch()
    os.utime(project / "pyproject.toml", (0, 0))  # the stamp is newer than the project file
    on_gpu = dry_setup(project, gpu=True)
    assert "rm -rf .venv" in on_gpu and "-e '.[gpu,dev]'" in on_gpu
    on_cpu = dry_setup(project, gpu=False)
    assert "rm -rf .venv" not in on_cpu and "pip install" not in on_cpu  # up to date: nothing to do
