"""The start-up section: a result file of bench/open_scaling.py as tables (with the largest / smallest
ratio) and a plot (`pipeline.results.plots.startup`), on the performance page and in --out; bad files
exit 2. Also the script's summary of a cell's repeats."""
from __future__ import annotations

import importlib.util
import json

import pytest

from helpers import ROOT
from pipeline.cli import main
from pipeline.results.format import FORMAT
from pipeline.results.startup import STARTUP_FORMAT, startup_tables


@pytest.fixture
def bench_file(tmp_path):
    """A made-up bench result of one generate row, for the page the section goes on."""
    path = tmp_path / "bench.json"
    path.write_text(json.dumps({
        "format": FORMAT, "format_version": 2, "created": "2026-01-01T00:00:00Z",
        "environment": {"host": "vm", "device": {"name": "cpu"}}, "config": {"preset": "made-up"},
        "rows": [{"suite": "generate", "impl": "ours", "feed": None, "size": 50, "batch_size": None, "workers": 2,
                  "metric": "samples_per_s", "value": 1000.0, "unit": "samples/s", "error": None, "device": "cpu",
                  "backend": "tensorflow", "backend_version": "0.1"}]}))
    return path


def startup_row(samples, variant, mechanism, open_s, first_s, growth, bound=None):
    row = {"samples": samples, "shards": samples // 2000, "chunks": samples // 32, "variant": variant,
           "mechanism": mechanism, "open_s": open_s, "open_s_min": open_s * 0.9, "open_s_max": open_s * 1.2,
           "first_batch_s": first_s, "first_batch_s_min": first_s, "first_batch_s_max": first_s,
           "peak_mb": 900 + growth, "growth_mb": growth, "repeats": 3}
    if bound is not None:
        row["bound_mb"] = bound
    return row


@pytest.fixture
def startup_doc():
    rows = []
    for n, scale in ((10_000, 1), (10_000_000, 1000)):
        rows += [startup_row(n, "index", "auto", 0.002 * (1 + scale / 1000), 0.5, 290),
                 startup_row(n, "index", "graph", 0.003, 1.8, 340 + scale / 100, bound=680),
                 startup_row(n, "old", "auto", 0.03 * scale, 0.3 + 0.03 * scale, 213)]
    return {"format": STARTUP_FORMAT, "format_version": 1, "created": "2026-01-01T00:00:00Z",
            "config": {"size": 50, "shard_size": 2000, "batch_size": 32, "batches": 10, "repeats": 3},
            "environment": {"cpu": {"model": "Made-up CPU", "cores": 2}, "git": {"commit": "0123456789abcdef"}},
            "rows": rows}


def test_tables_show_every_cell_and_the_growth_from_the_smallest_split(startup_doc):
    text = "\n".join(startup_tables(startup_doc))
    assert "**open_dataset (s)**" in text and "**open to first batch (s)**" in text and "**memory growth (MB)**" in text
    assert "| sequences | shards | chunk index, default | chunk index, graph | before the index, default |" in text
    assert "| 10,000,000 | 5,000 |" in text
    # old open 0.03 -> 30 s: 1000x; index open 0.002 -> 0.004: 2x (medians, not the range)
    open_table = text.split("**open to first batch (s)**")[0]
    assert "| largest / smallest |  | 2.00x | 1.00x | 1000.00x |" in open_table
    assert "[0.0018, 0.0024]" in open_table  # the range of the 10k index open
    assert "(bound 680)" in text.split("**memory growth (MB)**")[1]


def test_performance_page_gets_the_startup_section_and_plot(bench_file, startup_doc, tmp_path):
    result = tmp_path / "startup.json"
    result.write_text(json.dumps(startup_doc))
    page = tmp_path / "docs" / "performance.md"
    assert main(["report", str(bench_file), "--page", str(page), "--startup", str(result)]) == 0
    text = page.read_text()
    assert "\n## start-up\n" in text and "From `../startup.json`" in text
    assert text.index("## start-up") < text.index("## Sources")  # the sources stay last
    assert "Made-up CPU (2 cores), commit 0123456789; repeats per cell: 3" in text
    assert (page.parent / "performance-startup.png").stat().st_size > 1000
    assert "![start-up](performance-startup.png)" in text
    out = tmp_path / "report"
    assert main(["report", str(bench_file), "--out", str(out), "--startup", str(result)]) == 0
    assert "## start-up" in (out / "report.md").read_text() and (out / "startup.png").is_file()


@pytest.mark.parametrize("content", ["{", json.dumps({"format": "moving-square-bench", "rows": []})])
def test_a_file_that_is_not_a_startup_result_exits_2(bench_file, content, tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text(content)
    page = tmp_path / "performance.md"
    assert main(["report", str(bench_file), "--page", str(page), "--startup", str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(bad) in err[0] and not page.exists()


def test_the_script_summarizes_repeats_as_median_and_range():
    spec = importlib.util.spec_from_file_location("open_scaling", ROOT / "bench" / "open_scaling.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    runs = [{"samples": 10, "variant": "index", "mechanism": "graph", "open_s": t, "first_batch_s": 2 * t,
             "peak_mb": 900 + t, "growth_mb": t, "bound_mb": 50.0} for t in (3.0, 1.0, 2.0)]
    row = script.summarize(runs)
    assert (row["open_s"], row["open_s_min"], row["open_s_max"]) == (2.0, 1.0, 3.0)
    assert (row["first_batch_s"], row["growth_mb"], row["peak_mb"], row["repeats"]) == (4.0, 3.0, 903.0, 3)
    assert row["growth_mb_median"] == 2.0
    assert row["bound_mb"] == 50.0 and row["variant"] == "index"
