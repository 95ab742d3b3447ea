"""`report`: result files from made-up devices and backends merged into one table, CSV and PNGs;
version-1 files (before backends) still read; the performance page; bad input exits 2."""
from __future__ import annotations

import csv
import json

import pytest

from pipeline.cli import main
from pipeline.results.format import FORMAT, unit_of


def row(device, suite, impl, metric, value, size, batch, *, feed=None, workers=None, error=None, backend=None):
    out = {"suite": suite, "impl": impl, "feed": feed, "size": size, "batch_size": batch, "workers": workers,
           "metric": metric, "value": value, "unit": unit_of(metric), "error": error, "device": device}
    if backend is not None:  # version-2 rows; version-1 rows (written before backends) have no such key
        out.update(backend=backend, backend_version="0.1", precision="float32" if suite in ("train", "accuracy")
                   else None)
    return out


def result(device, host, created, scale, *, failed_cell=False, backend=None):
    """A made-up result file: version 1 without `backend`, version 2 with it."""
    rows = []
    for size in (32, 50):
        for batch in (16, 32, 64):
            ms = scale * size * batch / 100
            for feed in ("ours", "in-memory"):
                rows += [row(device, "train", "fast", "ms_per_step_median", ms, size, batch, feed=feed),
                         row(device, "train", "fast", "ms_per_step_p10", 0.9 * ms, size, batch, feed=feed),
                         row(device, "train", "fast", "ms_per_step_p90", 1.2 * ms, size, batch, feed=feed),
                         row(device, "train", "fast", "samples_per_s", batch * 1e3 / ms, size, batch, feed=feed)]
            rows.append(row(device, "load", "ours", "samples_per_s", 1e4 / scale * batch, size, batch))
        rows.append(row(device, "generate", "ours", "samples_per_s", 5000.0 / scale, size, None, workers=2))
        rows.append(row(device, "generate", "ours", "samples_per_s", 2900.0 / scale, size, None, workers=1))
        rows.append(row(device, "generate", "book", "samples_per_s", 30.0 / scale, size, None, workers=1))
        rows.append(row(device, "accuracy", "fast", "accuracy", 0.99, size, 32, feed="in-memory"))
    if failed_cell:
        rows.append(row(device, "train", "book", "ms_per_step_median", None, 50, 64, feed="ours",
                        error="ResourceExhaustedError: OOM when allocating tensor"))
    if backend is not None:
        rows = [{**r, "backend": backend, "backend_version": "0.1",
                 "precision": "float32" if r["suite"] in ("train", "accuracy") else None} for r in rows]
    return {"format": FORMAT, "format_version": 1 if backend is None else 2, "created": created,
            "environment": {"host": host, "device": {"name": device}},
            "config": {"preset": "made-up", **({"backend": backend} if backend else {})}, "rows": rows}


@pytest.fixture
def two_files(tmp_path):
    a = tmp_path / "a.json"
    b = tmp_path / "b.json"
    a.write_text(json.dumps(result("NVIDIA A100-SXM4-40GB", "gpu-a", "2026-01-02T00:00:00Z", 1.0, failed_cell=True)))
    b.write_text(json.dumps(result("NVIDIA GeForce RTX 4090", "gpu-b", "2026-01-01T00:00:00Z", 2.0)))
    return a, b


def test_two_devices_merge_into_one_table_per_quantity(two_files, tmp_path, capsys):
    out = tmp_path / "report"
    assert main(["report", *map(str, two_files), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert (out / "report.md").read_text().strip() == text.strip()
    lines = text.splitlines()
    start = lines.index("#### train / fast, fed ours: ms_per_step_median (ms)")
    header, rule, first, second = lines[start + 2:start + 6]
    assert header == "| device | backend | 32 x 16 | 32 x 32 | 32 x 64 | 50 x 16 | 50 x 32 | 50 x 64 |"
    assert first == "| NVIDIA A100-SXM4-40GB | tensorflow | 5.12 | 10.2 | 20.5 | 8 | 16 | 32 |"
    assert second == "| NVIDIA GeForce RTX 4090 | tensorflow | 10.2 | 20.5 | 41 | 16 | 32 | 64 |"
    assert "| NVIDIA A100-SXM4-40GB | tensorflow | failed |" in text  # the OOM cell shows, not dropped
    assert "#### generate / ours, 2 workers: samples_per_s (samples/s)" in text
    assert "| NVIDIA GeForce RTX 4090 | tensorflow | 2,500 | 2,500 |" in text
    assert "#### accuracy / fast, fed in-memory: accuracy" in text


def test_csv_keeps_every_row_with_its_source(two_files, tmp_path):
    out = tmp_path / "report"
    assert main(["report", *map(str, two_files), "--out", str(out), "--no-plots"]) == 0
    with open(out / "report.csv", newline="") as f:
        table = list(csv.DictReader(f))
    total = sum(len(json.loads(p.read_text())["rows"]) for p in two_files)
    assert len(table) == total
    failed = [r for r in table if r["error"]]
    assert len(failed) == 1 and failed[0]["source"] == str(two_files[0]) and failed[0]["value"] == ""
    assert {r["host"] for r in table} == {"gpu-a", "gpu-b"}
    assert not list(out.glob("*.png"))


def test_plots_one_png_per_quantity_with_a_line_per_device(two_files, tmp_path):
    out = tmp_path / "report"
    assert main(["report", *map(str, two_files), "--out", str(out)]) == 0
    names = sorted(p.name for p in out.glob("*.png"))
    assert names == ["generate-samples_per_s.png", "load-pipelines.png", "load-samples_per_s-ours.png",
                     "train-ms_per_step_median-fast-in-memory.png",
                     "train-ms_per_step_median-fast-ours.png", "train-samples_per_s-fast-in-memory.png",
                     "train-samples_per_s-fast-ours.png"]
    for name in names:
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_newer_file_wins_a_duplicate_cell(tmp_path, capsys):
    old = result("dev", "h", "2026-01-01T00:00:00Z", 1.0)
    new = result("dev", "h", "2026-02-01T00:00:00Z", 2.0)
    paths = [tmp_path / "new.json", tmp_path / "old.json"]
    paths[0].write_text(json.dumps(new))
    paths[1].write_text(json.dumps(old))
    assert main(["report", *map(str, paths), "--out", str(tmp_path / "r"), "--no-plots",
                 "--suites", "generate"]) == 0
    text = capsys.readouterr().out
    assert "| dev | tensorflow | 2,500 | 2,500 |" in text and "train" not in text


def bad_cases() -> dict[str, tuple[str, str]]:
    """file name -> (contents, expected error text)."""
    ok = result("dev", "h", "2026-01-01T00:00:00Z", 1.0)
    unknown_suite = json.loads(json.dumps(ok))
    unknown_suite["rows"][0]["suite"] = "inference"
    missing_key = json.loads(json.dumps(ok))
    del missing_key["rows"][0]["metric"]
    return {
        "not-json.json": ("{ not json", "not JSON"),
        "foreign.json": (json.dumps({"format": "pytest-benchmark", "benchmarks": []}), "not a bench result"),
        "list.json": ("[1, 2]", "not a bench result"),
        "version.json": (json.dumps({**ok, "format_version": 99}), "format version 99, this version reads 1, 2, 3"),
        "no-rows.json": (json.dumps({**ok, "rows": None}), "without a 'rows' list"),
        "unknown-suite.json": (json.dumps(unknown_suite), "unknown suite 'inference'"),
        "missing-key.json": (json.dumps(missing_key), "row 0 lacks metric"),
        "empty.json": (json.dumps({**ok, "rows": []}), "empty grid"),
    }


@pytest.mark.parametrize("name", sorted(bad_cases()))
def test_bad_result_files_exit_2_with_one_line(tmp_path, capsys, name):
    text, message = bad_cases()[name]
    path = tmp_path / name
    path.write_text(text)
    out = tmp_path / "report"
    assert main(["report", str(path), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not out.exists()


@pytest.mark.parametrize("args, message", [
    (["--suites", "train,inference"], "unknown suite 'inference'"),
    (["--suites", "load", "--metrics", "accuracy"], "none of the metrics accuracy"),
])
def test_bad_options_exit_2(two_files, tmp_path, capsys, args, message):
    assert main(["report", *map(str, two_files), "--out", str(tmp_path / "r"), *args]) == 2
    assert message in capsys.readouterr().err


def test_unreadable_file_and_missing_arguments_exit_2(tmp_path, capsys):
    assert main(["report", str(tmp_path / "missing.json"), "--out", str(tmp_path / "r")]) == 2
    assert "missing.json: unreadable" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(["report"])
    assert e.value.code == 2


def test_backends_sit_beside_the_device_and_old_files_read_as_tensorflow(tmp_path, capsys):
    old = tmp_path / "old.json"  # version 1: no backend anywhere
    new = tmp_path / "new.json"
    old.write_text(json.dumps(result("H200", "gpu", "2026-01-01T00:00:00Z", 1.0)))
    new.write_text(json.dumps(result("H200", "gpu", "2026-02-01T00:00:00Z", 0.5, backend="jax")))
    out = tmp_path / "report"
    assert main(["report", str(old), str(new), "--out", str(out), "--no-plots"]) == 0
    text = capsys.readouterr().out
    assert "- H200, jax 0.1\n- H200, tensorflow\n" in text
    lines = text.splitlines()
    start = lines.index("#### train / fast, fed ours: ms_per_step_median (ms)")
    assert lines[start + 4:start + 6] == ["| H200 | jax | 2.56 | 5.12 | 10.2 | 4 | 8 | 16 |",
                                          "| H200 | tensorflow | 5.12 | 10.2 | 20.5 | 8 | 16 | 32 |"]
    with open(out / "report.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert {r["backend"] for r in table if r["source"] == str(old)} == {"tensorflow"}
    assert {r["precision"] for r in table if r["source"] == str(old) and r["suite"] == "train"} == {"float32"}
    # the same cell on two backends is two cells, never one replacing the other
    assert len(table) == sum(len(json.loads(p.read_text())["rows"]) for p in (old, new))


def test_former_names_of_the_books_workflow_read_as_book(tmp_path, capsys):
    old = result("H200", "gpu", "2026-01-01T00:00:00Z", 1.0, backend="tensorflow")
    for r in old["rows"]:
        r["impl"] = {"book": "seed"}.get(r["impl"], r["impl"])
    old["rows"].append(row("H200", "train", "seed-workflow", "ms_per_step_median", 90.0, 50, 32, feed="in-memory",
                           backend="tensorflow"))
    old["config"]["preset"] = "seed-budget"
    path = tmp_path / "old.json"
    path.write_text(json.dumps(old))
    out = tmp_path / "report"
    assert main(["report", str(path), "--out", str(out), "--no-plots"]) == 0
    text = capsys.readouterr().out
    assert "generate / book" in text and "train / book-workflow" in text and "seed" not in text
    with open(out / "report.csv", newline="") as f:
        impls = {r["impl"] for r in csv.DictReader(f)}
    assert {"book", "book-workflow"} <= impls and not impls & {"seed", "seed-workflow"}
    page = tmp_path / "performance.md"
    assert main(["report", str(path), "--page", str(page), "--no-plots"]) == 0
    assert "| made-up |" not in page.read_text() and "| book-budget |" in page.read_text()


def test_plots_draw_one_line_per_backend_and_device(tmp_path, monkeypatch):
    from pipeline.results import report

    drawn = []
    real = report._label
    monkeypatch.setattr(report, "_label",
                        lambda device, backend: drawn.append((device, backend)) or real(device, backend))
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps(result("H200", "gpu", "2026-01-01T00:00:00Z", 1.0, backend="jax")))
    b.write_text(json.dumps(result("H200", "gpu", "2026-01-02T00:00:00Z", 2.0, backend="tensorflow")))
    assert main(["report", str(a), str(b), "--out", str(tmp_path / "r"), "--suites", "train"]) == 0
    per_plot = len(drawn) / len(list((tmp_path / "r").glob("train-*.png")))
    assert per_plot == 2 * 2  # two panels (sizes), a line per (device, backend) in each
    assert set(drawn) == {("H200", "jax"), ("H200", "tensorflow")}


def test_pipeline_comparison_draws_each_shuffled_pipeline_at_its_default_readers(tmp_path):
    from unittest import mock

    from pipeline.results import report
    from pipeline.results.format import normalize_row

    rows = []
    for impl, workers, shuffle, value in (("in-memory", None, True, 100.0), ("ours-packed", 1, True, 150.0),
                                          ("ours-packed", 2, True, 250.0), ("ours-packed", 2, False, 999.0),
                                          ("ours", 2, True, 50.0)):
        for batch in (32, 256):
            rows.append({**row("cpu", "load", impl, "samples_per_s", value, 50, batch, workers=workers,
                               backend="tensorflow"), "shuffle": shuffle})
    rows = [normalize_row(r) for r in rows]
    with mock.patch("matplotlib.axes.Axes.bar", autospec=True) as bar:
        assert report.plot_load_pipelines(rows, tmp_path) == [tmp_path / "load-pipelines.png"]
    drawn = {call.kwargs["label"]: call.args[2] for call in bar.call_args_list}
    assert drawn == {"in-memory": (100.0, 100.0), "ours": (50.0, 50.0), "ours-packed": (250.0, 250.0)}
    assert report.plot_load_pipelines([r for r in rows if r["suite"] != "load"], tmp_path) == []


def test_the_pipeline_comparison_shows_tf_data_as_fit_pulls_it_and_consumers_plot_apart(tmp_path):
    from unittest import mock

    from pipeline.results import report
    from pipeline.results.format import normalize_row

    rows = [normalize_row({**row("cpu", "load", "in-memory", "samples_per_s", value, 50, 32, backend="tensorflow"),
                           "shuffle": True, "consumer": consumer})
            for consumer, value in (("python", 100.0), ("tf.function", 60.0))]
    with mock.patch("matplotlib.axes.Axes.bar", autospec=True) as bar:
        report.plot_load_pipelines(rows, tmp_path)
    assert [call.args[2] for call in bar.call_args_list] == [(60.0,)]
    names = sorted(p.name for p in report.plot(rows, tmp_path))
    assert names == ["load-samples_per_s-in-memory-from-tf.function.png", "load-samples_per_s-in-memory.png"]


def test_au_plot_draws_ours_and_the_synthetic_floor_against_demand(tmp_path):
    from unittest import mock

    from pipeline.results import report
    from pipeline.results.format import normalize_row

    rows = [normalize_row({**row("cpu", "au", impl, "au", au, 50, 32, backend="jax"), "front_end": "numpy",
                           "consumer": "python", "demand": demand})
            for impl, scale in (("ours-packed", 0.9), ("synthetic", 1.0)) for demand, au in ((0.5, scale),
                                                                                            (1.0, scale - 0.1))]
    with mock.patch("matplotlib.axes.Axes.plot", autospec=True) as plot:
        assert report.plot_au(rows, tmp_path) == [tmp_path / "au-utilization.png"]
    drawn = [(call.args[1], call.args[2], call.args[3]) for call in plot.call_args_list]
    assert drawn == [((0.5, 1.0), (0.9, 0.8), "-"), ((0.5, 1.0), (1.0, 0.9), "--")]
    assert report.plot_au([r for r in rows if r["suite"] != "au"], tmp_path) == []


def test_one_gpu_model_on_different_machines_stays_apart(tmp_path):
    """Same GPU name: a 1-GPU and an 8-GPU node, and two 1-GPU hosts with different CPUs, are three lines;
    the same machine measured twice keeps the newer value."""
    from pipeline.results import report

    def doc(created, gpus, cpu, scale):
        d = result("NVIDIA H200", "node", created, scale, backend="jax")
        d["environment"].update(device={"name": "NVIDIA H200", "gpu_count": gpus}, cpu={"model": cpu, "cores": 16})
        return d

    files = []
    for i, (gpus, cpu, scale) in enumerate([(1, "Xeon", 1.0), (8, "Xeon", 2.0), (1, "EPYC", 3.0), (1, "Xeon", 4.0)]):
        files.append((tmp_path / f"{i}.json", doc(f"2026-01-0{i + 1}T00:00:00Z", gpus, cpu, scale)))
    rows = report.merge(files)
    load = {r["machine"]: r["value"] for r in rows if r["suite"] == "load" and (r["size"], r["batch_size"]) == (50, 32)}
    assert load == {"NVIDIA H200, host Xeon (16 cores)": 1e4 / 4.0 * 32,  # the newer of the two Xeon hosts
                    "NVIDIA H200 x8, host Xeon (16 cores)": 1e4 / 2.0 * 32,
                    "NVIDIA H200, host EPYC (16 cores)": 1e4 / 3.0 * 32}
    assert "| NVIDIA H200 x8, host Xeon (16 cores) | jax |" in report.tables(rows)


def test_load_rows_of_older_files_read_with_readers_and_front_end():
    from pipeline.results.format import normalize_row

    old_jax = normalize_row({**row("cpu", "load", "ours-packed", "samples_per_s", 1.0, 50, 32, workers=2,
                                   backend="jax"), "mechanism": "numpy", "codec": "nbit-gzip"})
    assert (old_jax["readers"], old_jax["workers"], old_jax["front_end"], old_jax["mechanism"]) == \
        (2, None, "numpy", "isal")
    old_tf = normalize_row({**row("cpu", "load", "ours", "samples_per_s", 1.0, 50, 32, workers=1,
                                  backend="tensorflow"), "mechanism": "isal"})
    assert (old_tf["readers"], old_tf["workers"], old_tf["front_end"], old_tf["mechanism"], old_tf["consumer"]) == \
        (1, None, "tf.data", "isal", "python")  # they were pulled from a Python loop
    current = {**row("cpu", "load", "ours", "samples_per_s", 1.0, 50, 32, backend="jax"), "readers": 3,
               "front_end": "numpy", "mechanism": "isal", "consumer": "python"}
    assert normalize_row(current) == {**current, "workers": None, "machine": "cpu", "devices": 1, "processes": 1,
                                      "direction": "higher", "repeat_values": [],
                                      "config_hash": normalize_row(current)["config_hash"]}
    generate = row("cpu", "generate", "ours", "samples_per_s", 1.0, 50, None, workers=2)
    assert normalize_row(generate)["workers"] == 2 and "readers" not in normalize_row(generate)


def test_performance_page_with_plots_beside_it(two_files, tmp_path, capsys):
    docs = tmp_path / "docs"
    page = docs / "performance.md"
    assert main(["report", *map(str, two_files), "--page", str(page)]) == 0
    text = page.read_text()
    assert capsys.readouterr().out.strip() == text.strip()
    assert text.startswith("# Performance\n")
    assert "python -m pipeline report" in text and f"--page {page}" in text
    assert "| file | created | device | backend | preset | commit |" in text
    for suite in ("generate", "load", "train", "accuracy"):
        assert f"\n## {suite}\n" in text
    images = sorted(p.name for p in docs.glob("*.png"))
    assert images and all(name.startswith("performance-") for name in images)
    assert {"performance-load-pipelines.png", "performance-generate-samples_per_s.png"} <= set(images)
    for name in images:
        assert f"]({name})" in text  # linked from the page, relative to it
    assert not (tmp_path / "bench").exists()  # nothing written to --out


def test_a_new_page_removes_only_the_plots_its_old_version_linked(two_files, tmp_path):
    docs = tmp_path / "docs"
    page = docs / "performance.md"
    assert main(["report", *map(str, two_files), "--page", str(page)]) == 0
    before = {p.name for p in docs.glob("*.png")}
    theirs = [docs / "performance-by-hand.png", docs / "diagram.png"]  # not written by report
    for path in theirs:
        path.write_bytes(b"png")
    assert main(["report", *map(str, two_files), "--page", str(page), "--suites", "generate"]) == 0
    after = {p.name for p in docs.glob("*.png")}
    assert after == {"performance-generate-samples_per_s.png", *(p.name for p in theirs)}
    assert before - after and all(name in before for name in after - {p.name for p in theirs})


def test_page_path_must_be_markdown(two_files, tmp_path, capsys):
    assert main(["report", *map(str, two_files), "--page", str(tmp_path)]) == 2
    assert "expected a Markdown file path" in capsys.readouterr().err
