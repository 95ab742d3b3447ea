"""The suites' detail as a few wide Markdown tables: a row per configuration and machine, a column per
size x batch (scaling: per device count), each cell its median and spread, "median [p10-p90]".

A cell's spread comes from its row's `repeat_values` (p10 and p90, linearly interpolated) where the row
kept two or more, else from the sibling rows that summarise it (`SPREAD_METRICS`: `samples_per_s_p10`
and `_p90`, `ms_per_step_p10` and `_p90`, `accuracy_min` and `_max`). A cell whose p10-p90 width exceeds
`NOISY` of its median ends in `!`; a failed cell reads `failed` (its error is in the CSV); a cell not
measured is blank. Each table scales its unit once (k = thousands, M = millions).
"""
from __future__ import annotations

import string
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pipeline.results.format import CONFIG_KEYS
from pipeline.results.headline import NOISY, percentile
from pipeline.results.markdown import table

# metric -> the sibling metrics that hold its low and high end, for rows that kept no repeat values
SPREAD_METRICS = {
    "samples_per_s": ("samples_per_s_p10", "samples_per_s_p90"),
    "ms_per_step_median": ("ms_per_step_p10", "ms_per_step_p90"),
    "scaling_samples_per_s": ("scaling_samples_per_s_p10", "scaling_samples_per_s_p90"),
    "accuracy": ("accuracy_min", "accuracy_max"),
}
LOAD_ORDER = ("in-memory", "ours", "ours-packed", "ours-graph-packed", "from_generator")
FEED_ORDER = ("ours", "ours-packed", "in-memory", "synthetic", "synthetic-packed")
BOUND_FEEDS = ("ours", "ours-packed", "in-memory")  # the feeds an input-bound fraction is measured for


@dataclass(frozen=True)
class Stat:
    """A cell's median and spread (p10..p90, in the row's unit) over `n` repeats, or its error."""

    median: float | None
    p10: float | None = None
    p90: float | None = None
    n: int = 1
    error: str | None = None

    @property
    def noisy(self) -> bool:
        """p10-p90 wider than `NOISY` of the median."""
        return self.median is not None and self.p10 is not None and self.p90 is not None and self.median != 0 \
            and (self.p90 - self.p10) / abs(self.median) > NOISY


def cell_key(row: dict) -> tuple:
    """What identifies a measured cell among merged rows: its machine and settings (`CONFIG_KEYS`)."""
    return (row["machine"], *(row.get(k) for k in CONFIG_KEYS))


class Rows:
    """Merged rows (`pipeline.results.files.merge`), indexed so that a row finds its siblings: the other
    metrics of the same cell on the same machine."""

    def __init__(self, rows: list[dict]):
        self.rows = rows
        self._by = {(cell_key(r), r["metric"]): r for r in rows}

    def of(self, suite: str, metric: str) -> list[dict]:
        return [r for r in self.rows if r["suite"] == suite and r["metric"] == metric]

    def sibling(self, row: dict, metric: str) -> dict | None:
        """The row of `metric` measured in `row`'s cell, or None."""
        return self._by.get((cell_key(row), metric))

    def value(self, row: dict, metric: str) -> float | None:
        found = self.sibling(row, metric)
        return None if found is None or found["error"] else found["value"]

    def stat(self, row: dict) -> Stat:
        """`row`'s median and spread: p10-p90 of its repeats, else its summarising siblings' values."""
        if row["error"]:
            return Stat(None, error=row["error"])
        values = row.get("repeat_values") or []
        if len(values) >= 2:
            return Stat(row["value"], percentile(values, 10), percentile(values, 90), len(values))
        low, high = SPREAD_METRICS.get(row["metric"], (None, None))
        p10, p90 = (self.value(row, low), self.value(row, high)) if low else (None, None)
        if p10 is None or p90 is None:
            p10 = p90 = None
        return Stat(row["value"], p10, p90, len(values) or 1)


@dataclass(frozen=True)
class Scale:
    """A table's unit, scaled once: values are divided by `factor` and the unit is prefixed by `prefix`."""

    factor: float = 1.0
    prefix: str = ""

    @classmethod
    def of(cls, values) -> Scale:
        """k from 10,000 up, M from 10 million up (by the largest absolute value)."""
        top = max((abs(v) for v in values if v is not None), default=0.0)
        return cls(1e6, "M") if top >= 1e7 else cls(1e3, "k") if top >= 1e4 else cls()

    def unit(self, unit: str) -> str:
        return f"{self.prefix} {unit}".strip() if self.prefix else unit

    def number(self, value: float) -> str:
        """3 significant digits, thousands separated: 67.2, 0.253, 1,234."""
        v = value / self.factor
        return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.3g}"


def percent(value: float) -> str:
    text = f"{value:.0%}"
    return "0%" if text == "-0%" else text


def accuracy(value: float) -> str:
    return f"{value:.4f}"


def cell_text(stat: Stat | None, number: Callable[[float], str]) -> str:
    """'median [p10-p90]', '!' after a noisy one; 'failed'; '' for no row."""
    if stat is None:
        return ""
    if stat.error:
        return "failed"
    if stat.median is None:
        return "-"
    text = number(stat.median)
    if stat.p10 is not None:
        text += f" [{number(stat.p10)}-{number(stat.p90)}]"
    return text + ("!" if stat.noisy else "")


def size_batch(row: dict) -> tuple:
    return (row["size"], -1 if row["batch_size"] is None else row["batch_size"])


def size_batch_header(column: tuple) -> str:
    size, batch = column
    return f"{size}" if batch == -1 else f"{size} x {batch}"


Label = tuple[str, Callable[[dict], object]]  # a label column: its header, and the row's value (its sort key)


def _order(value) -> tuple:
    return (value is None, str(type(value)), value if value is not None else 0)


def _label(value) -> str:
    """A label cell's text: a label may be a (rank, text) pair, to order rows other than by their text."""
    if isinstance(value, tuple):
        value = value[-1]
    return "-" if value is None else str(value)


def wide_table(rows: list[dict], cell: Callable[[dict], str], labels: list[Label],
               column: Callable[[dict], tuple] = size_batch,
               header: Callable[[tuple], str] = size_batch_header) -> list[str]:
    """Lines of one Markdown table of `rows` (one metric): a row per distinct `labels` tuple, in their
    order, a column per `column(row)`, sorted; each cell `cell(row)`, blank where no row; [] without rows."""
    if not rows:
        return []
    columns = sorted({column(r) for r in rows})
    cells: dict[tuple, dict[tuple, dict]] = {}
    for r in rows:
        cells.setdefault(tuple(fn(r) for _, fn in labels), {})[column(r)] = r
    body = [[*map(_label, key), *(cell(cells[key][c]) if c in cells[key] else "" for c in columns)]
            for key in sorted(cells, key=lambda k: tuple(map(_order, k)))]
    return table([h for h, _ in labels] + [header(c) for c in columns], body, "l" * len(labels) + "r" * len(columns))


def _ranked(order: tuple, value) -> tuple:
    """A label ordered by its place in `order` (others after it), shown as `value`."""
    return (order.index(value) if value in order else len(order), value)


def _caption(text: str) -> list[str]:
    return [f"*{text}*", ""]


def machine_name(row: dict) -> str:
    """A row's machine where no comparison names it: its device and host, and backend."""
    return f"{row['machine']}, {row['backend']}"


Name = Callable[[dict], str]


def machine_letters(comp) -> dict[str, str]:
    """machine id -> the letter `compare` shows it by: A, B, ... in the comparison's order."""
    return {m.id: string.ascii_uppercase[i % 26] for i, m in enumerate(comp.machines)}


class MachineNames:
    """How tables and plots name a row's machine: by the letter and label the headline comparison gives
    the machine (fingerprint) of the row's file, `machine_name` for a file the comparison does not hold."""

    def __init__(self, comp=None):
        self._by_source: dict[str, tuple[str, str]] = {}
        letters = machine_letters(comp) if comp is not None else {}
        for machine in comp.machines if comp is not None else []:
            for path, _ in comp.docs[machine.id]:
                self._by_source[str(path)] = (letters[machine.id], machine.label)

    def of_file(self, path: Path, doc: dict) -> str:
        """The letter of a file's machine, else the device its environment names."""
        found = self._by_source.get(str(path))
        return found[0] if found else ((doc.get("environment") or {}).get("device") or {}).get("name", "?")

    def short(self, row: dict) -> str:
        """The machine's letter, as the headline's legend names it."""
        found = self._by_source.get(str(row.get("source")))
        return found[0] if found else machine_name(row)

    def long(self, row: dict) -> str:
        """Letter and label: 'A AMD EPYC 2c, jax 0.10.2'."""
        found = self._by_source.get(str(row.get("source")))
        return f"{found[0]} {found[1]}" if found else machine_name(row)

    def key(self, rows: list[dict]) -> str:
        """The letters of `rows`' machines with their labels, 'A: AMD EPYC 2c, jax 0.10.2; B: ...'; '' where
        the machines have no letters."""
        named = sorted({self._by_source[str(r.get("source"))] for r in rows if str(r.get("source")) in self._by_source})
        return "; ".join(f"{letter}: {label}" for letter, label in named)


def _spread_cell(rows: Rows, number: Callable[[float], str]) -> Callable[[dict], str]:
    return lambda r: cell_text(rows.stat(r), number)


def generate_tables(rows: Rows, name: Name = machine_name) -> list[str]:
    """Generation samples/s per generator and worker count, a column per size."""
    chosen = rows.of("generate", "samples_per_s")
    if not chosen:
        return []
    scale = Scale.of(r["value"] for r in chosen)
    labels = [("generator", lambda r: (r["impl"] != "book", r["impl"])), ("workers", lambda r: r.get("workers")),
              ("machine", name)]
    return [*_caption(f"Generation, {scale.unit('samples/s')} (cluster start-up excluded)"),
            *wide_table(chosen, _spread_cell(rows, scale.number), labels), ""]


def _consumed(r: dict) -> str:
    """Front end and consumer: 'tf.data/tf.function', 'numpy/python'."""
    return f"{r.get('front_end') or '-'}/{r.get('consumer') or '-'}"


TWIN_KEYS = ("machine", "impl", "size", "batch_size", "readers", "front_end", "consumer", "backend")


def shuffle_cost(rows: Rows) -> str | None:
    """One sentence: each pipeline's shuffled samples/s over its unshuffled twin's (the same machine, size,
    batch, readers and consumer), median [min-max] over the pairs; None without pairs."""
    load = rows.of("load", "samples_per_s")
    unshuffled = {tuple(r.get(k) for k in TWIN_KEYS): r["value"] for r in load
                  if r.get("shuffle") is False and r["value"]}
    ratios: dict[str, list[float]] = {}
    for r in load:
        twin = unshuffled.get(tuple(r.get(k) for k in TWIN_KEYS))
        if r.get("shuffle") is not False and r["value"] and twin:
            ratios.setdefault(r["impl"], []).append(r["value"] / twin)
    if not ratios:
        return None
    parts = [f"{impl} {percentile(v, 50):.2f}x [{min(v):.2f}-{max(v):.2f}]"
             for impl, v in sorted(ratios.items(), key=lambda kv: _ranked(LOAD_ORDER, kv[0]))]
    return ("Shuffled over unshuffled samples/s, median [min-max] over machines, sizes and batches: "
            + ", ".join(parts) + ".")


def load_tables(rows: Rows, name: Name = machine_name) -> list[str]:
    """Loader samples/s of the shuffled pipelines (impl, readers), by consumer and machine; what shuffling
    costs, in one sentence (`shuffle_cost`)."""
    chosen = [r for r in rows.of("load", "samples_per_s") if r.get("shuffle") is not False]
    if not chosen:
        return []
    scale = Scale.of(r["value"] for r in chosen)

    def pipeline(r):
        text = r["impl"] + (f", {r['readers']} readers" if r.get("readers") else "")
        return (_ranked(LOAD_ORDER, r["impl"]), -(r.get("readers") or 0), text)

    labels = [("pipeline", pipeline), ("consumed", _consumed), ("machine", name)]
    cost = shuffle_cost(rows)
    return [*_caption(f"Loader throughput, shuffled, {scale.unit('samples/s')}"),
            *wide_table(chosen, _spread_cell(rows, scale.number), labels), "", *([cost, ""] if cost else [])]


AU_KEYS = ("machine", "impl", "size", "batch_size", "front_end", "consumer", "backend", "readers", "emulation")


def au_tables(rows: Rows, name: Name = machine_name) -> list[str]:
    """AU95: the fastest emulated accelerator kept >= 95% busy (samples/s), our loader and the synthetic
    consumer (one batch repeated), per front end and machine; where no step of the sweep kept it busy, an
    upper bound: '<' the slowest step's samples/s (as the headline shows it)."""
    chosen = rows.of("au", "au95_samples_per_s")
    if not chosen:
        return []
    slowest: dict[tuple, float] = {}
    for r in rows.of("au", "au"):
        if r.get("step_ms") and not r["error"]:
            key = tuple(r.get(k) for k in AU_KEYS)
            slowest[key] = max(slowest.get(key, 0.0), r["step_ms"])
    scale = Scale.of([r["value"] for r in chosen] + [r["batch_size"] * 1e3 / ms for r in chosen
                                                     if (ms := slowest.get(tuple(r.get(k) for k in AU_KEYS)))])

    def cell(r):
        if r["value"] is None and not r["error"]:
            ms = slowest.get(tuple(r.get(k) for k in AU_KEYS))
            return f"<{scale.number(r['batch_size'] * 1e3 / ms)}" if ms else "<95%"
        return cell_text(rows.stat(r), scale.number)

    labels = [("loader", lambda r: (r["impl"] == "synthetic", r["impl"])), ("consumed", _consumed), ("machine", name)]
    return [*_caption(f"AU95, {scale.unit('samples/s')}: the fastest accelerator kept at least 95% busy"),
            *wide_table(chosen, cell, labels), ""]


def _feed(r: dict) -> tuple:
    return _ranked(FEED_ORDER, r.get("feed"))


def _model(r: dict) -> tuple:
    """A model, and its precision where not float32: 'book-workflow, float64'."""
    precision = r.get("precision")
    return (r["impl"], str(precision), r["impl"] + (f", {precision}" if precision not in (None, "float32") else ""))


def train_tables(rows: Rows, name: Name = machine_name) -> list[str]:
    """ms/step per model, feed and precision; the input-bound fraction of the fed cells; then scaling."""
    steps = [r for r in rows.of("train", "ms_per_step_median") if (r.get("devices") or 1) == 1]
    out = []
    if steps:
        scale = Scale.of(r["value"] for r in steps)
        labels = [("model", _model), ("feed", _feed), ("machine", name)]
        out += [*_caption(f"Training step time, {scale.unit('ms')}/step"),
                *wide_table(steps, _spread_cell(rows, scale.number), labels), ""]
    bound = [r for r in rows.of("train", "input_bound_fraction") if r.get("feed") in BOUND_FEEDS]
    if bound:
        labels = [("model", _model), ("feed", _feed), ("machine", name)]
        out += [*_caption("Input-bound share of the step, 1 - synthetic / fed"),
                *wide_table(bound, _spread_cell(rows, percent), labels), ""]
    return out + fit_tables(rows, name) + scaling_tables(rows, name)


def _execution(r: dict) -> tuple:
    """Steps per compiled call of a `fit` row: 'K=1', or 'K=auto (8)' with the K `auto` picked."""
    execution = r.get("execution") or "K=1"
    k = r.get("steps_per_execution")
    return (execution != "K=1", execution + (f" ({k})" if execution == "K=auto" and k else ""))


def fit_tables(rows: Rows, name: Name = machine_name) -> list[str]:
    """`model.fit`'s ms/step by steps per call and feed (one batch repeated: `synthetic`), and the share of
    its step spent on our loader."""
    steps = [r for r in rows.of("train", "fit_ms_per_step") if (r.get("devices") or 1) == 1]
    if not steps:
        return []
    scale = Scale.of(r["value"] for r in steps)
    labels = [("model", _model), ("steps per call", _execution), ("feed", _feed), ("machine", name)]
    out = [*_caption(f"`fit`, {scale.unit('ms')}/step over whole epochs after the first"),
           *wide_table(steps, _spread_cell(rows, scale.number), labels), ""]
    bound = rows.of("train", "fit_input_bound_fraction")
    if bound:
        labels = [("model", _model), ("steps per call", _execution), ("machine", name)]
        out += [*_caption("`fit`'s share of the step spent on our loader, 1 - one batch repeated / ours"),
                *wide_table(bound, lambda r: percent(r["value"]) if r["value"] is not None else "failed", labels),
                ""]
    return out


def scaling_tables(rows: Rows, name: Name = machine_name) -> list[str]:
    """`fit` samples/s on N devices, a column per N, the efficiency beside N > 1."""
    rates = rows.of("train", "scaling_samples_per_s")
    if not rates:
        return []
    scale = Scale.of(r["value"] for r in rates)

    def cell(r):
        text = cell_text(rows.stat(r), scale.number)
        efficiency = rows.value(r, "scaling_efficiency")
        return text + (f" ({efficiency:.0%})" if (r.get("devices") or 1) > 1 and efficiency is not None else "")

    labels = [("model", _model),
              ("size x batch", lambda r: (r["size"], r["batch_size"], f"{r['size']} x {r['batch_size']}")),
              ("processes", lambda r: r.get("processes") or 1), ("machine", name)]
    return [*_caption(f"`fit` on our loader, {scale.unit('samples/s')} on N devices (efficiency: samples/s(N) / "
                      "(N x samples/s(1)))"),
            *wide_table(rates, cell, labels, column=lambda r: (r.get("devices") or 1,),
                        header=lambda c: f"{c[0]} device{'s' if c[0] > 1 else ''}"), ""]


def accuracy_tables(rows: Rows, name: Name = machine_name) -> list[str]:
    """Held-out accuracy, median [min-max] over initial seeds, per model and training budget."""
    chosen = rows.of("accuracy", "accuracy")
    if not chosen:
        return []
    labels = [("model", lambda r: r["impl"]), ("trained on", lambda r: r.get("train_samples")),
              ("variant", lambda r: r.get("variant")), ("machine", name)]
    return [*_caption("Held-out accuracy after one epoch, median [min-max] over seeds"),
            *wide_table(chosen, _spread_cell(rows, accuracy), labels), ""]


SUITE_TABLES = {"train": train_tables, "load": load_tables, "au": au_tables, "generate": generate_tables,
                "accuracy": accuracy_tables}
