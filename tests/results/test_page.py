"""The performance page and a user's report, one design: the headline comparison first, a section per suite
(note, wide tables, plots), start-up, sources last; the page under 20 KB with at most 8 PNGs."""
from __future__ import annotations

import csv
import json
import re

import pytest
from PIL import Image

from helpers import CPU, GPU, ROOT, bench_result
from pipeline.cli import main
from pipeline.results import plots
from pipeline.results.format import unit_of

REFERENCES = ROOT / "bench" / "results" / "reference"
PAGE_BYTES = 20_000
MAX_PNGS = 8


def headings(text: str) -> list[str]:
    return re.findall(r"^## (.+)$", text, flags=re.M)


def images(text: str) -> list[str]:
    return re.findall(r"!\[[^\]]*\]\(([^)]+\.png)\)", text)


def extra_rows(device: str) -> list[dict]:
    """A generate and an accuracy row, version-3 style, for a made-up file."""
    common = {"feed": None, "workers": None, "error": None, "device": device, "backend": "tensorflow",
              "backend_version": "2.21.0", "devices": 1, "processes": 1, "repeat_values": [],
              "config_hash": "0123456789ab"}
    return [{**common, "suite": "generate", "impl": "ours", "size": 50, "batch_size": None, "workers": 2,
             "metric": "samples_per_s", "value": 1e5, "unit": unit_of("samples_per_s"), "direction": "higher"},
            {**common, "suite": "accuracy", "impl": "fast", "feed": "in-memory", "size": 50, "batch_size": 32,
             "metric": "accuracy", "value": 0.99, "unit": "fraction", "direction": "higher", "precision": "float32"}]


@pytest.fixture
def made_up(tmp_path):
    """Two machines' result files (a CPU and a GPU) with train, load, generate and accuracy rows."""
    paths = []
    for name, device, ms, rate in (("cpu.json", CPU, 40.0, 2e4), ("gpu.json", GPU, 4.0, 4e5)):
        doc = bench_result(device, train=[(50, 32, [ms * x for x in (0.9, 1.0, 1.1)])],
                           load=[(50, 32, [rate * x for x in (0.95, 1.0, 1.05)])])
        doc["rows"] += extra_rows(device["name"])
        path = tmp_path / "results" / name
        path.parent.mkdir(exist_ok=True)
        path.write_text(json.dumps(doc))
        paths.append(path)
    return paths


def test_the_committed_references_make_a_page_under_20_kb_with_at_most_8_pngs(tmp_path, capsys):
    files = sorted(REFERENCES.glob("*.json"))
    page = tmp_path / "docs" / "performance.md"
    assert main(["report", *map(str, files), "--page", str(page),
                 "--startup", str(REFERENCES / "startup" / "open-scaling.json")]) == 0
    text = page.read_text()
    assert len(text.encode()) < PAGE_BYTES
    assert headings(text) == ["Headline", "train", "load", "au", "generate", "accuracy", "start-up", "Sources"]
    assert text.index("| cell |") < text.index("## train")  # the headline comparison opens the page
    pngs = sorted(p.name for p in page.parent.glob("*.png"))
    assert 0 < len(pngs) <= MAX_PNGS and sorted(images(text)) == pngs
    for name in pngs:
        assert Image.open(page.parent / name).size[0] <= plots.MAX_WIDTH_PX
    sources = text[text.index("## Sources"):]
    assert all(f"`{f.name}`" in sources for f in files)
    assert "| A | AMD EPYC 2c" in text and "| B |" in text  # machines by their letter, in tables and sources


def test_page_opens_with_the_headline_and_names_machines_by_its_letters(made_up, tmp_path, capsys):
    page = tmp_path / "docs" / "performance.md"
    assert main(["report", *map(str, made_up), "--page", str(page), "--no-plots"]) == 0
    text = page.read_text()
    assert capsys.readouterr().out.strip() == text.strip()
    assert text.startswith("# Performance\n") and headings(text) == ["Headline", "train", "load", "generate",
                                                                     "accuracy", "Sources"]
    legend = dict(re.findall(r"^\| ([A-Z]) \| (.+?) \| reference", text, flags=re.M))
    assert sorted(legend) == ["A", "B"] and any(label.startswith("NVIDIA H100") for label in legend.values())
    gpu = next(letter for letter, label in legend.items() if label.startswith("NVIDIA H100"))
    load = text[text.index("## load"):text.index("## generate")]
    assert f"| ours-packed, 2 readers | tf.data/tf.function | {gpu} | 400 [384-416] |" in load
    sources = text[text.index("## Sources"):]
    assert "In `../results/`:" in sources
    assert f"| `gpu.json` | 2026-12-01T00:00:00Z | {gpu} | default | abc |" in sources
    assert not images(text) and not list(page.parent.glob("*.png"))


def test_a_new_page_removes_only_the_plots_its_old_version_linked(made_up, tmp_path):
    docs = tmp_path / "docs"
    page = docs / "performance.md"
    assert main(["report", *map(str, made_up), "--page", str(page)]) == 0
    before = {p.name for p in docs.glob("*.png")}
    assert "performance-relative.png" in before and "performance-load-pipelines.png" in before
    theirs = [docs / "performance-by-hand.png", docs / "diagram.png"]  # not written by report
    for path in theirs:
        path.write_bytes(b"png")
    page.write_text(page.read_text() + "![old](performance-load-samples_per_s-ours.png)\n")
    (docs / "performance-load-samples_per_s-ours.png").write_bytes(b"png")  # a plot an older page linked
    assert main(["report", *map(str, made_up), "--page", str(page), "--suites", "generate"]) == 0
    after = {p.name for p in docs.glob("*.png")}
    assert after == {"performance-relative.png", "performance-generate.png", *(p.name for p in theirs)}


def test_a_users_report_follows_the_same_design(made_up, tmp_path, capsys):
    out = tmp_path / "report"
    assert main(["report", *map(str, made_up), "--out", str(out)]) == 0
    text = (out / "report.md").read_text()
    assert capsys.readouterr().out.strip() == text.strip()
    assert text.startswith("# Bench report\n") and headings(text)[0] == "Headline"
    assert "| yours, baseline |" in text or "| yours |" in text
    assert sorted(images(text)) == sorted(p.name for p in out.glob("*.png"))
    assert set(images(text)) <= set(plots.PLOTS.values())
    with open(out / "report.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == sum(len(json.loads(p.read_text())["rows"]) for p in made_up)
    assert {r["source"] for r in rows} == set(map(str, made_up))
    assert main(["report", *map(str, made_up), "--out", str(out), "--suites", "generate"]) == 0
    assert sorted(p.name for p in out.glob("*.png")) == ["generate.png", "relative.png"]  # none left over
