"""Wide tables: a row per configuration and machine, a column per size x batch, each cell 'median [p10-p90]'
with its spread from the repeats or the sibling p10/p90 rows, `!` where noisy, `failed` where failed."""
from __future__ import annotations

from pathlib import Path

import pytest

from helpers import CPU, GPU, bench_result
from pipeline.results.compare import comparison
from pipeline.results.files import merge
from pipeline.results.format import normalize_row, unit_of
from pipeline.results.tables import (
    MachineNames,
    Rows,
    Scale,
    Stat,
    accuracy_tables,
    au_tables,
    cell_text,
    generate_tables,
    load_tables,
    shuffle_cost,
    train_tables,
)


def row(suite, impl, metric, value, size=50, batch=32, *, device="cpu", backend="tensorflow", error=None, **keys):
    """A normalized row of a made-up machine `device`."""
    return normalize_row({"suite": suite, "impl": impl, "feed": keys.pop("feed", None), "size": size,
                          "batch_size": batch, "workers": keys.pop("workers", None), "metric": metric,
                          "value": value, "unit": unit_of(metric), "error": error, "device": device,
                          "backend": backend, "backend_version": "1", **keys})


def load_rows(device, backend, value, *, p10, p90, **keys):
    base = dict(device=device, backend=backend, readers=2, front_end="tf.data", consumer="tf.function", **keys)
    return [row("load", "ours", "samples_per_s", value, **base),
            row("load", "ours", "samples_per_s_p10", p10, **base),
            row("load", "ours", "samples_per_s_p90", p90, **base)]


def test_spread_from_repeat_values_by_linear_interpolation():
    rows = Rows([row("load", "ours", "samples_per_s", 30.0, repeat_values=[10.0, 20.0, 30.0, 40.0, 50.0])])
    stat = rows.stat(rows.rows[0])
    assert (stat.median, stat.p10, stat.p90, stat.n) == (30.0, 14.0, 46.0, 5)
    assert stat.noisy and cell_text(stat, Scale().number) == "30 [14-46]!"


def test_spread_from_sibling_rows_where_the_file_kept_no_repeats():
    rows = Rows([*load_rows("cpu", "tensorflow", 100.0, p10=96.0, p90=104.0),
                 row("accuracy", "fast", "accuracy", 0.99, feed="in-memory"),
                 row("accuracy", "fast", "accuracy_min", 0.97, feed="in-memory"),
                 row("accuracy", "fast", "accuracy_max", 1.0, feed="in-memory")])
    load, acc = rows.rows[0], rows.rows[3]
    assert rows.stat(load) == Stat(100.0, 96.0, 104.0, 1) and not rows.stat(load).noisy  # 8% wide
    assert cell_text(rows.stat(load), Scale().number) == "100 [96-104]"
    assert (rows.stat(acc).p10, rows.stat(acc).p90) == (0.97, 1.0)


def test_a_sibling_of_another_machine_or_setting_is_not_a_spread():
    rows = Rows([row("load", "ours", "samples_per_s", 100.0, readers=2),
                 row("load", "ours", "samples_per_s_p10", 90.0, readers=1),
                 row("load", "ours", "samples_per_s_p90", 110.0, readers=2, device="other")])
    assert rows.stat(rows.rows[0]) == Stat(100.0)


@pytest.mark.parametrize("stat, text", [(None, ""), (Stat(None, error="OOM"), "failed"), (Stat(12.345), "12.3"),
                                        (Stat(67_154.0, 65_000.0, 69_100.0), "67.2 [65-69.1]")])
def test_cell_text(stat, text):
    scale = Scale.of([67_154.0]) if stat is not None and stat.median and stat.median > 1e4 else Scale()
    assert cell_text(stat, scale.number) == text


def test_a_table_scales_its_unit_once():
    assert Scale.of([9_999.0, 5.0]) == Scale() and Scale.of([10_000.0]).unit("samples/s") == "k samples/s"
    assert Scale.of([2e7]).number(2.5e7) == "25" and Scale().number(1234.4) == "1,234"


def test_load_table_a_row_per_pipeline_consumer_and_machine_a_column_per_size_and_batch():
    rows = []
    for device, scale in (("cpu-a", 1.0), ("cpu-b", 2.0)):
        for size, batch in ((32, 32), (50, 32), (50, 256)):
            value = 20_000.0 * scale * batch / size
            rows += load_rows(device, "tensorflow", value, p10=0.95 * value, p90=1.2 * value, size=size, batch=batch,
                              shuffle=True)
            rows += load_rows(device, "tensorflow", value * 1.25, p10=value, p90=value * 1.3, size=size, batch=batch,
                              shuffle=False)
    rows.append(row("load", "in-memory", "samples_per_s", None, 50, 256, device="cpu-a", front_end="tf.data",
                    consumer="tf.function", shuffle=True, error="ResourceExhaustedError: OOM"))
    lines = load_tables(Rows(rows))
    assert lines[0] == "*Loader throughput, shuffled, k samples/s*"
    assert lines[2:] == [
        "| pipeline | consumed | machine | 32 x 32 | 50 x 32 | 50 x 256 |",
        "| --- | --- | --- | ---: | ---: | ---: |",
        "| in-memory | tf.data/tf.function | cpu-a, tensorflow |  |  | failed |",
        "| ours, 2 readers | tf.data/tf.function | cpu-a, tensorflow | 20 [19-24]! | 12.8 [12.2-15.4]! "
        "| 102 [97.3-123]! |",
        "| ours, 2 readers | tf.data/tf.function | cpu-b, tensorflow | 40 [38-48]! | 25.6 [24.3-30.7]! "
        "| 205 [195-246]! |",
        "",
        "Shuffled over unshuffled samples/s, median [min-max] over machines, sizes and batches: "
        "ours 0.80x [0.80-0.80].", ""]  # unshuffled runs only in the sentence (and the CSV)
    assert shuffle_cost(Rows([r for r in rows if r.get("shuffle") is not False])) is None


def test_train_tables_step_time_input_bound_and_scaling():
    rows = []
    for feed, ms in (("ours", 26.0), ("synthetic", 24.0)):
        for metric, value in (("ms_per_step_median", ms), ("ms_per_step_p10", ms - 1), ("ms_per_step_p90", ms + 1)):
            rows.append(row("train", "fast", metric, value, feed=feed, precision="float32"))
    rows.append(row("train", "fast", "input_bound_fraction", 1 - 24 / 26, feed="ours", precision="float32"))
    rows.append(row("train", "book-workflow", "ms_per_step_median", 363.0, feed="in-memory", precision="float64"))
    for n, rate, efficiency in ((1, 1000.0, 1.0), (2, 1800.0, 0.9), (4, 3200.0, 0.8)):
        for metric, value in (("scaling_samples_per_s", rate), ("scaling_samples_per_s_p10", 0.95 * rate),
                              ("scaling_samples_per_s_p90", 1.05 * rate), ("scaling_efficiency", efficiency)):
            rows.append(row("train", "fast", metric, value, feed="ours", precision="float32", devices=n))
    text = "\n".join(train_tables(Rows(rows)))
    assert "| model | feed | machine | 50 x 32 |\n| --- | --- | --- | ---: |\n" \
           "| book-workflow, float64 | in-memory | cpu, tensorflow | 363 |\n" \
           "| fast | ours | cpu, tensorflow | 26 [25-27] |\n" \
           "| fast | synthetic | cpu, tensorflow | 24 [23-25] |\n" in text
    assert "*Input-bound share of the step, 1 - synthetic / fed*" in text
    assert "| fast | ours | cpu, tensorflow | 8% |" in text
    assert "| model | size x batch | processes | machine | 1 device | 2 devices | 4 devices |" in text
    assert "| fast | 50 x 32 | 1 | cpu, tensorflow | 1,000 [950-1,050] | 1,800 [1,710-1,890] (90%) " \
           "| 3,200 [3,040-3,360] (80%) |" in text


def test_au_table_bounds_a_sweep_that_never_kept_the_accelerator_busy():
    keys = dict(front_end="numpy", consumer="python")
    rows = [row("au", impl, "au95_samples_per_s", value, 50, 32, **keys)
            for impl, value in (("ours-packed", None), ("synthetic", 42_000.0))]
    rows += [row("au", "ours-packed", "au", au, 50, 32, demand=demand, step_ms=step_ms, **keys)
             for demand, au, step_ms in ((0.5, 0.9, 4.0), (1.0, 0.8, 2.0))]
    lines = au_tables(Rows(rows))
    assert lines[4:6] == ["| ours-packed | numpy/python | cpu, tensorflow | <8 |",  # 32 samples / 4 ms
                          "| synthetic | numpy/python | cpu, tensorflow | 42 |"]
    assert au_tables(Rows(rows[:2]))[4] == "| ours-packed | numpy/python | cpu, tensorflow | <95% |"  # no sweep rows


def test_generate_and_accuracy_tables():
    rows = [row("generate", impl, "samples_per_s", value, size, None, workers=workers)
            for impl, workers, size, value in (("book", 1, 32, 2_137.0), ("ours", 2, 32, 248_075.0),
                                               ("ours", 1, 32, 123_650.0), ("ours", 2, 50, 126_444.0))]
    assert generate_tables(Rows(rows))[2:7] == [
        "| generator | workers | machine | 32 | 50 |", "| --- | --- | --- | ---: | ---: |",
        "| book | 1 | cpu, tensorflow | 2.14 |  |", "| ours | 1 | cpu, tensorflow | 124 |  |",
        "| ours | 2 | cpu, tensorflow | 248 | 126 |"]
    acc = [row("accuracy", "fast", m, v, feed="in-memory", train_samples=5000, variant="trail")
           for m, v in (("accuracy", 0.9997), ("accuracy_min", 0.4918), ("accuracy_max", 1.0))]
    assert accuracy_tables(Rows(acc))[-2] == "| fast | 5000 | trail | cpu, tensorflow | 0.9997 [0.4918-1.0000]! |"


def test_machines_are_named_by_the_headline_comparisons_letters():
    a, b = Path("a.json"), Path("b.json")
    docs = [(a, bench_result(CPU, load=[(50, 32, [9e3, 1e4, 1.1e4])])),
            (b, bench_result(GPU, load=[(50, 32, [9e4, 1e5, 1.1e5])]))]
    comp = comparison([], docs)
    names = MachineNames(comp)
    rows = merge(docs)
    letters = {names.short(r) for r in rows}
    assert letters == {"A", "B"}
    gpu_row = next(r for r in rows if r["device"] == GPU["name"])
    assert names.long(gpu_row) == f"{names.short(gpu_row)} {comp.machines[ord(names.short(gpu_row)) - 65].label}"
    assert names.key(rows).startswith("A: ") and "; B: " in names.key(rows)
    assert MachineNames().short(gpu_row) == "NVIDIA H100, host Xeon (16 cores), tensorflow"  # no letters


def test_fit_tables_give_each_steps_per_call_and_feed_and_the_input_bound_share():
    rows = [row("train", "fast", "fit_ms_per_step", 25.0, feed="ours", execution="K=1", steps_per_execution=1,
                repeat_values=[24.0, 25.0, 26.0]),
            row("train", "fast", "fit_ms_per_step", 24.0, feed="synthetic", execution="K=1", steps_per_execution=1),
            row("train", "fast", "fit_ms_per_step", 22.0, feed="ours", execution="K=auto", steps_per_execution=8),
            row("train", "fast", "fit_input_bound_fraction", 0.04, feed="ours", execution="K=1"),
            row("train", "fast", "fit_ms_per_step", 30.0, feed="ours", device="old")]  # a file from before K
    text = "\n".join(train_tables(Rows(rows)))
    assert "| fast | K=1 | ours | cpu, tensorflow | 25 [24.2-25.8] |" in text
    assert "| fast | K=1 | synthetic | cpu, tensorflow | 24 |" in text
    assert "| fast | K=auto (8) | ours | cpu, tensorflow | 22 |" in text
    assert "| fast | K=1 | ours | old, tensorflow | 30 |" in text
    assert "| fast | K=1 | cpu, tensorflow | 4% |" in text
