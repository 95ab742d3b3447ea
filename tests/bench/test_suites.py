"""The load and train suites on the shared tiny dataset, without the command line: rows, spreads,
whole-epoch windows, input-bound fractions; and the Recorder's error rows."""
from __future__ import annotations

import dataclasses

import pytest

from pipeline.bench import grid as grid_module
from pipeline.bench import load, train
from pipeline.bench.recorder import Recorder
from pipeline.results.format import value_of
from pipeline.runtime.cpus import default_readers

# conftest's tiny_dataset: size 8, 96 train samples (3 shards of 32, chunks of 8)
GRID = grid_module.Grid(sizes=(8,), batch_sizes=(8,), suites=("load", "train"), load_repeats=2, load_min_epochs=1,
                        load_min_windows=1, load_from_generator=False, train_models=("book",), train_steps=3,
                        train_warmup=1,
                        fit_sizes=(), book_workflow_max_size=0, dataset_samples=96, dataset_test_samples=40,
                        dataset_shard_size=32)


def test_load_suite_times_shuffled_whole_epochs(tiny_dataset):
    rec = Recorder("dev", "tensorflow", "x")
    load.run(rec, dataclasses.replace(GRID, load_graph=False), {8: tiny_dataset})
    rows = rec.rows
    assert [r for r in rows if r["error"]] == []
    rates = [r for r in rows if r["metric"] == "samples_per_s"]
    assert {(r["impl"], r["shuffle"], r["consumer"]) for r in rates} == {
        ("ours-packed", True, "python"), ("ours", True, "python"), ("in-memory", True, "python"),
        ("ours-packed", False, "python"), ("ours", False, "python"), ("in-memory", False, "python"),
        ("ours-packed", True, "tf.function"), ("ours", True, "tf.function"), ("in-memory", True, "tf.function"),
        ("ours-packed", True, "tf.function-K"), ("ours", True, "tf.function-K"), ("in-memory", True, "tf.function-K")}
    assert {r.get("steps_per_execution") for r in rates if r["consumer"] == "tf.function-K"} == {
        load.LOAD_STEPS_PER_CALL}
    assert {r["readers"] for r in rates if r["impl"] == "ours-packed" and r["shuffle"]
            and r["consumer"] == "python"} == set(GRID.reader_counts())
    assert {r["readers"] for r in rates if r["impl"] == "ours-packed" and r["consumer"] == "tf.function"} == {
        default_readers()}
    assert {r["workers"] for r in rates} == {None} and {r["front_end"] for r in rates} == {"tf.data"}
    assert {r["batches_on"] for r in rates} == {"/CPU:0"}  # every pipeline ends on the compute device
    for r in rates:
        m = {k: r[k] for k in ("impl", "shuffle", "readers", "consumer")}
        p10, p90 = (value_of(rows, metric=f"samples_per_s_{q}", **m) for q in ("p10", "p90"))
        assert 0 < p10 <= r["value"] <= p90
        assert r["window_batches"] == 96 // 8 and r["epochs_per_window"] == 1  # a whole epoch, not N batches
        assert value_of(rows, metric="mb_per_s", **m) == pytest.approx(r["value"] * 8 ** 3 / 1e6)
        assert value_of(rows, metric="peak_rss_mb", **m) >= value_of(rows, metric="rss_growth_mb", **m) >= 0
        assert (r["backend"], r["backend_version"], r["device"]) == ("tensorflow", "x", "dev")


def test_train_suite_feeds_and_input_bound_fraction(tiny_dataset):
    rec = Recorder("dev", "tensorflow", "x")
    train.run(rec, GRID, {8: tiny_dataset})
    rows = rec.rows
    assert [r for r in rows if r["error"]] == []
    median = {r["feed"]: r["value"] for r in rows if r["metric"] == "ms_per_step_median"}
    assert set(median) == set(grid_module.TRAIN_FEEDS)
    for feed, against in train.BOUND_AGAINST.items():
        (row,) = [r for r in rows if r["metric"] == "input_bound_fraction" and r["feed"] == feed]
        assert row["against"] == against
        assert row["value"] == pytest.approx(1 - median[against] / median[feed])
    for r in rows:
        if r["metric"] == "ms_per_step_median":
            assert (r["warmup"], r["precision"]) == (1, "float32")
            # a fed cell first reads, untimed, all its pipeline may hold ready, then times three times that
            assert (r["untimed_batches"] > 0) == (r["feed"] in ("ours", "ours-packed", "in-memory"))
            assert r["steps"] == max(3, train.BUFFER_MULTIPLE * r["untimed_batches"])
    ours = {r["feed"]: r["untimed_batches"] for r in rows if r["metric"] == "ms_per_step_median"}
    # ours: 2 * readers + 1 windows (a window holds the whole 96-sample epoch here) and the batches behind them
    readers = default_readers()
    assert ours["ours"] == ((2 * readers + 1) * 96 + (2 + readers) * 8) // 8


def test_train_suite_rows_say_what_the_model_computes_in(tiny_dataset):
    rec = Recorder("dev", "tensorflow", "x")
    grid = dataclasses.replace(GRID, train_feeds=("synthetic",), train_models=("fast",),
                               precisions=("float32", "mixed_bfloat16"))
    train.run(rec, grid, {8: tiny_dataset})
    assert [r for r in rec.rows if r["error"]] == []
    assert {r["precision"] for r in rec.rows if r["metric"] == "ms_per_step_median"} == {"float32", "mixed_bfloat16"}


def test_reference_models_are_timed_on_their_own_feeds_and_batches():
    grid = grid_module.Grid(batch_sizes=(32, 256), train_models=("fast",), train_reference_models=("book",),
                            train_reference_feeds=("in-memory",), train_reference_max_batch=32,
                            train_reference_steps=16, dataset_samples=2048)
    assert grid.train_cells() == [("fast", 32, grid_module.TRAIN_FEEDS, 64), ("fast", 256, grid_module.TRAIN_FEEDS, 8),
                                  ("book", 32, ("in-memory",), 16)]
    both = dataclasses.replace(grid, train_models=("fast", "book"))  # a model timed in full is no reference
    assert [c[0] for c in both.train_cells()] == ["fast", "fast", "book", "book"]


def test_train_steps_default_to_one_epoch():
    grid = grid_module.Grid(dataset_samples=4096)
    assert grid.timed_train_steps(32) == 128 and grid.timed_train_steps(256) == 16
    assert grid_module.Grid(train_steps=5).timed_train_steps(32) == 5


def test_a_failed_cell_records_one_error_row_per_metric():
    rec = Recorder("dev", "jax", "0.1")
    with rec.cell("train", "fast", ("a", "b"), size=8, feed="ours"):
        raise RuntimeError("pipeline.input.jax_feed is missing (the JAX front end): "
                           "No module named 'pipeline.input.jax_feed'\nmore")
    assert [(r["metric"], r["value"], r["backend"]) for r in rec.rows] == [("a", None, "jax"), ("b", None, "jax")]
    assert rec.rows[0]["error"] == ("RuntimeError: pipeline.input.jax_feed is missing (the JAX front end): "
                                    "No module named 'pipeline.input.jax_feed'")


def test_gpu_preset_runs_each_backend_in_its_own_process_with_the_same_arguments(tmp_path, monkeypatch):
    import subprocess
    import sys

    from pipeline.bench import command
    from pipeline.cli import main
    from pipeline.runtime import backends

    calls = []
    monkeypatch.setattr(backends, "installed", lambda: ("tensorflow", "jax"))
    monkeypatch.setattr(subprocess, "run",
                        lambda argv, **kw: calls.append(argv) or subprocess.CompletedProcess(argv, 0))
    assert main(["bench", "--gpu", "--sizes", "8", "--train-steps", "2", "--models", "fast", "--no-wrap",
                 "--out", str(tmp_path / "r"), "--data-root", str(tmp_path / "d")]) == 0
    assert [c[:3] for c in calls] == [[sys.executable, "-m", "pipeline"]] * 2
    assert [c[3:] for c in calls] == [
        ["bench", "--gpu", "--backend", b, "--out", str(tmp_path / "r"), "--data-root", str(tmp_path / "d"),
         "--sizes", "8", "--models", "fast", "--train-steps", "2", "--no-wrap"] for b in ("tensorflow", "jax")]
    assert command.preset_name(type("A", (), {"gpu": True})()) == "gpu"


@pytest.mark.slow
def test_jax_backend_runs_load_train_and_accuracy_without_tensorflow(tmp_path):
    """A fresh process (Keras fixes its backend when imported) on a tiny grid: every row says jax."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    code = f"""
import dataclasses, sys
from pipeline.bench import grid
from pipeline.cli import main
grid.PRESETS["quick"] = dataclasses.replace(grid.PRESETS["quick"], load_repeats=1, load_min_epochs=1,
    train_models=("book",), train_steps=2, train_warmup=1, fit_sizes=(8,), fit_batch_sizes=(8,), fit_epochs=1,
    book_workflow_max_size=0, accuracy_models=("book",), accuracy_seeds=(0,), accuracy_train_samples=32,
    dataset_samples=64, dataset_test_samples=32, dataset_shard_size=32)
status = main(["bench", "--quick", "--backend", "jax", "--suites", "load,train,accuracy", "--sizes", "8",
               "--batch-sizes", "8", "--out", {str(tmp_path / 'r')!r}, "--data-root", {str(tmp_path / 'd')!r}])
assert sys.modules.get("tensorflow") is None, "TensorFlow was imported"
sys.exit(status)
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parents[2], timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    (path,) = (tmp_path / "r").glob("*-jax.json")
    doc = json.loads(path.read_text())
    assert doc["config"]["backend"] == "jax" and doc["environment"]["backend"]["name"] == "jax"
    assert {r["backend"] for r in doc["rows"]} == {"jax"}
    assert [r for r in doc["rows"] if r["error"]] == []
    ours = [r for r in doc["rows"] if r["suite"] == "load" and r["impl"].startswith("ours")]
    assert {(r["front_end"], r["mechanism"], r["consumer"]) for r in ours} == {("numpy", "isal", "python")}
    assert {r["batches_on"] for r in doc["rows"] if r["suite"] == "load"} == {"host"}
    assert {r["feed"] for r in doc["rows"] if r["metric"] == "ms_per_step_median"} == set(grid_module.TRAIN_FEEDS)
