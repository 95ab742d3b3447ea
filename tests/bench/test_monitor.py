"""The benchmark monitor: window summaries from scripted CPU readings and a fake NVML, and its thread's life."""
from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import pytest

from pipeline.bench import monitor
from pipeline.bench.monitor import Monitor
from pipeline.runtime import host_state

IDLE, APP_CLOCKS, POWER_CAP, HW_SLOWDOWN = 0x1, 0x2, 0x4, 0x8  # pynvml's clocks event reason bits


class NVMLError(Exception):
    pass


class FakeNVML:
    """One GPU whose state the test sets between samples; `lost` makes every sample fail (a GPU fallen off the bus)."""

    NVMLError = NVMLError
    NVML_CLOCK_SM, NVML_CLOCK_MEM, NVML_TEMPERATURE_GPU = 1, 2, 0
    NVML_FEATURE_ENABLED = NVML_DEVICE_MIG_ENABLE = 1
    nvmlClocksEventReasonGpuIdle = IDLE
    nvmlClocksEventReasonApplicationsClocksSetting = APP_CLOCKS
    nvmlClocksEventReasonSwPowerCap = POWER_CAP
    nvmlClocksEventReasonHwSlowdown = HW_SLOWDOWN

    def __init__(self):
        self.initialised = 0
        self.lost = False
        self.set(sm=345, power_w=70, temperature=33, util=0, reasons=IDLE)

    def set(self, sm, power_w, temperature, util, reasons):
        self.state = {"sm": sm, "power_mw": power_w * 1000, "temperature": temperature, "util": util,
                      "reasons": reasons}

    def nvmlInit(self):
        self.initialised += 1

    def nvmlShutdown(self):
        self.initialised -= 1

    def nvmlDeviceGetCount(self):
        return 1

    def nvmlDeviceGetHandleByIndex(self, index):
        return index

    def nvmlDeviceGetClockInfo(self, handle, clock):
        if self.lost:
            raise NVMLError("GPU is lost")
        return self.state["sm"] if clock == self.NVML_CLOCK_SM else 2619

    def nvmlDeviceGetPowerUsage(self, handle):
        return self.state["power_mw"]

    def nvmlDeviceGetTemperature(self, handle, sensor):
        return self.state["temperature"]

    def nvmlDeviceGetUtilizationRates(self, handle):
        return SimpleNamespace(gpu=self.state["util"], memory=self.state["util"] // 2)

    def nvmlDeviceGetCurrentClocksEventReasons(self, handle):
        return self.state["reasons"]


@pytest.fixture
def scripted_cpu(monkeypatch):
    """Readings 1 s apart from t=0; per second the machine is busy 1 CPU-s (half of it ours), idle 0.9, steal 0.1."""
    calls = iter(range(1000))

    def read_cpu():
        n = next(calls)
        return host_state.CpuReading(time=float(n), busy_s=1.0 * n, idle_s=0.9 * n, steal_s=0.1 * n, tree_s=0.5 * n)

    monkeypatch.setattr(host_state, "read_cpu", read_cpu)


def test_window_summary_of_clocks_power_and_load(scripted_cpu):
    nvml = FakeNVML()
    with Monitor(interval_s=60, nvml=nvml) as m:  # the thread never samples here: the marks do, at t = 0, 1, 2...
        nvml.set(sm=1980, power_w=400, temperature=60, util=100, reasons=0)
        start = m.mark()
        nvml.set(sm=1400, power_w=300, temperature=75, util=100, reasons=POWER_CAP | HW_SLOWDOWN | APP_CLOCKS)
        m.mark()
        nvml.set(sm=1200, power_w=310, temperature=80, util=96, reasons=POWER_CAP)
        end = m.mark()
        nvml.set(sm=345, power_w=70, temperature=33, util=0, reasons=IDLE)
    assert (start, end) == (1.0, 3.0)
    assert len(m.samples) == 5  # entry, three marks, exit
    summary = m.summary(start, end)
    assert summary["cpu"] == {"steal_pct": pytest.approx(5.0), "other_load_cores": pytest.approx(0.5), "span_s": 2.0,
                              "samples": 3}
    assert summary["gpus"] == [{
        "sm_clock_mhz": {"median": 1400, "min": 1200}, "mem_clock_mhz": {"median": 2619, "min": 2619},
        "power_w": {"median": 310.0, "max": 400.0}, "temperature_c": {"max": 80}, "gpu_util_pct": {"median": 100},
        "mem_util_pct": {"median": 50}, "throttle_reasons": ["hw_slowdown", "sw_power_cap"],
    }]
    assert m.summary(0.0, 4.0)["gpus"][0]["throttle_reasons"] == ["hw_slowdown", "sw_power_cap"]  # gpu_idle left out
    assert nvml.initialised == 0


def test_window_between_two_samples_takes_the_bracketing_ones(scripted_cpu):
    nvml = FakeNVML()
    with Monitor(interval_s=60, nvml=nvml) as m:
        nvml.set(sm=1800, power_w=500, temperature=70, util=100, reasons=0)
        m.mark()  # t = 1
        nvml.set(sm=345, power_w=70, temperature=33, util=0, reasons=IDLE)  # the exit sample, t = 2
    summary = m.summary(1.2, 1.7)
    assert summary["cpu"] == {"steal_pct": pytest.approx(5.0), "other_load_cores": pytest.approx(0.5), "span_s": 1.0,
                              "samples": 0}
    gpu = summary["gpus"][0]
    assert gpu["sm_clock_mhz"] == {"median": (1800 + 345) / 2, "min": 345}
    assert gpu["power_w"]["max"] == 500.0
    # a window after the monitor stopped: nothing is known about it
    late = m.summary(5.0, 6.0)
    assert late["cpu"] == {"steal_pct": None, "other_load_cores": None, "span_s": None, "samples": 0}
    assert late["gpus"][0]["sm_clock_mhz"] == {"median": None, "min": None}
    with pytest.raises(ValueError, match="ends before it starts"):
        m.summary(2.0, 1.0)


def test_thread_samples_real_readings_and_stops_on_exit():
    nvml = FakeNVML()
    with Monitor(interval_s=0.01, nvml=nvml) as m:
        time.sleep(0.2)
        start, end = m.samples[0].time, m.mark()
    taken = len(m.samples)
    assert taken >= 5
    assert not any(thread.name == "bench-monitor" for thread in threading.enumerate())
    time.sleep(0.05)
    assert len(m.samples) == taken
    assert nvml.initialised == 0
    cpu = m.summary(start, end)["cpu"]
    assert cpu["samples"] >= 5
    assert 0 <= cpu["steal_pct"] <= 100 and cpu["other_load_cores"] >= 0


def test_a_failed_sample_is_raised_on_exit():
    nvml = FakeNVML()
    with pytest.raises(RuntimeError, match="sampling thread failed") as raised:
        with Monitor(interval_s=0.01, nvml=nvml):
            nvml.lost = True
            time.sleep(0.1)
    assert isinstance(raised.value.__cause__, NVMLError)
    assert nvml.initialised == 0


def test_no_gpu_and_static_facts():
    class NoDriver(FakeNVML):
        def nvmlInit(self):
            raise NVMLError("NVML Shared Library Not Found")

    with Monitor(interval_s=60, nvml=NoDriver()) as m:
        start = m.mark()
    assert m.summary(start, m.samples[-1].time)["gpus"] == []
    facts = monitor.static_facts(FakeNVML())
    assert facts["host"] == host_state.static_facts()
    assert [gpu["index"] for gpu in facts["gpus"]] == [0]
    assert facts["gpus"][0]["name"] is None  # the fake does not answer that query
    assert monitor.static_facts(NoDriver())["gpus"] == []
    with pytest.raises(ValueError, match="interval_s must be positive"):
        Monitor(interval_s=0)
