"""Start-up cost against a split's size: the result file of `bench/open_scaling.py`, as tables (its plot:
`pipeline.results.plots.startup`).

The file (`STARTUP_FORMAT`): `config` (size, shard_size, batch_size, batches, repeats), `environment`
(`pipeline.bench.recorder.collect_environment`), and `rows`, one per (samples, variant, mechanism):
open_s and first_batch_s (seconds, median over fresh processes, with _min and _max), growth_mb (the
most any of them grew, MB: peak RSS over the RSS before the open) and, for the graph mechanism of this
code, bound_mb (`pipeline.input.loader.graph_memory_bound`).
"""
from __future__ import annotations

from pathlib import Path

from pipeline.errors import UsageError
from pipeline.results.files import read_json
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
    doc = read_json(path)
    if not isinstance(doc, dict) or doc.get("format") != STARTUP_FORMAT or not isinstance(doc.get("rows"), list):
        raise UsageError(f"{path}: not a start-up result (format is not {STARTUP_FORMAT!r} with rows)")
    return doc


def cells(doc: dict) -> list[tuple[str, str]]:
    """The (variant, mechanism) pairs the document measured, in `VARIANTS` x `MECHANISMS` order."""
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
    present = cells(doc)
    by = {(r["samples"], r["variant"], r["mechanism"]): r for r in doc["rows"]}
    sizes = sorted({r["samples"] for r in doc["rows"]})
    shards = {r["samples"]: r["shards"] for r in doc["rows"]}
    lines = []
    for metric, title in METRICS.items():
        header = ["sequences", "shards"] + [f"{VARIANTS[v]}, {MECHANISMS[m]}" for v, m in present]
        body = [[f"{n:,}", f"{shards[n]:,}"] + [_value(by.get((n, v, m)), metric) for v, m in present]
                for n in sizes]
        growth = []
        for v, m in present:
            measured = [n for n in sizes if (n, v, m) in by]
            first, last = (by[(measured[0], v, m)], by[(measured[-1], v, m)]) if measured else (None, None)
            growth.append(f"{last[metric] / first[metric]:.2f}x" if first and first[metric] else "-")
        body.append(["largest / smallest", ""] + growth)
        lines += [f"**{title}**", "", *table(header, body, "l" + "r" * (len(header) - 1)), ""]
    return lines


def startup_section(doc: dict, source: str, images: tuple[str, ...] = ()) -> list[str]:
    """The start-up section (Markdown lines): the note, where the figures come from, the tables, then
    `images` (PNG names relative to the page)."""
    env = doc.get("environment", {})
    device = (env.get("cpu") or {}).get("model") or "?"
    commit = ((env.get("git") or {}).get("commit") or "?")[:10]
    return ["## start-up", "", NOTE, "",
            f"From `{source}`, created {doc.get('created', '?')} on {device} ({env.get('cpu', {}).get('cores', '?')} "
            f"cores), commit {commit}; repeats per cell: {doc.get('config', {}).get('repeats', 1)}.", "",
            *startup_tables(doc), *(f"![start-up]({name})" for name in images), ""]
