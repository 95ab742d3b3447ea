"""The host's and GPUs' state while benchmarks run, to explain a figure lower than the code deserves.

A `Monitor` samples in a background thread, every `interval_s`, the machine's CPU time (`host_state`)
and each GPU's clocks, power, temperature, utilisation and throttle reasons (`gpu_state`).
`summary(start, end)` states what held during one timed window: CPU time stolen by the hypervisor,
cores used by other processes, and per GPU the clocks it ran at and why NVML says it held them down.

    with Monitor() as monitor:
        start = monitor.mark()
        ...  # the timed work
        end = monitor.mark()
    row["state"] = monitor.summary(start, end)

`mark()` takes a reading at once so that the CPU figures cover the window exactly; call it outside
the timed region, as a sample costs NVML queries. Without marks they cover the samples bracketing
the window, at most one interval wider on each side. `static_facts()` holds the settings for a run.
"""
from __future__ import annotations

import statistics
import threading
from dataclasses import dataclass

from pipeline.runtime import gpu_state, host_state

# reasons NVML gives while nothing is slowed down: an idle GPU, or clocks the operator set on purpose
NOT_SLOWDOWNS = frozenset({"gpu_idle", "applications_clocks_setting"})


def static_facts(nvml=None) -> dict:
    """{"host": `host_state.static_facts()`, "gpus": `gpu_state.static_facts()`}: settings that hold for a run."""
    return {"host": host_state.static_facts(), "gpus": gpu_state.static_facts(nvml)}


@dataclass(frozen=True)
class Sample:
    """One reading: `time` (`time.perf_counter`, s), the CPU times, and `gpu_state.sample` per GPU."""

    time: float
    cpu: host_state.CpuReading
    gpus: list[dict]


class Monitor:
    """Samples host and GPU state every `interval_s` seconds between `__enter__` and `__exit__`.

    It takes a sample on entry and on exit too, so any window inside the `with` block is bracketed.
    A sample that fails in the thread ends the sampling, and `__exit__` raises it.
    `nvml` replaces the `pynvml` module (tests).
    """

    def __init__(self, interval_s: float = 0.5, nvml=None):
        if not interval_s > 0:
            raise ValueError(f"interval_s must be positive, got {interval_s!r}")
        self.interval_s = interval_s
        self._nvml = nvml
        self._handles: list = []
        self._samples: list[Sample] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._error: Exception | None = None

    def __enter__(self) -> Monitor:
        if self._thread is not None:
            raise RuntimeError("a Monitor runs once")
        self._handles = gpu_state.open_handles(self._nvml)
        self.mark()
        self._thread = threading.Thread(target=self._run, name="bench-monitor", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, exc_type, exc, traceback) -> None:
        self._stop.set()
        self._thread.join()
        try:
            if self._error is None:
                self.mark()
        finally:
            if self._handles:
                gpu_state.close(self._nvml)
        if self._error is not None and exc_type is None:
            raise RuntimeError("the monitor's sampling thread failed") from self._error

    def _run(self) -> None:
        try:
            while not self._stop.wait(self.interval_s):
                self.mark()
        except Exception as error:  # kept for __exit__ to raise, in the thread that runs the benchmark
            self._error = error

    def mark(self) -> float:
        """Take a sample now; its time (`time.perf_counter`, s), to pass to `summary` as a window's edge."""
        # one at a time, so that samples are stored in the order of their times
        with self._lock:
            cpu = host_state.read_cpu()
            gpus = gpu_state.sample(self._handles, self._nvml)
            self._samples.append(Sample(cpu.time, cpu, gpus))
        return cpu.time

    @property
    def samples(self) -> tuple[Sample, ...]:
        """The samples so far, oldest first."""
        with self._lock:
            return tuple(self._samples)

    def summary(self, start: float, end: float) -> dict:
        """The state during the window [start, end] (`time.perf_counter`, s).

        {"cpu": {"steal_pct": %, "other_load_cores": cores, "span_s": s, "samples": n},
         "gpus": [{"sm_clock_mhz": {"median", "min"}, "mem_clock_mhz": {"median", "min"},
                   "power_w": {"median", "max"}, "temperature_c": {"max"}, "gpu_util_pct": {"median"},
                   "mem_util_pct": {"median"}, "throttle_reasons": [...]}, ...]}

        `samples` counts the samples inside the window. The CPU figures run from the last sample at or
        before `start` to the first at or after `end` (`span_s` apart; from the first to the last inside
        where the monitor did not run that long). GPU figures come from the samples inside, or from the
        two bracketing ones where the window falls between two samples. `throttle_reasons` is the
        sorted union of the reasons seen, less those that slow nothing down (`NOT_SLOWDOWNS`). A figure
        with no sample to come from is None.
        """
        if end < start:
            raise ValueError(f"window ends before it starts: start={start!r}, end={end!r}")
        samples = self.samples
        inside = [s for s in samples if start <= s.time <= end]
        before = next((s for s in reversed(samples) if s.time <= start), None)
        after = next((s for s in samples if s.time >= end), None)
        first = before if before is not None else (inside[0] if inside else None)
        last = after if after is not None else (inside[-1] if inside else None)
        cpu = {"steal_pct": None, "other_load_cores": None, "span_s": None}
        if first is not None and last is not None and last.time > first.time:
            cpu = {**host_state.cpu_load(first.cpu, last.cpu), "span_s": last.time - first.time}
        cpu["samples"] = len(inside)
        bracket = [before, after] if before is not None and after is not None else []
        gpus = len(samples[-1].gpus) if samples else 0
        return {"cpu": cpu, "gpus": _gpu_summaries(inside or bracket, gpus)}


def _stat(values, how: str) -> float | None:
    values = [v for v in values if v is not None]
    if not values:
        return None
    return {"median": statistics.median, "min": min, "max": max}[how](values)


def _gpu_summaries(samples: list[Sample], count: int) -> list[dict]:
    """For each of `count` GPUs, the spread of each `gpu_state.sample` field over `samples`."""
    summaries = []
    for index in range(count):
        readings = [s.gpus[index] for s in samples if index < len(s.gpus)]

        def stats(key: str, *hows: str) -> dict:
            return {how: _stat((r[key] for r in readings), how) for how in hows}

        reasons = set().union(*(r["throttle_reasons"] or () for r in readings))
        summaries.append({
            "sm_clock_mhz": stats("sm_clock_mhz", "median", "min"),
            "mem_clock_mhz": stats("mem_clock_mhz", "median", "min"),
            "power_w": stats("power_w", "median", "max"),
            "temperature_c": stats("temperature_c", "max"),
            "gpu_util_pct": stats("gpu_util_pct", "median"),
            "mem_util_pct": stats("mem_util_pct", "median"),
            "throttle_reasons": sorted(reasons - NOT_SLOWDOWNS),
        })
    return summaries
