"""bench --devices: the train suite's scaling rows (`fit` on our loader with a replica per device,
beside one device, in one run) on logical CPU devices, each backend in a fresh process; the counts
from the command line; every row's `devices` and `processes`; the report's scaling table and plot."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.bench import scaling
from pipeline.bench.command import _argv, grid_from_args, run_bench
from pipeline.bench.grid import Grid
from pipeline.bench.recorder import Recorder
from pipeline.cli import build_parser, main
from pipeline.results.format import normalize_row, value_of
from pipeline.training import replicas

REPO = Path(__file__).resolve().parents[2]
# The backend fixes its device count when it starts, so a run with several devices needs a fresh
# process: the train suite at size 8, batch 8 on our tiny dataset, 2 devices (and 3, over which
# the batch does not split), 4 steps an epoch, two round-robin calls of one untimed and one timed epoch.
SCRIPT = """
import json, sys
from pathlib import Path
backend, data, out = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
from pipeline.runtime import backends
backends.use(backend)
from pipeline.bench import scaling, train
from pipeline.bench.grid import Grid
grid = Grid(sizes=(8,), batch_sizes=(8,), suites=("train",), train_models=("fast",), train_feeds=("synthetic",),
            train_reference_models=(), train_steps=1, train_warmup=1, fit_sizes=(), book_workflow_max_size=0,
            devices=(2, 3), scaling_repeats=2, scaling_epochs=1, dataset_samples=32, dataset_test_samples=16,
            dataset_shard_size=32)
scaling.configure(backend, grid.devices)
from pipeline.bench.recorder import Recorder
from pipeline.results.summary import markdown_summary
rec = Recorder("CPU: test", backend, "x")
train.run(rec, grid, {8: data})
doc = {"created": "2026-01-01T00:00:00Z", "config": {"preset": "test", "backend": backend},
       "environment": {"device": {"name": "CPU: test"}, "git": {"commit": None, "dirty": None}}, "rows": rec.rows}
out.write_text(json.dumps({"rows": rec.rows, "summary": markdown_summary(doc)}))
"""


def scaling_run(backend: str, tiny_dataset, tmp_path) -> tuple[list[dict], str, str]:
    """(rows, Markdown summary, stderr) of SCRIPT on `backend`."""
    out = tmp_path / f"{backend}.json"
    done = subprocess.run([sys.executable, "-c", SCRIPT, backend, str(tiny_dataset), str(out)], capture_output=True,
                          text=True, cwd=REPO, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text())
    return result["rows"], result["summary"], done.stderr


def check_scaling_rows(rows: list[dict], backend: str, replication: str, jit: bool) -> None:
    assert [r for r in rows if r["error"]] == []
    assert {(r["devices"], r["processes"]) for r in rows if r["metric"] == "ms_per_step_median"} == {(1, 1)}
    found = [r for r in rows if r["metric"].startswith("scaling_")]
    assert {(r["metric"], r["devices"]) for r in found} == {(m, n) for m in scaling.SCALING_METRICS for n in (1, 2)}
    for r in found:
        n = r["devices"]
        assert (r["impl"], r["feed"], r["size"], r["batch_size"], r["processes"]) == ("fast", "ours", 8, 8, 1)
        assert r["batch_size_per_device"] == 8 // n and r["steps_per_epoch"] == 4
        assert (r["epochs"], r["repeats"]) == (2, 2)  # one timed epoch per call, two calls
        assert r["replication"] == ("none" if n == 1 else replication) and r["jit_compile"] is jit
        assert r["backend"] == backend and r["precision"] == "float32" and r["first_epoch_s"] > 0
    rate = {n: value_of(rows, metric="scaling_samples_per_s", devices=n) for n in (1, 2)}
    for n in (1, 2):
        low, high = (value_of(rows, metric=f"scaling_samples_per_s_{q}", devices=n) for q in ("p10", "p90"))
        assert 0 < low <= rate[n] <= high
        assert value_of(rows, metric="scaling_efficiency", devices=n) == pytest.approx(rate[n] / (n * rate[1]))


def test_tensorflow_scaling_rows_on_two_logical_cpu_devices(tiny_dataset, tmp_path):
    rows, summary, stderr = scaling_run("tensorflow", tiny_dataset, tmp_path)
    # the same step program on every count: a mirrored step cannot be XLA-compiled
    check_scaling_rows(rows, "tensorflow", "MirroredStrategy", jit=False)
    assert "scaling: 3 devices skipped: batch 8 does not split evenly over them" in stderr
    line = next(x for x in summary.splitlines() if x.startswith("| 8 | 8 | fast | float32 | 2 | 1 | 4 |"))
    assert line.endswith(f"| {value_of(rows, metric='scaling_efficiency', devices=2):.0%} |")
    assert "| 8 | 8 | fast | float32 | 1 | 1 | 8 |" in summary and "| 100% |" in summary


@pytest.mark.slow
def test_jax_scaling_rows_on_two_host_devices(tiny_dataset, tmp_path):
    pytest.importorskip("jax")
    rows, _, _ = scaling_run("jax", tiny_dataset, tmp_path)
    check_scaling_rows(rows, "jax", "DataParallel", jit=True)


def test_efficiency_is_against_n_times_one_device():
    assert scaling.efficiency({1: 100.0, 2: 150.0, 4: 200.0}) == {1: 1.0, 2: 0.75, 4: 0.5}
    assert scaling.efficiency({2: 150.0}) == {}  # without the baseline there is none


def test_counts_the_batch_does_not_split_over_or_the_backend_does_not_see_are_skipped(capsys):
    grid = Grid(devices=(2, 3, 4))
    assert scaling.usable_counts(grid, "jax", 12, seen=3) == [1, 2, 3]
    assert scaling.usable_counts(grid, "tensorflow", 8, seen=8) == [1, 2, 4]
    err = capsys.readouterr().err
    assert "4 devices skipped: jax sees 3" in err and "3 devices skipped: batch 8 does not split evenly" in err


def test_device_counts_from_the_command_line_and_by_default(monkeypatch):
    args = build_parser("bench").parse_args(["bench", "--suites", "train", "--devices", "4,2", "--backend", "jax"])
    _, grid = grid_from_args(args)
    assert grid.devices == (4, 2) and grid.scaling_counts() == (1, 2, 4)  # one device: the baseline
    assert _argv(args, "jax")[-2:] == ["--devices", "4,2"]  # passed on to a process per backend
    monkeypatch.setattr(replicas, "default_devices", lambda: 1)
    assert Grid().device_counts() == (1,) and Grid().scaling_counts() == ()  # a CPU: no scaling rows
    assert Grid(devices=(1,)).scaling_counts() == (1,)
    monkeypatch.setattr(replicas, "default_devices", lambda: 8)
    assert Grid().scaling_counts() == (1, 8)  # every GPU of the node, beside one


@pytest.mark.parametrize("value, message", [("0", "devices must be integers in 1..1024, got (0,)"),
                                            ("", "devices must be integers in 1..1024, got ()"),
                                            ("2,1025", "devices must be integers in 1..1024"),
                                            ("two", "expected comma-separated integers")])
def test_bad_device_counts_exit_2_with_nothing_written(tmp_path, capsys, value, message):
    out = tmp_path / "r"
    assert _exit_status(lambda: main(["bench", "--devices", value, "--out", str(out),
                                      "--data-root", str(tmp_path / "d")])) == 2
    assert message in capsys.readouterr().err
    assert not out.exists() and not (tmp_path / "d").exists()


def _exit_status(call) -> int:
    try:
        return call()
    except SystemExit as e:
        return e.code


def test_the_bench_sets_the_largest_count_up_before_the_backend_starts(monkeypatch, tmp_path):
    from pipeline.runtime import devices

    calls = []
    monkeypatch.setattr(scaling, "configure", lambda backend, counts: calls.append(("configure", backend, counts)))

    def describe():
        calls.append(("describe",))
        raise RuntimeError("stop here")

    monkeypatch.setattr(devices, "describe", describe)
    with pytest.raises(RuntimeError, match="stop here"):
        run_bench(Grid(suites=("train",), devices=(1, 4)), preset="t", out=tmp_path / "r", data_root=tmp_path / "d")
    assert calls == [("configure", "tensorflow", (1, 4)), ("describe",)]


def test_every_row_names_its_devices_and_processes_and_old_rows_ran_on_one():
    rec = Recorder("dev")
    assert {k: rec.add("load", "ours", "samples_per_s", 1.0, size=8)[k] for k in ("devices", "processes")} == \
        {"devices": 1, "processes": 1}
    assert rec.add("train", "fast", "scaling_samples_per_s", 1.0, size=8, devices=4)["devices"] == 4
    old = {"suite": "train", "impl": "fast", "feed": "ours", "size": 50, "batch_size": 32, "workers": None,
           "metric": "samples_per_s", "value": 1.0, "unit": "samples/s", "error": None, "device": "cpu"}
    assert (normalize_row(old)["devices"], normalize_row(old)["processes"]) == (1, 1)
    assert normalize_row({**old, "devices": 2, "processes": 1})["devices"] == 2
