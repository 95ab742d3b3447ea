"""CPUs a process may use: affinity, cgroup quotas (v1 and v2, faked in a folder), and each trainer's share."""
from __future__ import annotations

import os

import pytest

from pipeline.runtime import cpus


@pytest.fixture
def machine(monkeypatch):
    """A fake machine: `cores` CPUs, an affinity mask of `mask` of them, a cgroup quota of `quota` CPUs."""
    def set_up(cores=16, mask=16, quota=None, local=None):
        monkeypatch.setattr(os, "cpu_count", lambda: cores)
        monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(mask)))
        monkeypatch.setattr(cpus, "cgroup_cpu_limit", lambda: quota)
        for name in cpus.LOCAL_PROCESS_COUNT_VARS:
            monkeypatch.delenv(name, raising=False)
        if local is not None:
            monkeypatch.setenv(*local)
    return set_up


def test_cgroup_v2_and_v1_quotas_are_read(tmp_path):
    assert cpus.cgroup_cpu_limit(tmp_path) is None  # no cgroup files: no limit
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert cpus.cgroup_cpu_limit(tmp_path) is None
    (tmp_path / "cpu.max").write_text("250000 100000\n")
    assert cpus.cgroup_cpu_limit(tmp_path) == 2.5
    (tmp_path / "cpu.max").unlink()
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert cpus.cgroup_cpu_limit(tmp_path) is None
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("400000\n")
    assert cpus.cgroup_cpu_limit(tmp_path) == 4.0


def test_usable_cpus_follow_the_mask_and_the_quota(machine):
    machine(cores=128, mask=128)
    assert cpus.usable_cpus() == 128
    machine(cores=128, mask=8)
    assert cpus.usable_cpus() == 8
    machine(cores=128, mask=128, quota=2.5)
    assert cpus.usable_cpus() == 3  # 2.5 CPUs of time: three threads can share it
    machine(cores=4, mask=4, quota=0.2)
    assert cpus.usable_cpus() == 1


def test_trainers_of_one_node_share_its_cpus(machine):
    machine(cores=128, mask=128)
    assert cpus.default_readers() == 128
    machine(cores=128, mask=128, local=("LOCAL_WORLD_SIZE", "8"))
    assert cpus.local_processes() == 8 and cpus.default_readers() == 16
    machine(cores=128, mask=128, local=("SLURM_NTASKS_PER_NODE", "4(x2)"))
    assert cpus.default_readers() == 32
    machine(cores=128, mask=16, local=("SLURM_NTASKS_PER_NODE", "8"))  # Slurm bound this task to 16 CPUs
    assert cpus.default_readers() == 16
    machine(cores=4, mask=4, local=("LOCAL_WORLD_SIZE", "8"))
    assert cpus.default_readers() == 1


def test_the_real_machine_gives_at_least_one():
    assert 1 <= cpus.default_readers() <= cpus.usable_cpus() <= (os.cpu_count() or 1)
