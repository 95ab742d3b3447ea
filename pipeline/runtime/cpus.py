"""The CPUs this process may use, and the share of them each trainer on a node gets.

`os.cpu_count()` counts the machine's cores. A process may be allowed fewer: an affinity mask
(`taskset`, Slurm's `--cpus-per-task` binding), or a cgroup CPU quota (containers, Kubernetes
limits). Readers and generator workers sized for the machine would then oversubscribe the CPUs
and hold buffers for cores they never get. Where several trainers run on one node (one per GPU),
they share those CPUs.
"""
from __future__ import annotations

import math
import os
from pathlib import Path

CGROUP = Path("/sys/fs/cgroup")
# variables in which launchers name the processes of this job on this node
LOCAL_PROCESS_COUNT_VARS = ("LOCAL_WORLD_SIZE", "SLURM_NTASKS_PER_NODE", "OMPI_COMM_WORLD_LOCAL_SIZE",
                            "MPI_LOCALNRANKS")


def cgroup_cpu_limit(root: Path = CGROUP) -> float | None:
    """CPUs the cgroup quota allows (cgroup v2 `cpu.max`, or v1 `cpu.cfs_quota_us` / `cpu.cfs_period_us`);
    None where no quota is set or none can be read."""
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period = int((root / "cpu" / "cpu.cfs_period_us").read_text())
        return quota / period if quota > 0 and period > 0 else None
    except (OSError, ValueError):
        return None


def affinity() -> int:
    """CPUs in this process's affinity mask (all the machine's where the platform has none)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def usable_cpus() -> int:
    """CPUs this process may run on: its affinity mask, capped by a cgroup quota (rounded up), at least 1."""
    count = affinity()
    limit = cgroup_cpu_limit()
    if limit is not None:
        count = min(count, math.ceil(limit))
    return max(1, count)


def local_processes() -> int:
    """Processes of this job on this node, as the launcher (torchrun, Slurm, Open MPI) says; 1 if none does."""
    for name in LOCAL_PROCESS_COUNT_VARS:
        value = os.environ.get(name, "").split("(")[0]  # Slurm may write "4(x2)"
        if value.isdigit() and int(value) > 0:
            return int(value)
    return 1


def default_readers() -> int:
    """Readers for one loader: this process's share of the usable CPUs, at least 1.

    A mask narrower than the machine is taken as this process's own share (a launcher that binds
    each task, as Slurm does, already divided the node); otherwise the usable CPUs are divided
    among the node's `local_processes()`.
    """
    if affinity() < (os.cpu_count() or 1):
        return usable_cpus()
    return max(1, usable_cpus() // local_processes())
