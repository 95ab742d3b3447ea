"""`compare`: headline cells of your files beside the references', ratios, marks and the causes of gaps."""
from __future__ import annotations

import json
import math

import pytest

from helpers import BENCH_GRID, CPU, GPU, ROOT, bench_result, write_json
from pipeline.cli import main
from pipeline.results.compare import cell_text, comparison, render_text


def test_ratios_geomean_and_marks_against_the_baseline(tmp_path):
    ref = bench_result(CPU, train=[(50, 32, [10.0, 10.0, 10.0])], load=[(50, 32, [1000.0, 1000.0, 1000.0])])
    mine = bench_result(CPU, train=[(50, 32, [20.0, 20.0, 20.0])], load=[(50, 32, [1000.0, 1400.0, 700.0])],
               created="2026-12-02T00:00:00Z")
    comp = comparison([(tmp_path / "mine.json", mine)], [(tmp_path / "ref.json", ref)])
    yours, base = (m.id for m in comp.machines)
    assert comp.baseline == base
    assert comp.ratio(yours, "train fast 50x32") == pytest.approx(0.5)
    assert comp.significant(yours, "train fast 50x32")
    assert comp.ratio(yours, "load 50x32") == pytest.approx(1.0)
    assert not comp.significant(yours, "load 50x32")  # 700-1400 holds 1000
    assert comp.geomean(yours) == (pytest.approx(math.sqrt(0.5)), 2)
    assert cell_text(comp, yours, "train fast 50x32") == "1,600 ±0% 0.50x"
    assert cell_text(comp, yours, "load 50x32").endswith("1.00x~!")  # within both spreads, spread > 10%
    assert cell_text(comp, yours, "input-bound fast 50x32") == "1.0% +0.0pt~"


def test_cells_measured_under_other_settings_are_marked(tmp_path):
    ref = bench_result(CPU, train=[(50, 32, [10.0] * 3)])
    mine = bench_result(CPU, train=[(50, 32, [10.0] * 3)], grid={**BENCH_GRID, "dataset_samples": 1024})
    comp = comparison([(tmp_path / "mine.json", mine)], [(tmp_path / "ref.json", ref)])
    yours = comp.machines[0].id
    assert not comp.same_settings(yours, "train fast 50x32")
    assert cell_text(comp, yours, "train fast 50x32").endswith("#")


def test_causes_name_steal_throttling_a_power_cap_and_versions(tmp_path):
    throttled = [{"sm_clock_mhz": {"median": 1100.0, "min": 1000.0}, "throttle_reasons": ["sw_power_cap"]}]
    static = [{"max_sm_clock_mhz": 1980, "power_limit_w": 350.0, "default_power_limit_w": 700.0}]
    ref = bench_result(GPU, train=[(50, 32, [1.0, 1.0, 1.0])], static_gpus=[{**static[0], "power_limit_w": 700.0}])
    mine = bench_result(GPU, train=[(50, 32, [2.0, 2.1, 2.2])], steal=12.0, gpu_state=throttled, static_gpus=static,
               version="2.20.0")
    comp = comparison([(tmp_path / "mine.json", mine)], [(tmp_path / "ref.json", ref)])
    assert len(comp.causes) == 1
    line = comp.causes[0]
    assert line.startswith("A vs B: 1 cell(s) worse (train fast 50x32 0.48x)")
    for cause in ("tensorflow 2.20.0 vs 2.21.0", "CPU steal up to 12%", "SM clock 1100 of 1980 MHz",
                  "throttled: sw_power_cap", "power capped at 350 of 700 W"):
        assert cause in line, cause


def test_a_gap_with_nothing_recorded_to_explain_it_says_so(tmp_path):
    comp = comparison([(tmp_path / "mine.json", bench_result(CPU, train=[(50, 32, [20.0] * 3)]))],
                      [(tmp_path / "ref.json", bench_result(CPU, train=[(50, 32, [10.0] * 3)]))])
    assert comp.causes[0].endswith("none in the recorded environment and state")


def test_compare_command_fits_a_screen_and_takes_a_baseline(tmp_path, capsys):
    refs = tmp_path / "refs"
    refs.mkdir()
    write_json(refs, "cpu.json", bench_result(CPU, train=[(50, 32, [10.0] * 3)], load=[(50, 32, [1000.0] * 3)]))
    write_json(refs, "gpu.json", bench_result(GPU, train=[(50, 32, [1.0] * 3)], load=[(50, 32, [9000.0] * 3)]))
    write_json(refs, "other.json", {"format": "moving-square-startup", "rows": []})  # not a bench result: skipped
    mine = write_json(tmp_path, "mine.json",
                      bench_result(CPU, train=[(50, 32, [11.0] * 3)], load=[(50, 32, [1000.0] * 3)]))
    assert main(["compare", str(mine), "--reference", str(refs), "--baseline", "H100"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert len(lines) <= 40 and max(map(len, lines)) <= 120
    assert "B reference, baseline" in out and "0.09x" in out  # 11 ms vs 1 ms per step
    assert main(["compare", str(mine), "--reference", str(refs), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert {m["role"] for m in data["machines"]} == {"yours", "reference"} and "train fast 50x32" in data["cells"]


@pytest.mark.parametrize("argv, message", [
    (["--baseline", "nothing-like-it"], "matches 0 machines"),
    (["--reference", "/no/such/dir"], "no such file or directory"),
    (["--width", "10"], "--width must be at least 40"),
])
def test_compare_bad_arguments_exit_2_with_one_line(tmp_path, capsys, argv, message):
    mine = write_json(tmp_path, "mine.json", bench_result(CPU, train=[(50, 32, [11.0] * 3)]))
    refs = tmp_path / "refs"
    refs.mkdir()
    write_json(refs, "cpu.json", bench_result(CPU, train=[(50, 32, [10.0] * 3)]))
    argv = [a if a != "REFS" else str(refs) for a in argv]
    if "--reference" not in argv:
        argv += ["--reference", str(refs)]
    assert main(["compare", str(mine), *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_each_committed_reference_compared_with_the_rest_fits_a_screen(capsys):
    compared = 0
    for path in sorted((ROOT / "bench/results/reference").glob("*.json")):
        status = main(["compare", str(path), "--reference", str(ROOT / "bench/results/reference")])
        captured = capsys.readouterr()
        if status == 2:  # a file of suites without headline cells (e.g. loads pulled only from Python) says so
            assert "no headline cells" in captured.err
            continue
        lines = captured.out.splitlines()
        assert status == 0 and len(lines) <= 40 and max(map(len, lines)) <= 120, path
        compared += 1
    assert compared >= 3


def test_render_text_leaves_out_machines_that_do_not_fit(tmp_path):
    refs = [(tmp_path / f"r{i}.json", bench_result({**CPU, "name": f"CPU: M{i} (2 cores)", "cpu_model": f"M{i}"},
                                          train=[(50, 32, [10.0 + i] * 3)])) for i in range(8)]
    comp = comparison([(tmp_path / "mine.json", bench_result(CPU, train=[(50, 32, [10.0] * 3)]))], refs)
    text = render_text(comp, width=80)
    assert "more machine(s) left out to fit 80 columns" in text and max(map(len, text.splitlines())) <= 80
