"""train --devices N: one replica per device, the global batch split evenly; the same global
batches give the same loss on 1 and on N devices (virtual CPU devices: logical CPU devices under
TensorFlow, XLA's host platform device count under JAX), each in a fresh process."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.errors import UsageError
from pipeline.training import replicas

REPO = Path(__file__).resolve().parents[2]
# Several devices' sums of the same gradients differ only in rounding order.
LOSS_TOLERANCE = 1e-5


def train(tiny_dataset, out: Path, backend: str, devices: int, extra_env=None) -> dict:
    argv = [sys.executable, "-m", "pipeline", "train", "--backend", backend, "--data", str(tiny_dataset),
            "--steps", "3", "--epochs", "1", "--batch-size", "16", "--devices", str(devices), "--out", str(out),
            "--verbose", "0"] + (["--no-jit"] if backend == "tensorflow" else [])
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300, cwd=REPO,
                          env={**os.environ, **(extra_env or {})})
    assert done.returncode == 0, done.stderr[-2000:]
    return {"history": json.loads((out / "history.json").read_text()),
            "config": json.loads((out / "config.json").read_text())}


@pytest.mark.parametrize("backend", ["tensorflow", "jax"])
def test_the_same_global_batches_give_the_same_loss_on_one_and_two_devices(backend, tiny_dataset, tmp_path):
    if backend == "jax":
        pytest.importorskip("jax")
    env = {"XLA_FLAGS": "--xla_force_host_platform_device_count=2"} if backend == "jax" else {}
    one = train(tiny_dataset, tmp_path / "one", backend, 1, env)
    two = train(tiny_dataset, tmp_path / "two", backend, 2, env)
    assert (two["config"]["devices"], two["config"]["batch_size"], two["config"]["batch_size_per_device"]) == \
        (2, 16, 8)
    assert one["config"]["devices"] == 1
    assert two["history"]["loss"] == pytest.approx(one["history"]["loss"], rel=LOSS_TOLERANCE)


def test_the_global_batch_must_split_evenly():
    replicas.check(4, 32)
    with pytest.raises(UsageError, match="--batch-size 30 is the global batch: it must split evenly over --devices 4"):
        replicas.check(4, 30)


def test_every_visible_gpu_by_default_and_one_on_a_cpu(monkeypatch):
    from pipeline.runtime import devices

    monkeypatch.setattr(devices, "gpus", lambda: ["gpu0", "gpu1", "gpu2"])
    assert replicas.default_devices() == 3
    monkeypatch.setattr(devices, "gpus", lambda: [])
    assert replicas.default_devices() == 1


def test_bad_device_counts_exit_2_with_nothing_written(tiny_dataset, tmp_path):
    base = [sys.executable, "-m", "pipeline", "train", "--data", str(tiny_dataset), "--out", str(tmp_path / "r")]
    for extra, message in ((["--devices", "3", "--batch-size", "16"], "must split evenly over --devices 3"),
                           (["--devices", "2", "--jit"], "XLA cannot compile a step mirrored"),
                           (["--devices", "0"], "argument --devices: must be a positive integer")):
        done = subprocess.run(base + extra, capture_output=True, text=True, timeout=300, cwd=REPO)
        assert done.returncode == 2 and message in done.stderr, done.stderr[-1000:]
    assert not (tmp_path / "r").exists()


@pytest.mark.slow
def test_four_devices_match_one_on_both_backends(tiny_dataset, tmp_path):
    pytest.importorskip("jax")
    env = {"XLA_FLAGS": "--xla_force_host_platform_device_count=4"}
    for backend in ("tensorflow", "jax"):
        one = train(tiny_dataset, tmp_path / f"{backend}-1", backend, 1, env)
        four = train(tiny_dataset, tmp_path / f"{backend}-4", backend, 4, env)
        assert four["history"]["loss"] == pytest.approx(one["history"]["loss"], rel=LOSS_TOLERANCE)
