"""`python -m pipeline compare FILE...`: a user's runs beside the reference machines' headline cells.

A column per machine (`fingerprint`), a row per headline cell (`headline`); each cell its median, its
spread (half the p10-p90 width, as a share of the median) and its ratio to the baseline machine (> 1:
better, whichever way the metric points; fractions such as accuracy show the difference in points
instead); a geometric mean of the ratios over the throughput cells a machine shares with the
baseline. Marks: `!` noisy (p10-p90 wider than 10% of the median), `~` not significant (the two
p10-p90 intervals overlap), `#` measured under other settings than the baseline's cell (another
configuration hash). For each cell of yours worse than a reference beyond both spreads, the likely
causes found by comparing the two files' environments and the state recorded during the cells'
windows (`causes`).
"""
from __future__ import annotations

import argparse
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.errors import UsageError
from pipeline.results.files import load_result, merge, read_json
from pipeline.results.fingerprint import Machine, fingerprint
from pipeline.results.format import FORMAT, HIGHER
from pipeline.results.headline import THROUGHPUT, Cell, format_value, headline_cells, sort_key

DEFAULT_REFERENCES = Path("bench/results/reference")
STEAL_PCT = 2.0  # CPU steal above this share of the machine during a window is named as a cause
OTHER_LOAD_CORES = 0.2  # other processes' load above this many cores is named as a cause
CLOCK_SHARE = 0.9  # an SM clock under this share of its maximum is named as a cause
INPUT_BOUND = 0.05  # a step waiting for input longer than this share of it is named as a cause


@dataclass
class Comparison:
    """Machines (yours first), the headline cells they show and what each machine measured of them."""

    machines: list[Machine]
    baseline: str
    cells: list[str]
    values: dict[tuple[str, str], Cell]
    docs: dict[str, list[tuple[Path, dict]]] = field(repr=False)
    causes: list[str] = field(default_factory=list)

    def machine(self, machine_id: str) -> Machine:
        return next(m for m in self.machines if m.id == machine_id)

    def value(self, machine_id: str, key: str) -> Cell | None:
        return self.values.get((machine_id, key))

    def ratio(self, machine_id: str, key: str, against: str | None = None) -> float | None:
        """How many times better than `against` (default: the baseline) a throughput cell is; None for the
        other kinds or where either lacks it."""
        mine, theirs = self.value(machine_id, key), self.value(against or self.baseline, key)
        if mine is None or theirs is None or mine.kind not in THROUGHPUT or not mine.median or not theirs.median \
                or mine.below or theirs.below:
            return None
        return mine.median / theirs.median if mine.direction == HIGHER else theirs.median / mine.median

    def difference(self, machine_id: str, key: str, against: str | None = None) -> float | None:
        """A fraction cell's difference from `against`'s (default: the baseline's), in points of 100%."""
        mine, theirs = self.value(machine_id, key), self.value(against or self.baseline, key)
        if mine is None or theirs is None or mine.unit != "fraction":
            return None
        return (mine.median - theirs.median) * 100

    def significant(self, machine_id: str, key: str, against: str | None = None) -> bool:
        """Whether the cell differs from `against`'s beyond both spreads (their p10-p90 intervals are apart)."""
        mine, theirs = self.value(machine_id, key), self.value(against or self.baseline, key)
        if mine is None or theirs is None:
            return False
        low_a, high_a = _interval(mine)
        low_b, high_b = _interval(theirs)
        if mine.below and theirs.below:
            return False
        if mine.below or theirs.below:  # an upper bound differs only from a figure above it
            return (mine.below and high_a < low_b) or (theirs.below and high_b < low_a)
        return high_a < low_b or high_b < low_a

    def same_settings(self, machine_id: str, key: str) -> bool:
        mine, theirs = self.value(machine_id, key), self.value(self.baseline, key)
        return mine is None or theirs is None or mine.config_hash == theirs.config_hash

    def geomean(self, machine_id: str) -> tuple[float | None, int]:
        """Geometric mean of the ratios to the baseline over the throughput cells both have, and their count."""
        ratios = [r for key in self.cells if (r := self.ratio(machine_id, key)) is not None and r > 0]
        if not ratios:
            return None, 0
        return math.exp(sum(map(math.log, ratios)) / len(ratios)), len(ratios)


def _interval(cell: Cell) -> tuple[float, float]:
    low = cell.median if cell.p10 is None else min(cell.p10, cell.median)
    high = cell.median if cell.p90 is None else max(cell.p90, cell.median)
    return low, high


def _worse(comp: Comparison, mine: str, theirs: str, key: str) -> bool:
    a, b = comp.value(mine, key), comp.value(theirs, key)
    if a is None or b is None or not comp.significant(mine, key, theirs):
        return False
    return a.median < b.median if a.direction == HIGHER else a.median > b.median


def references(paths: list[Path]) -> list[tuple[Path, dict]]:
    """(path, document) of each bench result among `paths`: each file named, and each folder's *.json that
    is a bench result (other formats beside them, such as start-up results, are passed over)."""
    out = []
    for path in paths:
        if path.is_dir():
            for candidate in sorted(path.glob("*.json")):
                doc = read_json(candidate)
                if isinstance(doc, dict) and doc.get("format") == FORMAT:
                    out.append((candidate, load_result(candidate, doc)))
        elif path.exists():
            out.append((path, load_result(path)))
        else:
            raise UsageError(f"--reference {path}: no such file or directory")
    return out


def _group(docs: list[tuple[Path, dict]], role: str) -> dict[Machine, list[tuple[Path, dict]]]:
    groups: dict[Machine, list[tuple[Path, dict]]] = {}
    for path, doc in docs:
        groups.setdefault(fingerprint(doc, role), []).append((path, doc))
    return groups


def _newest_device(docs: list[tuple[Path, dict]]) -> dict:
    newest = max(docs, key=lambda pd: pd[1].get("created", ""))[1]
    return (newest.get("environment") or {}).get("device") or {}


def _pick_baseline(machines: list[Machine], values: dict, wanted: str | None) -> str:
    if wanted:
        hits = [m for m in machines if m.id.startswith(wanted.lower()) or wanted.lower() in m.label.lower()]
        if len(hits) != 1:
            raise UsageError(f"--baseline {wanted!r} matches {len(hits)} machines of: "
                             + "; ".join(f"{m.id} {m.label}" for m in machines))
        return hits[0].id
    yours = [m for m in machines if m.role == "yours"]
    references = [m for m in machines if m.role == "reference"] or machines
    first = yours[0] if yours else None
    mine = {key for (mid, key) in values if first is not None and mid == first.id}

    def score(m: Machine):
        shared = len({key for (mid, key) in values if mid == m.id} & mine) if mine else \
            len([1 for (mid, _) in values if mid == m.id])
        return (shared, first is not None and m.backend == first.backend, m.is_gpu)

    return max(references, key=score).id


def _columns(machines: list[Machine], baseline: str, values: dict, cells: list[str]) -> list[Machine]:
    """Yours first, then the baseline, then the references most alike to your first machine: same backend,
    then the most cells shown; a screen too narrow for all leaves out the last."""
    first = next((m for m in machines if m.role == "yours"), None)

    def rank(m: Machine):
        shared = sum((m.id, key) in values for key in cells)
        return (m.role != "yours", m.id != baseline, first is not None and m.backend != first.backend, -shared,
                m.label)

    return sorted(machines, key=rank)


def comparison(yours: list[tuple[Path, dict]], references: list[tuple[Path, dict]],
               baseline: str | None = None) -> Comparison:
    """Your files beside the references', a machine per fingerprint; `baseline` an id prefix or part of a label."""
    seen = {Path(p).resolve() for p, _ in yours}
    references = [(p, d) for p, d in references if Path(p).resolve() not in seen]
    groups = {**_group(yours, "yours"), **_group(references, "reference")}
    values: dict[tuple[str, str], Cell] = {}
    for machine, docs in groups.items():
        for key, cell in headline_cells(merge(docs), _newest_device(docs)).items():
            values[(machine.id, key)] = cell
    machines = sorted(groups, key=lambda m: (m.role != "yours", m.is_gpu is False, m.label))
    shown = [m for m in machines if m.role == "yours"] or machines
    cells = sorted({key for (mid, key) in values if mid in {m.id for m in shown}}, key=sort_key)
    chosen = _pick_baseline(machines, values, baseline)
    comp = Comparison(machines=_columns(machines, chosen, values, cells), baseline=chosen, cells=cells,
                      values=values, docs={m.id: docs for m, docs in groups.items()})
    comp.causes = causes(comp)
    return comp


def _env(docs: list[tuple[Path, dict]]) -> dict:
    return max(docs, key=lambda pd: pd[1].get("created", ""))[1].get("environment") or {}


def _versions(env: dict, backend: str) -> dict[str, str]:
    device = env.get("device") or {}
    versions = env.get("versions") or {}
    out = {backend: versions.get(backend), "keras": versions.get("keras"), "driver": device.get("driver"),
           "CUDA": device.get("cuda_build"), "cuDNN": device.get("cudnn_build")}
    for gpu in ((env.get("state") or {}).get("gpus") or [])[:1]:
        out["driver"] = out["driver"] or gpu.get("driver")
    return {k: str(v) for k, v in out.items() if v}


def _state_causes(cells: list[Cell], env: dict) -> list[str]:
    """What the state recorded during these cells' windows says slowed them."""
    out = []
    states = [c.row.get("state") or {} for c in cells]
    steal = [s["cpu"]["steal_pct"] for s in states if (s.get("cpu") or {}).get("steal_pct") is not None]
    if steal and max(steal) > STEAL_PCT:
        out.append(f"CPU steal up to {max(steal):.0f}% in their windows")
    others = [s["cpu"]["other_load_cores"] for s in states
              if (s.get("cpu") or {}).get("other_load_cores") is not None]
    if others and max(others) > OTHER_LOAD_CORES:
        out.append(f"other processes took up to {max(others):.1f} cores")
    static = (env.get("state") or {}).get("gpus") or []
    reasons, slow_clock = set(), []
    for s in states:
        for i, gpu in enumerate(s.get("gpus") or []):
            reasons |= set(gpu.get("throttle_reasons") or [])
            top = (static[i] if i < len(static) else {}).get("max_sm_clock_mhz")
            clock = (gpu.get("sm_clock_mhz") or {}).get("median")
            if top and clock and clock < CLOCK_SHARE * top:
                slow_clock.append((clock, top))
    if slow_clock:
        clock, top = min(slow_clock)
        out.append(f"SM clock {clock:.0f} of {top:.0f} MHz")
    if reasons:
        out.append(f"throttled: {', '.join(sorted(reasons))}")
    for gpu in static[:1]:
        limit, default = gpu.get("power_limit_w"), gpu.get("default_power_limit_w")
        if limit and default and limit < 0.98 * default:
            out.append(f"power capped at {limit:.0f} of {default:.0f} W")
    return out


def _pair_causes(comp: Comparison, mine: Machine, theirs: Machine, keys: list[str]) -> list[str]:
    out = []
    if mine.device != theirs.device or mine.device_count != theirs.device_count:
        out.append("another device" if mine.is_gpu or theirs.is_gpu else "another CPU")
    elif mine.host_cpu != theirs.host_cpu or mine.cores != theirs.cores:
        out.append("another host CPU")
    if mine.precision != theirs.precision:
        out.append(f"precision {mine.precision} vs {theirs.precision}")
    env_a, env_b = _env(comp.docs[mine.id]), _env(comp.docs[theirs.id])
    if mine.backend == theirs.backend:
        a, b = _versions(env_a, mine.backend), _versions(env_b, theirs.backend)
        out += [f"{name} {a[name]} vs {b[name]}" for name in a if name in b and a[name] != b[name]]
    cells = [comp.value(mine.id, key) for key in keys]
    out += _state_causes(cells, env_a)
    bound = [comp.value(mine.id, key.replace("train", "input-bound", 1)) for key in keys if key.startswith("train")]
    bound = [c.median for c in bound if c is not None and c.median > INPUT_BOUND]
    if bound:
        out.append(f"input-bound up to {max(bound):.0%} of the step")
    if any(comp.value(mine.id, k).config_hash != comp.value(theirs.id, k).config_hash for k in keys):
        out.append("other settings (configuration hash)")
    return out or ["none in the recorded environment and state"]


def causes(comp: Comparison) -> list[str]:
    """A line per (your machine, reference) where some of your cells are worse beyond both spreads."""
    out = []
    for mine in (m for m in comp.machines if m.role == "yours"):
        for theirs in (m for m in comp.machines if m.role == "reference"):
            keys = [k for k in comp.cells if _worse(comp, mine.id, theirs.id, k)]
            if not keys:
                continue
            worst = sorted(keys, key=lambda k: comp.ratio(mine.id, k, theirs.id) or 1)[:3]
            shown = ", ".join(f"{k} {comp.ratio(mine.id, k, theirs.id):.2f}x" if comp.ratio(mine.id, k, theirs.id)
                              else k for k in worst)
            found = "; ".join(_pair_causes(comp, mine, theirs, keys))
            out.append(f"{_letter(comp, mine.id)} vs {_letter(comp, theirs.id)}: {len(keys)} cell(s) worse "
                       f"({shown}{', ...' if len(keys) > 3 else ''}): {found}")
    return out


def _letter(comp: Comparison, machine_id: str) -> str:
    return "ABCDEFGHIJKLMNOPQRSTUVWXYZ"[[m.id for m in comp.machines].index(machine_id) % 26]


def cell_text(comp: Comparison, machine_id: str, key: str) -> str:
    """'12.3k ±4% 0.89x~' : median, spread, ratio or difference to the baseline, marks."""
    cell = comp.value(machine_id, key)
    if cell is None:
        return "-"
    text = format_value(cell)
    if cell.spread_fraction is not None and cell.unit != "fraction":
        text += f" ±{cell.spread_fraction:.0%}"
    if machine_id != comp.baseline and comp.value(comp.baseline, key) is not None:
        ratio, diff = comp.ratio(machine_id, key), comp.difference(machine_id, key)
        text += f" {ratio:.2f}x" if ratio is not None else f" {diff:+.1f}pt" if diff is not None else ""
        if not comp.significant(machine_id, key):
            text += "~"
        if not comp.same_settings(machine_id, key):
            text += "#"
    if cell.noisy:
        text += "!"
    return text


def _legend(comp: Comparison) -> list[tuple[str, str, Machine, str]]:
    rows = []
    for m in comp.machines:
        docs = comp.docs[m.id]
        files = docs[0][0].name if len(docs) == 1 else f"{len(docs)} files"
        newest = max(d.get("created", "") for _, d in docs)[:10]
        rows.append((_letter(comp, m.id), m.role + (", baseline" if m.id == comp.baseline else ""), m,
                     f"{files}, {newest}"))
    return rows


NOTE = ("cells: median ±spread (half p10-p90), then against the baseline: x times better, or +-pt points;",
        "! noisy (spread > 10% of median), ~ not significant (within both spreads), # measured under other settings")


def render_text(comp: Comparison, width: int = 120) -> str:
    """The comparison for a terminal: a legend of machines, a column per machine, causes; at most `width` columns."""
    label_w = max([len(k) for k in comp.cells] + [8]) + 1
    col_w = 19
    fit = max(1, (width - label_w) // (col_w + 1))
    machines = comp.machines[:fit]
    out = [f"compare: {sum(1 for m in comp.machines if m.role == 'yours')} machine(s) of yours, "
           f"{sum(1 for m in comp.machines if m.role == 'reference')} reference machine(s); "
           f"ratios against {_letter(comp, comp.baseline)}"]
    legend = _legend(comp)
    label_room = min(max(len(m.label) for _, _, m, _ in legend), width - 52)
    for letter, role, m, files in legend:
        out.append(f"  {letter} {role:<21} {m.label[:label_room]:<{label_room}}  {files}"[:width])
    if len(machines) < len(comp.machines):
        out.append(f"  ({len(comp.machines) - len(machines)} more machine(s) left out to fit {width} columns: "
                   "see --json)"[:width])
    out.append(f"{'cell':<{label_w}}" + " ".join(f"{_letter(comp, m.id):<{col_w}}" for m in machines).rstrip())
    for key in comp.cells:
        out.append((f"{key:<{label_w}}" + " ".join(f"{cell_text(comp, m.id, key):<{col_w}}"
                                                   for m in machines)).rstrip())
    geo = []
    for m in machines:
        value, count = comp.geomean(m.id)
        geo.append("-" if value is None else f"{value:.2f}x ({count})")
    out.append(f"{'geomean':<{label_w}}" + " ".join(f"{g:<{col_w}}" for g in geo).rstrip())
    out += [line[:width] for line in NOTE]
    if comp.causes:
        out.append("worse than a reference beyond both spreads, likely causes:")
        out += [f"  {line}"[:width] for line in comp.causes]
    return "\n".join(out)


def render_markdown(comp: Comparison) -> list[str]:
    """The comparison as Markdown: a legend table of machines, then a table with a column per machine."""
    out = ["| | machine | role | files |", "| --- | --- | --- | --- |"]
    out += [f"| {letter} | {m.label} | {role} | {files} |" for letter, role, m, files in _legend(comp)]
    out += ["", "| cell | " + " | ".join(_letter(comp, m.id) for m in comp.machines) + " |",
            "| --- |" + " ---: |" * len(comp.machines)]
    for key in comp.cells:
        out.append(f"| {key} | " + " | ".join(cell_text(comp, m.id, key) for m in comp.machines) + " |")
    geo = [comp.geomean(m.id) for m in comp.machines]
    out.append("| geomean | " + " | ".join("-" if v is None else f"{v:.2f}x ({n})" for v, n in geo) + " |")
    out += ["", " ".join(NOTE) + "."]
    if comp.causes:
        out += ["", "Worse than a reference beyond both spreads, likely causes:", ""]
        out += [f"- {line}" for line in comp.causes]
    return out


def to_json(comp: Comparison) -> dict:
    """Everything `render_text` shows, and the cells' full figures."""
    def cell(c: Cell | None) -> dict | None:
        return None if c is None else {"median": c.median, "p10": c.p10, "p90": c.p90, "n": c.n, "unit": c.unit,
                                       "direction": c.direction, "noisy": c.noisy, "config_hash": c.config_hash,
                                       "ms_per_step": c.ms_per_step}

    return {"baseline": comp.baseline,
            "machines": [{"id": m.id, "letter": _letter(comp, m.id), "label": m.label, "role": m.role,
                          "fingerprint": dict(zip(("device", "device_count", "host_cpu", "cores", "backend",
                                                   "backend_version", "precision"), m.key)),
                          "files": [str(p) for p, _ in comp.docs[m.id]],
                          "geomean": comp.geomean(m.id)[0], "geomean_cells": comp.geomean(m.id)[1]}
                         for m in comp.machines],
            "cells": {key: {m.id: {**(cell(comp.value(m.id, key)) or {}), "ratio": comp.ratio(m.id, key),
                                   "significant": comp.significant(m.id, key),
                                   "same_settings": comp.same_settings(m.id, key)}
                            for m in comp.machines if comp.value(m.id, key) is not None}
                      for key in comp.cells},
            "causes": comp.causes}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("files", nargs="+", type=Path, metavar="FILE", help="your bench result files")
    p.add_argument("--reference", type=Path, action="append", metavar="PATH",
                   help=f"reference result files or folders, repeatable (default: {DEFAULT_REFERENCES}/)")
    p.add_argument("--baseline", metavar="MACHINE",
                   help="the machine ratios are taken against: an id prefix or part of its label (default: the "
                        "reference sharing the most headline cells with your first file)")
    p.add_argument("--width", type=int, default=120, help="columns of the terminal table (default: 120)")
    p.add_argument("--json", action="store_true", help="print the comparison as one JSON object")


def run(args) -> int:
    if args.width < 40:
        raise UsageError(f"--width must be at least 40, got {args.width}")
    yours = [(path, load_result(path)) for path in args.files]
    refs = references(args.reference or [DEFAULT_REFERENCES])
    comp = comparison(yours, refs, args.baseline)
    if not comp.cells:
        raise UsageError(f"no headline cells in {', '.join(map(str, args.files))}: nothing to compare")
    print(json.dumps(to_json(comp)) if args.json else render_text(comp, args.width))
    return 0
