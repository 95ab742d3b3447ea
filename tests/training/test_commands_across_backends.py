"""train / evaluate / predict with --backend: JAX runs without TensorFlow, and runs cross backends."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("keras")
pytest.importorskip("jax")

from pipeline.cli import main  # noqa: E402
from pipeline.training.evaluate import first_samples  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
# Runs the commands in argv (JSON) in one process, then prints the TensorFlow modules it loaded.
RUNNER = """
import json, sys
from pipeline.cli import main
codes = [main(argv) for argv in json.loads(sys.argv[1])]
loaded = sorted(m for m, v in sys.modules.items() if m.split(".")[0] == "tensorflow" and v is not None)
print(json.dumps({"codes": codes, "tensorflow_modules": loaded}))
"""


def run_fresh(commands: list[list[str]]) -> dict:
    """{"codes", "tensorflow_modules"} of the commands run in one fresh Python with KERAS_BACKEND unset."""
    env = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}
    env["PYTHONPATH"] = str(REPO)
    done = subprocess.run([sys.executable, "-c", RUNNER, json.dumps(commands)], env=env, capture_output=True,
                          text=True, timeout=600, cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def jax_run(tiny_dataset, tmp_path_factory):
    """A `fast` run trained with --backend jax, then evaluated and predicted with it, all in one process."""
    run = tmp_path_factory.mktemp("runs") / "jax"
    data = str(tiny_dataset)
    result = run_fresh([
        ["train", "--backend", "jax", "--data", data, "--model", "fast", "--steps", "2", "--batch-size", "16",
         "--seed", "3", "--out", str(run), "--verbose", "0", "--validation", "--epochs", "2"],
        ["evaluate", "--backend", "jax", "--run", str(run), "--data", data, "--samples", "20", "--batch-size", "16",
         "--json"],
        ["predict", "--backend", "jax", "--run", str(run), "--count", "2"],
    ])
    return run, result


def test_jax_backend_trains_evaluates_and_predicts_without_importing_tensorflow(jax_run):
    run, result = jax_run
    assert result["codes"] == [0, 0, 0]
    assert result["tensorflow_modules"] == []
    config = json.loads((run / "config.json").read_text())
    assert config["device"]["backend"] == "jax" and config["device"]["backend_version"]
    assert config["steps_per_epoch"] == 2 and config["model"]["jit_compile"] is True
    history = json.loads((run / "history.json").read_text())
    assert len(history["val_loss"]) == len(history["val_accuracy"]) == 2  # the test split after each epoch


def test_a_run_trained_on_jax_evaluates_on_tensorflow(jax_run, tiny_dataset, capsys):
    run, _ = jax_run
    assert main(["evaluate", "--run", str(run), "--data", str(tiny_dataset), "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["backend"] == "tensorflow" and result["samples"] == 40 and 0 <= result["accuracy"] <= 1
    # the last epoch's validation scored the same whole split, from its start (each epoch's afresh)
    history = json.loads((run / "history.json").read_text())
    assert result["accuracy"] == pytest.approx(history["val_accuracy"][-1], abs=1e-6)
    assert result["loss"] == pytest.approx(history["val_loss"][-1], rel=1e-5)


def test_help_imports_no_backend():
    code = ("import sys\nfrom pipeline.cli import main\n"
            "for command in ('train', 'evaluate', 'predict'):\n"
            "    try:\n        main([command, '--help'])\n    except SystemExit:\n        pass\n"
            "print(sorted(m for m in ('keras', 'jax', 'tensorflow') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": str(REPO)},
                          capture_output=True, text=True, timeout=120, cwd=REPO)
    assert done.returncode == 0 and "--backend {tensorflow,jax}" in done.stdout
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_another_backend_than_the_running_one_exits_2(tiny_dataset, tmp_path, capsys):
    import keras

    other = "jax" if keras.backend.backend() == "tensorflow" else "tensorflow"
    assert main(["train", "--backend", other, "--data", str(tiny_dataset), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip()
    assert "already runs on" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "r").exists()


def test_first_samples_cuts_the_stream_in_the_same_batches():
    import numpy as np

    stream = ((np.arange(i, i + 4), np.arange(i, i + 4)) for i in range(0, 40, 4))
    cut = list(first_samples(stream, 10))
    assert [len(labels) for _, labels in cut] == [4, 4, 2]
    assert np.concatenate([labels for _, labels in cut]).tolist() == list(range(10))


def test_a_backend_that_is_not_installed_exits_2(tmp_path):
    code = ("import sys\nsys.modules['jax'] = None  # as if JAX were not installed\nfrom pipeline.cli import main\n"
            f"sys.exit(main(['predict', '--backend', 'jax', '--run', {str(tmp_path)!r}]))")
    done = subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": str(REPO)},
                          capture_output=True, text=True, timeout=120, cwd=REPO)
    assert done.returncode == 2 and "jax is not installed" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
