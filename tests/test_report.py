"""`report`: two result files from made-up devices merged into one table, CSV and PNGs; bad input exits 2."""
from __future__ import annotations

import csv
import json

import pytest

from pipeline import bench
from pipeline.cli import main


def row(device, suite, impl, metric, value, size, batch, *, feed=None, workers=None, error=None):
    return {"suite": suite, "impl": impl, "feed": feed, "size": size, "batch_size": batch, "workers": workers,
            "metric": metric, "value": value, "unit": bench.UNITS.get(metric, ""), "error": error, "device": device}


def result(device, host, created, scale, *, failed_cell=False):
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
        rows.append(row(device, "generate", "seed", "samples_per_s", 30.0 / scale, size, None, workers=1))
        rows.append(row(device, "accuracy", "fast", "accuracy", 0.99, size, 32, feed="in-memory"))
    if failed_cell:
        rows.append(row(device, "train", "seed", "ms_per_step_median", None, 50, 64, feed="ours",
                        error="ResourceExhaustedError: OOM when allocating tensor"))
    return {"format": bench.FORMAT, "format_version": bench.FORMAT_VERSION, "created": created,
            "environment": {"host": host, "device": {"name": device}}, "config": {"preset": "made-up"}, "rows": rows}


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
    assert header == "| device | 32 x 16 | 32 x 32 | 32 x 64 | 50 x 16 | 50 x 32 | 50 x 64 |"
    assert first == "| NVIDIA A100-SXM4-40GB | 5.12 | 10.2 | 20.5 | 8 | 16 | 32 |"
    assert second == "| NVIDIA GeForce RTX 4090 | 10.2 | 20.5 | 41 | 16 | 32 | 64 |"
    assert "| NVIDIA A100-SXM4-40GB | failed |" in text  # the OOM cell shows, not dropped
    assert "#### generate / ours, 2 workers: samples_per_s (samples/s)" in text
    assert "| NVIDIA GeForce RTX 4090 | 2,500 | 2,500 |" in text
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
    assert names == ["generate-samples_per_s.png", "load-samples_per_s-ours.png",
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
    assert "| dev | 2,500 | 2,500 |" in text and "train" not in text


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
        "version.json": (json.dumps({**ok, "format_version": 99}), "format version 99"),
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
