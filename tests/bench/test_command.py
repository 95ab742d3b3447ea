"""`bench`: a tiny grid end to end (every suite, through the command line; slow: tracing and
start-ups); result format, CSV, summary; failed cells; presets; bad input."""
from __future__ import annotations

import csv
import dataclasses
import io
import json
import sys

import pytest

from pipeline.bench import grid as grid_module
from pipeline.bench import train
from pipeline.bench.command import grid_from_args, run_bench
from pipeline.bench.data import dataset_params, dataset_ready, ensure_dataset
from pipeline.bench.grid import PRESETS, Grid
from pipeline.bench.train import STEP_METRICS
from pipeline.cli import main
from pipeline.errors import UsageError
from pipeline.results.files import problems
from pipeline.results.format import FORMAT, FORMAT_VERSION, ROW_KEYS, direction_of, value_of
from pipeline.results.summary import markdown_summary
from pipeline.training import executions

ARGS = ["--quick", "--sizes", "8", "--batch-sizes", "4,8", "--workers", "1"]
# The quick preset shrunk to seconds: every suite, feed and load cell once, one step budget.
TINY = dataclasses.replace(
    grid_module.PRESETS["quick"], gen_raw_mb=0.05, gen_repeats=1, book_raw_mb=0.01, load_repeats=2,
    load_min_epochs=1, load_unshuffled=True, train_models=("book",), train_steps=3, train_warmup=1,
    fit_sizes=(8,), fit_batch_sizes=(4, 8), fit_models=("book",), fit_epochs=1, book_workflow_steps=1,
    accuracy_models=("book",),
    accuracy_seeds=(0, 1),
    accuracy_train_samples=32, dataset_samples=64, dataset_test_samples=32, dataset_shard_size=32)


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    """One `bench --quick --json` on size 8, with the TINY budgets: (result document, result path, stdout)."""
    root = tmp_path_factory.mktemp("bench")
    patch = pytest.MonkeyPatch()
    out = io.StringIO()
    patch.setitem(grid_module.PRESETS, "quick", TINY)
    patch.setattr(sys, "stdout", out)
    try:
        status = main(["bench", *ARGS, "--out", str(root / "results"), "--data-root", str(root / "data"), "--json"])
    finally:
        patch.undo()
    assert status == 0
    stdout = out.getvalue()
    doc = json.loads(stdout)
    (path,) = (root / "results").glob("*.json")
    return doc, path, stdout


@pytest.mark.slow
def test_stdout_is_one_json_object_equal_to_the_file(quick_run):
    doc, path, stdout = quick_run
    assert stdout.count("\n") == 1
    assert json.loads(path.read_text()) == doc
    assert path.name.endswith(f"-{doc['environment']['host']}.json")


@pytest.mark.slow
def test_result_carries_environment_backend_and_config(quick_run):
    doc, _, _ = quick_run
    assert (doc["format"], doc["format_version"]) == (FORMAT, FORMAT_VERSION)
    env = doc["environment"]
    assert env["device"]["name"] and env["device"]["kind"] in ("cpu", "gpu")
    assert env["cpu"]["cores"] >= 1 and env["cpu"]["model"]
    for lib in ("python", "tensorflow", "keras", "numpy", "h5py", "dask"):
        assert env["versions"][lib], lib
    assert env["backend"] == {"name": "tensorflow", "version": env["versions"]["tensorflow"]}
    assert "commit" in env["git"] and "dirty" in env["git"]
    assert len(env["datasets"]) == 2  # the bench dataset and its twin in the naive baseline's codec
    assert all(len(d["manifest_sha256"]) == 64 for d in env["datasets"].values())
    grid = doc["config"]["grid"]
    assert doc["config"]["preset"] == "quick" and doc["config"]["backend"] == "tensorflow"
    assert (grid["sizes"], grid["batch_sizes"], grid["workers"]) == ([8], [4, 8], [1])


@pytest.mark.slow
def test_every_row_has_the_common_keys_device_and_backend(quick_run):
    doc, _, _ = quick_run
    device = doc["environment"]["device"]["name"]
    for row in doc["rows"]:
        assert set(ROW_KEYS) <= set(row)
        assert row["device"] == device and row["size"] == 8
        assert (row["backend"], row["backend_version"]) == ("tensorflow", doc["environment"]["versions"]["tensorflow"])
        # a value is missing only for an error, or for the au suite's fastest accelerator kept busy
        # when no step of the sweep kept it 95% busy
        assert (row["value"] is None) == (row["error"] is not None) or row["metric"].startswith("au95_")
    assert [r for r in doc["rows"] if r["error"]] == []


@pytest.mark.slow
def test_load_cells_are_shuffled_whole_epochs_with_spread_and_memory(quick_run):
    rows = quick_run[0]["rows"]
    load = [r for r in rows if r["suite"] == "load" and r["metric"] == "samples_per_s"]
    cells = {(r["impl"], r["batch_size"], r["shuffle"], r["readers"], r["mechanism"]) for r in load}
    for batch in (4, 8):
        assert ("ours-packed", batch, True, 1, "isal") in cells and ("ours-packed", batch, True, 2, "isal") in cells
        assert {("ours", batch, True, 2, "isal"), ("ours-graph-packed", batch, True, 2, "graph"),
                ("in-memory", batch, True, None, None), ("from_generator", batch, True, None, None)} <= cells
        # each mechanism also unshuffled, to show what shuffling costs
        assert {("ours-packed", batch, False, 2, "isal"), ("ours-graph-packed", batch, False, 2, "graph"),
                ("in-memory", batch, False, None, None)} <= cells
    for r in load:
        m = {k: r[k] for k in ("impl", "batch_size", "shuffle", "readers", "consumer")}
        p10, p90 = (value_of(rows, suite="load", metric=f"samples_per_s_{q}", **m) for q in ("p10", "p90"))
        assert 0 < p10 <= r["value"] <= p90
        assert r["repeats"] == TINY.load_repeats
        # a timed window holds whole epochs (64 samples: 16 batches of 4, 8 of 8)
        assert r["window_batches"] * r["batch_size"] >= TINY.load_min_epochs * TINY.dataset_samples
        assert r["untimed_batches_per_window"] * r["batch_size"] >= TINY.dataset_samples  # ours hold >= a window
        assert value_of(rows, suite="load", metric="first_batch_ms", **m) > 0
        assert value_of(rows, suite="load", metric="peak_rss_mb", **m) > 100  # TensorFlow itself


@pytest.mark.slow
def test_train_feeds_and_input_bound_against_synthetic(quick_run):
    rows = quick_run[0]["rows"]
    steps = [r for r in rows if r["suite"] == "train" and r["metric"] == "ms_per_step_median"]
    assert {(r["impl"], r["feed"], r["batch_size"]) for r in steps} >= {
        ("book", feed, batch) for feed in grid_module.TRAIN_FEEDS for batch in (4, 8)} | {
        ("book-workflow", "in-memory", 8)}
    for r in steps:
        m = dict(suite="train", impl=r["impl"], feed=r["feed"], batch_size=r["batch_size"])
        p10, p90 = (value_of(rows, metric=f"ms_per_step_{q}", **m) for q in ("p10", "p90"))
        assert 0 < p10 <= r["value"] <= p90
        assert r["precision"] == ("float64" if r["impl"] == "book-workflow" else "float32")
        if r["impl"] == "book":  # at least three times what a fed cell's pipeline may hold ready
            assert r["steps"] == max(TINY.train_steps, train.BUFFER_MULTIPLE * r["untimed_batches"])
            assert r["warmup"] == TINY.train_warmup
    for batch in (4, 8):
        median = {feed: value_of(rows, suite="train", impl="book", feed=feed, batch_size=batch,
                                       metric="ms_per_step_median") for feed in grid_module.TRAIN_FEEDS}
        for feed, against in (("ours", "synthetic"), ("in-memory", "synthetic"), ("ours-packed", "synthetic-packed")):
            bound = [r for r in rows if r["metric"] == "input_bound_fraction" and r["feed"] == feed
                     and r["batch_size"] == batch]
            assert len(bound) == 1 and bound[0]["against"] == against
            assert bound[0]["value"] == pytest.approx(1 - median[against] / median[feed])


@pytest.mark.slow
def test_fit_per_epoch_fed_by_the_loader_and_by_arrays_at_one_and_auto_steps_per_call(quick_run):
    rows = quick_run[0]["rows"]
    for batch in (4, 8):
        steps = TINY.dataset_samples // batch
        calls = [r for r in rows if r["metric"] == "call_ms" and r["batch_size"] == batch]
        assert len(calls) == 1 and calls[0]["value"] >= 0 and calls[0]["feed"] == "synthetic"
        step = value_of(rows, metric="compiled_step_ms", batch_size=batch)
        auto_k = calls[0]["steps_per_execution"]
        assert steps % auto_k == 0
        assert auto_k == executions.choose(calls[0]["value"], step, steps)  # the K of what it measured
        for execution, k in (("K=1", 1), ("K=auto", auto_k)):
            for feed in ("ours", "in-memory", "synthetic"):
                epoch = [r for r in rows if r["metric"] == "fit_s_per_epoch" and r["feed"] == feed
                         and r["batch_size"] == batch and r["execution"] == execution]
                assert len(epoch) == 1 and epoch[0]["value"] > 0 and epoch[0]["epochs"] == TINY.fit_epochs
                assert epoch[0]["steps_per_execution"] == k
                per_step = value_of(rows, metric="fit_ms_per_step", feed=feed, batch_size=batch, execution=execution)
                assert per_step == pytest.approx(epoch[0]["value"] * 1e3 / epoch[0]["steps_per_epoch"])
                assert epoch[0]["steps_per_epoch"] == steps
            fed, alone = (value_of(rows, metric="fit_ms_per_step", feed=f, batch_size=batch, execution=execution)
                          for f in ("ours", "synthetic"))
            bound = value_of(rows, metric="fit_input_bound_fraction", batch_size=batch, execution=execution)
            assert bound == pytest.approx(1 - alone / fed)


@pytest.mark.slow
def test_accuracy_over_several_seeds(quick_run):
    rows = quick_run[0]["rows"]
    median = next(r for r in rows if r["suite"] == "accuracy" and r["metric"] == "accuracy")
    low = value_of(rows, suite="accuracy", metric="accuracy_min")
    high = value_of(rows, suite="accuracy", metric="accuracy_max")
    assert median["seeds"] == [0, 1] and len(median["per_seed"]) == 2
    assert (low, high) == (min(median["per_seed"]), max(median["per_seed"]))
    assert 0 <= low <= median["value"] <= high <= 1


@pytest.mark.slow
def test_csv_and_markdown_beside_the_json(quick_run):
    doc, path, _ = quick_run
    with open(path.with_suffix(".csv"), newline="") as f:
        table = list(csv.DictReader(f))
    assert len(table) == len(doc["rows"])
    assert list(table[0])[:len(ROW_KEYS)] == list(ROW_KEYS)
    md = path.with_suffix(".md").read_text()
    assert md == markdown_summary(doc) + "\n"
    for heading in ("**generate**", "**load**", "**train**", "**accuracy**", "`fit` wall time per epoch"):
        assert heading in md
    assert ", tensorflow " in md.splitlines()[0]
    book_row = next(line for line in md.splitlines() if line.startswith("| 8 | book | 1 |"))
    assert book_row.endswith("| 1.00x | - |")  # the baseline against itself; no worker scaling for the book
    one_worker = next(line for line in md.splitlines() if line.startswith("| 8 | ours | 1 |"))
    assert one_worker.endswith("x | 1.00x |")  # vs book, then against itself
    in_memory = next(line for line in md.splitlines() if line.startswith("| 8 | 4 | in-memory | tf.function | yes |"))
    assert "| 1.00x |" in in_memory


def test_a_failing_cell_is_recorded_and_the_run_goes_on(tmp_path, monkeypatch):
    import pipeline.models.networks

    real = pipeline.models.networks.build_model

    def build(name, size, **kw):
        if name == "book":
            raise MemoryError("OOM when allocating tensor")
        return real(name, size, **kw)

    monkeypatch.setattr(pipeline.models.networks, "build_model", build)
    grid = Grid(sizes=(8,), batch_sizes=(4,), suites=("train",), train_models=("book", "fast"),
                      train_feeds=("in-memory", "synthetic"), train_steps=2, train_warmup=1, fit_sizes=(),
                      book_workflow_max_size=0, dataset_samples=32, dataset_test_samples=16, dataset_shard_size=16)
    doc, path = run_bench(grid, preset="test", out=tmp_path / "r", data_root=tmp_path / "d")
    book = [r for r in doc["rows"] if r["impl"] == "book"]
    assert {r["metric"] for r in book} == set(STEP_METRICS)
    assert all(r["value"] is None and r["error"] == "MemoryError: OOM when allocating tensor" for r in book)
    fast = value_of(doc["rows"], impl="fast", feed="in-memory", metric="ms_per_step_median")
    assert fast > 0
    assert "MemoryError: OOM" in path.with_suffix(".md").read_text()


def test_datasets_are_reused_when_complete_and_regenerated_when_params_differ(tmp_path):
    grid = Grid(sizes=(8,), dataset_samples=32, dataset_test_samples=16, dataset_shard_size=16,
                      batch_sizes=(4,))
    params = dataset_params(grid, 8)
    first = ensure_dataset(tmp_path, params)
    stamp = (first / "manifest.json").stat().st_mtime_ns
    assert dataset_ready(first, params, verify=True)
    assert ensure_dataset(tmp_path, params) == first
    assert (first / "manifest.json").stat().st_mtime_ns == stamp
    (first / "train-00001.h5").unlink()
    assert not dataset_ready(first, params)
    ensure_dataset(tmp_path, params)
    assert dataset_ready(first, params, verify=True)
    other = dataclasses.replace(params, seed=1)
    assert not dataset_ready(first, other)


def test_presets_are_valid_and_quick_is_smaller_than_default():
    quick, default = PRESETS["quick"], PRESETS["default"]
    assert len(quick.sizes) * len(quick.batch_sizes) < len(default.sizes) * len(default.batch_sizes)
    assert quick.dataset_samples < default.dataset_samples
    assert len(default.accuracy_seeds) >= 5 and set(default.accuracy_models) >= {"book", "fast"}
    budget = PRESETS["book-budget"]
    assert (budget.accuracy_train_samples, budget.accuracy_batch, len(budget.accuracy_seeds)) == (5000, 32, 5)


def test_gpu_preset_covers_the_questions_a_gpu_answers():
    gpu = PRESETS["gpu"]
    assert gpu.sizes == (50, 100) and gpu.batch_sizes == (32, 256, 1024)
    assert set(gpu.train_models) == {"fast", "book"} and gpu.precisions == ("float32", "mixed_bfloat16")
    assert {"ours", "ours-packed", "in-memory", "synthetic"} <= set(gpu.train_feeds)
    assert "generate" not in gpu.suites


def test_the_loader_targets_grid_is_reachable_from_the_command_line():
    from pipeline.cli import build_parser

    args = build_parser("bench").parse_args(["bench", "--sizes", "50,100", "--batch-sizes", "32,256",
                                             "--suites", "load"])
    preset, grid = grid_from_args(args)
    assert (preset, grid.sizes, grid.batch_sizes, grid.suites) == ("default", (50, 100), (32, 256), ("load",))
    args = build_parser("bench").parse_args(["bench", "--gpu", "--backend", "jax"])
    assert grid_from_args(args)[0] == "gpu" and args.backend == "jax"


@pytest.mark.parametrize("extra, message", [
    (["--suites", "generate,bogus"], "unknown suite 'bogus'"),
    (["--sizes", ""], "sizes is empty"),
    (["--sizes", "2"], "sizes must be integers in 4..512"),
    (["--batch-sizes", "0"], "batch sizes must be positive"),
    (["--sizes", "ten"], "expected comma-separated integers"),
    (["--quick", "--full"], "not allowed with argument"),
    (["--quick", "--gpu"], "not allowed with argument"),
    (["--workers", "0"], "workers must be integers"),
    (["--backend", "torch"], "invalid choice: 'torch'"),
])
def test_bad_arguments_exit_2_with_one_line_and_write_nothing(tmp_path, capsys, extra, message):
    out = tmp_path / "results"
    status = _exit_status(lambda: main(["bench", *extra, "--out", str(out), "--data-root", str(tmp_path / "d")]))
    err = capsys.readouterr().err
    assert status == 2
    assert message in err and err.count("\n") == 1
    assert not out.exists() and not (tmp_path / "d").exists()


def test_another_backend_in_a_process_already_on_tensorflow_is_a_usage_error(tmp_path, capsys):
    import keras  # noqa: F401  (this test process runs Keras on TensorFlow)

    status = main(["bench", "--backend", "jax", "--suites", "train", "--out", str(tmp_path / "r"),
                   "--data-root", str(tmp_path / "d")])
    assert status == 2
    assert "Keras already runs on tensorflow" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_out_that_is_a_file_is_a_usage_error(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["bench", "--quick", "--out", str(blocker)]) == 2
    assert "is not a directory" in capsys.readouterr().err


def _exit_status(call) -> int:
    try:
        return call()
    except SystemExit as e:
        return e.code


def test_markdown_summary_handles_missing_baselines():
    doc = {"created": "2026-01-01T00:00:00Z", "config": {"preset": "x"},
           "environment": {"device": {"name": "dev"}, "git": {"commit": None, "dirty": None}},
           "rows": [{"suite": "load", "impl": "ours", "feed": None, "size": 8, "batch_size": 4, "readers": 2,
                     "metric": "samples_per_s", "value": 10.0, "unit": "samples/s", "error": None, "device": "dev",
                     "shuffle": True, "mechanism": "isal"}]}
    md = markdown_summary(doc)
    assert "| 8 | 4 | ours | - | yes | isal | 2 | 10 [---] | - | - | - | - | - |" in md


def test_models_and_wrap_options_override_the_preset():
    import argparse

    from pipeline.bench.command import add_arguments, grid_from_args

    p = argparse.ArgumentParser()
    add_arguments(p)
    _, grid = grid_from_args(p.parse_args(["--book-budget", "--models", "fast,book", "--no-wrap"]))
    assert grid.accuracy_models == ("fast", "book") and grid.train_models == ("fast", "book")
    assert grid.accuracy_wrap is False
    with pytest.raises(UsageError, match="unknown model 'vgg'"):
        grid_from_args(p.parse_args(["--models", "fast,vgg"]))


@pytest.mark.slow
def test_rows_keep_their_evidence_and_the_file_checks(quick_run):
    doc, path, _ = quick_run
    assert problems(path) == []
    assert doc["environment"]["state"]["host"]["usable_cores"] >= 1 and doc["environment"]["state"]["gpus"] == []
    rows = doc["rows"]
    assert all(r["direction"] == direction_of(r["metric"]) and len(r["config_hash"]) == 12 for r in rows)
    load = [r for r in rows if r["suite"] == "load" and r["metric"] == "samples_per_s"]
    assert load and all(len(r["repeat_values"]) == TINY.load_repeats for r in load)
    assert all(r["state"]["cpu"]["steal_pct"] is not None for r in load)
    steps = [r for r in rows if r["suite"] == "train" and r["metric"] == "samples_per_s" and r.get("steps")]
    assert steps and all(len(r["repeat_values"]) == r["steps"] and "state" in r for r in steps)
    accuracy = [r for r in rows if r["suite"] == "accuracy" and r["metric"] == "accuracy"]
    assert accuracy and all(len(r["repeat_values"]) == len(TINY.accuracy_seeds) for r in accuracy)
    # the same cell at two batch sizes is two settings; two metrics of one cell share one
    hashes = {(r["impl"], r.get("feed"), r["batch_size"], r["metric"]): r["config_hash"] for r in steps}
    assert len(set(hashes.values())) == len(hashes)


def test_the_default_preset_keeps_three_repeats_behind_every_headline_cell():
    grid = grid_module.PRESETS["default"]
    # load windows, generation runs, initial seeds, AU95's fresh measurements of the loader alone, train steps
    assert min(grid.load_repeats, grid.gen_repeats, len(grid.accuracy_seeds), len(grid.au_demands)) >= 3
    assert min(grid.steps_per_epoch(b) for b in grid.batch_sizes) >= 3
