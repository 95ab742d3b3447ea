"""train --checkpoint-every K / --resume RUN: a run stopped after any checkpoint and resumed ends with
the very weights, optimizer state and history of an uninterrupted one (bit for bit, on this CPU,
under both backends); checkpoints are complete or ignored; usage errors exit 2, and resuming a complete run exits 0."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from helpers import PY, ROOT, run_arrays, run_history
from pipeline.training import checkpoints

pytest.importorskip("keras")

INTERRUPTED = ROOT / "tests" / "training" / "interrupted_train.py"
# 96 samples / 16 = 6 steps an epoch, 12 in all; a checkpoint at steps 4, 6, 8, 12 (the last: a run stopped
# there has fitted every step, and its resume writes history.json and model.keras)
# The resumed epoch's running metric means under MirroredStrategy: float32 rounding of re-split sums
METRIC_TOLERANCE = 1e-6
RUN_ARGS = ["--epochs", "2", "--batch-size", "16", "--checkpoint-every", "4", "--seed", "5", "--verbose", "0"]


def train(backend: str, data: Path, out: Path, *, stop_after: int | None = None, resume: bool = False):
    import subprocess

    argv = ["train", "--resume", str(out), "--verbose", "0"] if resume else \
        ["train", "--backend", backend, "--data", str(data), "--out", str(out), *RUN_ARGS]
    prefix = [PY, str(INTERRUPTED), str(stop_after)] if stop_after else [PY, "-m", "pipeline"]
    return subprocess.run(prefix + argv, capture_output=True, text=True, timeout=300, cwd=ROOT)


@pytest.fixture(scope="module", params=["tensorflow", "jax"])
def uninterrupted(request, tiny_dataset, tmp_path_factory):
    if request.param == "jax":
        pytest.importorskip("jax")
    out = tmp_path_factory.mktemp("resume") / request.param
    done = train(request.param, tiny_dataset, out)
    assert done.returncode == 0, done.stderr[-2000:]
    return request.param, out


@pytest.mark.parametrize("stop", [4, 6, 12], ids=["mid-epoch", "epoch-end", "run-end"])
def test_a_resumed_run_ends_bit_identical_to_an_uninterrupted_one(uninterrupted, stop, tiny_dataset, tmp_path):
    backend, reference = uninterrupted
    out = tmp_path / "run"
    stopped = train(backend, tiny_dataset, out, stop_after=stop)
    assert stopped.returncode == 130, stopped.stderr[-2000:]
    assert not (out / "model.keras").exists() and not (out / "history.json").exists()
    assert [p.name for p in checkpoints.complete(out)] == [f"step-{stop:09d}"]
    resumed = train(backend, tiny_dataset, out, resume=True)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"resuming {out} at step {stop} of 12" in resumed.stdout
    want, got = run_arrays(reference), run_arrays(out)
    assert sorted(got) == sorted(want) and any("optimizer" in k for k in want)
    assert all(np.array_equal(got[k], want[k]) for k in want)
    assert run_history(out) == run_history(reference)  # the resumed epoch's running means went on


def test_a_run_killed_before_its_first_checkpoint_resumes_from_the_start(uninterrupted, tiny_dataset, tmp_path):
    backend, reference = uninterrupted
    out = tmp_path / "run"
    out.mkdir()
    (out / "config.json").write_text((reference / "config.json").read_text().replace(str(reference), str(out)))
    resumed = train(backend, tiny_dataset, out, resume=True)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "at step 0 of 12" in resumed.stdout
    assert all(np.array_equal(a, b) for a, b in zip(run_arrays(out).values(), run_arrays(reference).values(),
                                                    strict=True))


class Weights:
    """Just enough of a compiled Keras model for `checkpoints.save`."""

    def __init__(self, value: float):
        self.weights = [np.full(3, value, np.float32)]
        self.optimizer = type("Optimizer", (), {"variables": [np.int64(7)]})()
        self.metrics_variables = [np.float32(value)]


def test_a_checkpoint_is_complete_before_the_older_one_goes(tmp_path, monkeypatch):
    checkpoints.save(tmp_path, Weights(1.0), {"step": 4, "history": [], "fit_seconds": 1.0})

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "savez", full_disk)
    with pytest.raises(OSError, match="No space left"):
        checkpoints.save(tmp_path, Weights(2.0), {"step": 8, "history": [], "fit_seconds": 2.0})
    monkeypatch.undo()
    assert checkpoints.latest(tmp_path).name == "step-000000004"  # the half-written one is not taken
    assert any(p.name.startswith(".partial-000000008-") for p in (tmp_path / "checkpoints").iterdir())
    checkpoints.discard_partial(tmp_path)
    assert [p.name for p in (tmp_path / "checkpoints").iterdir()] == ["step-000000004"]
    checkpoints.save(tmp_path, Weights(3.0), {"step": 8, "history": [], "fit_seconds": 2.0})
    assert [p.name for p in (tmp_path / "checkpoints").iterdir()] == ["step-000000008"]
    with np.load(tmp_path / "checkpoints" / "step-000000008" / "variables.npz") as f:
        assert f["weights/0"].tolist() == [3.0] * 3 and int(f["optimizer/0"]) == 7


def test_the_random_state_goes_back_where_it_was():
    import random

    np.random.seed(3)
    random.seed(4)
    state = json.loads(json.dumps(checkpoints.random_state()))
    want = (np.random.rand(4).tolist(), random.random())
    np.random.rand(10)
    random.random()
    checkpoints.set_random_state(state)
    assert (np.random.rand(4).tolist(), random.random()) == want


def test_a_resume_removes_only_the_run_files_a_kill_left_half_written(tmp_path):
    from pipeline.training.train import discard_partial_files, partial_path

    left = [partial_path(tmp_path / name) for name in ("model.keras", "history.json", "config.json")]
    assert left[0].name == f".model.keras.partial-{os.getpid()}.keras"  # Keras saves only to .keras names
    theirs = [tmp_path / name for name in (".model.keras.partial-x.keras", ".notes.partial-1.txt", "model.keras")]
    for path in left + theirs:
        path.write_bytes(b"")
    discard_partial_files(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in theirs)


def test_resume_usage_errors_exit_2_and_a_complete_run_exits_0(tiny_dataset, tmp_path, capsys):
    from pipeline.cli import main

    assert main(["train", "--resume", str(tmp_path / "nothing")]) == 2
    assert f"--resume {tmp_path / 'nothing'}: no such run (no config.json)" in capsys.readouterr().err
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    (unfinished / "config.json").write_text(json.dumps({"args": {}}))
    assert main(["train", "--resume", str(unfinished), "--epochs", "3"]) == 2
    assert "--resume takes the run's own options; drop --epochs" in capsys.readouterr().err
    assert main(["train", "--data", str(tiny_dataset), "--out", str(unfinished)]) == 2
    assert f"{unfinished} holds an unfinished run: --resume {unfinished}" in capsys.readouterr().err
    (unfinished / "config.json").write_text(json.dumps({"args": {"data": str(tiny_dataset), "out": str(unfinished)}}))
    (unfinished / "model.keras").write_bytes(b"")
    assert main(["train", "--resume", str(unfinished), "--epochs", "3"]) == 2  # still checked first
    capsys.readouterr()
    # a kill after a run's last write leaves it complete: resuming it has nothing to do, and is no error
    assert main(["train", "--resume", str(unfinished)]) == 0
    assert capsys.readouterr().out == f"{unfinished}: complete (it holds model.keras), nothing to resume\n"
    assert (unfinished / "model.keras").read_bytes() == b""
    assert main(["train"]) == 2
    assert "--data is required (or --resume RUN)" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["tensorflow", "jax"])
def test_a_run_on_two_devices_resumes_bit_identical(backend, tiny_dataset, tmp_path):
    import os
    import subprocess

    if backend == "jax":
        pytest.importorskip("jax")
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    args = ["--backend", backend, "--data", str(tiny_dataset), *RUN_ARGS, "--devices", "2"] + \
        (["--no-jit"] if backend == "tensorflow" else [])

    def run(prefix, *extra):
        done = subprocess.run([*prefix, "train", *extra], capture_output=True, text=True, timeout=300, cwd=ROOT,
                              env=env)
        return done.returncode

    assert run([PY, "-m", "pipeline"], *args, "--out", str(tmp_path / "whole")) == 0
    assert run([PY, str(INTERRUPTED), "8"], *args, "--out", str(tmp_path / "cut")) == 130
    assert run([PY, "-m", "pipeline"], "--resume", str(tmp_path / "cut"), "--verbose", "0") == 0
    want, got = run_arrays(tmp_path / "whole"), run_arrays(tmp_path / "cut")
    assert sorted(got) == sorted(want) and all(np.array_equal(got[k], want[k]) for k in want)
    got, want = run_history(tmp_path / "cut"), run_history(tmp_path / "whole")
    if backend == "jax":
        assert got == want
    else:  # MirroredStrategy keeps a metric's running sums per replica; put back, the sum is split evenly
        assert got.keys() == want.keys() and all(got[k] == pytest.approx(want[k], rel=METRIC_TOLERANCE) for k in want)
