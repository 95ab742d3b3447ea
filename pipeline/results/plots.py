"""The report's plots: at most `PLOTS` PNGs, none wider than `MAX_WIDTH_PX`, a legend on every panel,
spreads as error bars or bands (p10-p90, as `pipeline.results.tables` computes them).

The only module that imports pyplot (on the Agg backend, so that no display is needed). Each function
draws one figure into `path` and returns it, or None where the rows hold nothing to draw.
"""
from __future__ import annotations

import math
import textwrap
from pathlib import Path

from pipeline.results.format import HIGHER
from pipeline.results.tables import LOAD_ORDER, MachineNames, Rows, Stat, machine_letters

# name of each plot's file (before a page's prefix), in the order a page shows them
PLOTS = {"relative": "relative.png", "train": "train-steps.png", "scaling": "train-scaling.png",
         "load": "load-pipelines.png", "au": "au-utilization.png", "generate": "generate.png",
         "startup": "startup.png"}
MAX_WIDTH_PX = 2000
DPI = 100
COLUMNS = 4  # panels a row before a figure wraps into the next
PANEL = (4.4, 3.3)  # inches of one panel: 4 of them and their margins stay under MAX_WIDTH_PX at DPI
LEGEND = {"fontsize": "x-small", "framealpha": 0.8}
LINESTYLES = ("-", "--", ":", "-.", (0, (8, 2)), (0, (1, 4)), (0, (5, 2, 1, 2, 1, 2)), (0, (12, 3, 3, 3)))
RATIO_TICKS = (1 / 64, 1 / 32, 1 / 16, 1 / 8, 0.25, 0.5, 0.75, 1, 1.5, 2, 3, 4, 8, 16, 32, 64)
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")

PLAIN = MachineNames()  # rows named by their device and backend, where no comparison gives letters


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return matplotlib, plt


def _panels(count: int, columns: int = COLUMNS, size: tuple[float, float] = PANEL, extra_height: float = 0.6):
    """A figure of `count` panels, `columns` a row at most; the axes as a flat list of `count`."""
    _, plt = _pyplot()
    cols = max(1, min(columns, count))
    rows = math.ceil(count / cols)
    fig, grid = plt.subplots(rows, cols, figsize=(size[0] * cols, size[1] * rows + extra_height), squeeze=False)
    axes = [ax for line in grid for ax in line]
    for ax in axes[count:]:
        fig.delaxes(ax)
    return fig, axes[:count]


def _save(fig, path: Path, title: str) -> Path:
    """Title (wrapped to the figure's width), tight layout, PNG at `DPI` (less where the figure would be
    wider than MAX_WIDTH_PX)."""
    _, plt = _pyplot()
    title = textwrap.fill(title, int(fig.get_figwidth() * 12))
    fig.suptitle(title, fontsize="medium")
    # the panels below the title: its lines take about 0.2 inch each
    fig.tight_layout(rect=(0, 0, 1, 1 - (0.05 + 0.18 * (title.count("\n") + 1)) / fig.get_figheight()))
    dpi = min(DPI, MAX_WIDTH_PX / fig.get_figwidth())
    # "tight" takes in legends placed outside the panels; they lie below or beside them, within the width
    fig.savefig(path, dpi=dpi, bbox_inches="tight", pad_inches=0.1)
    plt.close(fig)
    return path


def _log2_axis(ax, ticks, axis: str = "x") -> None:
    """A base-2 log axis labelled with the values themselves (batch sizes, device counts, workers)."""
    matplotlib, _ = _pyplot()
    getattr(ax, f"set_{axis}scale")("log", base=2)
    getattr(ax, f"set_{axis}ticks")(sorted(ticks))
    getattr(ax, f"get_{axis}axis")().set_major_formatter(matplotlib.ticker.ScalarFormatter())
    getattr(ax, f"get_{axis}axis")().set_minor_formatter(matplotlib.ticker.NullFormatter())


def _band(ax, xs, stats: list[Stat], color) -> None:
    """A p10-p90 band under a line, where every point has a spread."""
    if stats and all(s.p10 is not None for s in stats):
        ax.fill_between(xs, [s.p10 for s in stats], [s.p90 for s in stats], alpha=0.2, color=color, linewidth=0)


def _yerr(stats: list[Stat]) -> list[list[float]] | None:
    """Asymmetric error bars (below, above the median) from p10-p90; 0 where a point has no spread."""
    if not any(s.p10 is not None for s in stats):
        return None
    return [[s.median - s.p10 if s.p10 is not None else 0 for s in stats],
            [s.p90 - s.median if s.p90 is not None else 0 for s in stats]]


# --- relative throughput per machine -----------------------------------------------------------------

def _factors(cell) -> tuple[float, float]:
    """How far p10 and p90 lie from a headline cell's median, as factors on its ratio (1, 1 without spread)."""
    if cell.p10 is None or cell.p90 is None or not cell.median or cell.p10 <= 0:
        return 1.0, 1.0
    if cell.direction == HIGHER:
        low, high = cell.p10 / cell.median, cell.p90 / cell.median
    else:
        low, high = cell.median / cell.p90, cell.median / cell.p10
    # a spread taken from other values than the median's (AU95's: its demand times each loader measurement)
    # may lie wholly to one side of it; the bar then reaches the median
    return min(low, 1.0), max(high, 1.0)


def _geo(values: list[float]) -> float:
    return math.exp(sum(map(math.log, values)) / len(values)) if values else 1.0


def relative(comp, path: Path) -> Path | None:
    """Each machine's throughput relative to the comparison's baseline: the geometric mean over the cells
    it shares with the baseline, and each cell's ratio; error bars: the machine's own p10-p90."""
    matplotlib, plt = _pyplot()
    letters = machine_letters(comp)
    ratios = {(m.id, key): r for m in comp.machines for key in comp.cells
              if (r := comp.ratio(m.id, key)) is not None and r > 0}
    if not ratios:
        return None
    machines = [m for m in comp.machines if any(mid == m.id for mid, _ in ratios)]
    keys = [k for k in comp.cells if any(key == k for _, key in ratios)]
    height = max(3.4, 0.11 * len(keys) * len(machines) + 1.4) + 0.2 * len(machines)
    fig, (geo_ax, cell_ax) = plt.subplots(1, 2, figsize=(12.5, height), gridspec_kw={"width_ratios": (1, 1.6)})
    for i, m in enumerate(machines):
        mine = [(key, ratios[(m.id, key)], _factors(comp.value(m.id, key))) for key in keys if (m.id, key) in ratios]
        value, count = comp.geomean(m.id)
        low, high = _geo([f[0] for _, _, f in mine]), _geo([f[1] for _, _, f in mine])
        label = f"{letters[m.id]} {m.label}"
        geo_ax.barh(i, value, color=f"C{i}", label=f"{label} ({count} cells)",
                    xerr=[[value - value * low], [value * high - value]], capsize=3)
        ys = [keys.index(key) + (i - (len(machines) - 1) / 2) * 0.8 / len(machines) for key, _, _ in mine]
        cell_ax.barh(ys, [r for _, r, _ in mine], height=0.8 / len(machines), color=f"C{i}", label=label,
                     xerr=[[r - r * f[0] for _, r, f in mine], [r * f[1] - r for _, r, f in mine]], capsize=2)
    baseline = f"{letters[comp.baseline]} (baseline)"
    apart = [letters[m.id] for m in comp.machines if m not in machines]
    if apart:  # machines that share no throughput cell with the baseline have no ratio to show
        geo_ax.annotate(f"{', '.join(apart)}: no throughput cell shared with {letters[comp.baseline]}",
                        (0.02, 0.02), xycoords="axes fraction", fontsize="x-small")
    geo_ax.set_yticks(range(len(machines)), [letters[m.id] for m in machines])
    geo_ax.invert_yaxis()
    geo_ax.set_title("geometric mean over shared cells", fontsize="small")
    cell_ax.set_yticks(range(len(keys)), keys, fontsize="small")
    cell_ax.invert_yaxis()
    cell_ax.set_title("each headline cell", fontsize="small")
    for ax in (geo_ax, cell_ax):
        ax.axvline(1.0, color="grey", linestyle=":", linewidth=1, label=f"1 = {baseline}")
        ax.set_xscale("log", base=2)
        low, high = ax.get_xlim()
        ax.set_xticks([t for t in RATIO_TICKS if low <= t <= high])
        ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}x"))
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xlabel(f"throughput relative to {letters[comp.baseline]} (> 1: faster)")
        ax.grid(axis="x", alpha=0.3)
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.25), **LEGEND)
    return _save(fig, path, "Headline throughput relative to the baseline machine (error bars: the machine's own "
                 "p10-p90)")


# --- train step time against batch size ------------------------------------------------------------

def train_steps(rows: Rows, path: Path, names: MachineNames = PLAIN) -> Path | None:
    """ms/step against batch size, a panel per size, a line per machine, model and feed (band: p10-p90):
    the colour and marker name the model and feed, the line style the machine."""
    from matplotlib.lines import Line2D

    steps = [r for r in rows.of("train", "ms_per_step_median")
             if (r.get("devices") or 1) == 1 and r["value"] is not None and r["batch_size"] is not None]
    if not steps:
        return None
    name = names.long
    sizes = sorted({r["size"] for r in steps})
    machines = sorted({name(r) for r in steps})
    series = sorted({_series(r) for r in steps})
    fig, axes = _panels(len(sizes), columns=2, size=(7.4, 4.4))
    for ax, size in zip(axes, sizes):
        here = [r for r in steps if r["size"] == size]
        for m, machine in enumerate(machines):
            for s, label in enumerate(series):
                points = sorted((r["batch_size"], rows.stat(r)) for r in here
                                if name(r) == machine and _series(r) == label)
                if points:
                    xs, stats = [b for b, _ in points], [st for _, st in points]
                    ax.plot(xs, [st.median for st in stats], linestyle=LINESTYLES[m % len(LINESTYLES)],
                            marker=MARKERS[s % len(MARKERS)], color=f"C{s % 10}")
                    _band(ax, xs, stats, f"C{s % 10}")
        shown_series = [(s, label) for s, label in enumerate(series) if any(_series(r) == label for r in here)]
        shown_machines = [(m, machine) for m, machine in enumerate(machines) if any(name(r) == machine for r in here)]
        handles = [Line2D([], [], color=f"C{s % 10}", marker=MARKERS[s % len(MARKERS)], label=label)
                   for s, label in shown_series]
        handles += [Line2D([], [], color="grey", linestyle=LINESTYLES[m % len(LINESTYLES)], label=machine)
                    for m, machine in shown_machines]
        _log2_axis(ax, {r["batch_size"] for r in here})
        _log_values(ax)
        ax.set_title(f"size {size}", fontsize="small")
        ax.set_xlabel("batch size")
        ax.set_ylabel("ms/step (median)")
        ax.grid(alpha=0.3, which="both")
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), **LEGEND)
    return _save(fig, path, "train: step time against batch size (band: p10-p90; colour and marker: model and "
                 "feed; line style: machine)")


def _series(row: dict) -> str:
    """A train row's model and feed, and its precision where not float32."""
    precision = row.get("precision")
    return f"{row['impl']}, {row.get('feed')}" + (f", {precision}" if precision not in (None, "float32") else "")


def _log_values(ax) -> None:
    """A log y axis labelled with plain numbers (10, 20, 50, 100), not powers of ten."""
    matplotlib, _ = _pyplot()
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_formatter(matplotlib.ticker.FuncFormatter(
        lambda v, _: f"{v:g}" if f"{v:g}"[0] in "25" else ""))


# --- scaling efficiency against device count ---------------------------------------------------------

def scaling(rows: Rows, path: Path, names: MachineNames = PLAIN) -> Path | None:
    """`fit` scaling efficiency, samples/s(N) / (N x samples/s(1)), against N, a panel per model, batch and
    precision, a line per machine, size and process count (band: p10-p90 of samples/s(N) over the same)."""
    rates = [r for r in rows.of("train", "scaling_samples_per_s") if r["value"] is not None]
    name = names.long
    lines: dict[tuple, dict[int, Stat]] = {}
    for r in rates:
        panel = (r["impl"], r["batch_size"], r.get("precision"))
        lines.setdefault((panel, name(r), r["size"], r.get("processes") or 1), {})[r.get("devices") or 1] = \
            rows.stat(r)
    lines = {k: v for k, v in lines.items() if 1 in v}
    if not lines:
        return None
    panels = sorted({k[0] for k in lines}, key=lambda p: tuple(map(str, p)))
    fig, axes = _panels(len(panels))
    for ax, panel in zip(axes, panels):
        for i, (key, by_n) in enumerate(sorted((k, v) for k, v in lines.items() if k[0] == panel)):
            _, machine, size, processes = key
            one = by_n[1].median
            xs = sorted(by_n)
            effs = [Stat(by_n[n].median / (n * one),
                         None if by_n[n].p10 is None else by_n[n].p10 / (n * one),
                         None if by_n[n].p90 is None else by_n[n].p90 / (n * one)) for n in xs]
            label = f"{machine}, size {size}" + (f", {processes} processes" if processes != 1 else "")
            line, = ax.plot(xs, [e.median for e in effs], marker="o", color=f"C{i}", label=label)
            _band(ax, xs, effs, line.get_color())
        ax.axhline(1.0, color="grey", linestyle=":", linewidth=1, label="ideal")
        _log2_axis(ax, {n for k, v in lines.items() if k[0] == panel for n in v})
        model, batch, precision = panel
        ax.set_title(f"{model}, global batch {batch}" + (f", {precision}" if precision not in (None, "float32")
                                                         else ""), fontsize="small")
        ax.set_xlabel("devices (the global batch split over them)")
        ax.set_ylabel("efficiency")
        ax.set_ylim(0, 1.25)
        ax.grid(alpha=0.3)
        ax.legend(**LEGEND)
    return _save(fig, path, "train: fit on our loader, scaling efficiency = samples/s(N) / (N x samples/s(1)) "
                 "(band: p10-p90)")


# --- every shuffled pipeline side by side --------------------------------------------------------------

def _rank(row: dict) -> int:
    """Which of a pipeline's rows a bar shows: its most readers (the loader's default uses every core)."""
    return row.get("readers") or 0


def load_pipelines(rows: Rows, path: Path, names: MachineNames = PLAIN) -> Path | None:
    """Loader samples/s of every shuffled pipeline at its most readers, a panel per size x batch, a bar per
    machine and consumer in each pipeline's group (error bars: p10-p90)."""
    name = names.short
    cells: dict[tuple, dict] = {}
    for r in rows.of("load", "samples_per_s"):
        if r.get("shuffle") is False or r["value"] is None or r["batch_size"] is None:
            continue
        key = (r["size"], r["batch_size"], r["impl"], name(r), r.get("front_end"), r.get("consumer"))
        if key not in cells or _rank(r) > _rank(cells[key]):
            cells[key] = r
    if not cells:
        return None
    panels = sorted({k[:2] for k in cells})
    series = sorted({k[3:] for k in cells}, key=lambda s: tuple(map(str, s)))
    fig, axes = _panels(len(panels), size=(4.6, 3.6))
    for ax, panel in zip(axes, panels):
        impls = sorted({k[2] for k in cells if k[:2] == panel},
                       key=lambda i: (LOAD_ORDER.index(i) if i in LOAD_ORDER else len(LOAD_ORDER), i))
        width = 0.85 / len(series)
        for s, (machine, front_end, consumer) in enumerate(series):
            bars = [(j + (s - (len(series) - 1) / 2) * width, rows.stat(cells[(*panel, impl, machine, front_end,
                                                                                 consumer)]))
                    for j, impl in enumerate(impls) if (*panel, impl, machine, front_end, consumer) in cells]
            if not bars:
                continue
            stats = [st for _, st in bars]
            ax.bar([x for x, _ in bars], [st.median / 1e3 for st in stats], width, color=f"C{s % 10}",
                   label=f"{machine}: {front_end}/{consumer}",
                   yerr=None if _yerr(stats) is None else [[v / 1e3 for v in side] for side in _yerr(stats)],
                   capsize=2, error_kw={"linewidth": 0.8})
        ax.set_xticks(range(len(impls)), impls, rotation=25, ha="right", fontsize="x-small")
        ax.set_title(f"size {panel[0]}, batch {panel[1]}", fontsize="small")
        ax.set_ylabel("k samples/s")
        ax.grid(axis="y", alpha=0.3)
        legend = ax.legend(loc="upper center", **LEGEND)
        top = ax.get_ylim()[1]  # room above the tallest bar for the legend, so that it covers none
        ax.set_ylim(0, top * (1.12 + 0.085 * len(legend.get_texts())))
    key = names.key(list(cells.values()))
    return _save(fig, path, "load: every shuffled pipeline at its most readers, samples/s (median of round-robin "
                 "windows; error bars: p10-p90); consumed as front end/consumer" + (f". {key}" if key else ""))


# --- AU against demand ----------------------------------------------------------------------------

def au(rows: Rows, path: Path, names: MachineNames = PLAIN) -> Path | None:
    """AU against demand, a panel per machine and size, a line per front end and batch: our loader solid,
    the synthetic consumer (one batch repeated) dashed in the same colour; the 95% target dotted."""
    name = names.long
    lines: dict[tuple, list[tuple[float, float]]] = {}
    for r in rows.of("au", "au"):
        if r["value"] is not None and r.get("demand") is not None:
            key = (name(r), r["size"], r.get("front_end"), r.get("consumer"), r["batch_size"], r["impl"])
            lines.setdefault(key, []).append((r["demand"], r["value"]))
    if not lines:
        return None
    panels = sorted({k[:2] for k in lines}, key=lambda p: (str(p[0]), p[1]))
    fig, axes = _panels(len(panels), size=(4.6, 3.4))
    for ax, panel in zip(axes, panels):
        curves = sorted({k[2:5] for k in lines if k[:2] == panel}, key=lambda c: (str(c[0]), str(c[1]), c[2]))
        for i, (front_end, consumer, batch) in enumerate(curves):
            for impl, style in (("ours-packed", "-"), ("synthetic", "--")):
                points = sorted(lines.get((*panel, front_end, consumer, batch, impl), []))
                if points:
                    ax.plot(*zip(*points), style, marker="o" if style == "-" else None, markersize=3,
                            color=f"C{i}", label=f"{front_end} from {consumer}, batch {batch}" if style == "-"
                            else None)
        ax.plot([], [], "--", color="grey", label="synthetic (one batch repeated)")
        ax.axhline(0.95, color="grey", linestyle=":", linewidth=1, label="95%")
        ax.set_title(f"{panel[0]}, size {panel[1]}", fontsize="small")
        ax.set_xlabel("demand (step's samples/s over the loader's own)", fontsize="small")
        ax.set_ylabel("AU")
        ax.set_ylim(0, 1.05)
        ax.grid(alpha=0.3)
        ax.legend(loc="lower left", **LEGEND)
    return _save(fig, path, "au: accelerator utilization against demand (solid: our loader, packed; dashed: one "
                 "batch repeated from memory)")


# --- generation against workers ---------------------------------------------------------------------

def generation(rows: Rows, path: Path, names: MachineNames = PLAIN) -> Path | None:
    """Generation samples/s against workers, a panel per size, a line per machine (error bars: p10-p90 where
    kept); the book's `generate_examples` (one core) dashed in the same colour."""
    rates = [r for r in rows.of("generate", "samples_per_s") if r["value"] is not None and r.get("workers")]
    ours = [r for r in rates if r["impl"] == "ours"]
    if not ours:
        return None
    name = names.long
    sizes = sorted({r["size"] for r in ours})
    machines = sorted({name(r) for r in rates})
    fig, axes = _panels(len(sizes))
    for ax, size in zip(axes, sizes):
        for i, machine in enumerate(machines):
            points = sorted((r["workers"], rows.stat(r)) for r in ours if r["size"] == size and name(r) == machine)
            if points:
                stats = [st for _, st in points]
                ax.errorbar([w for w, _ in points], [st.median for st in stats], yerr=_yerr(stats), marker="o",
                            color=f"C{i}", capsize=3, label=f"{machine}: ours")
            book = [r for r in rates if r["impl"] == "book" and r["size"] == size and name(r) == machine]
            if book:
                ax.axhline(book[0]["value"], color=f"C{i}", linestyle="--", linewidth=1, label=f"{machine}: book")
        _log2_axis(ax, {r["workers"] for r in ours if r["size"] == size})
        _log_values(ax)
        ax.set_title(f"size {size}", fontsize="small")
        ax.set_xlabel("workers")
        ax.set_ylabel("samples/s")
        ax.grid(alpha=0.3, which="both")
        ax.legend(**LEGEND)
    return _save(fig, path, "generate: samples/s against workers (dashed: the book's generate_examples, one core)")


# --- start-up against dataset size ----------------------------------------------------------------------

def startup(doc: dict, path: Path) -> Path | None:
    """Each start-up metric against split size (log-log), a line per variant and mechanism (band: min-max);
    the graph mechanism's memory bound dotted (`pipeline.results.startup`)."""
    from pipeline.results.startup import MECHANISMS, METRICS, VARIANTS, cells

    present = cells(doc)
    if not present:
        return None
    fig, axes = _panels(len(METRICS), size=(5.2, 3.8))
    for ax, (metric, title) in zip(axes, METRICS.items()):
        for v, m in present:
            points = sorted((r["samples"], r) for r in doc["rows"] if (r["variant"], r["mechanism"]) == (v, m))
            xs = [n for n, _ in points]
            line, = ax.plot(xs, [r[metric] for _, r in points], marker="o", label=f"{VARIANTS[v]}, {MECHANISMS[m]}")
            if all(r.get(f"{metric}_min") is not None for _, r in points):
                ax.fill_between(xs, [r[f"{metric}_min"] for _, r in points], [r[f"{metric}_max"] for _, r in points],
                                alpha=0.2, color=line.get_color(), linewidth=0)
            if metric == "growth_mb" and all(r.get("bound_mb") for _, r in points):
                ax.plot(xs, [r["bound_mb"] for _, r in points], linestyle=":", color=line.get_color(),
                        label=f"bound, {MECHANISMS[m]}")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("sequences in the split")
        ax.set_title(title, fontsize="small")
        ax.grid(alpha=0.3, which="both")
        ax.legend(**LEGEND)
    cfg = doc.get("config", {})
    return _save(fig, path, f"start-up against split size (size {cfg.get('size')}, shards of {cfg.get('shard_size')}, "
                 f"batch {cfg.get('batch_size')}; band: min-max)")


def draw_all(rows: Rows, comp, startup_doc: dict | None, out: Path, prefix: str = "",
             names: MachineNames = PLAIN) -> dict[str, Path]:
    """Every plot the rows (and comparison, and start-up result) hold, into `out`: section -> PNG path."""
    out.mkdir(parents=True, exist_ok=True)
    drawn = {
        "relative": relative(comp, out / f"{prefix}{PLOTS['relative']}") if comp is not None else None,
        "train": train_steps(rows, out / f"{prefix}{PLOTS['train']}", names),
        "scaling": scaling(rows, out / f"{prefix}{PLOTS['scaling']}", names),
        "load": load_pipelines(rows, out / f"{prefix}{PLOTS['load']}", names),
        "au": au(rows, out / f"{prefix}{PLOTS['au']}", names),
        "generate": generation(rows, out / f"{prefix}{PLOTS['generate']}", names),
        "startup": startup(startup_doc, out / f"{prefix}{PLOTS['startup']}") if startup_doc is not None else None,
    }
    return {section: path for section, path in drawn.items() if path is not None}
