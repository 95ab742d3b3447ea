"""Writing a bench run's rows: `Recorder` stamps each row with its machine and its evidence, and
`collect_environment` says where the run measured. The schema is `pipeline.results.format`'s.
"""
from __future__ import annotations

import contextlib
import os
import platform
import sys
import traceback
from pathlib import Path

from pipeline.bench.progress import log
from pipeline.errors import UsageError
from pipeline.results.format import DEFAULT_BACKEND, config_hash, direction_of, unit_of


class Recorder:
    """Collects result rows, each stamped with the device and the backend, `devices` and `processes` 1
    unless the row names others, its unit and direction, its `config_hash` (over `grid`, the run's `Grid`
    as a dict) and, with a `monitor`, the `state` of the host and GPUs during the row's cell.

    `cell()` brackets a measurement: its rows get the state of its window, and an exception in it
    becomes error rows, and the run goes on.
    """

    def __init__(self, device: str, backend: str = DEFAULT_BACKEND, backend_version: str | None = None, *,
                 device_count: int = 1, host_cpu: str | None = None, grid: dict | None = None, monitor=None):
        self.device = device
        self.backend = backend
        self.backend_version = backend_version
        self.machine = {"device_count": device_count, "host_cpu": host_cpu}
        self.grid = grid or {}
        self.monitor = monitor
        self.rows: list[dict] = []
        self._window_start: float | None = None

    def mark(self) -> float | None:
        """The monitor's time now (a reading taken), to pass as `since` of rows measured from here; None without one."""
        return None if self.monitor is None else self.monitor.mark()

    def add(self, suite, impl, metric, value, *, size, batch_size=None, workers=None, feed=None, error=None,
            repeat_values=(), since: float | None = None, **extra):
        """One row; `repeat_values`: the raw values `value` summarises, in the metric's unit; `since`: where the
        row's window began (`mark()`), for rows measured outside a `cell`."""
        row = {"suite": suite, "impl": impl, "feed": feed, "size": size, "batch_size": batch_size,
               "workers": workers, "metric": metric, "value": None if value is None else float(value),
               "unit": unit_of(metric), "direction": direction_of(metric), "error": error, "device": self.device,
               "backend": self.backend, "backend_version": self.backend_version, **self.machine, "devices": 1,
               "processes": 1, **extra,
               "repeat_values": [float(f"{v:.6g}") for v in repeat_values]}
        row["config_hash"] = config_hash(row, self.grid)
        start = self._window_start if since is None else since
        if self.monitor is not None and start is not None:
            row["state"] = self.monitor.summary(start, self.monitor.mark())
        self.rows.append(row)
        return row

    @contextlib.contextmanager
    def cell(self, suite, impl, metrics, **key):
        """Run the body as one window of the monitor; on an exception record one error row per expected metric."""
        outer = self._window_start
        if outer is None and self.monitor is not None:
            self._window_start = self.monitor.mark()
        try:
            yield
        except (KeyboardInterrupt, UsageError):
            raise
        except Exception as e:  # a failed cell is a result: recorded with its error, never dropped
            self.fail(suite, impl, metrics, e, **key)
        finally:
            self._window_start = outer

    def fail(self, suite, impl, metrics, error: BaseException | str, **key) -> None:
        """One error row per metric; `error` an exception (logged with its traceback) or a message."""
        if isinstance(error, BaseException):
            first = str(error).strip().splitlines()[0] if str(error).strip() else ""
            text = f"{type(error).__name__}: {first}"[:500]
            traceback.print_exception(error, file=sys.stderr)
        else:
            text = error[:500]
        log(f"FAILED {suite}/{impl} {key}: {text}")
        for metric in metrics:
            self.add(suite, impl, metric, None, error=text, **key)


def collect_environment(datasets: dict[str, Path], device: dict, backend: str, state: dict | None = None) -> dict:
    """The result file's `environment`: where it was measured, with which code and data.

    datasets: name -> dataset directory, each recorded with its manifest's SHA-256.
    device: `pipeline.runtime.devices.describe()`; backend: the Keras backend measured on;
    state: the host's and GPUs' static facts (`pipeline.bench.monitor.static_facts()`).
    """
    from pipeline.dataset.manifest import manifest_sha256
    from pipeline.runtime import devices, environment
    from pipeline.runtime.cpus import usable_cpus

    lib = environment.versions()
    return {
        "device": device,
        "backend": {"name": backend, "version": lib.get(backend)},
        "cpu": {"model": devices.cpu_model(), "cores": os.cpu_count(), "usable": usable_cpus(),
                "machine": platform.machine()},
        "state": state or {},
        "platform": platform.platform(),
        "host": environment.host(),
        "versions": lib,
        "git": environment.git_info(),
        "argv": sys.argv,
        "datasets": {name: {"path": str(path), "manifest_sha256": manifest_sha256(path)}
                     for name, path in datasets.items()},
    }
