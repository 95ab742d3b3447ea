"""The bench result file's schema: what a document and its rows hold, and how older versions read.

A result is one JSON document: `format`, `format_version`, `created`, `environment` (where and with
what it ran, `state` included: the device's and host's static facts), `config` and `rows`, one row
per measurement with at least `ROW_KEYS`.

Version 3 rows add their evidence: `direction` ("higher" or "lower" is better, None where neither),
`repeat_values` (the raw values the row's `value` summarises, in its unit: windows, steps, runs or
seeds), `config_hash` (`config_hash`: the cell's settings, so that cells measured under other
settings are never set side by side unremarked) and `state` (the host's and GPUs' state during the
cell's window: `pipeline.bench.monitor`). Version 2 rows carry `backend`, `backend_version` and for
train rows `precision`; version 1 rows (written before backends) read as TensorFlow, float32. Rows
naming the book's workflow by its former names (`seed`, `seed-workflow`) read as `book`,
`book-workflow` (`current_name`, which also renames the former `seed-budget` preset). Load rows name
their reader count `readers` and their front end `front_end`; older files, which put the readers
under `workers` and wrote mechanism "numpy" for the NumPy front end, read under these keys. Rows of
files that name no `devices` or `processes` ran on one device, in one process.
"""
from __future__ import annotations

import hashlib
import json

from pipeline.input.reader import ISAL_CODECS

FORMAT = "moving-square-bench"
FORMAT_VERSION = 3
READABLE_VERSIONS = (1, 2, 3)
SUITES = ("generate", "load", "au", "train", "accuracy")
ROW_KEYS = ("suite", "impl", "feed", "size", "batch_size", "workers", "metric", "value", "unit", "error", "device",
            "backend", "backend_version", "devices", "processes")
DEFAULT_BACKEND = "tensorflow"  # what every version-1 row ran on
# the book's workflow, its rows and its preset, as older result files name them
FORMER_NAMES = {"seed": "book", "seed-workflow": "book-workflow", "seed-budget": "book-budget"}
FORMER_PRECISIONS = {"bfloat16": "mixed_bfloat16"}  # precisions are named by their Keras dtype policy

# the consumer that pulls tf.data K batches per `tf.function` call, as `fit` with `steps_per_execution` does
STEPS_PER_CALL_CONSUMER = "tf.function-K"

HIGHER, LOWER = "higher", "lower"
# metric -> (unit, which direction is better); None: a fact, neither better nor worse
METRICS = {
    "samples_per_s": ("samples/s", HIGHER), "samples_per_s_p10": ("samples/s", HIGHER),
    "samples_per_s_p90": ("samples/s", HIGHER), "mb_per_s": ("MB/s", HIGHER), "stored_mb_per_s": ("MB/s", HIGHER),
    "per_worker_samples_per_s": ("samples/s", HIGHER), "cluster_startup_s": ("s", LOWER),
    "run_overhead_s": ("s", LOWER), "ms_per_step_median": ("ms", LOWER), "ms_per_step_p10": ("ms", LOWER),
    "ms_per_step_p90": ("ms", LOWER), "first_step_ms": ("ms", LOWER), "first_batch_ms": ("ms", LOWER),
    "peak_rss_mb": ("MB", LOWER), "rss_growth_mb": ("MB", LOWER), "fit_s_per_epoch": ("s", LOWER),
    "fit_ms_per_step": ("ms", LOWER), "input_bound_fraction": ("fraction", LOWER), "accuracy": ("fraction", HIGHER),
    "accuracy_min": ("fraction", HIGHER), "accuracy_max": ("fraction", HIGHER), "loss": ("", LOWER),
    "scaling_samples_per_s": ("samples/s", HIGHER), "scaling_samples_per_s_p10": ("samples/s", HIGHER),
    "scaling_samples_per_s_p90": ("samples/s", HIGHER), "scaling_efficiency": ("fraction", HIGHER),
    "alone_samples_per_s": ("samples/s", HIGHER), "au": ("fraction", HIGHER), "au95_step_ms": ("ms", LOWER),
    "au95_samples_per_s": ("samples/s", HIGHER), "call_ms": ("ms", LOWER), "compiled_step_ms": ("ms", LOWER),
    "fit_input_bound_fraction": ("fraction", LOWER),
}
# What identifies a cell's settings, beside the grid's budget of its suite (`SUITE_BUDGET`): two rows whose
# keys agree measured the same thing the same way.
CONFIG_KEYS = ("suite", "impl", "feed", "size", "batch_size", "workers", "readers", "front_end", "consumer",
               "mechanism", "codec", "packed", "shuffle", "demand", "variant", "precision", "devices", "processes",
               "train_samples", "test_samples", "backend", "execution", "emulation")
SUITE_BUDGET = {
    "generate": ("gen_raw_mb", "gen_max_samples", "gen_shard_size", "book_raw_mb"),
    "load": ("dataset_samples", "dataset_shard_size", "load_min_epochs", "load_min_windows", "variant"),
    "au": ("dataset_samples", "dataset_shard_size", "au_buffer_multiple", "variant"),
    "train": ("dataset_samples", "dataset_shard_size", "train_steps", "train_warmup", "fit_epochs", "scaling_epochs",
              "variant"),
    "accuracy": ("accuracy_train_samples", "accuracy_batch", "dataset_test_samples", "accuracy_seeds", "variant"),
}


def unit_of(metric: str) -> str:
    return METRICS.get(metric, ("", None))[0]


def direction_of(metric: str) -> str | None:
    """"higher" or "lower" (is better), or None for a metric that is neither."""
    return METRICS.get(metric, ("", None))[1]


def config_hash(row: dict, grid: dict | None) -> str:
    """12 hex digits over the row's `CONFIG_KEYS` and its suite's budget in `grid` (a `Grid` as a dict)."""
    grid = grid or {}
    settings = {"row": {k: row.get(k) for k in CONFIG_KEYS if row.get(k) is not None},
                "budget": {k: grid.get(k) for k in SUITE_BUDGET.get(row.get("suite"), ()) if k in grid}}
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:12]


def current_name(name):
    """An impl or preset name as this version calls it (`FORMER_NAMES`); other values unchanged."""
    return FORMER_NAMES.get(name, name)


def normalize_row(row: dict, grid: dict | None = None) -> dict:
    """A row of any readable version as version 3 reads: every ROW_KEY, current impl names, a unit and
    direction, `repeat_values` ([] where the file kept none) and `config_hash` (computed from `grid`, the
    file's `config.grid`, where the file did not store it); rows from version-1 files gain backend
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
    if not out.get("unit"):
        out["unit"] = unit_of(out["metric"])
    if "direction" not in row:
        out["direction"] = direction_of(out["metric"])
    if not isinstance(out.get("repeat_values"), list):
        out["repeat_values"] = []
    if not out.get("config_hash"):
        out["config_hash"] = config_hash(out, grid)
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
