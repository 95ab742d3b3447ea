"""Helpers shared by the tests: the command line as a user runs it, processes, waiting, hashes.

Importable as `helpers` from every test (tests/ is on sys.path through tests/conftest.py).
"""
from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
# `python tests/faults/held_generate.py generate ...`: the real command, paused inside chosen manifest updates
HELD_GENERATE = ROOT / "tests" / "faults" / "held_generate.py"


def cli(*args, timeout: float = 300, cwd: Path = ROOT, env: dict | None = None) -> subprocess.CompletedProcess:
    """`python -m pipeline ARGS...` in a fresh process; stdout and stderr captured as text."""
    return subprocess.run([PY, "-m", "pipeline", *map(str, args)], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=env)


def spawn(argv, **kw) -> subprocess.Popen:
    """A process in its own session, so that its whole group (Dask workers included) can be killed at once."""
    return subprocess.Popen([str(a) for a in argv], cwd=ROOT, start_new_session=True, **kw)


def kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL `proc`'s process group (see `spawn`) and reap it; nothing if it is gone already."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=30)


def wait_for(predicate, timeout: float, what: str, interval: float = 0.02):
    """Poll `predicate` until it returns something true, and return that; TimeoutError naming `what` after
    `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout} s waiting for {what}")


def held_generator(out: Path, args, hold_at: int, work: Path, **kw) -> tuple[subprocess.Popen, Path, Path]:
    """Start `generate --out OUT ARGS` that stops inside manifest update `hold_at` until released.

    Returns (process, sentinel, release): `sentinel` appears once the generator is held there (it holds
    DIR/.lock and has not marked the dataset complete); creating `release` lets it go on. Its stdout and
    stderr go to WORK/held.log and WORK/held.err unless given in `kw`.
    """
    sentinels = work / "held-sentinels"
    sentinels.mkdir(parents=True, exist_ok=True)
    release = work / "held-release"
    env = {**os.environ, "FAULTS_SENTINEL_DIR": str(sentinels), "FAULTS_MANIFEST_PAUSE": "0",
           "FAULTS_HOLD_AT": str(hold_at), "FAULTS_RELEASE": str(release)}
    kw.setdefault("stdout", open(work / "held.log", "w"))
    kw.setdefault("stderr", open(work / "held.err", "w"))
    proc = spawn([PY, HELD_GENERATE, "generate", "--out", out, *args], env=env, **kw)
    return proc, sentinels / f"manifest-{hold_at}", release


def sha256_file(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def file_hashes(directory: Path, pattern: str = "*.h5") -> dict[str, str]:
    """{file name: SHA-256 of its bytes} of the files in `directory` matching `pattern`."""
    return {p.name: sha256_file(p) for p in sorted(Path(directory).glob(pattern))}


def manifest_hashes(directory: Path) -> dict[str, str | None]:
    """{shard path: SHA-256 the manifest records for it (None: not yet written)}."""
    doc = json.loads((Path(directory) / "manifest.json").read_text())
    return {e["path"]: e["sha256"] for s in doc["splits"].values() for e in s["shards"]}


def run_arrays(run: Path) -> dict:
    """Every array a `train` run's model.keras stores (the model's weights and the optimizer's
    variables), by name, as NumPy arrays."""
    import io
    import zipfile

    import h5py

    arrays = {}
    with zipfile.ZipFile(run / "model.keras") as z, h5py.File(io.BytesIO(z.read("model.weights.h5"))) as f:
        f.visititems(lambda name, obj: arrays.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None)
    return arrays


def run_history(run: Path) -> dict:
    """A `train` run's history.json less its wall time."""
    record = json.loads((run / "history.json").read_text())
    record.pop("fit_seconds")
    return record


# Bench result documents made through the real Recorder, for the results stage's tests
BENCH_GRID = {"dataset_samples": 4096, "train_steps": None}
CPU = {"kind": "cpu", "name": "CPU: Test CPU (2 cores)", "cpu_model": "Test CPU", "cpu_cores": 2}
GPU = {"kind": "gpu", "name": "NVIDIA H100", "gpu_count": 1, "compute_capability": "9.0", "driver": "570.1",
       "cpu_model": "Xeon", "cpu_cores": 16}


def bench_result(device: dict, *, train=(), load=(), steal=0.0, gpu_state=None, version="2.21.0",
                 created="2026-12-01T00:00:00Z", grid=BENCH_GRID, static_gpus=()) -> dict:
    """A bench result document made by the real Recorder: train rows (size, batch, ms per step repeats) on the feed
    and precision `train` would use, load rows (size, batch, samples/s repeats) as training consumes them."""
    from pipeline.bench.recorder import Recorder
    from pipeline.results.format import FORMAT, FORMAT_VERSION

    rec = Recorder(device["name"], "tensorflow", version, device_count=device.get("gpu_count") or 1,
                   host_cpu=f"{device['cpu_model']} ({device['cpu_cores']} cores)", grid=grid)
    gpu = device["kind"] == "gpu"
    state = {"cpu": {"steal_pct": steal, "other_load_cores": 0.0, "samples": 4}, "gpus": gpu_state or []}
    for size, batch, steps in train:
        key = dict(size=size, batch_size=batch, feed="ours-packed" if gpu else "ours",
                   precision="mixed_bfloat16" if gpu else "float32", state=state)
        median = sorted(steps)[len(steps) // 2]
        rec.add("train", "fast", "ms_per_step_median", median, **key, repeat_values=steps)
        rec.add("train", "fast", "samples_per_s", batch * 1e3 / median, **key,
                repeat_values=[batch * 1e3 / s for s in steps])
        rec.add("train", "fast", "input_bound_fraction", 0.01, size=size, batch_size=batch, feed=key["feed"],
                precision=key["precision"])
    for size, batch, rates in load:
        rec.add("load", "ours-packed" if gpu else "ours", "samples_per_s", sorted(rates)[len(rates) // 2], size=size,
                batch_size=batch, readers=2, front_end="tf.data", consumer="tf.function", shuffle=True,
                repeat_values=rates, state=state)
    return {"format": FORMAT, "format_version": FORMAT_VERSION, "created": created,
            "config": {"preset": "default", "backend": "tensorflow", "grid": grid},
            "environment": {"device": device, "cpu": {"model": device["cpu_model"], "cores": device["cpu_cores"],
                                                      "usable": device["cpu_cores"]},
                            "versions": {"tensorflow": version, "keras": "3.12"}, "host": "h",
                            "git": {"commit": "abc", "dirty": False},
                            "state": {"host": {}, "gpus": list(static_gpus)}},
            "rows": rec.rows}


def write_json(folder: Path, name: str, document: dict) -> Path:
    """`document` as JSON in folder/name; the path."""
    path = folder / name
    path.write_text(json.dumps(document))
    return path
