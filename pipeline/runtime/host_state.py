"""The host's CPUs: their settings, and how much of them others took while this process ran (Linux).

A figure measured on a VM whose hypervisor hands our cores to other guests (steal time), or beside
other busy processes, is lower for reasons outside the code. Two readings of `read_cpu` a wall
interval apart give, through `cpu_load`:

- `steal_pct`: the share of the machine's CPU time the hypervisor gave to other guests, in %;
- `other_load_cores`: CPU time that processes outside this process tree spent, per second of wall
  time, in cores (the kernel's own work on their behalf included).

The tree is this process and its live descendants, found at each reading. Each process's time
includes its exited children that it has waited for, so a child that ends between two readings
still counts as ours. An approximation remains: a descendant that exits after its parent, or that
its parent does not wait for (a daemon that double-forks), drops out of the tree and its time until
then is counted as other load; a process forked and reaped between two readings is seen only if
a process of the tree waited for it. Clipping at 0 hides the rounding of the two clocks (jiffies).
"""
from __future__ import annotations

import glob
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from pipeline.runtime.cpus import usable_cpus

PROC = Path("/proc")
CPUFREQ = "/sys/devices/system/cpu/cpu[0-9]*/cpufreq"
TICK_S = 1 / os.sysconf("SC_CLK_TCK")  # /proc/stat counts in these ticks (jiffies)


def _cpu_model() -> str | None:
    try:
        for line in (PROC / "cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or None


def static_facts() -> dict:
    """The host's CPUs: cpu_model, logical_cores, usable_cores (affinity and cgroup quota),
    governors (sorted distinct cpufreq governors), max_mhz (highest cpufreq maximum).

    VMs rarely expose cpufreq: there governors and max_mhz are None.
    """
    governors, max_khz = set(), []
    for folder in glob.glob(CPUFREQ):
        try:
            governors.add(Path(folder, "scaling_governor").read_text().strip())
        except OSError:
            pass
        try:
            max_khz.append(int(Path(folder, "cpuinfo_max_freq").read_text()))
        except (OSError, ValueError):
            pass
    return {
        "cpu_model": _cpu_model(),
        "logical_cores": os.cpu_count(),
        "usable_cores": usable_cpus(),
        "governors": sorted(governors) or None,
        "max_mhz": max(max_khz) / 1000 if max_khz else None,
    }


@dataclass(frozen=True)
class CpuReading:
    """CPU time up to `time` (`time.perf_counter`, s): the machine's busy, idle and steal time summed over
    its cores, and this process tree's time, all in CPU seconds."""

    time: float
    busy_s: float
    idle_s: float
    steal_s: float
    tree_s: float


def machine_times(stat: Path = PROC / "stat") -> tuple[float, float, float]:
    """(busy, idle, steal) CPU seconds of all cores since boot, from /proc/stat's "cpu" line."""
    with open(stat) as f:
        fields = [int(value) for value in f.readline().split()[1:]]
    user, nice, system, idle, iowait, irq, softirq = fields[:7]
    steal = fields[7] if len(fields) > 7 else 0
    # guest time (fields 9 and 10) is already counted in user and nice
    return (user + nice + system + irq + softirq) * TICK_S, (idle + iowait) * TICK_S, steal * TICK_S


def _children(pid: int) -> list[int] | None:
    """Children of `pid`, from /proc/<pid>/task/*/children; None where the kernel lacks those files."""
    found = []
    try:
        tasks = os.listdir(PROC / str(pid) / "task")
    except OSError:  # exited
        return found
    for task in tasks:
        try:
            with open(PROC / str(pid) / "task" / task / "children") as f:
                found.extend(int(child) for child in f.read().split())
        except FileNotFoundError:
            if not (PROC / str(pid) / "task" / task).exists():
                continue  # the thread ended
            return None
        except OSError:
            continue
    return found


def tree_pids(root: int | None = None) -> list[int]:
    """`root` (default: this process) and its live descendants."""
    root = os.getpid() if root is None else root
    # the /proc children files cost a read per thread; psutil's walk reads every process of the machine
    pids, index = [root], 0
    while index < len(pids):
        children = _children(pids[index])
        if children is None:
            try:
                return [root] + [child.pid for child in psutil.Process(root).children(recursive=True)]
            except psutil.Error:
                return [root]
        pids.extend(children)
        index += 1
    return pids


def tree_seconds(pids) -> float:
    """CPU seconds (user + system) of the processes `pids` and of the children they waited for."""
    total = 0.0
    for pid in pids:
        try:
            times = psutil.Process(pid).cpu_times()
        except psutil.Error:  # exited since it was listed
            continue
        total += times.user + times.system + times.children_user + times.children_system
    return total


def read_cpu(pids=None) -> CpuReading:
    """The machine's and this process tree's CPU time now; `pids` replaces the tree (tests)."""
    busy, idle, steal = machine_times()
    now = time.perf_counter()
    tree = tree_seconds(tree_pids() if pids is None else pids)
    return CpuReading(now, busy, idle, steal, tree)


def cpu_load(first: CpuReading, last: CpuReading) -> dict:
    """{"steal_pct": % of the machine's CPU time stolen, "other_load_cores": cores busy outside this
    process tree} between two readings; both None where no wall time passed between them."""
    wall = last.time - first.time
    total = (last.busy_s + last.idle_s + last.steal_s) - (first.busy_s + first.idle_s + first.steal_s)
    if wall <= 0 or total <= 0:
        return {"steal_pct": None, "other_load_cores": None}
    other = (last.busy_s - first.busy_s) - (last.tree_s - first.tree_s)
    return {"steal_pct": 100 * (last.steal_s - first.steal_s) / total,
            "other_load_cores": max(0.0, other / wall)}
