"""`report`: result files from made-up devices and backends merged into wide tables, CSV and PNGs; version-1
files (before backends) still read; `--check` over every committed reference; bad input exits 2."""
from __future__ import annotations

import csv
import json
import re

import pytest

from helpers import ROOT
from pipeline.cli import main
from pipeline.results.format import FORMAT, unit_of

REFERENCES = ROOT / "bench" / "results" / "reference"


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
            "environment": {"host": host, "device": {"name": device, "kind": "gpu"},
                            "cpu": {"model": "Xeon", "cores": 8}, "versions": {backend or "tensorflow": "0.1"}},
            "config": {"preset": "made-up", **({"backend": backend} if backend else {})}, "rows": rows}


@pytest.fixture
def two_files(tmp_path):
    a = tmp_path / "a.json"
    b = tmp_path / "b.json"
    a.write_text(json.dumps(result("NVIDIA A100-SXM4-40GB", "gpu-a", "2026-01-02T00:00:00Z", 1.0, failed_cell=True)))
    b.write_text(json.dumps(result("NVIDIA GeForce RTX 4090", "gpu-b", "2026-01-01T00:00:00Z", 2.0)))
    return a, b


def legend(text: str) -> dict[str, str]:
    """The headline legend's machines: letter -> label."""
    return dict(re.findall(r"^\| ([A-Z]) \| (.+?) \| ", text, flags=re.M))


def section(text: str, name: str) -> list[str]:
    """The lines of section `## name`."""
    lines = text.splitlines()
    start = lines.index(f"## {name}")
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    return lines[start:end]


def test_two_devices_merge_into_wide_tables_a_row_per_configuration_and_machine(two_files, tmp_path, capsys):
    out = tmp_path / "report"
    assert main(["report", *map(str, two_files), "--out", str(out), "--no-plots"]) == 0
    text = capsys.readouterr().out
    assert (out / "report.md").read_text().strip() == text.strip()
    a100 = next(letter for letter, label in legend(text).items() if "A100" in label)
    rtx = "B" if a100 == "A" else "A"
    train = section(text, "train")
    start = train.index("*Training step time, ms/step*")
    header, _, *body = train[start + 2:train.index("", start + 2)]
    assert header == "| model | feed | machine | 32 x 16 | 32 x 32 | 32 x 64 | 50 x 16 | 50 x 32 | 50 x 64 |"
    assert f"| fast | ours | {a100} | 5.12 [4.61-6.14]! | 10.2 [9.22-12.3]! | 20.5 [18.4-24.6]! | 8 [7.2-9.6]! " \
           "| 16 [14.4-19.2]! | 32 [28.8-38.4]! |" in body
    assert f"| book | ours | {a100} |  |  |  |  |  | failed |" in body  # the OOM cell shows, not dropped
    assert len(body) == 1 + 2 * 2  # book once, fast on two feeds on two machines
    generate = section(text, "generate")
    assert f"| ours | 2 | {rtx} | 2,500 | 2,500 |" in generate and f"| book | 1 | {a100} | 30 | 30 |" in generate


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


def test_newer_file_wins_a_duplicate_cell(tmp_path, capsys):
    paths = [tmp_path / "new.json", tmp_path / "old.json"]
    paths[0].write_text(json.dumps(result("dev", "h", "2026-02-01T00:00:00Z", 2.0)))
    paths[1].write_text(json.dumps(result("dev", "h", "2026-01-01T00:00:00Z", 1.0)))
    assert main(["report", *map(str, paths), "--out", str(tmp_path / "r"), "--no-plots",
                 "--suites", "generate"]) == 0
    text = capsys.readouterr().out
    assert "| ours | 2 | A | 2,500 | 2,500 |" in section(text, "generate")
    assert "## train" not in text and "## load" not in text


def test_backends_sit_beside_each_other_and_old_files_read_as_tensorflow(tmp_path, capsys):
    old = tmp_path / "old.json"  # version 1: no backend anywhere
    new = tmp_path / "new.json"
    old.write_text(json.dumps(result("H200", "gpu", "2026-01-01T00:00:00Z", 1.0)))
    new.write_text(json.dumps(result("H200", "gpu", "2026-02-01T00:00:00Z", 0.5, backend="jax")))
    out = tmp_path / "report"
    assert main(["report", str(old), str(new), "--out", str(out), "--no-plots"]) == 0
    text = capsys.readouterr().out
    assert sorted(legend(text).values()) == ["H200 (Xeon 8c), jax 0.1", "H200 (Xeon 8c), tensorflow 0.1"]
    with open(out / "report.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert {r["backend"] for r in table if r["source"] == str(old)} == {"tensorflow"}
    assert {r["precision"] for r in table if r["source"] == str(old) and r["suite"] == "train"} == {"float32"}
    # the same cell on two backends is two cells, never one replacing the other
    assert len(table) == sum(len(json.loads(p.read_text())["rows"]) for p in (old, new))
    assert len([line for line in section(text, "load") if line.startswith("| ours |")]) == 2


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
    assert "| book | 1 | A |" in text and "| book-workflow | in-memory | A |" in text
    assert not re.search(r"\bseed\b|seed-", text)
    with open(out / "report.csv", newline="") as f:
        impls = {r["impl"] for r in csv.DictReader(f)}
    assert {"book", "book-workflow"} <= impls and not impls & {"seed", "seed-workflow"}
    page = tmp_path / "performance.md"
    assert main(["report", str(path), "--page", str(page), "--no-plots"]) == 0
    assert "| book-budget |" in section(page.read_text(), "Sources")[-1]


def test_check_passes_every_committed_reference_file(capsys):
    files = sorted(p for p in REFERENCES.glob("*.json") if json.loads(p.read_text()).get("format") == FORMAT)
    assert files
    assert main(["report", "--check", *map(str, files)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(files)
    for path, line in zip(files, lines):
        rows = len(json.loads(path.read_text())["rows"])
        assert line.startswith(f"{path}: ok ({rows} rows, format version ")


def test_check_names_each_problem_and_exits_1(two_files, tmp_path, capsys):
    bad = json.loads(two_files[1].read_text())
    bad["rows"][0]["unit"] = "furlongs"
    bad["rows"][1]["metric"] = "speed"
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(bad))
    assert main(["report", "--check", str(two_files[0]), str(path)]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"{two_files[0]}: ok ({len(json.loads(two_files[0].read_text())['rows'])} rows, " \
                       "format version 1)"
    assert len(lines) == 3 and all(line.startswith(f"{path}: row ") for line in lines[1:])
    assert "in 'furlongs', expected 'ms'" in lines[1] and "unknown metric 'speed'" in lines[2]


@pytest.mark.parametrize("args, message", [
    (["--check", "missing.json"], "missing.json: no such file"),
    (["--check", "a.json", "--page", "p.md"], "--check takes only files, not --page"),
    (["--check", "a.json", "--suites", "load"], "--check takes only files, not --suites"),
])
def test_check_bad_arguments_exit_2(two_files, tmp_path, capsys, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    assert main(["report", *args]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


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
    (["--suites", ","], "--suites is empty"),
    (["--page", "p.md"], "--page and --out exclude each other"),
])
def test_bad_options_exit_2(two_files, tmp_path, capsys, args, message):
    assert main(["report", *map(str, two_files), "--out", str(tmp_path / "r"), *args]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_page_path_must_be_markdown(two_files, tmp_path, capsys):
    assert main(["report", *map(str, two_files), "--page", str(tmp_path)]) == 2
    assert "expected a Markdown file path" in capsys.readouterr().err


def test_unreadable_file_and_missing_arguments_exit_2(tmp_path, capsys):
    assert main(["report", str(tmp_path / "missing.json"), "--out", str(tmp_path / "r")]) == 2
    assert "missing.json: unreadable" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(["report"])
    assert e.value.code == 2
