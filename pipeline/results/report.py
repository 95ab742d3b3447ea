"""`report FILE...`: merge bench result files (any machines, devices, backends) into a report, or check them.

`--out DIR` (default `bench/report`) gets `report.md`, `report.csv` (every merged row, with its source file)
and at most 8 PNGs; `--page PATH` writes the performance page instead, its PNGs beside it
(`pipeline.results.page`: the headline comparison, then a section per suite of wide tables and plots).
When two files hold the same cell for the same machine, the newer file (`created`) wins; older format
versions read as `pipeline.results.format` says. `--check` validates each file instead
(`pipeline.results.files.problems`): a line per problem, or `FILE: ok (N rows, format version V)`; exit 1
if any file has a problem.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pipeline.errors import UsageError
from pipeline.results.files import load_result, merge, problems
from pipeline.results.format import SUITES

DEFAULT_OUT = Path("bench/report")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("files", nargs="+", type=Path, metavar="FILE", help="bench result JSON files")
    p.add_argument("--check", action="store_true",
                   help="validate the files (schema, units, directions, a fingerprint consistent with the devices): "
                        "a line per problem, or FILE: ok; exit 1 if any")
    p.add_argument("--out", type=Path, help=f"directory for report.md, report.csv, PNGs (default: {DEFAULT_OUT})")
    p.add_argument("--suites", help=f"comma-separated subset of {','.join(SUITES)} (default: all)")
    p.add_argument("--no-plots", action="store_true", help="tables only")
    p.add_argument("--page", type=Path, metavar="PATH",
                   help="write a performance page (e.g. docs/performance.md) with its PNGs beside it, instead of --out")
    p.add_argument("--startup", type=Path, metavar="FILE",
                   help="also a start-up section from a result file of bench/open_scaling.py")


def check(paths: list[Path]) -> int:
    """Print each file's problems, or that it is sound; 1 if any file has a problem, else 0."""
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise UsageError(f"{missing[0]}: no such file")
    status = 0
    for path in paths:
        found = problems(path)
        if found:
            print("\n".join(found))
            status = 1
        else:
            doc = load_result(path)
            print(f"{path}: ok ({len(doc['rows'])} rows, format version {doc['format_version']})")
    return status


def _suites(text: str | None) -> tuple[str, ...]:
    suites = SUITES if text is None else tuple(s.strip() for s in text.split(",") if s.strip())
    unknown = [s for s in suites if s not in SUITES]
    if unknown:
        raise UsageError(f"unknown suite {unknown[0]!r}; suites are {', '.join(SUITES)}")
    if not suites:
        raise UsageError("--suites is empty")
    return suites


def run(args) -> int:
    if args.check:
        given = [flag for flag, value in (("--out", args.out), ("--page", args.page), ("--startup", args.startup),
                                          ("--suites", args.suites), ("--no-plots", args.no_plots)) if value]
        if given:
            raise UsageError(f"--check takes only files, not {given[0]}")
        return check(args.files)
    suites = _suites(args.suites)
    if args.page is not None and args.out is not None:
        raise UsageError("--page and --out exclude each other")
    if args.page is not None and (args.page.is_dir() or args.page.suffix != ".md"):
        raise UsageError(f"--page {args.page}: expected a Markdown file path ending in .md")
    out = args.out or DEFAULT_OUT
    if args.page is None and out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} exists and is not a directory")
    docs = [(path, load_result(path)) for path in args.files]
    startup = None
    if args.startup is not None:
        from pipeline.results.startup import load_startup

        startup = (args.startup, load_startup(args.startup))
    merged = [r for r in merge(docs) if r["suite"] in suites]
    if not merged:
        raise UsageError(f"no rows for suites {', '.join(suites)} in {len(docs)} file(s): empty grid")
    from pipeline.results.compare import comparison
    from pipeline.results.page import write_page, write_report
    from pipeline.results.tables import Rows

    rows = Rows(merged)
    if args.page is not None:  # the references, among themselves
        text = write_page(args.page, docs, rows, comparison([], docs), suites, startup, plots=not args.no_plots)
        print(text)
        print(f"wrote {args.page} and its PNGs beside it", file=sys.stderr)
        return 0
    text, pngs = write_report(out, docs, rows, comparison(docs, []), suites, startup, plots=not args.no_plots)
    print(text)
    print(f"wrote {out / 'report.md'}, {out / 'report.csv'} and {len(pngs)} PNG(s)", file=sys.stderr)
    return 0
