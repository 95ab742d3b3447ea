"""NVIDIA GPUs' settings and state through NVML (`nvidia-ml-py`, module `pynvml`).

A GPU under a lower power limit, in a hot chassis or with locked application clocks runs the same
work slower; its clocks and the reasons NVML gives for holding them down explain such a figure.
`static_facts` are the settings that hold for a run, `sample` the state at one instant.

Every function takes the NVML module as `nvml` (default: `pynvml`, imported when first needed), so
tests pass a fake one. Where NVML is missing or finds no driver, there are no GPUs: `[]`. A query
the device or driver does not offer (`NVMLError_NotSupported`, `_NoPermission`, `_FunctionNotFound`)
gives None for its field; any other NVML error is raised.
"""
from __future__ import annotations

# throttle ("clocks event") reasons: short name, and the suffix of the NVML constant for its bit,
# looked up as `nvmlClocksEventReason<suffix>` (NVML >= 12.535) or `nvmlClocksThrottleReason<suffix>`
REASONS = (
    ("gpu_idle", "GpuIdle"),
    ("applications_clocks_setting", "ApplicationsClocksSetting"),
    ("sw_power_cap", "SwPowerCap"),
    ("hw_slowdown", "HwSlowdown"),
    ("sync_boost", "SyncBoost"),
    ("sw_thermal", "SwThermalSlowdown"),
    ("hw_thermal", "HwThermalSlowdown"),
    ("hw_power_brake", "HwPowerBrakeSlowdown"),
    ("display_clocks", "DisplayClockSetting"),
    ("board_limit", "BoardLimit"),
    ("reliability", "Reliability"),
)
# errors that mean "this GPU or driver does not offer that query", not that something failed
UNAVAILABLE = ("NVMLError_NotSupported", "NVMLError_NoPermission", "NVMLError_FunctionNotFound")


def _module(nvml):
    """`nvml`, or `pynvml` when None; None where the package is not installed."""
    if nvml is not None:
        return nvml
    try:
        import pynvml  # imported lazily: a CPU machine needs neither the package nor the driver
    except ImportError:
        return None
    return pynvml


def _init(nvml) -> bool:
    """Initialise NVML; False where the library or driver is missing (no GPU)."""
    try:
        nvml.nvmlInit()
    except nvml.NVMLError:
        return False
    return True


def _query(nvml, function: str, *args):
    """`nvml.<function>(*args)`, or None where the device or driver does not offer it."""
    unavailable = tuple(getattr(nvml, name) for name in UNAVAILABLE if hasattr(nvml, name))
    if not hasattr(nvml, function):  # an older nvidia-ml-py
        return None
    try:
        return getattr(nvml, function)(*args)
    except unavailable:
        return None


def _text(value) -> str | None:
    """NVML strings: bytes in older nvidia-ml-py releases, str in newer ones."""
    return value.decode() if isinstance(value, bytes) else value


def _scaled(value, factor: float) -> float | None:
    return None if value is None else value * factor


def _enabled(modes, on: int) -> bool | None:
    """A [current, pending] mode pair as "is the current mode `on`", None where not supported."""
    return None if modes is None else modes[0] == on


def _static(nvml, index: int) -> dict:
    handle = nvml.nvmlDeviceGetHandleByIndex(index)
    sm, mem = nvml.NVML_CLOCK_SM, nvml.NVML_CLOCK_MEM
    persistence = _query(nvml, "nvmlDeviceGetPersistenceMode", handle)
    return {
        "index": index,
        "name": _text(_query(nvml, "nvmlDeviceGetName", handle)),
        "uuid": _text(_query(nvml, "nvmlDeviceGetUUID", handle)),
        "driver": _text(_query(nvml, "nvmlSystemGetDriverVersion")),
        "vbios": _text(_query(nvml, "nvmlDeviceGetVbiosVersion", handle)),
        # the current link generation and width drop while the GPU idles, to save power
        "pcie_generation": {"current": _query(nvml, "nvmlDeviceGetCurrPcieLinkGeneration", handle),
                            "max": _query(nvml, "nvmlDeviceGetMaxPcieLinkGeneration", handle)},
        "pcie_width": {"current": _query(nvml, "nvmlDeviceGetCurrPcieLinkWidth", handle),
                       "max": _query(nvml, "nvmlDeviceGetMaxPcieLinkWidth", handle)},
        "power_limit_w": _scaled(_query(nvml, "nvmlDeviceGetEnforcedPowerLimit", handle), 1e-3),
        "default_power_limit_w": _scaled(_query(nvml, "nvmlDeviceGetPowerManagementDefaultLimit", handle), 1e-3),
        "max_sm_clock_mhz": _query(nvml, "nvmlDeviceGetMaxClockInfo", handle, sm),
        "max_mem_clock_mhz": _query(nvml, "nvmlDeviceGetMaxClockInfo", handle, mem),
        "applications_sm_clock_mhz": _query(nvml, "nvmlDeviceGetApplicationsClock", handle, sm),
        "applications_mem_clock_mhz": _query(nvml, "nvmlDeviceGetApplicationsClock", handle, mem),
        "ecc": _enabled(_query(nvml, "nvmlDeviceGetEccMode", handle), nvml.NVML_FEATURE_ENABLED),
        "mig": _enabled(_query(nvml, "nvmlDeviceGetMigMode", handle), nvml.NVML_DEVICE_MIG_ENABLE),
        "persistence": None if persistence is None else persistence == nvml.NVML_FEATURE_ENABLED,
    }


def static_facts(nvml=None) -> list[dict]:
    """Settings of each GPU, in NVML's index order; [] where NVML or its driver is missing.

    Keys: index, name, uuid, driver, vbios; pcie_generation and pcie_width ({"current", "max"});
    power_limit_w (enforced) and default_power_limit_w (W); max_sm_clock_mhz, max_mem_clock_mhz,
    applications_sm_clock_mhz, applications_mem_clock_mhz (MHz); ecc, mig, persistence (bool:
    the current mode is enabled). A field the GPU does not report is None.
    """
    nvml = _module(nvml)
    if nvml is None or not _init(nvml):
        return []
    try:
        return [_static(nvml, index) for index in range(nvml.nvmlDeviceGetCount())]
    finally:
        nvml.nvmlShutdown()


def open_handles(nvml=None) -> list:
    """Initialise NVML and return a handle per GPU for `sample`; [] where NVML or its driver is missing.

    NVML stays initialised until `close` (NVML counts its initialisations).
    """
    nvml = _module(nvml)
    if nvml is None or not _init(nvml):
        return []
    return [nvml.nvmlDeviceGetHandleByIndex(index) for index in range(nvml.nvmlDeviceGetCount())]


def close(nvml=None) -> None:
    """Undo `open_handles`' initialisation; nothing where NVML was never initialised."""
    nvml = _module(nvml)
    if nvml is None:
        return
    try:
        nvml.nvmlShutdown()
    except nvml.NVMLError:  # not initialised: `open_handles` found no driver
        pass


def reason_names(mask: int, nvml) -> list[str]:
    """Short names of the bits set in a throttle-reason mask, in bit order; an unnamed bit as "unknown_0x..."."""
    names, known = [], 0
    for name, suffix in REASONS:
        bit = getattr(nvml, "nvmlClocksEventReason" + suffix, None)
        if bit is None:
            bit = getattr(nvml, "nvmlClocksThrottleReason" + suffix, None)
        if bit is None:
            continue
        known |= bit
        if mask & bit:
            names.append(name)
    if mask & ~known:
        names.append(f"unknown_{mask & ~known:#x}")
    return names


def _reasons(nvml, handle) -> list[str] | None:
    # drivers >= 535 name it "clocks event reasons"; older ones only have the "throttle reasons" call
    mask = _query(nvml, "nvmlDeviceGetCurrentClocksEventReasons", handle)
    if mask is None:
        mask = _query(nvml, "nvmlDeviceGetCurrentClocksThrottleReasons", handle)
    return None if mask is None else reason_names(mask, nvml)


def _sample(nvml, handle) -> dict:
    utilization = _query(nvml, "nvmlDeviceGetUtilizationRates", handle)
    return {
        "sm_clock_mhz": _query(nvml, "nvmlDeviceGetClockInfo", handle, nvml.NVML_CLOCK_SM),
        "mem_clock_mhz": _query(nvml, "nvmlDeviceGetClockInfo", handle, nvml.NVML_CLOCK_MEM),
        "power_w": _scaled(_query(nvml, "nvmlDeviceGetPowerUsage", handle), 1e-3),
        "temperature_c": _query(nvml, "nvmlDeviceGetTemperature", handle, nvml.NVML_TEMPERATURE_GPU),
        "gpu_util_pct": None if utilization is None else utilization.gpu,
        "mem_util_pct": None if utilization is None else utilization.memory,
        "throttle_reasons": _reasons(nvml, handle),
    }


def sample(handles: list, nvml=None) -> list[dict]:
    """State of each GPU of `open_handles` now, one dict per handle.

    Keys: sm_clock_mhz, mem_clock_mhz (MHz); power_w (W, board draw); temperature_c (°C, die);
    gpu_util_pct (% of the last sample period a kernel ran) and mem_util_pct (% of it device memory
    was read or written), as NVML averages them over its own period; throttle_reasons (short names,
    see `REASONS`). A field the GPU does not report is None.
    """
    if not handles:
        return []
    nvml = _module(nvml)
    return [_sample(nvml, handle) for handle in handles]
