"""Host CPU facts and load, read from the real /proc: steal and other processes' load against our own tree's."""
from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import psutil
import pytest

from pipeline.runtime import host_state
from pipeline.runtime.cpus import usable_cpus

SPIN = "import time\nend = time.perf_counter() + {seconds}\nwhile time.perf_counter() < end:\n    pass\n"
WINDOW_S = 1.0  # each load is measured over this much wall time


def spin(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def test_static_facts_describe_this_host():
    facts = host_state.static_facts()
    assert facts["logical_cores"] == os.cpu_count()
    assert facts["usable_cores"] == usable_cpus()
    assert facts["governors"] is None or all(isinstance(g, str) and g for g in facts["governors"])
    assert facts["max_mhz"] is None or facts["max_mhz"] > 0


def test_proc_stat_line_is_split_into_busy_idle_and_steal(tmp_path):
    stat = tmp_path / "stat"
    # user nice system idle iowait irq softirq steal guest guest_nice (guest is inside user)
    stat.write_text("cpu  400 100 200 1000 50 10 40 300 80 0\ncpu0 1 2 3 4 5 6 7 8 9 10\n")
    busy, idle, steal = host_state.machine_times(stat)
    tick = host_state.TICK_S
    assert (busy, idle, steal) == (pytest.approx(750 * tick), pytest.approx(1050 * tick), pytest.approx(300 * tick))


def test_cpu_load_from_two_readings():
    first = host_state.CpuReading(time=10.0, busy_s=100.0, idle_s=300.0, steal_s=5.0, tree_s=20.0)
    # 2 s on 2 cores = 4 CPU-s: 3 busy (1 of them ours), 0.6 idle, 0.4 stolen
    last = host_state.CpuReading(time=12.0, busy_s=103.0, idle_s=300.6, steal_s=5.4, tree_s=21.0)
    load = host_state.cpu_load(first, last)
    assert load == {"steal_pct": pytest.approx(10.0), "other_load_cores": pytest.approx(1.0)}
    ours_only = host_state.CpuReading(time=12.0, busy_s=101.0, idle_s=302.6, steal_s=5.4, tree_s=21.02)
    assert host_state.cpu_load(first, ours_only)["other_load_cores"] == 0.0  # rounding below 0 is clipped
    assert host_state.cpu_load(first, first) == {"steal_pct": None, "other_load_cores": None}


def test_another_process_counts_as_other_load():
    # the shell exits at once, so its background child is adopted by init: a process outside our tree
    shell = subprocess.run(["sh", "-c", '"$0" -c "$1" >/dev/null 2>&1 & echo $!', sys.executable,
                            SPIN.format(seconds=WINDOW_S + 0.6)], capture_output=True, text=True, check=True)
    other = psutil.Process(int(shell.stdout))
    try:
        assert other.pid not in host_state.tree_pids()
        time.sleep(0.2)  # its interpreter starts
        first = host_state.read_cpu()
        time.sleep(WINDOW_S)
        load = host_state.cpu_load(first, host_state.read_cpu())
    finally:
        try:
            other.kill()  # psutil checks that the pid still names that process
        except psutil.NoSuchProcess:
            pass
    # it spins on one core; whatever else runs beside it on a shared machine only adds to the figure
    assert load["other_load_cores"] > 0.5
    assert 0 <= load["steal_pct"] <= 100


def test_our_own_threads_and_children_are_not_other_load():
    first = host_state.read_cpu()
    time.sleep(WINDOW_S)
    baseline = host_state.cpu_load(first, host_state.read_cpu())["other_load_cores"]

    child = subprocess.Popen([sys.executable, "-c", SPIN.format(seconds=WINDOW_S + 0.6)])
    thread = threading.Thread(target=spin, args=(WINDOW_S + 0.3,))
    try:
        assert child.pid in host_state.tree_pids()
        time.sleep(0.2)  # its interpreter starts
        thread.start()
        first = host_state.read_cpu()
        time.sleep(WINDOW_S)
        last = host_state.read_cpu()
    finally:
        child.kill()
        child.wait()
        thread.join()
    # the child and the thread ask for both cores of a 2-core machine: the tree's time grows by far more
    # than half a core, and other processes' load does not grow with it (it may shrink as ours crowds them)
    assert (last.tree_s - first.tree_s) / (last.time - first.time) > 0.5
    assert host_state.cpu_load(first, last)["other_load_cores"] - baseline < 0.5
