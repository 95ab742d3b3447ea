"""Start-up cost against a split's size: the result file of `bench/open_scaling.py`, as tables and a plot.

The file (`STARTUP_FORMAT`): `config` (size, shard_size, batch_size, batches, repeats), `environment`
(`pipeline.bench.recorder.collect_environment`), and `rows`, one per (samples, variant, mechanism):
open_s and first_batch_s (seconds, median over fresh processes, with _min and _max), growth_mb (the
most any of them grew, MB: peak RSS over the RSS before the open) and, for the graph mechanism of this
code, bound_mb (`pipeline.input.loader.graph_memory_bound`).
"""
from __future__ import annotations

import json
from pathlib import Path

from pipeline.errors import UsageError
from pipeline.results.markdown import number, table

STARTUP_FORMAT = "moving-square-startup"
VARIANTS = {"index": "chunk index", "check_hashes": "check_hashes=True", "old": "before the index"}
MECHANISMS = {"auto": "default", "graph": "graph"}
METRICS = {"open_s": "open_dataset (s)", "first_batch_s": "open to first batch (s)",
           "growth_mb": "memory growth (MB)"}
NOTE = ("Cost of `open_dataset` and of the first batch of `make_dataset` against the train split's size "
        "(shards of a fixed size, so their count grows with it), each cell a fresh process with the page cache "
        "warm; median of the repeats, range in brackets. *chunk index*: this code; *check_hashes=True*: this "
        "code hashing every shard at open, as every open did before the index; *before the index*: the code of "
        "the commit before it (its graph mechanism holds every stored chunk in memory, so it runs only up to "
        "the largest split shown for it). Memory growth: peak resident memory over the resident memory before "
        "the open, the most of any repeat; bound: `graph_memory_bound`.")


def load_startup(path: Path) -> dict:
    """A start-up result document; UsageError (one line) if unreadable or not one."""
    try:
        doc = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"{path}: unreadable ({getattr(e, 'strerror', None) or e})") from None
    except json.JSONDecodeError as e:
        raise UsageError(f"{path}: not JSON ({e.msg} at line {e.lineno})") from None
    if not isinstance(doc, dict) or doc.get("format") != STARTUP_FORMAT or not isinstance(doc.get("rows"), list):
        raise UsageError(f"{path}: not a start-up result (format is not {STARTUP_FORMAT!r} with rows)")
    return doc


def _cells(doc: dict) -> list[tuple[str, str]]:
    present = {(r["variant"], r["mechanism"]) for r in doc["rows"]}
    return [(v, m) for v in VARIANTS for m in MECHANISMS if (v, m) in present]


def _value(row: dict | None, metric: str) -> str:
    if row is None:
        return "-"
    text = number(row[metric])
    if row.get(f"{metric}_min") is not None and row[f"{metric}_max"] != row[f"{metric}_min"]:
        text += f" [{number(row[f'{metric}_min'])}, {number(row[f'{metric}_max'])}]"
    if metric == "growth_mb" and row.get("bound_mb") is not None:
        text += f" (bound {number(row['bound_mb'])})"
    return text


def startup_tables(doc: dict) -> list[str]:
    """A Markdown table per metric: a row per split size, a column per variant and mechanism, and a
    last row: the largest split's value over the smallest's."""
    cells = _cells(doc)
    by = {(r["samples"], r["variant"], r["mechanism"]): r for r in doc["rows"]}
    sizes = sorted({r["samples"] for r in doc["rows"]})
    shards = {r["samples"]: r["shards"] for r in doc["rows"]}
    lines = []
    for metric, title in METRICS.items():
        header = ["sequences", "shards"] + [f"{VARIANTS[v]}, {MECHANISMS[m]}" for v, m in cells]
        body = [[f"{n:,}", f"{shards[n]:,}"] + [_value(by.get((n, v, m)), metric) for v, m in cells] for n in sizes]
        growth = []
        for v, m in cells:
            measured = [n for n in sizes if (n, v, m) in by]
            first, last = (by[(measured[0], v, m)], by[(measured[-1], v, m)]) if measured else (None, None)
            growth.append(f"{last[metric] / first[metric]:.2f}x" if first and first[metric] else "-")
        body.append(["largest / smallest", ""] + growth)
        lines += [f"**{title}**", "", *table(header, body, "l" + "r" * (len(header) - 1)), ""]
    return lines


def plot_startup(doc: dict, out: Path, prefix: str = "") -> list[Path]:
    """startup.png: each metric against split size (log-log), a line per variant and mechanism; the graph
    mechanism's bound dotted on the memory panel."""
    from pipeline.results.report import _pyplot

    _, plt = _pyplot()
    cells = _cells(doc)
    fig, axes = plt.subplots(1, len(METRICS), figsize=(15, 4.2), squeeze=False)
    for ax, (metric, title) in zip(axes[0], METRICS.items()):
        for v, m in cells:
            points = sorted((r["samples"], r) for r in doc["rows"] if (r["variant"], r["mechanism"]) == (v, m))
            xs = [n for n, _ in points]
            line, = ax.plot(xs, [r[metric] for _, r in points], marker="o", label=f"{VARIANTS[v]}, {MECHANISMS[m]}")
            if metric != "growth_mb" and all(f"{metric}_min" in r for _, r in points):
                ax.fill_between(xs, [r[f"{metric}_min"] for _, r in points], [r[f"{metric}_max"] for _, r in points],
                                alpha=0.2, color=line.get_color())
            if metric == "growth_mb" and all(r.get("bound_mb") for _, r in points):
                ax.plot(xs, [r["bound_mb"] for _, r in points], linestyle=":", color=line.get_color(),
                        label=f"bound, {MECHANISMS[m]}")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("sequences in the split")
        ax.set_title(title)
        ax.grid(alpha=0.3, which="both")
    axes[0][0].legend(fontsize="small")
    cfg = doc.get("config", {})
    fig.suptitle(f"start-up against split size (size {cfg.get('size')}, shards of {cfg.get('shard_size')}, "
                 f"batch {cfg.get('batch_size')}; band: min-max)", fontsize="medium")
    fig.tight_layout()
    path = out / f"{prefix}startup.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return [path]


def startup_section(doc: dict, source: str, out: Path | None, prefix: str = "") -> tuple[list[str], list[Path]]:
    """The performance page's start-up section (Markdown lines) and its plot, written into `out` (None: no plot)."""
    env = doc.get("environment", {})
    device = (env.get("cpu") or {}).get("model") or "?"
    commit = ((env.get("git") or {}).get("commit") or "?")[:10]
    pngs = plot_startup(doc, out, prefix) if out is not None else []
    lines = ["## start-up", "", NOTE, "",
             f"From `{source}`, created {doc.get('created', '?')} on {device} ({env.get('cpu', {}).get('cores', '?')} "
             f"cores), commit {commit}; repeats per cell: {doc.get('config', {}).get('repeats', 1)}.", "",
             *startup_tables(doc), *(f"![{p.stem}]({p.name})" for p in pngs), ""]
    return lines, pngs
