"""The headline: the few figures a bench run is judged by, named once here.

Per model, size and batch of the run's grid:

* ``train MODEL SxB``: training on our loader as `train` runs it by default (the `ours` feed on a CPU,
  `ours-packed` with a GPU; the device's default precision; one device), samples/s, with ms/step beside;
* ``input-bound MODEL SxB``: the share of that step spent waiting for input (1 - synthetic / fed);
* ``load SxB``: the loader as training consumes it: shuffled, the default readers, pulled as `fit` pulls
  tf.data (from a `tf.function`) under TensorFlow, or as the JAX feed under JAX; samples/s;
* ``AU95 SxB``: the fastest emulated accelerator the loader keeps >= 95% busy, samples/s (where no step
  of the sweep did, an upper bound: the slowest step's samples/s, shown as "<");

and per size ``generate S`` (samples/s per worker, at the most workers measured) and per model
``accuracy MODEL S`` (held-out accuracy after the budget, median over initial seeds).

A cell's spread is p10-p90 of its repeat values (windows, steps, runs, seeds: `repeat_values`), or,
for files that kept none, of the row's own p10/p90 rows (accuracy: min-max over seeds). AU95 is the
demand found by the sweep times each of its fresh measurements of the loader alone.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from pipeline.results.format import HIGHER, LOWER, STEPS_PER_CALL_CONSUMER

KINDS = ("train", "input-bound", "load", "AU95", "generate", "accuracy")
THROUGHPUT = ("train", "load", "AU95", "generate")  # kinds whose ratios are speed-ups: the geometric mean's
NOISY = 0.10  # a cell whose p10-p90 spread exceeds this share of its median is noisy (as torch's Compare)


@dataclass(frozen=True)
class Cell:
    """One headline figure of one machine: `median` and its spread `p10`..`p90` in `unit` over `n` repeats."""

    key: str
    kind: str
    unit: str
    direction: str
    median: float
    p10: float | None
    p90: float | None
    n: int
    config_hash: str
    row: dict = field(repr=False, compare=False)
    ms_per_step: float | None = None
    below: bool = False  # the figure is only known to lie below `median` (AU95 when no step kept 95%)

    @property
    def noisy(self) -> bool:
        return self.p10 is not None and self.p90 is not None and self.median > 0 and \
            (self.p90 - self.p10) / self.median > NOISY

    @property
    def spread_fraction(self) -> float | None:
        """Half the p10-p90 width over the median, or None without a spread."""
        if self.p10 is None or self.p90 is None or not self.median:
            return None
        return (self.p90 - self.p10) / 2 / abs(self.median)


def percentile(values, q: float) -> float:
    """q-th percentile (0..100), linearly interpolated, as `pipeline.bench.timing` computes it."""
    return float(np.percentile(np.asarray(values, dtype=np.float64), q))


def default_precision(device: dict) -> str:
    """The Keras dtype policy `train` picks on a device described as in a result file's environment:
    mixed_bfloat16 on GPUs of compute capability >= 8.0, mixed_float16 on 7.x, float32 elsewhere."""
    if device.get("kind") != "gpu":
        return "float32"
    try:
        major = int(str(device.get("compute_capability") or "0").split(".")[0])
    except ValueError:
        major = 0
    return "mixed_bfloat16" if major >= 8 else "mixed_float16" if major == 7 else "float32"


def _spread(row: dict, rows_by_metric: dict, invert_batch: int | None = None) -> tuple[float | None, float | None, int]:
    """(p10, p90, n) of a row: from its repeat values, else from its sibling p10/p90 rows."""
    values = row.get("repeat_values") or []
    if len(values) >= 2:
        return percentile(values, 10), percentile(values, 90), len(values)
    n = row.get("repeats") if isinstance(row.get("repeats"), int) else row.get("steps") or len(row.get("seeds") or [])
    low, high = rows_by_metric.get("p10"), rows_by_metric.get("p90")
    if low is None or high is None:
        return None, None, n or 1
    if invert_batch:  # samples/s from ms/step: the slowest steps give the lowest rate
        return invert_batch * 1e3 / high, invert_batch * 1e3 / low, n or 1
    return low, high, n or 1


def _find(rows: list[dict], **match) -> dict | None:
    for row in rows:
        if row["error"] is None and row["value"] is not None and all(row.get(k) == v for k, v in match.items()):
            return row
    return None


def _siblings(rows: list[dict], low: str, high: str, **match) -> dict:
    """{"p10", "p90"}: the values of a cell's own spread rows (metrics `low` and `high`), None where absent."""
    return {bound: (_find(rows, metric=metric, **match) or {}).get("value")
            for bound, metric in (("p10", low), ("p90", high))}


def _cell(key, kind, row, low_high_n, ms_per_step=None, below=False) -> Cell:
    p10, p90, n = low_high_n
    return Cell(key=key, kind=kind, unit=row.get("unit") or "", direction=row.get("direction") or HIGHER,
                median=row["value"], p10=p10, p90=p90, n=n, config_hash=row.get("config_hash") or "", row=row,
                ms_per_step=ms_per_step, below=below)


def _train_cells(rows, device: dict, out: dict) -> None:
    feed = "ours-packed" if device.get("kind") == "gpu" else "ours"
    precision = default_precision(device)
    train = [r for r in rows if r["suite"] == "train" and r.get("feed") == feed and r.get("devices", 1) == 1
             and r.get("precision", "float32") == precision and r["impl"] not in ("book-workflow",)]
    for model, size, batch in sorted({(r["impl"], r["size"], r["batch_size"]) for r in train
                                      if r["metric"] == "samples_per_s"}):
        match = dict(suite="train", impl=model, size=size, batch_size=batch, feed=feed, precision=precision)
        rate = _find(train, metric="samples_per_s", **match)
        if rate is None:
            continue
        step = _find(train, metric="ms_per_step_median", **match)
        siblings = _siblings(train, "ms_per_step_p10", "ms_per_step_p90", **match)
        out[f"train {model} {size}x{batch}"] = _cell(f"train {model} {size}x{batch}", "train", rate,
                                                     _spread(rate, siblings, invert_batch=batch),
                                                     step["value"] if step else None)
        bound = _find(train, metric="input_bound_fraction", **match)
        if bound is not None:  # a ratio of two medians, each over the steps of its cell
            key = f"input-bound {model} {size}x{batch}"
            out[key] = _cell(key, "input-bound", {**bound, "direction": LOWER}, (None, None, out[
                f"train {model} {size}x{batch}"].n))


def _consumed_as_training(rows: list[dict], backend: str) -> list[dict]:
    """Load rows of the front end and consumer that training uses under `backend`."""
    if backend == "jax":
        jax = [r for r in rows if r.get("front_end") == "jax"]
        return jax or [r for r in rows if r.get("front_end") == "numpy"]
    return [r for r in rows if r.get("front_end", "tf.data") == "tf.data" and r.get("consumer") == "tf.function"]


def _load_cells(rows, device: dict, out: dict) -> None:
    impl = "ours-packed" if device.get("kind") == "gpu" else "ours"
    load = [r for r in rows if r["suite"] == "load" and r["impl"] == impl and r.get("shuffle", True)]
    backends = {r["backend"] for r in load}
    load = [r for b in backends for r in _consumed_as_training([r for r in load if r["backend"] == b], b)]
    for size, batch in sorted({(r["size"], r["batch_size"]) for r in load}):
        here = [r for r in load if r["size"] == size and r["batch_size"] == batch]
        readers = max((r.get("readers") or 0 for r in here), default=0)
        match = dict(size=size, batch_size=batch, readers=readers or None)
        rate = _find(here, metric="samples_per_s", **match)
        if rate is None:
            continue
        siblings = _siblings(here, "samples_per_s_p10", "samples_per_s_p90", **match)
        out[f"load {size}x{batch}"] = _cell(f"load {size}x{batch}", "load", rate, _spread(rate, siblings))


def _au_cells(rows, out: dict) -> None:
    # consumed as `train` runs by default, a step per call (not the K-per-call consumer)
    au = [r for r in rows if r["suite"] == "au" and r["impl"] == "ours-packed"
          and r.get("consumer") != STEPS_PER_CALL_CONSUMER]
    for size, batch in sorted({(r["size"], r["batch_size"]) for r in au}):
        here = [r for r in au if r["size"] == size and r["batch_size"] == batch]
        backend = here[0]["backend"]
        front = "jax" if backend == "jax" and any(r.get("front_end") == "jax" for r in here) else \
            "numpy" if backend == "jax" else "tf.data"
        row = _find(here, metric="au95_samples_per_s", front_end=front)
        if row is not None:
            out[f"AU95 {size}x{batch}"] = _cell(f"AU95 {size}x{batch}", "AU95", row, _spread(row, {}))
            continue
        # the sweep ran and no step kept it 95% busy: the fastest such accelerator is slower than the slowest step
        swept = [r for r in here if r["metric"] == "au95_samples_per_s" and r.get("front_end") == front
                 and r["error"] is None]
        steps = [r for r in here if r["metric"] == "au" and r.get("front_end") == front and r.get("step_ms")
                 and r["error"] is None]
        if swept and steps:
            slowest = max(steps, key=lambda r: r["step_ms"])
            bound = {**slowest, "value": batch * 1e3 / slowest["step_ms"], "unit": "samples/s", "direction": HIGHER,
                     "config_hash": swept[0]["config_hash"]}
            out[f"AU95 {size}x{batch}"] = _cell(f"AU95 {size}x{batch}", "AU95", bound, (None, None, len(steps)),
                                                below=True)


def _generate_cells(rows, out: dict) -> None:
    gen = [r for r in rows if r["suite"] == "generate" and r["impl"] == "ours"
           and r["metric"] == "per_worker_samples_per_s" and r["error"] is None and r["value"] is not None]
    for size in sorted({r["size"] for r in gen}):
        row = max((r for r in gen if r["size"] == size), key=lambda r: r.get("workers") or 0)
        out[f"generate {size}"] = _cell(f"generate {size}", "generate", row, _spread(row, {}))


def _accuracy_cells(rows, out: dict) -> None:
    acc = [r for r in rows if r["suite"] == "accuracy" and "wrap" not in str(r.get("variant") or "")]
    for model, size in sorted({(r["impl"], r["size"]) for r in acc if r["metric"] == "accuracy"}):
        match = dict(impl=model, size=size)
        row = _find(acc, metric="accuracy", **match)
        if row is None:
            continue
        siblings = _siblings(acc, "accuracy_min", "accuracy_max", **match)
        out[f"accuracy {model} {size}"] = _cell(f"accuracy {model} {size}", "accuracy", row, _spread(row, siblings))


def headline_cells(rows: list[dict], device: dict) -> dict[str, Cell]:
    """key -> Cell of one machine's normalized rows (`pipeline.results.files.merge`), in display order;
    `device`: the environment's device description (its `kind` and `compute_capability` pick the feed and
    precision `train` would use)."""
    out: dict[str, Cell] = {}
    _train_cells(rows, device, out)
    _load_cells(rows, device, out)
    _au_cells(rows, out)
    _generate_cells(rows, out)
    _accuracy_cells(rows, out)
    return dict(sorted(out.items(), key=lambda kv: sort_key(kv[0])))


def sort_key(key: str) -> tuple:
    """Display order: by kind (`KINDS`), then model, size and batch as numbers."""
    kind, *rest = key.split(" ")
    numbers = [int(x) for part in rest for x in part.split("x") if x.isdigit()]
    words = [part for part in rest if not part.replace("x", "").isdigit()]
    return KINDS.index(kind) if kind in KINDS else len(KINDS), words, numbers


def format_value(cell: Cell) -> str:
    """A cell's median in its unit, compact: '12.3k', '25.9', '98.4%'; '<' before an upper bound."""
    if cell.below:
        return "<" + format_value(Cell(cell.key, cell.kind, cell.unit, cell.direction, cell.median, None, None, 1,
                                       "", {}))
    v = cell.median
    if cell.unit == "fraction":
        return f"{v:.1%}" if abs(v) < 0.9995 else f"{v:.0%}"
    if abs(v) >= 10_000:
        return f"{v / 1000:.0f}k" if abs(v) >= 100_000 else f"{v / 1000:.1f}k"
    return f"{v:,.0f}" if abs(v) >= 100 else f"{v:.3g}"


def headline_lines(cells: dict[str, Cell], title: str) -> list[str]:
    """The run's headline as plain lines (at most 30 with `title`): a line per cell, median, spread, repeats."""
    out = [title, f"  {'cell':<26} {'median':>10} {'spread p10-p90':>18} {'n':>5}"]
    for cell in cells.values():
        spread = "-" if cell.p10 is None else f"{_short(cell, cell.p10)}-{_short(cell, cell.p90)}"
        unit = "" if cell.unit == "fraction" else f" {cell.unit}"
        extra = f"  ({cell.ms_per_step:.3g} ms/step)" if cell.ms_per_step else ""
        mark = " !noisy" if cell.noisy else " (none kept 95% busy)" if cell.below else ""
        out.append(f"  {cell.key:<26} {format_value(cell):>10} {spread:>18} {cell.n:>5}{unit}{extra}{mark}")
    return out[:30]


def _short(cell: Cell, value: float) -> str:
    return format_value(Cell(cell.key, cell.kind, cell.unit, cell.direction, value, None, None, 1, "", {}))
