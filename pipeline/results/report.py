"""`report`: merge bench result files (any machines, devices, backends) into tables and plots.

For every measured quantity (suite, impl, feed, workers, readers, front end, variant, shuffle,
precision, metric)
one Markdown table: a row per device and Keras backend, a column per size x batch size.
Also written to `--out`: `report.md`, `report.csv` (every merged row, with its source file)
and PNG plots: every shuffled input pipeline side by side (bars); step time and throughput
against batch size, one line per device and backend, one panel per size; generation
throughput against worker count beside the book's. `--page PATH` instead writes a performance
page (Markdown, its PNGs beside it, named after it) meant to be committed, regenerated from
committed result files (`bench/results/reference/`); the plots its previous version linked and
it no longer draws are removed.

Files of format version 1 (before backends) are read as TensorFlow rows. When two files
hold the same cell for the same device and backend, the newer file (`created`) wins. Failed
cells show as `failed` in the tables and keep their error text in the CSV.
"""
from __future__ import annotations

import argparse
import os
import re
import sys
from collections import defaultdict
from pathlib import Path

from pipeline.errors import UsageError
from pipeline.results.files import load_result, merge, write_csv
from pipeline.results.format import SUITES, current_name
from pipeline.results.markdown import table
from pipeline.results.startup import load_startup, startup_section

DEFAULT_METRICS = ("samples_per_s", "ms_per_step_median", "input_bound_fraction", "fit_s_per_epoch", "accuracy",
                   "accuracy_min", "accuracy_max", "alone_samples_per_s", "au", "au95_samples_per_s",
                   "scaling_samples_per_s", "scaling_efficiency")
# tabulated by `scaling_table` (a column per device count), not a table per count
SCALING_METRICS = ("scaling_samples_per_s", "scaling_samples_per_s_p10", "scaling_samples_per_s_p90",
                   "scaling_efficiency")
PLOTS = (("train", "ms_per_step_median"), ("train", "samples_per_s"), ("load", "samples_per_s"))
GROUP_KEYS = ("suite", "impl", "feed", "workers", "readers", "front_end", "consumer", "demand", "variant", "shuffle",
              "precision", "train_samples", "devices", "processes", "metric")
SUITE_NOTES = {
    "au": "Accelerator utilization (DLIO): an emulated accelerator sleeps a fixed step and pulls batches as "
          "training does; demand = the step's samples/s over the loader's own; impl synthetic repeats one batch "
          "from memory, the most the consumer itself allows.",
    "generate": "Our Dask generator against the book's `generate_examples`: samples/s, cluster start-up excluded.",
    "load": "Input pipelines in their steady state over whole epochs after a warm-up epoch, every one shuffled "
            "unless marked unshuffled; samples/s, median of round-robin repeats. Each batch is pulled to where a "
            "step reads it (tf.data: the compute device); consumed from tf.function is how `fit` pulls tf.data, "
            "the figure training gets; from python, a loop that costs nothing per batch.",
    "train": "Steady-state step time over at least one epoch by feed (our loader, in-memory arrays, synthetic: one "
             "batch on the device); input-bound fraction = 1 - synthetic / fed; `fit` wall time per epoch; with "
             "several device counts, `fit` on our loader with a replica per device, the global batch split over "
             "them (on a CPU the devices are logical ones sharing its cores).",
    "accuracy": "Held-out accuracy after one epoch at the budget; median, min and max over initial seeds.",
}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("files", nargs="+", type=Path, metavar="FILE", help="bench result JSON files")
    p.add_argument("--out", type=Path, default=Path("bench/report"), help="directory for report.md, report.csv, PNGs")
    p.add_argument("--suites", help=f"comma-separated subset of {','.join(SUITES)} (default: all)")
    p.add_argument("--metrics", default=",".join(DEFAULT_METRICS),
                   help="comma-separated metrics to tabulate ('all' for every one)")
    p.add_argument("--no-plots", action="store_true", help="tables only")
    p.add_argument("--page", type=Path, metavar="PATH",
                   help="write a performance page (e.g. docs/performance.md) with its PNGs beside it, instead of --out")
    p.add_argument("--startup", type=Path, metavar="FILE",
                   help="also a start-up section from a result file of bench/open_scaling.py")


def _fmt(row: dict | None) -> str:
    if row is None:
        return ""
    if row["error"]:
        return "failed"
    value = row["value"]
    if value is None:
        return "-"
    if row["metric"] in ("input_bound_fraction", "au"):
        return f"{value:.0%}"
    if row["metric"].startswith("accuracy"):
        return f"{value:.4f}"
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


def _title(key: dict) -> str:
    parts = [f"{key['suite']} / {key['impl']}"]
    if key.get("feed"):
        parts.append(f"fed {key['feed']}")
    if key.get("workers") is not None:
        parts.append(f"{key['workers']} workers")
    if key.get("readers") is not None:
        parts.append(f"{key['readers']} readers")
    if key.get("front_end") not in (None, "tf.data"):
        parts.append(f"{key['front_end']} front end")
    if key.get("consumer") is not None:
        parts.append(f"consumed from {key['consumer']}")
    if key.get("demand") is not None:
        parts.append(f"demand {key['demand']:g}")
    if key.get("variant"):
        parts.append(f"variant {key['variant']}")
    if key.get("shuffle") is False:
        parts.append("unshuffled")
    if key.get("precision") not in (None, "float32"):
        parts.append(key["precision"])
    if key.get("devices") not in (None, 1):
        parts.append(f"{key['devices']} devices")
    if key.get("processes") not in (None, 1):
        parts.append(f"{key['processes']} processes")
    return ", ".join(parts) + f": {key['metric']}"


def _sort_key(value):
    return (value is None, value if value is not None else 0)


def _group_order(group):
    k = dict(zip(GROUP_KEYS, group))
    return (SUITES.index(k["suite"]), str(k["impl"]), str(k["feed"]), _sort_key(k["workers"]), _sort_key(k["readers"]),
            str(k["front_end"]), str(k["consumer"]), _sort_key(k["demand"]), str(k["variant"]), k["shuffle"] is False,
            str(k["precision"]), _sort_key(k["train_samples"]), _sort_key(k["devices"]), _sort_key(k["processes"]),
            str(k["metric"]))


def tables(rows: list[dict]) -> str:
    """One Markdown table per quantity: rows = device and backend, columns = size x batch; then the
    scaling rows' table (`scaling_table`)."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for row in rows:
        if row["metric"] not in SCALING_METRICS:
            groups[tuple(row.get(k) for k in GROUP_KEYS)].append(row)
    out = []
    for group in sorted(groups, key=_group_order):
        members = groups[group]
        key = dict(zip(GROUP_KEYS, group))
        columns = sorted({(r["size"], r["batch_size"]) for r in members}, key=lambda c: (c[0], _sort_key(c[1])))
        lines = sorted({(r["machine"], r["backend"]) for r in members})
        cell = {(r["machine"], r["backend"], r["size"], r["batch_size"]): r for r in members}
        unit = next((r.get("unit") for r in members if r.get("unit")), "")
        out += [f"#### {_title(key)}{f' ({unit})' if unit else ''}", ""]
        out += table(["device", "backend", *(f"{s}" + (f" x {b}" if b is not None else "") for s, b in columns)],
                     [[device, backend, *(_fmt(cell.get((device, backend, s, b))) for s, b in columns)]
                      for device, backend in lines], "ll" + "r" * len(columns))
        out.append("")
    return "\n".join(out + scaling_table(rows))


def _scaling_line(row: dict) -> tuple:
    return (row["machine"], row["backend"], row["impl"], row["size"], row["batch_size"], row.get("precision"),
            row["processes"])


def scaling_table(rows: list[dict]) -> list[str]:
    """The train suite's scaling rows: a line per device, backend, model, size, batch and precision, a
    column per device count: samples/s, and (efficiency) beside N > 1. [] if there are none."""
    rates = {(*_scaling_line(r), r["devices"]): r for r in rows
             if r["suite"] == "train" and r["metric"] == "scaling_samples_per_s"}
    if not rates:
        return []
    gains = {(*_scaling_line(r), r["devices"]): r["value"] for r in rows
             if r["suite"] == "train" and r["metric"] == "scaling_efficiency" and not r["error"]}
    counts = sorted({key[-1] for key in rates})
    lines = sorted({key[:-1] for key in rates}, key=lambda k: (*map(str, k[:3]), k[3], k[4], str(k[5]), k[6]))

    def cell(key):
        if key not in rates:
            return ""
        text = _fmt(rates[key])
        if key[-1] != 1 and gains.get(key) is not None:
            text += f" ({gains[key]:.0%})"
        return text

    out = ["#### train / scaling: `fit` on our loader, samples/s on N devices (efficiency = samples/s(N) / "
           "(N x samples/s(1)), the same run)", ""]
    out += table(["device", "backend", "model", "size", "batch", "precision", "processes",
                  *(f"{n} device{'s' if n > 1 else ''}" for n in counts)],
                 [[*map(str, line), *(cell((*line, n)) for n in counts)] for line in lines],
                 "lllrrlr" + "r" * len(counts))
    return out + [""]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return matplotlib, plt


def _label(device: str, backend: str) -> str:
    return f"{device} ({backend})"


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def _plot_name(suite, metric, impl, feed, shuffle, readers, precision, consumer=None) -> str:
    """suite-metric-impl[-feed][-unshuffled][-N-readers][-precision][-from-tf.function]: rows pulled from a
    Python loop keep the names they had before the load suite had consumers."""
    name = f"{suite}-{metric}-{impl}" + (f"-{feed}" if feed else "")
    if shuffle is False:
        name += "-unshuffled"
    if readers is not None:
        name += f"-{readers}-readers"
    if precision not in (None, "float32"):
        name += f"-{precision}"
    if consumer not in (None, "python"):
        name += f"-from-{consumer}"
    return name


def plot(rows: list[dict], out: Path, prefix: str = "") -> list[Path]:
    """PNG per (suite, metric, impl, feed, shuffle, readers, precision, consumer) of PLOTS: value vs batch size,
    a line per device and backend, a panel per size."""
    matplotlib, plt = _pyplot()
    written = []
    for suite, metric in PLOTS:
        groups: dict[tuple, list[dict]] = defaultdict(list)
        for r in rows:
            if r["suite"] == suite and r["metric"] == metric and r["batch_size"] is not None and not r["error"] \
                    and r["value"] is not None:
                groups[(r["impl"], r.get("feed"), r.get("shuffle"), r.get("readers"),
                        r.get("precision"), r.get("consumer"))].append(r)
        for (impl, feed, shuffle, readers, precision, consumer), members in sorted(groups.items(),
                                                                         key=lambda kv: tuple(map(str, kv[0]))):
            sizes = sorted({r["size"] for r in members})
            fig, axes = plt.subplots(1, len(sizes), figsize=(max(7.0, 4.2 * len(sizes)), 4.0), squeeze=False)
            for ax, size in zip(axes[0], sizes):
                for device, backend in sorted({(r["machine"], r["backend"]) for r in members}):
                    points = sorted(((r["batch_size"], r) for r in members if r["size"] == size
                                     and r["machine"] == device and r["backend"] == backend), key=lambda p: p[0])
                    if not points:
                        continue
                    xs = [b for b, _ in points]
                    ys = [r["value"] for _, r in points]
                    line, = ax.plot(xs, ys, marker="o", label=_label(device, backend))
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
            details = [f"fed {feed}" if feed else "", "unshuffled" if shuffle is False else "",
                       f"{readers} readers" if readers is not None else "",
                       precision if precision not in (None, "float32") else "",
                       f"from {consumer}" if consumer not in (None, "python") else ""]
            details = ", ".join(d for d in details if d)
            fig.suptitle(f"{suite} / {impl}" + (f" ({details})" if details else "") + f": {metric}"
                         + (" (band: p10-p90)" if metric == "ms_per_step_median" else ""), fontsize="medium")
            fig.tight_layout()
            name = _plot_name(suite, metric, impl, feed, shuffle, readers, precision, consumer)
            path = out / (prefix + _safe(name) + ".png")
            fig.savefig(path, dpi=110)
            plt.close(fig)
            written.append(path)
    return written


def plot_generation(rows: list[dict], out: Path, prefix: str = "") -> list[Path]:
    """generate-samples_per_s.png: our generator's samples/s against workers, a line per device and
    backend, a panel per size; the book's `generate_examples` (one core) as a dashed line of the same
    colour. [] if no such rows."""
    matplotlib, plt = _pyplot()
    ours = [r for r in rows if r["suite"] == "generate" and r["impl"] == "ours" and r["metric"] == "samples_per_s"
            and r["value"] is not None and r["workers"]]
    if not ours:
        return []
    sizes = sorted({r["size"] for r in ours})
    fig, axes = plt.subplots(1, len(sizes), figsize=(max(7.0, 4.2 * len(sizes)), 4.0), squeeze=False)
    for ax, size in zip(axes[0], sizes):
        for device, backend in sorted({(r["machine"], r["backend"]) for r in ours if r["size"] == size}):
            points = sorted((r["workers"], r["value"]) for r in ours
                            if r["size"] == size and r["machine"] == device and r["backend"] == backend)
            line, = ax.plot(*zip(*points), marker="o", label=_label(device, backend))
            book = [r["value"] for r in rows if r["suite"] == "generate" and r["impl"] == "book" and r["size"] == size
                    and r["machine"] == device and r["backend"] == backend and r["metric"] == "samples_per_s"
                    and r["value"] is not None]
            if book:
                ax.axhline(book[0], linestyle="--", color=line.get_color(), label=f"{_label(device, backend)}: book")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xticks(sorted({r["workers"] for r in ours if r["size"] == size}))
        ax.get_xaxis().set_major_formatter(matplotlib.ticker.ScalarFormatter())
        ax.set_title(f"size {size}")
        ax.set_xlabel("workers")
        ax.set_ylabel("samples/s")
        ax.grid(alpha=0.3, which="both")
    axes[0][0].legend(fontsize="small")
    fig.suptitle("generate: samples/s against workers (dashed: the book's generate_examples, one core)",
                 fontsize="medium")
    fig.tight_layout()
    path = out / f"{prefix}generate-samples_per_s.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return [path]


def _plot_rank(row: dict) -> tuple:
    return row.get("consumer") == "tf.function", row.get("readers") or 0


def plot_load_pipelines(rows: list[dict], out: Path, prefix: str = "") -> list[Path]:
    """load-pipelines.png: samples/s of every shuffled input pipeline side by side, a group of bars per
    batch size, a panel per device, backend and size; a pipeline measured with several reader counts
    shows its default (the most), and pulled from a tf.function where it was (as `fit` pulls it).
    [] if no such rows."""
    _, plt = _pyplot()
    cells: dict[tuple, dict] = {}
    for r in rows:
        if r["suite"] == "load" and r["metric"] == "samples_per_s" and r["value"] is not None and not r["error"] \
                and r.get("shuffle") is not False and r["batch_size"] is not None:
            key = (r["machine"], r["backend"], r["size"], r["batch_size"], r["impl"])
            if key not in cells or _plot_rank(r) > _plot_rank(cells[key]):
                cells[key] = r
    if not cells:
        return []
    panels = sorted({key[:3] for key in cells})
    impls = sorted({key[4] for key in cells}, key=lambda impl: (not impl.startswith("in-memory"), impl))
    width = 0.8 / len(impls)
    fig, axes = plt.subplots(1, len(panels), figsize=(max(7.0, 5.0 * len(panels)), 4.4), squeeze=False)
    for ax, (device, backend, size) in zip(axes[0], panels):
        batches = sorted({key[3] for key in cells if key[:3] == (device, backend, size)})
        for i, impl in enumerate(impls):
            bars = [(j + (i - (len(impls) - 1) / 2) * width, cells[(device, backend, size, b, impl)]["value"])
                    for j, b in enumerate(batches) if (device, backend, size, b, impl) in cells]
            if bars:
                ax.bar(*zip(*bars), width, label=impl, color=f"C{i}")
        ax.set_xticks(range(len(batches)), [f"batch {b}" for b in batches])
        ax.set_title(f"size {size}, {_label(device, backend)}", fontsize="small")
        ax.set_ylabel("samples/s")
        ax.grid(axis="y", alpha=0.3)
    handles = {h.get_label(): h for ax in axes[0] for h in ax.get_legend_handles_labels()[0]}
    fig.legend(handles.values(), handles.keys(), fontsize="small", loc="lower center",
               ncol=max(1, min(len(handles), 4)))
    fig.suptitle("load: every input pipeline shuffled, samples/s (median of round-robin windows; tf.data pulled "
                 "from a tf.function, as fit does)", fontsize="medium")
    fig.tight_layout(rect=(0, 0.06 * (1 + (len(handles) - 1) // 4), 1, 1))
    path = out / f"{prefix}load-pipelines.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return [path]


def plot_au(rows: list[dict], out: Path, prefix: str = "") -> list[Path]:
    """au-utilization.png: AU against demand, a line per front end and batch size (our loader solid,
    the synthetic consumer floor dashed, in the same colour), a row of panels per device and backend,
    a column per size; the 95% target dotted. [] if no au rows."""
    _, plt = _pyplot()
    lines: dict[tuple, list[tuple[float, float]]] = defaultdict(list)
    for r in rows:
        if r["suite"] == "au" and r["metric"] == "au" and not r["error"] and r["value"] is not None:
            lines[(r["machine"], r["backend"], r["size"], r["front_end"], r["batch_size"], r["impl"])].append(
                (r["demand"], r["value"]))
    if not lines:
        return []
    machines = sorted({key[:2] for key in lines})
    sizes = sorted({key[2] for key in lines})
    curves = sorted({key[3:5] for key in lines}, key=lambda c: (c[0], c[1]))
    fig, axes = plt.subplots(len(machines), len(sizes), figsize=(5.0 * len(sizes), 3.6 * len(machines) + 0.6),
                             squeeze=False)
    for ax, panel in ((axes[i][j], (*machine, size)) for i, machine in enumerate(machines)
                      for j, size in enumerate(sizes)):
        for i, (front_end, batch) in enumerate(curves):
            for impl, style in (("ours-packed", "-"), ("synthetic", "--")):
                points = sorted(lines.get((*panel, front_end, batch, impl), []))
                if points:
                    ax.plot(*zip(*points), style, marker="o" if impl == "ours-packed" else None, color=f"C{i}",
                            label=f"{front_end}, batch {batch}" if impl == "ours-packed" else None)
        ax.axhline(0.95, color="grey", linestyle=":", linewidth=1)
        ax.set_title(f"size {panel[2]}, {_label(panel[0], panel[1])}", fontsize="small")
        ax.set_xlabel("demand (step's samples/s over the loader's own)")
        ax.set_ylabel("AU")
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize="x-small")
    fig.suptitle("au: AU against demand (solid: our loader, packed; dashed: one batch repeated "
                 "from memory; dotted: 95%)", fontsize="medium")
    fig.tight_layout()
    path = out / f"{prefix}au-utilization.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return [path]


def plot_scaling(rows: list[dict], out: Path, prefix: str = "") -> list[Path]:
    """train-scaling.png: `fit` samples/s against device count, a panel per model, batch size and
    precision, a line per device, backend and size (band: p10-p90), and dashed in the same colour
    ideal scaling, N x samples/s(1). [] if there are no scaling rows."""
    matplotlib, plt = _pyplot()
    found = {}
    for r in rows:
        if r["suite"] == "train" and r["metric"].startswith("scaling_samples_per_s") and not r["error"] \
                and r["value"] is not None:
            found[(r["impl"], r["batch_size"], r.get("precision"), r["machine"], r["backend"], r["size"],
                   r["processes"], r["devices"], r["metric"])] = r["value"]
    if not any(key[-1] == "scaling_samples_per_s" for key in found):
        return []
    panels = sorted({key[:3] for key in found}, key=lambda k: (str(k[0]), k[1], str(k[2])))
    fig, axes = plt.subplots(1, len(panels), figsize=(max(7.0, 5.0 * len(panels)), 4.2), squeeze=False)
    for ax, panel in zip(axes[0], panels):
        lines = sorted({key[3:7] for key in found if key[:3] == panel}, key=lambda k: (*map(str, k[:2]), k[2], k[3]))
        for i, line in enumerate(lines):
            def series(metric, line=line):
                return {key[7]: v for key, v in found.items() if key[:7] == (*panel, *line) and key[8] == metric}

            median, low, high = (series(f"scaling_samples_per_s{q}") for q in ("", "_p10", "_p90"))
            if not median:
                continue
            xs = sorted(median)
            device, backend, size, processes = line
            label = f"{_label(device, backend)}, size {size}" + (f", {processes} processes" if processes != 1 else "")
            ax.plot(xs, [median[n] for n in xs], marker="o", color=f"C{i}", label=label)
            if all(n in low and n in high for n in xs):
                ax.fill_between(xs, [low[n] for n in xs], [high[n] for n in xs], alpha=0.2, color=f"C{i}")
            if 1 in median:
                ax.plot(xs, [n * median[1] for n in xs], linestyle="--", color=f"C{i}", linewidth=1)
        ticks = sorted({key[7] for key in found if key[:3] == panel})
        ax.set_xscale("log", base=2)
        ax.set_xticks(ticks)
        ax.get_xaxis().set_major_formatter(matplotlib.ticker.ScalarFormatter())
        impl, batch, precision = panel
        ax.set_title(f"{impl}, batch {batch}" + (f", {precision}" if precision not in (None, "float32") else ""),
                     fontsize="small")
        ax.set_xlabel("devices (the global batch split over them)")
        ax.set_ylabel("samples/s")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize="x-small")
    fig.suptitle("train: fit on our loader, samples/s against devices (band: p10-p90; dashed: N x one device)",
                 fontsize="medium")
    fig.tight_layout()
    path = out / f"{prefix}train-scaling.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return [path]


def _lookup(rows, points, metric):
    found = []
    for _, ref in points:
        match = [r for r in rows if r["metric"] == metric and not r["error"] and r["machine"] == ref["machine"]
                 and all(r.get(k) == ref.get(k) for k in ("suite", "impl", "feed", "size", "batch_size", "backend",
                                                          "shuffle", "workers", "readers", "precision", "consumer"))]
        found.append(match[0]["value"] if match else None)
    return found


def all_plots(rows: list[dict], out: Path, prefix: str = "") -> list[Path]:
    """Every plot of `rows` into `out`, the side-by-side comparisons first."""
    return (plot_load_pipelines(rows, out, prefix) + plot_au(rows, out, prefix) + plot_generation(rows, out, prefix)
            + plot_scaling(rows, out, prefix) + plot(rows, out, prefix))


def _sources(docs: list[tuple[Path, dict]], relative_to: Path | None = None) -> list[str]:
    """A table of the merged files: where, when, on what, from which commit."""
    body = []
    for path, doc in sorted(docs, key=lambda pd: pd[1].get("created", "")):
        env = doc.get("environment", {})
        backend = doc.get("config", {}).get("backend") or "tensorflow"
        version = env.get("versions", {}).get(backend)
        shown = _shown_path(path, relative_to)
        commit = (env.get("git") or {}).get("commit")
        body.append([f"`{shown}`", doc.get("created", "?"), env.get("device", {}).get("name", "?"),
                     f"{backend} {version or ''}".strip(), current_name(doc.get("config", {}).get("preset", "?")),
                     (commit or "?")[:10]])
    return table(["file", "created", "device", "backend", "preset", "commit"], body, "llllll")


def _shown_path(path: Path, relative_to: Path | None) -> Path:
    """`path` as a page in `relative_to` links it."""
    if relative_to is None:
        return Path(path)
    try:
        return Path(path).resolve().relative_to(relative_to.resolve())
    except ValueError:
        return Path(os.path.relpath(Path(path).resolve(), relative_to.resolve()))


def _linked_plots(path: Path, prefix: str) -> set[str]:
    """Names of the PNGs that the page at `path`, as it stands, links beside itself: the plots an earlier
    `--page` wrote, which a new page that no longer draws them removes (and nothing else)."""
    if not path.is_file():
        return set()
    return {name for name in re.findall(r"!\[[^\]]*\]\(([^)/]+\.png)\)", path.read_text(errors="replace"))
            if name.startswith(prefix)}


def page(docs: list[tuple[Path, dict]], rows: list[dict], shown: list[dict], path: Path, plots: bool = True,
         startup: tuple[Path, dict] | None = None) -> str:
    """The performance page's Markdown: provenance, then per suite its tables and plots, then the start-up
    section of `startup` (a result file of bench/open_scaling.py and its document) if given; PNGs are
    written beside `path`, named `<page stem>-<plot>.png`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    prefix = f"{path.stem}-"
    pngs = all_plots(rows, path.parent, prefix) if plots else []
    startup_lines = []
    if startup is not None:
        startup_lines, startup_pngs = startup_section(startup[1], _shown_path(startup[0], path.parent),
                                                      path.parent if plots else None, prefix)
        pngs += startup_pngs
    for stale in _linked_plots(path, prefix) - {p.name for p in pngs}:
        (path.parent / stale).unlink(missing_ok=True)
    command = " ".join(["python -m pipeline report", *(f"{Path(p)}" for p, _ in docs), "--page", str(path),
                        *(["--startup", str(startup[0])] if startup is not None else [])])
    out = ["# Performance", "",
           "Generated from committed bench result files; do not edit by hand. Regenerate with:", "",
           f"    {command}", "", "## Sources", "", *_sources(docs, path.parent), ""]
    for suite in SUITES:
        members = [r for r in shown if r["suite"] == suite]
        if not members:
            continue
        out += [f"## {suite}", "", SUITE_NOTES[suite], "", tables(members)]
        out += [f"![{p.stem}]({p.name})" for p in pngs if p.name.startswith(f"{prefix}{suite}-")]
        out.append("")
    out += startup_lines
    return "\n".join(out).rstrip() + "\n"


def run(args) -> int:
    suites = SUITES if args.suites is None else tuple(s.strip() for s in args.suites.split(",") if s.strip())
    unknown = [s for s in suites if s not in SUITES]
    if unknown:
        raise UsageError(f"unknown suite {unknown[0]!r}; suites are {', '.join(SUITES)}")
    if not suites:
        raise UsageError("--suites is empty")
    metrics = None if args.metrics == "all" else {m.strip() for m in args.metrics.split(",") if m.strip()}
    page_path = getattr(args, "page", None)
    if page_path is None and args.out.exists() and not args.out.is_dir():
        raise UsageError(f"--out {args.out} exists and is not a directory")
    if page_path is not None and (page_path.is_dir() or page_path.suffix != ".md"):
        raise UsageError(f"--page {page_path}: expected a Markdown file path ending in .md")
    docs = [(path, load_result(path)) for path in args.files]
    startup = (args.startup, load_startup(args.startup)) if getattr(args, "startup", None) else None
    rows = [r for r in merge(docs) if r["suite"] in suites]
    if not rows:
        raise UsageError(f"no rows for suites {', '.join(suites)} in {len(docs)} file(s): empty grid")
    shown = [r for r in rows if metrics is None or r["metric"] in metrics]
    if not shown:
        raise UsageError(f"none of the metrics {', '.join(sorted(metrics))} in the selected rows")
    if page_path is not None:
        text = page(docs, rows, shown, page_path, plots=not args.no_plots, startup=startup)
        page_path.write_text(text)
        print(text)
        print(f"wrote {page_path} and its PNGs beside it", file=sys.stderr)
        return 0
    lines = sorted({(r["machine"], r["backend"], r.get("backend_version")) for r in rows})
    text = (f"## Bench report: {len(docs)} file(s), {len({d for d, _, _ in lines})} device(s)\n\n"
            + "".join(f"- {d}, {b}{' ' + v if v else ''}\n" for d, b, v in lines) + "\n" + tables(shown))
    args.out.mkdir(parents=True, exist_ok=True)
    pngs = [] if args.no_plots else all_plots(rows, args.out)
    if startup is not None:
        section, startup_pngs = startup_section(startup[1], str(startup[0]), None if args.no_plots else args.out)
        text += "\n\n" + "\n".join(section).rstrip()
        pngs += startup_pngs
    (args.out / "report.md").write_text(text + "\n")
    write_csv(args.out / "report.csv", rows)
    print(text)
    print(f"wrote {args.out / 'report.md'}, {args.out / 'report.csv'} and {len(pngs)} PNG(s)", file=sys.stderr)
    return 0
