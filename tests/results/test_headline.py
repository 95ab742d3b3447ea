"""The headline cells of a run: which rows they take, their spread, their lines."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from helpers import CPU, GPU, bench_result
from pipeline.bench.command import headline
from pipeline.bench.recorder import Recorder
from pipeline.results.files import merge
from pipeline.results.headline import default_precision, headline_cells, headline_lines, sort_key


def test_headline_cells_take_the_feed_training_uses_and_the_spread_of_the_repeats():
    cpu = bench_result(CPU, train=[(50, 32, [10.0, 11.0, 12.0, 13.0, 14.0])], load=[(50, 32, [960.0, 1000.0, 1040.0])])
    cells = headline_cells(merge([(Path("a.json"), cpu)]), CPU)
    assert list(cells) == ["train fast 50x32", "input-bound fast 50x32", "load 50x32"]
    train = cells["train fast 50x32"]
    assert train.median == pytest.approx(32e3 / 12.0) and train.ms_per_step == 12.0 and train.n == 5
    rates = [32e3 / s for s in (10.0, 11.0, 12.0, 13.0, 14.0)]
    assert (train.p10, train.p90) == (pytest.approx(np.percentile(rates, 10)), pytest.approx(np.percentile(rates, 90)))
    load = cells["load 50x32"]
    assert (load.median, load.p10, load.p90) == (1000.0, 968.0, 1032.0) and not load.noisy
    lines = headline_lines(cells, "headline")
    assert len(lines) == 5 and "ms/step" in lines[2] and "samples/s" in lines[2]


def test_gpu_headline_uses_packed_batches_in_the_device_default_precision():
    gpu = bench_result(GPU, train=[(50, 32, [1.0, 1.0, 1.0])])
    cells = headline_cells(merge([(Path("g.json"), gpu)]), GPU)
    assert cells["train fast 50x32"].row["feed"] == "ours-packed"
    assert cells["train fast 50x32"].row["precision"] == "mixed_bfloat16"


def test_default_precision_follows_the_compute_capability():
    assert [default_precision(d) for d in (CPU, {"kind": "gpu", "compute_capability": "7.5"}, GPU,
                                           {"kind": "gpu", "compute_capability": "6.1"})] == \
        ["float32", "mixed_float16", "mixed_bfloat16", "float32"]


def test_au95_generation_and_accuracy_cells():
    rec = Recorder(CPU["name"], "tensorflow", "2.21")
    key = dict(size=50, batch_size=32, front_end="tf.data")
    rec.add("au", "ours-packed", "au95_samples_per_s", 5e4, **key, consumer="tf.function-K")
    rec.add("au", "ours-packed", "au95_samples_per_s", 800.0, **key, consumer="tf.function",
            repeat_values=[700.0, 800.0, 900.0])
    rec.add("au", "ours-packed", "au95_samples_per_s", 9e5, size=50, batch_size=32, front_end="numpy")
    for workers, rate in ((1, 100.0), (2, 90.0)):
        rec.add("generate", "ours", "per_worker_samples_per_s", rate, size=50, workers=workers,
                repeat_values=[rate] * 3)
    rec.add("accuracy", "fast", "accuracy", 0.99, size=50, variant="trail", repeat_values=[0.98, 0.99, 1.0])
    rec.add("accuracy", "fast", "accuracy", 0.6, size=50, variant="trail+wrap")
    cells = headline_cells(merge([(Path("x.json"), {"rows": rec.rows})]), CPU)
    assert list(cells) == ["AU95 50x32", "generate 50", "accuracy fast 50"]
    # tf.data as fit pulls it by default: a step per call
    assert cells["AU95 50x32"].median == 800.0 and cells["AU95 50x32"].n == 3
    assert cells["generate 50"].median == 90.0  # per worker, at the most workers measured
    assert cells["accuracy fast 50"].median == 0.99  # not the wrap variant


def test_cells_sort_by_kind_then_size_and_batch_as_numbers():
    keys = ["load 100x32", "train fast 50x256", "load 50x32", "train fast 50x32", "accuracy fast 50"]
    assert sorted(keys, key=sort_key) == ["train fast 50x32", "train fast 50x256", "load 50x32", "load 100x32",
                                          "accuracy fast 50"]


def test_bench_ends_with_its_headline_and_the_compare_command():
    doc = bench_result(CPU, train=[(size, batch, [10.0, 11.0, 12.0]) for size in (32, 50, 100)
                                   for batch in (32, 64, 256, 1024)],
                       load=[(size, batch, [1.0, 2.0, 3.0]) for size in (32, 50) for batch in (32, 256)])
    text = headline(doc, Path("bench/results/x.json"))
    lines = text.splitlines()
    assert len(lines) <= 30 and lines[0] == "headline: Test CPU 2c, tensorflow 2.21.0"
    assert lines[-1] == "compare with the reference machines: python -m pipeline compare bench/results/x.json"


def test_au95_of_a_sweep_that_kept_no_step_busy_is_an_upper_bound():
    rec = Recorder(CPU["name"], "tensorflow", "2.21")
    key = dict(size=50, batch_size=32, front_end="tf.data", consumer="tf.function")
    for demand, step_ms, au in ((0.25, 4.0, 0.8), (0.5, 2.0, 0.6)):
        rec.add("au", "ours-packed", "au", au, **key, demand=demand, step_ms=step_ms)
    rec.add("au", "ours-packed", "au95_samples_per_s", None, **key)
    cell = headline_cells(merge([(Path("x.json"), {"rows": rec.rows})]), CPU)["AU95 50x32"]
    assert (cell.median, cell.below) == (8000.0, True)  # below the slowest step's 32 samples / 4 ms
    assert "<8,000" in headline_lines({"AU95 50x32": cell}, "h")[2]
