"""Recorder: rows stamped with their machine, unit, direction, configuration hash, repeats and state."""
from __future__ import annotations

import pytest

from pipeline.bench.recorder import Recorder
from pipeline.results.format import config_hash


class FakeMonitor:
    """Marks count up by one second; a summary names the window it was asked for."""

    def __init__(self):
        self.now = 0.0

    def mark(self) -> float:
        self.now += 1.0
        return self.now

    def summary(self, start: float, end: float) -> dict:
        return {"window": [start, end]}


def test_rows_carry_unit_direction_repeats_and_a_hash_of_their_settings():
    rec = Recorder("CPU: x (2 cores)", "tensorflow", "2.21", grid={"dataset_samples": 64, "load_min_epochs": 1})
    row = rec.add("load", "ours", "samples_per_s", 10, size=8, batch_size=4, readers=2,
                  repeat_values=[9.0, 10.0, 1 / 3])
    assert (row["unit"], row["direction"]) == ("samples/s", "higher")
    assert row["repeat_values"] == [9.0, 10.0, 0.333333]
    assert row["config_hash"] == config_hash(row, {"dataset_samples": 64, "load_min_epochs": 1})
    other_budget = Recorder("CPU: x (2 cores)", grid={"dataset_samples": 128, "load_min_epochs": 1})
    twin = other_budget.add("load", "ours", "samples_per_s", 10, size=8, batch_size=4, readers=2)
    assert twin["config_hash"] != row["config_hash"]
    # a budget of another suite does not change a load cell's settings
    train_budget = Recorder("CPU: x (2 cores)", grid={"dataset_samples": 64, "load_min_epochs": 1, "train_steps": 9})
    same = train_budget.add("load", "ours", "samples_per_s", 10, size=8, batch_size=4, readers=2)
    assert same["config_hash"] == row["config_hash"]
    assert rec.add("load", "ours", "mb_per_s", 1, size=8, batch_size=4, readers=2)["direction"] == "higher"
    assert rec.add("train", "fast", "ms_per_step_median", 1, size=8)["direction"] == "lower"


def test_rows_get_the_state_of_their_cell_or_of_the_window_they_name():
    monitor = FakeMonitor()
    rec = Recorder("dev", monitor=monitor)
    assert "state" not in rec.add("load", "ours", "samples_per_s", 1, size=8)  # outside any window
    with rec.cell("train", "fast", ("samples_per_s",), size=8):
        first = rec.add("train", "fast", "samples_per_s", 1, size=8)
        second = rec.add("train", "fast", "ms_per_step_median", 1, size=8)
    assert first["state"]["window"][0] == second["state"]["window"][0] == 1.0
    since = rec.mark()
    later = rec.add("load", "ours", "samples_per_s", 1, size=8, since=since)
    assert later["state"]["window"][0] == since


def test_a_failing_cell_gives_error_rows_and_the_window_closes():
    rec = Recorder("dev", monitor=FakeMonitor())
    with rec.cell("train", "fast", ("samples_per_s", "ms_per_step_median"), size=8):
        raise RuntimeError("out of memory\nmore")
    assert [(r["metric"], r["value"], r["error"]) for r in rec.rows] == [
        ("samples_per_s", None, "RuntimeError: out of memory"),
        ("ms_per_step_median", None, "RuntimeError: out of memory")]
    assert "state" not in rec.add("load", "ours", "samples_per_s", 1, size=8)


def test_interrupts_are_not_recorded_as_failures():
    rec = Recorder("dev")
    with pytest.raises(KeyboardInterrupt), rec.cell("train", "fast", ("samples_per_s",), size=8):
        raise KeyboardInterrupt
    assert rec.rows == []
