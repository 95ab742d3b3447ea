"""The `au` suite: AU arithmetic, the fastest accelerator kept busy, and a tiny sweep of every front end."""
from __future__ import annotations

import dataclasses
import time

import pytest

from pipeline.bench import au
from pipeline.bench import grid as grid_module
from pipeline.bench.recorder import Recorder
from pipeline.results.format import value_of
from pipeline.results.summary import markdown_summary

GRID = grid_module.Grid(sizes=(8,), batch_sizes=(8,), suites=("au",), au_demands=(0.1, 0.5), au_buffer_multiple=1,
                        dataset_samples=96, dataset_test_samples=40, dataset_shard_size=32)


def test_utilization_is_busy_time_over_wall_time():
    assert au.utilization([0.1, 0.2, 0.1], 0.5) == pytest.approx(0.8)
    assert au.utilization([1.0], 0.5) == 1.0 and au.utilization([0.1], 0.0) == 0.0


def test_the_fastest_accelerator_kept_busy_is_the_shortest_step_at_95_percent():
    points = [(0.25, 0.004, 0.99, 1), (0.5, 0.002, 0.97, 1), (0.8, 0.00125, 0.93, 1), (1.0, 0.001, 0.80, 1)]
    assert au.fastest_kept_busy(points) == 0.002
    assert au.fastest_kept_busy([(1.0, 0.001, 0.5, 1)]) is None


def test_a_paced_consumer_is_busy_while_the_puller_is_instant():
    au_, samples = au.paced(lambda: 8, calls=21, step_s=0.002)
    assert samples == 8 * 21 and 0.8 < au_ <= 1.0


def test_the_accelerator_runs_a_step_while_the_host_pulls_the_next_batch():
    # a pull of 4 ms beside a step of 12 ms: serialized, the accelerator would be busy 75% of the time
    au_, _ = au.paced(lambda: time.sleep(0.004) or 8, calls=16, step_s=0.012)
    assert au_ > 0.9
    # a pull slower than the step: the accelerator waits for the host
    au_, _ = au.paced(lambda: time.sleep(0.012) or 8, calls=11, step_s=0.004)
    assert au_ < 0.5


def test_k_steps_per_call_compute_k_steps_after_each_pull():
    pulls = []
    start = au.clock()
    au_, samples = au.paced(lambda: pulls.append(1) or 32, calls=6, step_s=0.002, steps_per_call=4)
    assert samples == 6 * 32 and len(pulls) == 6
    assert au.clock() - start >= 6 * 4 * 0.002 and 0.8 < au_ <= 1.0


def test_tiny_sweep_records_ours_and_the_synthetic_floor_per_front_end(tiny_dataset):
    rec = Recorder("dev", "tensorflow", "x")
    au.run(rec, GRID, {8: tiny_dataset})
    rows = rec.rows
    assert [r for r in rows if r["error"]] == []
    consumers = (("tf.data", "tf.function"), ("tf.data", "tf.function-K"), ("numpy", "python"))
    assert {(r["impl"], r["front_end"], r["consumer"]) for r in rows} == {
        (impl, f, c) for impl in ("ours-packed", "synthetic") for f, c in consumers}
    for front_end, consumer in consumers:
        alone = value_of(rows, impl="ours-packed", front_end=front_end, consumer=consumer, metric="alone_samples_per_s")
        steps = {}
        for impl in ("ours-packed", "synthetic"):
            points = [r for r in rows if r["impl"] == impl and r["front_end"] == front_end
                      and r["consumer"] == consumer and r["metric"] == "au"]
            ks = {r["steps_per_execution"] for r in points}
            assert ks == {1} if consumer != "tf.function-K" else ks <= {1, 2, 3, 4, 6, 12}  # divisors of the epoch
            assert sorted(r["demand"] for r in points) == [0.1, 0.5]
            assert all(0 < r["value"] <= 1 for r in points)
            steps[impl] = {r["demand"]: r["step_ms"] for r in points}
        assert steps["synthetic"] == steps["ours-packed"]  # both consumers are given the same steps
        # a step asks its demand of the loader speed measured just before it; the row gives their median
        speeds = sorted(8 / (demand * step_ms / 1e3) for demand, step_ms in steps["ours-packed"].items())
        assert alone == pytest.approx(sum(speeds) / 2)
    doc = {"created": "c", "config": {"preset": "t"}, "rows": rows,
           "environment": {"device": {"name": "dev"}, "git": {"commit": None, "dirty": None}}}
    assert "| 8 | 8 | numpy | python |" in markdown_summary(doc)


def test_bad_demands_are_refused():
    with pytest.raises(ValueError, match="au demands"):
        dataclasses.replace(GRID, au_demands=(0.0,))
