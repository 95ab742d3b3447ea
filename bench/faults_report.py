"""Print the fault-trial counts table of a `make test-faults` run.

    python bench/faults_report.py                      # newest /tmp/pytest-of-$USER/pytest-*/faults-summary.json
    python bench/faults_report.py PATH/faults-summary.json [--json]

The suite writes the summary to pytest's base temporary directory (tests/faults/conftest.py).
One row per fault family: trials, how many survived (the dataset or run ended correct, or the
fault was reported naming the bad file), bytes of reference shards lost, and notes
(e.g. which write window a SIGKILL hit).
"""
from __future__ import annotations

import argparse
import getpass
import json
import sys
import tempfile
from pathlib import Path


def newest_summary() -> Path | None:
    root = Path(tempfile.gettempdir()) / f"pytest-of-{getpass.getuser()}"
    found = sorted(root.glob("pytest-*/faults-summary.json"), key=lambda p: p.stat().st_mtime)
    return found[-1] if found else None


def markdown(rows: list[dict]) -> str:
    from pipeline.results.markdown import table

    total = {k: sum(r[k] for r in rows) for k in ("trials", "survived", "bytes_lost")}
    body = [[r["family"], r["trials"], r["survived"], r["bytes_lost"],
             ", ".join(f"{k}: {v}" for k, v in r.get("notes", {}).items())] for r in rows]
    body.append(["**all**", total["trials"], total["survived"], total["bytes_lost"], ""])
    return "\n".join(table(["fault family", "trials", "survived", "bytes lost", "notes"], body, "lrrrl"))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("summary", nargs="?", type=Path, help="faults-summary.json (default: the newest one)")
    p.add_argument("--json", action="store_true", help="print the rows as JSON")
    args = p.parse_args(argv)
    path = args.summary or newest_summary()
    if path is None or not path.is_file():
        print(f"faults_report: no summary found ({path or 'run `make test-faults` first'})", file=sys.stderr)
        return 2
    rows = sorted(json.loads(path.read_text()), key=lambda r: r["family"])
    print(json.dumps(rows, indent=1) if args.json else f"{path}\n\n{markdown(rows)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
