"""`bench`: the quick grid end to end on tiny data; result format, CSV, table; failed cells; bad input."""
from __future__ import annotations

import csv
import dataclasses
import importlib.util
import json

import pytest

from pipeline import bench
from pipeline.cli import main

HAVE_LOADER = importlib.util.find_spec("pipeline.loader") is not None
ARGS = ["--quick", "--sizes", "8", "--batch-sizes", "4,8", "--workers", "1"]


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    """One `bench --quick --json` on size 8: (result document, result path, stdout)."""
    root = tmp_path_factory.mktemp("bench")
    capture = pytest.MonkeyPatch()
    import io
    import sys

    out = io.StringIO()
    capture.setattr(sys, "stdout", out)
    try:
        status = main(["bench", *ARGS, "--out", str(root / "results"), "--data-root", str(root / "data"), "--json"])
    finally:
        capture.undo()
    assert status == 0
    stdout = out.getvalue()
    doc = json.loads(stdout)
    (path,) = (root / "results").glob("*.json")
    return doc, path, stdout


def test_stdout_is_one_json_object_equal_to_the_file(quick_run):
    doc, path, stdout = quick_run
    assert stdout.count("\n") == 1
    assert json.loads(path.read_text()) == doc
    assert path.name.endswith(f"-{doc['environment']['host']}.json")


def test_result_carries_environment_and_config(quick_run):
    doc, _, _ = quick_run
    assert (doc["format"], doc["format_version"]) == (bench.FORMAT, bench.FORMAT_VERSION)
    env = doc["environment"]
    assert env["device"]["name"] and env["device"]["kind"] in ("cpu", "gpu")
    assert env["cpu"]["cores"] >= 1 and env["cpu"]["model"]
    for lib in ("python", "tensorflow", "keras", "numpy", "h5py", "dask"):
        assert env["versions"][lib], lib
    assert "commit" in env["git"] and "dirty" in env["git"]
    assert len(env["datasets"]) == 2  # the bench dataset and its twin in the naive baseline's codec
    assert all(len(d["manifest_sha256"]) == 64 for d in env["datasets"].values())
    grid = doc["config"]["grid"]
    assert doc["config"]["preset"] == "quick"
    assert (grid["sizes"], grid["batch_sizes"], grid["workers"]) == ([8], [4, 8], [1])


def test_rows_cover_the_grid_with_the_common_keys(quick_run):
    doc, _, _ = quick_run
    rows = doc["rows"]
    device = doc["environment"]["device"]["name"]
    for row in rows:
        assert set(bench.ROW_KEYS) <= set(row)
        assert row["device"] == device and row["size"] == 8
        assert (row["value"] is None) == (row["error"] is not None)
    have = {(r["suite"], r["impl"], r["metric"]) for r in rows}
    for suite, impl, metric in [("generate", "ours", "samples_per_s"), ("generate", "ours", "mb_per_s"),
                                ("generate", "ours", "cluster_startup_s"), ("generate", "ours", "run_overhead_s"),
                                ("generate", "seed", "samples_per_s"),
                                ("load", "ours", "samples_per_s"), ("load", "in-memory", "samples_per_s"),
                                ("load", "from_generator", "samples_per_s"), ("train", "fast", "ms_per_step_median"),
                                ("train", "fast", "ms_per_step_p10"), ("train", "fast", "ms_per_step_p90"),
                                ("train", "seed", "samples_per_s"), ("train", "seed-workflow", "ms_per_step_median"),
                                ("accuracy", "fast", "accuracy")]:
        assert (suite, impl, metric) in have, (suite, impl, metric)
    for row in rows:
        if row["suite"] == "generate":
            assert row["workers"] == 1 and row["batch_size"] is None
        elif row["suite"] in ("load", "train"):
            assert row["batch_size"] in (4, 8) and row["workers"] is None
    train = [r for r in rows if r["suite"] == "train" and r["metric"] == "ms_per_step_median" and not r["error"]]
    assert {(r["impl"], r["feed"], r["batch_size"]) for r in train} >= {
        ("fast", "in-memory", 4), ("fast", "in-memory", 8), ("seed", "in-memory", 8), ("seed-workflow", "in-memory", 8)}
    for r in train:
        p10 = bench.value_of(rows, suite="train", impl=r["impl"], feed=r["feed"], batch_size=r["batch_size"],
                             metric="ms_per_step_p10")
        p90 = bench.value_of(rows, suite="train", impl=r["impl"], feed=r["feed"], batch_size=r["batch_size"],
                             metric="ms_per_step_p90")
        assert 0 < p10 <= r["value"] <= p90
    accuracy = bench.value_of(rows, suite="accuracy", impl="fast", metric="accuracy")
    assert 0 <= accuracy <= 1


def test_only_a_missing_loader_may_fail_a_cell(quick_run):
    doc, _, _ = quick_run
    failed = [r for r in doc["rows"] if r["error"]]
    if HAVE_LOADER:
        assert failed == []
    else:  # the loader (issue 4) not landed yet: its cells are recorded as failed, never dropped
        assert failed and all("pipeline.loader" in r["error"] for r in failed)
        assert {r["feed"] or r["impl"] for r in failed} == {"ours"}


def test_csv_and_markdown_beside_the_json(quick_run):
    doc, path, _ = quick_run
    with open(path.with_suffix(".csv"), newline="") as f:
        table = list(csv.DictReader(f))
    assert len(table) == len(doc["rows"])
    assert list(table[0])[:len(bench.ROW_KEYS)] == list(bench.ROW_KEYS)
    md = path.with_suffix(".md").read_text()
    assert md == bench.markdown_summary(doc) + "\n"
    for heading in ("**generate**", "**load**", "**train**", "**accuracy**"):
        assert heading in md
    assert "| ours / in-memory | packed / in-memory | ours / from_generator |" in md
    seed_row = next(line for line in md.splitlines() if line.startswith("| 8 | seed | 1 |"))
    assert seed_row.endswith("| 1.00x | - |")  # the baseline against itself; no worker scaling for the seed
    one_worker = next(line for line in md.splitlines() if line.startswith("| 8 | ours | 1 |"))
    assert one_worker.endswith("x | 1.00x |")  # vs seed, then against itself


def test_a_failing_cell_is_recorded_and_the_run_goes_on(tmp_path, monkeypatch):
    import pipeline.models

    real = pipeline.models.build_model

    def build(name, size, **kw):
        if name == "seed":
            raise MemoryError("OOM when allocating tensor")
        return real(name, size, **kw)

    monkeypatch.setattr(pipeline.models, "build_model", build)
    grid = bench.Grid(sizes=(8,), batch_sizes=(4,), suites=("train",), train_models=("seed", "fast"), train_steps=2,
                      train_warmup=1, seed_workflow_max_size=0, dataset_samples=32, dataset_test_samples=16,
                      dataset_shard_size=16)
    doc, path = bench.run_bench(grid, preset="test", out=tmp_path / "r", data_root=tmp_path / "d")
    seed = [r for r in doc["rows"] if r["impl"] == "seed"]
    assert {r["metric"] for r in seed} == set(bench.STEP_METRICS)
    assert all(r["value"] is None and r["error"] == "MemoryError: OOM when allocating tensor" for r in seed)
    fast = bench.value_of(doc["rows"], impl="fast", feed="in-memory", metric="ms_per_step_median")
    assert fast > 0
    assert "MemoryError: OOM" in path.with_suffix(".md").read_text()


def test_datasets_are_reused_when_complete_and_regenerated_when_params_differ(tmp_path):
    grid = bench.Grid(sizes=(8,), dataset_samples=32, dataset_test_samples=16, dataset_shard_size=16,
                      batch_sizes=(4,))
    params = bench.dataset_params(grid, 8)
    first = bench.ensure_dataset(tmp_path, params)
    stamp = (first / "manifest.json").stat().st_mtime_ns
    assert bench.dataset_ready(first, params, verify=True)
    assert bench.ensure_dataset(tmp_path, params) == first
    assert (first / "manifest.json").stat().st_mtime_ns == stamp
    (first / "train-00001.h5").unlink()
    assert not bench.dataset_ready(first, params)
    bench.ensure_dataset(tmp_path, params)
    assert bench.dataset_ready(first, params, verify=True)
    other = dataclasses.replace(params, seed=1)
    assert not bench.dataset_ready(first, other)


def test_presets_are_valid_and_quick_is_smaller_than_default():
    quick, default = bench.PRESETS["quick"], bench.PRESETS["default"]
    assert len(quick.sizes) * len(quick.batch_sizes) < len(default.sizes) * len(default.batch_sizes)
    assert quick.train_steps < default.train_steps < bench.PRESETS["full"].train_steps


@pytest.mark.parametrize("extra, message", [
    (["--suites", "generate,bogus"], "unknown suite 'bogus'"),
    (["--sizes", ""], "sizes is empty"),
    (["--sizes", "2"], "sizes must be integers in 4..512"),
    (["--batch-sizes", "0"], "batch sizes must be positive"),
    (["--sizes", "ten"], "expected comma-separated integers"),
    (["--quick", "--full"], "not allowed with argument"),
    (["--workers", "0"], "workers must be integers"),
])
def test_bad_arguments_exit_2_with_one_line_and_write_nothing(tmp_path, capsys, extra, message):
    out = tmp_path / "results"
    status = _exit_status(lambda: main(["bench", *extra, "--out", str(out), "--data-root", str(tmp_path / "d")]))
    err = capsys.readouterr().err
    assert status == 2
    assert message in err and err.count("\n") == 1
    assert not out.exists() and not (tmp_path / "d").exists()


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
           "rows": [{"suite": "load", "impl": "ours", "feed": None, "size": 8, "batch_size": 4, "workers": None,
                     "metric": "samples_per_s", "value": 10.0, "unit": "samples/s", "error": None, "device": "dev"}]}
    md = bench.markdown_summary(doc)
    assert "| 8 | 4 | 10 | - | - | - | - |" in md
