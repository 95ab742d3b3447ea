"""`report`: merge bench result files (any machines, any devices) into tables and plots.

For every measured quantity (suite, impl, feed, workers, variant, metric) one Markdown
table: a row per device, a column per size x batch size. Also written to `--out`:
`report.md`, `report.csv` (every merged row, with its source file) and PNG plots of
step time and throughput against batch size, one line per device, one panel per size,
and of generation throughput against worker count beside the seed's.

When two files hold the same cell for the same device, the newer file (`created`) wins.
Failed cells show as `failed` in the tables and keep their error text in the CSV.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

from pipeline.bench import FORMAT, FORMAT_VERSION, ROW_KEYS, SUITES, write_csv
from pipeline.errors import UsageError

DEFAULT_METRICS = ("samples_per_s", "ms_per_step_median", "input_bound_fraction", "accuracy")
PLOTS = (("train", "ms_per_step_median"), ("train", "samples_per_s"), ("load", "samples_per_s"))
GROUP_KEYS = ("suite", "impl", "feed", "workers", "variant", "metric")
REQUIRED = ("suite", "impl", "size", "batch_size", "workers", "metric", "value", "error", "device")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("files", nargs="+", type=Path, metavar="FILE", help="bench result JSON files")
    p.add_argument("--out", type=Path, default=Path("bench/report"), help="directory for report.md, report.csv, PNGs")
    p.add_argument("--suites", help=f"comma-separated subset of {','.join(SUITES)} (default: all)")
    p.add_argument("--metrics", default=",".join(DEFAULT_METRICS),
                   help="comma-separated metrics to tabulate ('all' for every one)")
    p.add_argument("--no-plots", action="store_true", help="tables only")


def load_result(path: Path) -> dict:
    """A bench result document; UsageError (one line) if unreadable or not a bench result."""
    try:
        doc = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"{path}: unreadable ({getattr(e, 'strerror', None) or e})") from None
    except json.JSONDecodeError as e:
        raise UsageError(f"{path}: not JSON ({e.msg} at line {e.lineno})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise UsageError(f"{path}: not a bench result (format is not {FORMAT!r})")
    if doc.get("format_version") != FORMAT_VERSION:
        raise UsageError(f"{path}: bench result format version {doc.get('format_version')!r}, "
                         f"this report reads {FORMAT_VERSION}")
    rows = doc.get("rows")
    if not isinstance(rows, list):
        raise UsageError(f"{path}: bench result without a 'rows' list")
    for i, row in enumerate(rows):
        if not isinstance(row, dict) or any(k not in row for k in REQUIRED):
            missing = [k for k in REQUIRED if not isinstance(row, dict) or k not in row]
            raise UsageError(f"{path}: row {i} lacks {', '.join(missing)}")
        if row["suite"] not in SUITES:
            raise UsageError(f"{path}: row {i} has unknown suite {row['suite']!r}")
    return doc


def merge(docs: list[tuple[Path, dict]]) -> list[dict]:
    """All rows, each tagged with `source` and `host`; a newer file replaces an older one's same cell."""
    cells: dict[tuple, dict] = {}
    for path, doc in sorted(docs, key=lambda pd: pd[1].get("created", "")):
        host = doc.get("environment", {}).get("host")
        for row in doc["rows"]:
            row = {**{k: row.get(k) for k in ROW_KEYS}, **row, "source": str(path), "host": host}
            key = tuple(row.get(k) for k in (*GROUP_KEYS, "device", "size", "batch_size"))
            cells[key] = row
    return list(cells.values())


def _fmt(row: dict | None) -> str:
    if row is None:
        return ""
    if row["error"]:
        return "failed"
    value = row["value"]
    if value is None:
        return "-"
    if row["metric"] == "input_bound_fraction" or row["metric"] == "accuracy":
        return f"{value:.0%}" if row["metric"] == "input_bound_fraction" else f"{value:.3f}"
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


def _title(key: dict) -> str:
    parts = [f"{key['suite']} / {key['impl']}"]
    if key.get("feed"):
        parts.append(f"fed {key['feed']}")
    if key.get("workers") is not None:
        parts.append(f"{key['workers']} workers")
    if key.get("variant"):
        parts.append(f"variant {key['variant']}")
    return ", ".join(parts) + f": {key['metric']}"


def _sort_key(value):
    return (value is None, value if value is not None else 0)


def tables(rows: list[dict]) -> str:
    """One Markdown table per quantity: rows = devices, columns = size x batch."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for row in rows:
        groups[tuple(row.get(k) for k in GROUP_KEYS)].append(row)
    out = []
    order = sorted(groups, key=lambda g: (SUITES.index(g[0]), str(g[1]), str(g[2]), _sort_key(g[3]), str(g[4]), g[5]))
    for group in order:
        members = groups[group]
        key = dict(zip(GROUP_KEYS, group))
        columns = sorted({(r["size"], r["batch_size"]) for r in members}, key=lambda c: (c[0], _sort_key(c[1])))
        devices = sorted({r["device"] for r in members})
        cell = {(r["device"], r["size"], r["batch_size"]): r for r in members}
        unit = next((r.get("unit") for r in members if r.get("unit")), "")
        out += [f"#### {_title(key)}{f' ({unit})' if unit else ''}", "",
                "| device | " + " | ".join(f"{s}" + (f" x {b}" if b is not None else "") for s, b in columns) + " |",
                "| --- | " + " | ".join("---:" for _ in columns) + " |"]
        for device in devices:
            out.append(f"| {device} | " + " | ".join(_fmt(cell.get((device, s, b))) for s, b in columns) + " |")
        out.append("")
    return "\n".join(out)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return matplotlib, plt


def plot(rows: list[dict], out: Path) -> list[Path]:
    """PNG per (suite, metric, impl, feed) of PLOTS: value vs batch size, a line per device, a panel per size."""
    matplotlib, plt = _pyplot()
    written = []
    for suite, metric in PLOTS:
        groups: dict[tuple, list[dict]] = defaultdict(list)
        for r in rows:
            if r["suite"] == suite and r["metric"] == metric and r["batch_size"] is not None and not r["error"] \
                    and r["value"] is not None:
                groups[(r["impl"], r.get("feed"))].append(r)
        for (impl, feed), members in sorted(groups.items(), key=lambda kv: (str(kv[0][0]), str(kv[0][1]))):
            sizes = sorted({r["size"] for r in members})
            fig, axes = plt.subplots(1, len(sizes), figsize=(max(7.0, 4.2 * len(sizes)), 4.0), squeeze=False)
            for ax, size in zip(axes[0], sizes):
                for device in sorted({r["device"] for r in members}):
                    points = sorted((r["batch_size"], r) for r in members if r["size"] == size and r["device"] == device)
                    if not points:
                        continue
                    xs = [b for b, _ in points]
                    ys = [r["value"] for _, r in points]
                    line, = ax.plot(xs, ys, marker="o", label=device)
                    if metric == "ms_per_step_median":
                        low = _lookup(rows, points, "ms_per_step_p10")
                        high = _lookup(rows, points, "ms_per_step_p90")
                        if None not in low and None not in high:
                            ax.fill_between(xs, low, high, alpha=0.2, color=line.get_color())
                ax.set_xscale("log", base=2)
                ax.set_xticks(sorted({r["batch_size"] for r in members if r["size"] == size}))
                ax.get_xaxis().set_major_formatter(matplotlib.ticker.ScalarFormatter())
                ax.set_title(f"size {size}")
                ax.set_xlabel("batch size")
                ax.set_ylabel(f"{metric} ({members[0].get('unit') or ''})")
                ax.grid(alpha=0.3)
            axes[0][0].legend(fontsize="small")
            fig.suptitle(f"{suite} / {impl}" + (f" (fed {feed})" if feed else "") + f": {metric}"
                         + (" (band: p10-p90)" if metric == "ms_per_step_median" else ""), fontsize="medium")
            fig.tight_layout()
            name = f"{suite}-{metric}-{impl}" + (f"-{feed}" if feed else "")
            path = out / ("".join(c if c.isalnum() or c in "-_." else "_" for c in name) + ".png")
            fig.savefig(path, dpi=110)
            plt.close(fig)
            written.append(path)
    return written


def plot_generation(rows: list[dict], out: Path) -> list[Path]:
    """generate-samples_per_s.png: our generator's samples/s against workers, a line per device, a panel
    per size; the seed's `generate_examples` (one core) as a dashed line of the same colour. [] if no such rows."""
    matplotlib, plt = _pyplot()
    ours = [r for r in rows if r["suite"] == "generate" and r["impl"] == "ours" and r["metric"] == "samples_per_s"
            and r["value"] is not None and r["workers"]]
    if not ours:
        return []
    sizes = sorted({r["size"] for r in ours})
    fig, axes = plt.subplots(1, len(sizes), figsize=(max(7.0, 4.2 * len(sizes)), 4.0), squeeze=False)
    for ax, size in zip(axes[0], sizes):
        for device in sorted({r["device"] for r in ours if r["size"] == size}):
            points = sorted((r["workers"], r["value"]) for r in ours if r["size"] == size and r["device"] == device)
            line, = ax.plot(*zip(*points), marker="o", label=device)
            seed = [r["value"] for r in rows if r["suite"] == "generate" and r["impl"] == "seed" and r["size"] == size
                    and r["device"] == device and r["metric"] == "samples_per_s" and r["value"] is not None]
            if seed:
                ax.axhline(seed[0], linestyle="--", color=line.get_color(), label=f"{device}: seed")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xticks(sorted({r["workers"] for r in ours if r["size"] == size}))
        ax.get_xaxis().set_major_formatter(matplotlib.ticker.ScalarFormatter())
        ax.set_title(f"size {size}")
        ax.set_xlabel("workers")
        ax.set_ylabel("samples/s")
        ax.grid(alpha=0.3, which="both")
    axes[0][0].legend(fontsize="small")
    fig.suptitle("generate: samples/s against workers (dashed: the seed's generate_examples, one core)",
                 fontsize="medium")
    fig.tight_layout()
    path = out / "generate-samples_per_s.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return [path]


def _lookup(rows, points, metric):
    found = []
    for batch, ref in points:
        match = [r for r in rows if r["metric"] == metric and not r["error"] and r["device"] == ref["device"]
                 and all(r.get(k) == ref.get(k) for k in ("suite", "impl", "feed", "size", "batch_size"))]
        found.append(match[0]["value"] if match else None)
    return found


def run(args) -> int:
    suites = SUITES if args.suites is None else tuple(s.strip() for s in args.suites.split(",") if s.strip())
    unknown = [s for s in suites if s not in SUITES]
    if unknown:
        raise UsageError(f"unknown suite {unknown[0]!r}; suites are {', '.join(SUITES)}")
    if not suites:
        raise UsageError("--suites is empty")
    metrics = None if args.metrics == "all" else {m.strip() for m in args.metrics.split(",") if m.strip()}
    if args.out.exists() and not args.out.is_dir():
        raise UsageError(f"--out {args.out} exists and is not a directory")
    docs = [(path, load_result(path)) for path in args.files]
    rows = [r for r in merge(docs) if r["suite"] in suites]
    if not rows:
        raise UsageError(f"no rows for suites {', '.join(suites)} in {len(docs)} file(s): empty grid")
    shown = [r for r in rows if metrics is None or r["metric"] in metrics]
    if not shown:
        raise UsageError(f"none of the metrics {', '.join(sorted(metrics))} in the selected rows")
    devices = sorted({r["device"] for r in rows})
    text = (f"## Bench report: {len(docs)} file(s), {len(devices)} device(s)\n\n"
            + "".join(f"- {d}\n" for d in devices) + "\n" + tables(shown))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "report.md").write_text(text + "\n")
    write_csv(args.out / "report.csv", rows)
    pngs = [] if args.no_plots else plot(rows, args.out) + plot_generation(rows, args.out)
    print(text)
    print(f"wrote {args.out / 'report.md'}, {args.out / 'report.csv'} and {len(pngs)} PNG(s)", file=sys.stderr)
    return 0
