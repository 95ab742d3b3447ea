"""Result files: reading, checking (`report --check`'s findings), merging, writing."""
from __future__ import annotations

import copy
import json

import pytest

from helpers import CPU, GPU, bench_result, write_json
from pipeline.errors import UsageError
from pipeline.results.files import load_result, merge, problems, write_csv


def sound() -> dict:
    return bench_result(CPU, train=[(50, 32, [10.0, 11.0, 12.0])], load=[(50, 32, [1.0, 2.0, 3.0])])


def test_a_sound_file_has_no_problems(tmp_path):
    assert problems(write_json(tmp_path, "ok.json", sound())) == []


@pytest.mark.parametrize("damage, message", [
    (lambda d: d["rows"][0].update(unit="s"), "ms_per_step_median in 's', expected 'ms'"),
    (lambda d: d["rows"][0].update(direction="higher"), "direction 'higher' for ms_per_step_median"),
    (lambda d: d["rows"][0].update(repeat_values=[1, "x"]), "repeat_values must be a list of finite numbers"),
    (lambda d: d["rows"][0].update(config_hash="xyz"), "config_hash 'xyz' is not 12 hex digits"),
    (lambda d: d["rows"][0].pop("config_hash"), "lacks config_hash"),
    (lambda d: d["rows"][0].update(metric="speed"), "unknown metric 'speed'"),
    (lambda d: d["rows"][0].update(error="boom"), "a failed row must have a text error and value null"),
    (lambda d: d["rows"][0].update(value=float("inf")), "is not a finite number"),
    (lambda d: d["rows"][0].update(device="CPU: other"), "differs from the environment's"),
    (lambda d: d["rows"][0].update(device_count=2), "device_count 2 differs from the environment's 1"),
])
def test_each_problem_is_named_in_one_line(tmp_path, damage, message):
    doc = sound()
    damage(doc)
    found = problems(write_json(tmp_path, "bad.json", doc))
    assert len(found) == 1 and message in found[0] and "bad.json: row 0 (train/fast" in found[0]


def test_a_gpu_file_whose_state_names_fewer_gpus_than_its_device_is_inconsistent(tmp_path):
    doc = bench_result({**GPU, "gpu_count": 2}, train=[(50, 32, [1.0] * 3)], static_gpus=[{"name": "NVIDIA H100"}])
    assert problems(write_json(tmp_path, "g.json", doc)) == [f"{tmp_path / 'g.json'}: environment names 2 GPUs, "
                                                              "its state 1"]
    doc["rows"][0]["devices"] = 4
    assert any("4 devices on 2 GPU(s) in 1 process(es)" in p for p in problems(write_json(tmp_path, "g.json", doc)))


def test_version_2_files_are_checked_without_the_evidence_they_did_not_keep(tmp_path):
    doc = sound()
    doc["format_version"] = 2
    for row in doc["rows"]:
        for key in ("direction", "repeat_values", "config_hash"):
            row.pop(key)
    assert problems(write_json(tmp_path, "v2.json", doc)) == []


@pytest.mark.parametrize("text, message", [
    ("{", "not JSON"), ('{"format": "other"}', "not a bench result"),
    ('{"format": "moving-square-bench", "format_version": 9, "rows": []}', "format version 9, this version reads"),
])
def test_unreadable_files_are_one_problem(tmp_path, text, message):
    path = tmp_path / "x.json"
    path.write_text(text)
    (found,) = problems(path)
    assert message in found
    with pytest.raises(UsageError, match=message):
        load_result(path)


def test_a_newer_file_replaces_an_older_files_same_cell_and_keeps_the_others(tmp_path):
    old = bench_result(CPU, train=[(50, 32, [10.0] * 3)], load=[(50, 32, [1.0] * 3)], created="2026-12-01T00:00:00Z")
    new = bench_result(CPU, train=[(50, 32, [20.0] * 3)], created="2026-12-02T00:00:00Z")
    rows = merge([(tmp_path / "new.json", new), (tmp_path / "old.json", old)])
    steps = [r for r in rows if r["metric"] == "ms_per_step_median"]
    assert [r["value"] for r in steps] == [20.0] and steps[0]["source"].endswith("new.json")
    assert [r["source"] for r in rows if r["suite"] == "load"] == [str(tmp_path / "old.json")]


def test_csv_writes_lists_as_json(tmp_path):
    rows = copy.deepcopy(sound()["rows"][:1])
    write_csv(tmp_path / "r.csv", rows)
    header, line = (tmp_path / "r.csv").read_text().splitlines()
    assert json.dumps([10.0, 11.0, 12.0]).replace('"', "") in line.replace('"', "")
