"""Result files on disk: read one (`load_result`), check one (`problems`, `report --check`), merge many
(`merge`), write one (`write_result`, with its CSV)."""
from __future__ import annotations

import csv
import json
import math
import os
import re
from pathlib import Path

from pipeline.errors import UsageError
from pipeline.results.format import (
    CONFIG_KEYS,
    FORMAT,
    METRICS,
    READABLE_VERSIONS,
    ROW_KEYS,
    SUITES,
    normalize_row,
)

REQUIRED = ("suite", "impl", "size", "batch_size", "workers", "metric", "value", "error", "device")
# each row of a version-3 file also holds these (its evidence)
REQUIRED_V3 = ("unit", "direction", "repeat_values", "config_hash", "backend", "devices", "processes")


def read_json(path: Path) -> object:
    """A file's JSON; UsageError (one line) where it is unreadable or not JSON."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"{path}: unreadable ({getattr(e, 'strerror', None) or e})") from None
    except json.JSONDecodeError as e:
        raise UsageError(f"{path}: not JSON ({e.msg} at line {e.lineno})") from None


def load_result(path: Path, doc: object = None) -> dict:
    """A bench result document whose structure can be read (`doc`: the file's JSON, already read);
    UsageError (one line) otherwise."""
    doc = read_json(path) if doc is None else doc
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise UsageError(f"{path}: not a bench result (format is not {FORMAT!r})")
    if doc.get("format_version") not in READABLE_VERSIONS:
        raise UsageError(f"{path}: bench result format version {doc.get('format_version')!r}, "
                         f"this version reads {', '.join(map(str, READABLE_VERSIONS))}")
    rows = doc.get("rows")
    if not isinstance(rows, list):
        raise UsageError(f"{path}: bench result without a 'rows' list")
    for i, row in enumerate(rows):
        if not isinstance(row, dict) or any(k not in row for k in REQUIRED):
            missing = [k for k in REQUIRED if not isinstance(row, dict) or k not in row]
            raise UsageError(f"{path}: row {i} lacks {', '.join(missing)}")
        if row["suite"] not in SUITES:
            raise UsageError(f"{path}: row {i} has unknown suite {row['suite']!r}")
    return doc


def _number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _row_problem(row: dict, env: dict, version: int) -> str | None:
    metric = row["metric"]
    if metric not in METRICS:
        return f"unknown metric {metric!r}"
    unit, direction = METRICS[metric]
    if row["error"] is not None:
        if not isinstance(row["error"], str) or row["value"] is not None:
            return "a failed row must have a text error and value null"
    elif row["value"] is not None and not _number(row["value"]):
        return f"value {row['value']!r} is not a finite number"
    if row.get("unit") not in (None, "", unit) and not (unit == "fraction" and row.get("unit") == ""):
        return f"{metric} in {row.get('unit')!r}, expected {unit!r}"
    device = (env.get("device") or {})
    if device.get("name") and row["device"] != device["name"]:
        return f"device {row['device']!r} differs from the environment's {device['name']!r}"
    count = device.get("gpu_count") or 1
    if (row.get("device_count") or 1) != count:
        return f"device_count {row.get('device_count')} differs from the environment's {count}"
    if row.get("devices") is not None and _number(row["devices"]) and \
            row["devices"] > count * (row.get("processes") or 1) and device.get("kind") == "gpu":
        return f"{row['devices']} devices on {count} GPU(s) in {row.get('processes') or 1} process(es)"
    if version < 3:
        return None
    missing = [k for k in REQUIRED_V3 if k not in row]
    if missing:
        return f"lacks {', '.join(missing)}"
    if row["direction"] != direction:
        return f"direction {row['direction']!r} for {metric}, expected {direction!r}"
    if not isinstance(row["repeat_values"], list) or not all(_number(v) for v in row["repeat_values"]):
        return "repeat_values must be a list of finite numbers"
    if not isinstance(row["config_hash"], str) or not re.fullmatch(r"[0-9a-f]{12}", row["config_hash"]):
        return f"config_hash {row['config_hash']!r} is not 12 hex digits"
    return None


def problems(path: Path) -> list[str]:
    """What is wrong with a result file, one line each naming the file (and the row): its schema, its
    units and directions, a fingerprint its devices contradict. [] for a sound file."""
    try:
        doc = load_result(path)
    except UsageError as e:
        return [str(e)]
    out = []
    env = doc.get("environment")
    if not isinstance(env, dict) or not isinstance(env.get("device"), dict) or "name" not in env["device"]:
        return [f"{path}: environment lacks the device's name"]
    gpus = ((env.get("state") or {}).get("gpus"))
    count = env["device"].get("gpu_count") or 0
    if env["device"].get("kind") == "gpu" and isinstance(gpus, list) and gpus and len(gpus) < count:
        out.append(f"{path}: environment names {count} GPUs, its state {len(gpus)}")
    for i, row in enumerate(doc["rows"]):
        problem = _row_problem(row, env, doc["format_version"])
        if problem:
            out.append(f"{path}: row {i} ({row['suite']}/{row['impl']} {row['metric']}): {problem}")
    return out


def merge(docs: list[tuple[Path, dict]]) -> list[dict]:
    """All rows, normalized (`normalize_row`), each tagged with `source`, `host` and `created`; a newer
    file replaces an older one's same cell on the same machine."""
    cells: dict[tuple, dict] = {}
    for path, doc in sorted(docs, key=lambda pd: pd[1].get("created", "")):
        env = doc.get("environment", {})
        cpu = env.get("cpu") or {}
        host_cpu = f"{cpu['model']} ({cpu.get('usable') or cpu['cores']} cores)" if "model" in cpu else None
        machine = {"device_count": (env.get("device") or {}).get("gpu_count") or 1, "host_cpu": host_cpu}
        grid = (doc.get("config") or {}).get("grid")
        for row in doc["rows"]:
            row = {**normalize_row({**machine, **row}, grid), "source": str(path), "host": env.get("host"),
                   "created": doc.get("created")}
            key = (*map(row.get, CONFIG_KEYS), row["metric"], row["machine"])
            cells[key] = row
    return list(cells.values())


def write_csv(path: Path, rows: list[dict]) -> None:
    """Rows as CSV: the common keys first, any extra keys after, in first-seen order; lists and dicts as JSON."""
    keys = list(ROW_KEYS)
    for row in rows:
        keys += [k for k in row if k not in keys]
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=keys, extrasaction="ignore")
        writer.writeheader()
        writer.writerows({k: json.dumps(v) if isinstance(v, list | dict) else v for k, v in row.items()}
                         for row in rows)


def write_result(doc: dict, out: Path, summary: str) -> Path:
    """DIR/<timestamp>-<host>[-<backend>].json (atomically), with .csv and `summary` as .md beside it."""
    out.mkdir(parents=True, exist_ok=True)
    stamp = doc["created"].replace(":", "").replace("-", "")
    host = "".join(c if c.isalnum() or c in "-_." else "_" for c in doc["environment"]["host"])
    backend = doc.get("config", {}).get("backend", "tensorflow")
    path = out / f"{stamp}-{host}{'' if backend == 'tensorflow' else '-' + backend}.json"
    tmp = path.with_name(path.name + f".tmp-{os.getpid()}")
    tmp.write_text(json.dumps(doc, indent=1) + "\n")
    os.replace(tmp, path)
    write_csv(path.with_suffix(".csv"), doc["rows"])
    path.with_suffix(".md").write_text(summary + "\n")
    return path

