"""The result schema: units and directions, configuration hashes, rows of older versions."""
from __future__ import annotations

from pipeline.results.format import METRICS, config_hash, direction_of, normalize_row, unit_of

ROW = {"suite": "load", "impl": "ours", "feed": None, "size": 50, "batch_size": 32, "workers": None, "readers": 2,
       "metric": "samples_per_s", "value": 1.0, "unit": "samples/s", "error": None, "device": "CPU: x (2 cores)",
       "backend": "tensorflow", "backend_version": "2.21.0", "devices": 1, "processes": 1}
GRID = {"dataset_samples": 4096, "load_min_epochs": 8, "train_steps": None}


def test_every_metric_has_a_unit_and_throughputs_are_higher_is_better():
    assert all(isinstance(unit, str) and direction in ("higher", "lower", None) for unit, direction in METRICS.values())
    assert [direction_of(m) for m in ("samples_per_s", "ms_per_step_median", "au", "input_bound_fraction")] == \
        ["higher", "lower", "higher", "lower"]
    assert (unit_of("accuracy"), unit_of("nothing"), direction_of("nothing")) == ("fraction", "", None)


def test_the_configuration_hash_covers_settings_and_the_suites_budget_only():
    base = config_hash(ROW, GRID)
    measured = {**ROW, "value": 2.0, "repeat_values": [1.0], "state": {"cpu": {}}, "backend_version": "2.22"}
    assert config_hash(measured, GRID) == base
    assert config_hash({**ROW, "shuffle": False}, GRID) != base
    assert config_hash(ROW, {**GRID, "load_min_epochs": 2}) != base
    assert config_hash(ROW, {**GRID, "train_steps": 100}) == base  # another suite's budget


def test_version_1_rows_read_as_tensorflow_with_their_evidence_empty():
    old = {k: v for k, v in ROW.items() if k not in ("backend", "backend_version", "devices", "processes", "unit")}
    old.update(suite="train", impl="seed", metric="ms_per_step_median", feed="ours")
    row = normalize_row(old, GRID)
    assert (row["backend"], row["precision"], row["impl"]) == ("tensorflow", "float32", "book")
    assert (row["unit"], row["direction"], row["repeat_values"]) == ("ms", "lower", [])
    assert row["config_hash"] == config_hash(row, GRID) and (row["devices"], row["processes"]) == (1, 1)
