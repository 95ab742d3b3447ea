"""The result file's schema, shared by `bench` (which writes it) and `report` (which reads it).

A result is one JSON document: `format`, `format_version`, `created`, `environment`,
`config` and `rows`, one row per measurement with at least `ROW_KEYS`, and the machine it ran on
(`device_count`, `host_cpu`; for older files `report` takes them from the file's environment). Version 2 rows
also carry `backend` and `backend_version` (Keras's backend), and train rows `precision`;
version 1 rows (written before backends) are read as TensorFlow, float32, and rows that name the
book's workflow by its former names (`seed`, `seed-workflow`) as `book`, `book-workflow`
(`normalize_row`; `current_name` also renames the former `seed-budget` preset). Load rows name
their reader count `readers` and their front end `front_end` ("tf.data" or "numpy"); older
files, which put the readers under `workers` and wrote mechanism "numpy" for the NumPy front
end, read under these keys. Every row names the `devices` its measurement ran on and the
`processes` it ran in; rows of files that name neither ran on one device, in one process.
"""
from __future__ import annotations

import contextlib
import csv
import json
import os
import platform
import sys
import traceback
from pathlib import Path

from pipeline.bench.progress import log
from pipeline.errors import UsageError
from pipeline.input.reader import ISAL_CODECS

FORMAT = "moving-square-bench"
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
ROW_KEYS = ("suite", "impl", "feed", "size", "batch_size", "workers", "metric", "value", "unit", "error", "device",
            "backend", "backend_version", "devices", "processes")
DEFAULT_BACKEND = "tensorflow"  # what every version-1 row ran on
# the book's workflow, its rows and its preset, as older result files name them
FORMER_NAMES = {"seed": "book", "seed-workflow": "book-workflow", "seed-budget": "book-budget"}
FORMER_PRECISIONS = {"bfloat16": "mixed_bfloat16"}  # precisions are named by their Keras dtype policy
UNITS = {"samples_per_s": "samples/s", "samples_per_s_p10": "samples/s", "samples_per_s_p90": "samples/s",
         "mb_per_s": "MB/s", "stored_mb_per_s": "MB/s", "per_worker_samples_per_s": "samples/s",
         "cluster_startup_s": "s", "run_overhead_s": "s", "ms_per_step_median": "ms", "ms_per_step_p10": "ms",
         "ms_per_step_p90": "ms", "first_step_ms": "ms", "first_batch_ms": "ms", "peak_rss_mb": "MB",
         "rss_growth_mb": "MB", "fit_s_per_epoch": "s", "fit_ms_per_step": "ms", "input_bound_fraction": "",
         "accuracy": "", "accuracy_min": "", "accuracy_max": "", "loss": "", "scaling_samples_per_s": "samples/s",
         "scaling_samples_per_s_p10": "samples/s", "scaling_samples_per_s_p90": "samples/s", "scaling_efficiency": ""}


def current_name(name):
    """An impl or preset name as this version calls it (`FORMER_NAMES`); other values unchanged."""
    return FORMER_NAMES.get(name, name)


def normalize_row(row: dict) -> dict:
    """A row with every ROW_KEY and current impl names; rows from version-1 files gain backend
    tensorflow (and float32 for train), rows naming no `devices` or `processes` one of each."""
    out = {**{k: row.get(k) for k in ROW_KEYS}, **row}
    out["impl"] = current_name(out["impl"])
    for key in ("devices", "processes"):
        if out[key] is None:
            out[key] = 1
    if out.get("backend") is None:
        out["backend"] = DEFAULT_BACKEND
    if out.get("suite") in ("train", "accuracy") and out.get("precision") is None:
        out["precision"] = "float32"
    if out.get("precision") in FORMER_PRECISIONS:
        out["precision"] = FORMER_PRECISIONS[out["precision"]]
    if out.get("suite") == "load" and "front_end" not in row:
        out["readers"], out["workers"] = row.get("workers"), None
        out["front_end"] = "numpy" if out["backend"] == "jax" else "tf.data"
        if out.get("mechanism") == "numpy":  # what batch_stream's "auto" reads the row's codec with
            out["mechanism"] = "isal" if out.get("codec") in ISAL_CODECS else "process"
    if out.get("suite") == "load" and out.get("consumer") is None:  # rows that name none were pulled from a Python loop
        out["consumer"] = "python"
    out["machine"] = machine_of(out)
    return out


def machine_of(row: dict) -> str:
    """What a row was measured on, as tables and plots name it: its device, then the device count and
    the host CPU where it is an accelerator (one GPU's figures differ on a node of eight, and the
    input pipeline runs on the host's CPU)."""
    name = row["device"]
    if (row.get("device_count") or 1) > 1:
        name += f" x{row['device_count']}"
    if row.get("host_cpu") and not name.startswith("CPU"):
        name += f", host {row['host_cpu']}"
    return name


def value_of(rows, **match):
    """The value of the one error-free row matching all of `match`, else None."""
    for row in rows:
        if row["error"] is None and all(row.get(k) == v for k, v in match.items()):
            return row["value"]
    return None


class Recorder:
    """Collects result rows, each stamped with the device and the backend, and `devices` and `processes`
    1 unless the row names others; `cell()` turns a failing measurement into error rows and goes on."""

    def __init__(self, device: str, backend: str = DEFAULT_BACKEND, backend_version: str | None = None, *,
                 device_count: int = 1, host_cpu: str | None = None):
        self.device = device
        self.backend = backend
        self.backend_version = backend_version
        self.machine = {"device_count": device_count, "host_cpu": host_cpu}
        self.rows: list[dict] = []

    def add(self, suite, impl, metric, value, *, size, batch_size=None, workers=None, feed=None, error=None, **extra):
        row = {"suite": suite, "impl": impl, "feed": feed, "size": size, "batch_size": batch_size,
               "workers": workers, "metric": metric, "value": None if value is None else float(value),
               "unit": UNITS.get(metric, ""), "error": error, "device": self.device, "backend": self.backend,
               "backend_version": self.backend_version, **self.machine, "devices": 1, "processes": 1, **extra}
        self.rows.append(row)
        return row

    @contextlib.contextmanager
    def cell(self, suite, impl, metrics, **key):
        """Run the body; on an exception record one error row per expected metric."""
        try:
            yield
        except (KeyboardInterrupt, UsageError):
            raise
        except Exception as e:  # a failed cell is a result: recorded with its error, never dropped
            self.fail(suite, impl, metrics, e, **key)

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


def collect_environment(datasets: dict[str, Path], device: dict, backend: str) -> dict:
    """The result file's `environment`: where it was measured, with which code and data.

    datasets: name -> dataset directory, each recorded with its manifest's SHA-256.
    device: `pipeline.runtime.devices.describe()`; backend: the Keras backend measured on.
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
        "platform": platform.platform(),
        "host": environment.host(),
        "versions": lib,
        "git": environment.git_info(),
        "argv": sys.argv,
        "datasets": {name: {"path": str(path), "manifest_sha256": manifest_sha256(path)}
                     for name, path in datasets.items()},
    }


def write_csv(path: Path, rows: list[dict]) -> None:
    """Rows as CSV: the common keys first, any extra keys after, in first-seen order."""
    keys = list(ROW_KEYS)
    for row in rows:
        keys += [k for k in row if k not in keys]
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=keys, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def write_result(doc: dict, out: Path, summary: str) -> Path:
    """DIR/<timestamp>-<host>[-<backend>].json (atomically), with .csv and `summary` as .md beside it."""
    out.mkdir(parents=True, exist_ok=True)
    stamp = doc["created"].replace(":", "").replace("-", "")
    host = "".join(c if c.isalnum() or c in "-_." else "_" for c in doc["environment"]["host"])
    backend = doc.get("config", {}).get("backend", DEFAULT_BACKEND)
    path = out / f"{stamp}-{host}{'' if backend == DEFAULT_BACKEND else '-' + backend}.json"
    tmp = path.with_name(path.name + f".tmp-{os.getpid()}")
    tmp.write_text(json.dumps(doc, indent=1) + "\n")
    os.replace(tmp, path)
    write_csv(path.with_suffix(".csv"), doc["rows"])
    path.with_suffix(".md").write_text(summary + "\n")
    return path
