"""GPU settings and state through a fake NVML module: units, decoded throttle reasons, unsupported queries, no GPU."""
from __future__ import annotations

import sys
from types import SimpleNamespace

import pytest

from pipeline.runtime import gpu_state


class NVMLError(Exception):
    pass


class NVMLError_NotSupported(NVMLError):
    pass


class NVMLError_LibraryNotFound(NVMLError):
    pass


class FakeNVML:
    """Two GPUs: 0 is an H100 capped at 300 W of its 700 W and slowed by the cap and by the hardware; 1 has no ECC
    query and runs idle. Constants and bits are pynvml's."""

    NVMLError = NVMLError
    NVMLError_NotSupported = NVMLError_NotSupported
    NVML_CLOCK_SM, NVML_CLOCK_MEM = 1, 2
    NVML_TEMPERATURE_GPU = 0
    NVML_FEATURE_ENABLED = 1
    NVML_DEVICE_MIG_ENABLE = 1
    nvmlClocksEventReasonGpuIdle = 0x1
    nvmlClocksEventReasonApplicationsClocksSetting = 0x2
    nvmlClocksEventReasonSwPowerCap = 0x4
    nvmlClocksEventReasonHwSlowdown = 0x8
    nvmlClocksEventReasonSyncBoost = 0x10
    nvmlClocksEventReasonSwThermalSlowdown = 0x20
    nvmlClocksEventReasonHwThermalSlowdown = 0x40
    nvmlClocksEventReasonHwPowerBrakeSlowdown = 0x80
    nvmlClocksEventReasonDisplayClockSetting = 0x100

    def __init__(self):
        self.initialised = 0

    def nvmlInit(self):
        self.initialised += 1

    def nvmlShutdown(self):
        if not self.initialised:
            raise NVMLError("Uninitialized")
        self.initialised -= 1

    def nvmlDeviceGetCount(self):
        return 2

    def nvmlDeviceGetHandleByIndex(self, index):
        return f"gpu{index}"

    def nvmlSystemGetDriverVersion(self):
        return "550.54.15"

    def nvmlDeviceGetName(self, handle):
        return b"NVIDIA H100 80GB HBM3"  # older nvidia-ml-py releases return bytes

    def nvmlDeviceGetUUID(self, handle):
        return f"GPU-{handle}"

    def nvmlDeviceGetVbiosVersion(self, handle):
        return "96.00.74.00.01"

    def nvmlDeviceGetCurrPcieLinkGeneration(self, handle):
        return 5 if handle == "gpu0" else 1  # an idle GPU's link slows down

    def nvmlDeviceGetMaxPcieLinkGeneration(self, handle):
        return 5

    def nvmlDeviceGetCurrPcieLinkWidth(self, handle):
        return 16

    def nvmlDeviceGetMaxPcieLinkWidth(self, handle):
        return 16

    def nvmlDeviceGetEnforcedPowerLimit(self, handle):
        return 300_000 if handle == "gpu0" else 700_000  # mW

    def nvmlDeviceGetPowerManagementDefaultLimit(self, handle):
        return 700_000

    def nvmlDeviceGetMaxClockInfo(self, handle, clock):
        return {1: 1980, 2: 2619}[clock]

    def nvmlDeviceGetApplicationsClock(self, handle, clock):
        return {1: 1755, 2: 2619}[clock]

    def nvmlDeviceGetEccMode(self, handle):
        if handle == "gpu1":
            raise NVMLError_NotSupported()
        return [1, 1]

    def nvmlDeviceGetMigMode(self, handle):
        return [0, 0]

    def nvmlDeviceGetPersistenceMode(self, handle):
        return 1 if handle == "gpu0" else 0

    def nvmlDeviceGetClockInfo(self, handle, clock):
        return {("gpu0", 1): 1110, ("gpu0", 2): 2619, ("gpu1", 1): 345, ("gpu1", 2): 2619}[handle, clock]

    def nvmlDeviceGetPowerUsage(self, handle):
        return 299_512 if handle == "gpu0" else 71_250  # mW

    def nvmlDeviceGetTemperature(self, handle, sensor):
        return 71 if handle == "gpu0" else 33

    def nvmlDeviceGetUtilizationRates(self, handle):
        return SimpleNamespace(gpu=100, memory=62) if handle == "gpu0" else SimpleNamespace(gpu=0, memory=0)

    def nvmlDeviceGetCurrentClocksEventReasons(self, handle):
        return 0x4 | 0x8 if handle == "gpu0" else 0x1


def test_static_facts_of_two_gpus():
    nvml = FakeNVML()
    capped, plain = gpu_state.static_facts(nvml)
    assert capped == {
        "index": 0, "name": "NVIDIA H100 80GB HBM3", "uuid": "GPU-gpu0", "driver": "550.54.15",
        "vbios": "96.00.74.00.01", "pcie_generation": {"current": 5, "max": 5},
        "pcie_width": {"current": 16, "max": 16},
        "power_limit_w": 300.0, "default_power_limit_w": 700.0, "max_sm_clock_mhz": 1980, "max_mem_clock_mhz": 2619,
        "applications_sm_clock_mhz": 1755, "applications_mem_clock_mhz": 2619, "ecc": True, "mig": False,
        "persistence": True,
    }
    assert plain["ecc"] is None  # NotSupported: unknown, not "off"
    assert plain["power_limit_w"] == 700.0
    assert (plain["pcie_generation"], plain["persistence"]) == ({"current": 1, "max": 5}, False)
    assert nvml.initialised == 0  # static_facts shuts NVML down again


def test_samples_decode_units_and_throttle_reasons():
    nvml = FakeNVML()
    handles = gpu_state.open_handles(nvml)
    assert handles == ["gpu0", "gpu1"]
    capped, idle = gpu_state.sample(handles, nvml)
    assert capped == {"sm_clock_mhz": 1110, "mem_clock_mhz": 2619, "power_w": pytest.approx(299.512),
                      "temperature_c": 71, "gpu_util_pct": 100, "mem_util_pct": 62,
                      "throttle_reasons": ["sw_power_cap", "hw_slowdown"]}
    assert idle["throttle_reasons"] == ["gpu_idle"]
    assert idle["power_w"] == pytest.approx(71.25)
    gpu_state.close(nvml)
    assert nvml.initialised == 0


def test_reason_names_cover_every_bit_and_keep_unknown_ones():
    nvml = FakeNVML()
    assert gpu_state.reason_names(0, nvml) == []
    assert gpu_state.reason_names(0x1FF, nvml) == [
        "gpu_idle", "applications_clocks_setting", "sw_power_cap", "hw_slowdown", "sync_boost", "sw_thermal",
        "hw_thermal", "hw_power_brake", "display_clocks"]
    assert gpu_state.reason_names(0x20 | 0x1000, nvml) == ["sw_thermal", "unknown_0x1000"]


def test_older_nvml_throttle_reason_names_are_used():
    class OldNVML(FakeNVML):
        """nvidia-ml-py before 12.535: the same bits, under "ClocksThrottleReason" names only."""

        def __getattribute__(self, name):
            if "EventReason" in name:
                raise AttributeError(name)
            return super().__getattribute__(name)

        def __getattr__(self, name):
            if "ThrottleReason" not in name:
                raise AttributeError(name)
            return object.__getattribute__(self, name.replace("ThrottleReason", "EventReason"))

    old = OldNVML()
    assert not hasattr(old, "nvmlDeviceGetCurrentClocksEventReasons")
    assert gpu_state.sample(["gpu0"], old)[0]["throttle_reasons"] == ["sw_power_cap", "hw_slowdown"]


def test_no_nvml_means_no_gpus(monkeypatch):
    class NoDriver(FakeNVML):
        NVMLError_LibraryNotFound = NVMLError_LibraryNotFound

        def nvmlInit(self):
            raise NVMLError_LibraryNotFound()

    assert gpu_state.static_facts(NoDriver()) == []
    assert gpu_state.open_handles(NoDriver()) == []
    assert gpu_state.sample([], NoDriver()) == []
    gpu_state.close(NoDriver())  # nothing initialised: nothing to undo, no error
    monkeypatch.setitem(sys.modules, "pynvml", None)  # the package is not installed
    assert gpu_state.static_facts() == []
    assert gpu_state.open_handles() == []
