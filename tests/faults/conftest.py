"""Fault trials: helpers, real Dask clusters as separate processes, and the per-family counts table.

Every test here records its trials with the `tally` fixture: `tally(family, survived, bytes_lost, **notes)`.
At the end of the test run the counts are written to `<basetemp>/faults-summary.json` and
`faults-summary.md` and printed in the terminal summary (with or without `-s`).
"""
from __future__ import annotations

import collections
import json
import subprocess
from pathlib import Path

import pytest

from faultlib import DaskCluster
from helpers import kill_group

_COUNTS: dict[str, dict] = collections.defaultdict(
    lambda: {"trials": 0, "survived": 0, "bytes_lost": 0, "notes": collections.Counter()})
_SUMMARY_PATH: list[Path] = []


def pytest_collection_modifyitems(items):
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.fspath).parents:
            assert item.get_closest_marker("faults"), f"{item.nodeid} must be marked @pytest.mark.faults"


@pytest.fixture(scope="session")
def tally(tmp_path_factory):
    """Record one trial of a fault family: survived (bool), bytes_lost (int), notes counted by value."""
    _SUMMARY_PATH.append(tmp_path_factory.getbasetemp())

    def record(family: str, survived: bool, bytes_lost: int = 0, **notes):
        c = _COUNTS[family]
        c["trials"] += 1
        c["survived"] += bool(survived)
        c["bytes_lost"] += int(bytes_lost)
        for key, value in notes.items():
            c["notes"][f"{key}={value}"] += 1
    return record


def summary_rows() -> list[dict]:
    return [{"family": f, "trials": c["trials"], "survived": c["survived"], "bytes_lost": c["bytes_lost"],
             "notes": dict(sorted(c["notes"].items()))} for f, c in sorted(_COUNTS.items())]


def summary_markdown(rows: list[dict]) -> str:
    lines = ["| fault family | trials | survived | bytes lost | notes |", "| --- | ---: | ---: | ---: | --- |"]
    for r in rows:
        notes = ", ".join(f"{k}: {v}" for k, v in r["notes"].items())
        lines.append(f"| {r['family']} | {r['trials']} | {r['survived']} | {r['bytes_lost']} | {notes} |")
    return "\n".join(lines)


def pytest_terminal_summary(terminalreporter):
    rows = summary_rows()
    if not rows:
        return
    text = summary_markdown(rows)
    if _SUMMARY_PATH:
        base = _SUMMARY_PATH[0]
        (base / "faults-summary.json").write_text(json.dumps(rows, indent=1) + "\n")
        (base / "faults-summary.md").write_text(text + "\n")
        text += f"\n(written to {base / 'faults-summary.json'})"
    terminalreporter.write_sep("=", "fault trials")
    terminalreporter.write_line(text)


@pytest.fixture
def processes():
    """Register Popen objects; every one's process group is SIGKILLed at teardown."""
    started: list[subprocess.Popen] = []
    yield started
    for proc in started:
        kill_group(proc)


def _two_worker_cluster(directory):
    """A scheduler and two single-threaded workers on loopback, stopped afterwards."""
    cluster = DaskCluster(directory)
    try:
        cluster.add_worker()
        cluster.add_worker()
        cluster.wait_for_workers(2)
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def dask_cluster(tmp_path_factory):
    """Shared by the tests that do not kill a worker."""
    yield from _two_worker_cluster(tmp_path_factory.mktemp("dask"))


@pytest.fixture
def fresh_dask_cluster(tmp_path):
    """A private cluster, for tests that kill a worker."""
    yield from _two_worker_cluster(tmp_path)


