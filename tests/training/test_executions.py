"""train --steps-per-execution K|auto: K steps per call into the compiled step, checkpoints and --resume
keep their guarantees, K that would overhang an epoch or a checkpoint is refused, auto measures."""
from __future__ import annotations

import argparse
import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from helpers import PY, ROOT, run_arrays, run_history
from pipeline.cli import main
from pipeline.errors import UsageError, positive_int_or_auto
from pipeline.training import checkpoints, executions

INTERRUPTED = ROOT / "tests" / "training" / "interrupted_train.py"
# 8 steps an epoch of batch 16 (the 96 samples repeated), 16 in all, 4 per call: checkpoints at 4, 8, 12, 16
RUN_ARGS = ["--epochs", "2", "--steps", "8", "--batch-size", "16", "--checkpoint-every", "4", "--seed", "3",
            "--verbose", "0", "--steps-per-execution", "4"]


def test_parse_takes_a_positive_integer_or_auto():
    assert (positive_int_or_auto("4"), positive_int_or_auto("auto")) == (4, "auto")
    for bad in ("0", "-2", "x", "1.5"):
        with pytest.raises(argparse.ArgumentTypeError, match="positive integer or 'auto'"):
            positive_int_or_auto(bad)


def test_k_must_divide_the_epoch_and_the_checkpoint_interval():
    assert executions.check(4, 8, 12) == 4
    with pytest.raises(UsageError, match=r"must divide the 8 steps of an epoch and --checkpoint-every 6: one of 1, 2"):
        executions.check(4, 8, 6)
    assert executions.granularity(12, None) == 12 and executions.granularity(12, 8) == 4


def test_auto_picks_the_smallest_k_that_puts_the_call_under_five_percent():
    # a call costs 1 ms, a step 2 ms: K = 10 makes it 1 / 20 = 5%; 10 divides 40
    assert executions.choose(1e-3, 2e-3, 40) == 10
    assert executions.choose(1e-3, 2e-3, 36) == 12  # the next divisor up
    assert executions.choose(1e-3, 2e-3, 7) == 7  # none is enough: the whole epoch
    assert executions.choose(0.0, 2e-3, 40) == 1
    assert executions.split_call(3e-3, 17e-3, 8) == (pytest.approx(1e-3), pytest.approx(2e-3))


def train(data: Path, out: Path, backend: str, *, stop_after: int | None = None, resume: bool = False):
    argv = ["train", "--resume", str(out), "--verbose", "0"] if resume else \
        ["train", "--backend", backend, "--data", str(data), "--out", str(out), *RUN_ARGS]
    prefix = [PY, str(INTERRUPTED), str(stop_after)] if stop_after else [PY, "-m", "pipeline"]
    return subprocess.run(prefix + argv, capture_output=True, text=True, timeout=300, cwd=ROOT)


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["tensorflow", "jax"])
def test_a_run_of_four_steps_per_call_resumes_bit_identical(backend, tiny_dataset, tmp_path):
    if backend == "jax":
        pytest.importorskip("jax")
    reference = tmp_path / "whole"
    done = train(tiny_dataset, reference, backend)
    assert done.returncode == 0, done.stderr[-2000:]
    config = json.loads((reference / "config.json").read_text())
    assert config["steps_per_execution"] == {"k": 4, "asked": 4}
    for stop in (4, 12):  # mid-epoch, and mid-way through the second epoch
        out = tmp_path / f"stopped-{stop}"
        stopped = train(tiny_dataset, out, backend, stop_after=stop)
        assert stopped.returncode == 130, stopped.stderr[-2000:]
        assert [p.name for p in checkpoints.complete(out)] == [f"step-{stop:09d}"]
        resumed = train(tiny_dataset, out, backend, resume=True)
        assert resumed.returncode == 0, resumed.stderr[-2000:]
        want, got = run_arrays(reference), run_arrays(out)
        assert sorted(got) == sorted(want) and all(np.array_equal(got[k], want[k]) for k in want)
        assert run_history(out) == run_history(reference)


def test_a_k_that_overhangs_an_epoch_exits_2_with_one_line_and_nothing_written(tiny_dataset, tmp_path, capsys):
    out = tmp_path / "run"
    status = main(["train", "--data", str(tiny_dataset), "--out", str(out), "--batch-size", "16", "--verbose", "0",
                   "--steps-per-execution", "4"])  # 96 / 16 = 6 steps an epoch
    err = capsys.readouterr().err
    assert status == 2 and "must divide the 6 steps of an epoch: one of 1, 2, 3, 6" in err and err.count("\n") == 1
    assert not out.exists()


def test_auto_measures_and_records_its_choice(tiny_dataset, tmp_path):
    out = tmp_path / "run"
    assert main(["train", "--data", str(tiny_dataset), "--out", str(out), "--batch-size", "16", "--steps", "8",
                 "--verbose", "0", "--steps-per-execution", "auto"]) == 0
    chosen = json.loads((out / "config.json").read_text())["steps_per_execution"]
    assert chosen["asked"] == "auto" and chosen["k"] in (1, 2, 4, 8)
    assert chosen["call_s"] >= 0 and chosen["step_s"] > 0
    assert chosen["k"] == executions.choose(chosen["call_s"], chosen["step_s"], 8)


def test_auto_measures_under_jax_too(tiny_dataset, tmp_path):
    pytest.importorskip("jax")
    out = tmp_path / "run"
    done = subprocess.run([PY, "-m", "pipeline", "train", "--backend", "jax", "--data", str(tiny_dataset), "--out",
                           str(out), "--batch-size", "16", "--steps", "8", "--verbose", "0", "--steps-per-execution",
                           "auto"], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    chosen = json.loads((out / "config.json").read_text())["steps_per_execution"]
    assert chosen["k"] == executions.choose(chosen["call_s"], chosen["step_s"], 8)


def test_a_resumed_run_keeps_the_k_it_started_with(tmp_path):
    from pipeline.models.networks import build_model
    from pipeline.training.train import steps_per_execution

    (tmp_path / "config.json").write_text(json.dumps({"steps_per_execution": {"k": 2, "asked": "auto",
                                                                              "call_s": 1.0, "step_s": 1.0}}))
    model = build_model("fast", 8)
    args = argparse.Namespace(resume=tmp_path, steps_per_execution="auto", checkpoint_every=None, batch_size=16)
    assert steps_per_execution(args, model, 8, 8, False)["k"] == 2 and model.steps_per_execution == 2


def test_auto_on_several_processes_is_refused_before_any_joins(tiny_dataset, tmp_path, capsys):
    out = tmp_path / "run"
    status = main(["train", "--data", str(tiny_dataset), "--out", str(out), "--processes", "2", "--process-index",
                   "0", "--addresses", "h:1,h:2", "--steps-per-execution", "auto"])
    err = capsys.readouterr().err
    assert status == 2 and "--steps-per-execution auto measures on one process; give K" in err
    assert err.count("\n") == 1 and not out.exists()
