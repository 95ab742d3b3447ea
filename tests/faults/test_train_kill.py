"""SIGKILL `train --checkpoint-every 2` at random moments (up to three times a run, resuming after
each), and compare the finished run with an uninterrupted one, under both backends: the same
weights and optimizer state bit for bit, the same history.

A kill lands anywhere: in a train step, between steps, inside a checkpoint's write or rename,
in validation, or after the last checkpoint and before model.keras. After each kill every
complete checkpoint must load (its state.json parses and its variables.npz opens), and `--resume`
must go on from the newest.
"""
from __future__ import annotations

import json
import os
import random
import subprocess
import time

import numpy as np
import pytest

from helpers import PY, kill_group, run_arrays, run_history, spawn, wait_for
from pipeline.training import checkpoints

pytestmark = pytest.mark.faults

pytest.importorskip("keras")

SEED = int(os.environ.get("FAULTS_SEED", "20261203"))
TRIALS = 4  # per backend
MAX_KILLS = 3
# 96 samples / 16 = 6 steps an epoch; 18 steps, a checkpoint every 2 and at each epoch's end
RUN_ARGS = ["--epochs", "3", "--batch-size", "16", "--checkpoint-every", "2", "--seed", "2", "--validation",
            "--verbose", "0"]


def start(backend, data, out):
    return spawn([PY, "-m", "pipeline", "train", "--backend", backend, "--data", data, "--out", out, *RUN_ARGS],
                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def resume(out):
    return spawn([PY, "-m", "pipeline", "train", "--resume", out, "--verbose", "0"],
                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


@pytest.fixture(scope="module", params=["tensorflow", "jax"])
def reference(request, tiny_dataset, tmp_path_factory):
    """An uninterrupted run, how long it took to write config.json (start-up, seconds) and how long
    after that it finished (seconds)."""
    if request.param == "jax":
        pytest.importorskip("jax")
    out = tmp_path_factory.mktemp("train-kill") / request.param
    spawned = time.monotonic()
    proc = start(request.param, tiny_dataset, out)
    wait_for(lambda: (out / "config.json").exists(), 300, "config.json")
    began = time.monotonic()
    assert proc.wait(timeout=300) == 0, proc.stderr.read().decode()[-2000:]
    return request.param, out, began - spawned, time.monotonic() - began


def every_checkpoint_loads(out) -> bool:
    for c in checkpoints.complete(out):
        json.loads((c / "state.json").read_text())
        with np.load(c / "variables.npz") as f:
            f["weights/0"]
    return True


@pytest.mark.parametrize("trial", range(TRIALS))
def test_sigkill_then_resume_ends_bit_identical(reference, trial, tiny_dataset, tmp_path, tally):
    backend, want, startup, span = reference
    rng = random.Random(f"{SEED}-{backend}-{trial}")
    out = tmp_path / "run"
    proc, kills, at_steps = start(backend, tiny_dataset, out), 0, []
    wait_for(lambda: (out / "config.json").exists(), 300, "config.json")
    while kills < MAX_KILLS:
        time.sleep(rng.uniform(0, span))
        if proc.poll() is not None:
            break
        kill_group(proc)
        kills += 1
        assert every_checkpoint_loads(out)
        last = checkpoints.latest(out)
        at_steps.append(json.loads((last / "state.json").read_text())["step"] if last else 0)
        proc = resume(out)
        time.sleep(startup)  # a resumed run's start-up (config.json is there already)
    assert proc.wait(timeout=300) == 0, proc.stderr.read().decode()[-2000:]
    got, expected = run_arrays(out), run_arrays(want)
    same = sorted(got) == sorted(expected) and all(np.array_equal(got[k], expected[k]) for k in expected)
    same = same and run_history(out) == run_history(want)
    tally(f"train-kill-{backend}", same, kills=kills, resumed_at=",".join(map(str, at_steps)) or "none")
    assert same, f"killed {kills} times, resumed at steps {at_steps}"
