"""The performance page (`report --page`) and a user's report (`report --out`), one design: the headline
comparison first (`pipeline.results.compare`) with the relative-throughput plot, then a section per suite
(a note, its wide tables, its plots), then start-up, and the source files last.

Tables and plots name a machine by the letter the headline's legend gives it. A page's PNGs lie beside
it, named `<page stem>-<plot>.png`; the plots its previous version linked and it no longer draws are
removed (and nothing else).
"""
from __future__ import annotations

import os
import re
from pathlib import Path

from pipeline.results import plots as plotting
from pipeline.results.compare import Comparison, render_markdown
from pipeline.results.files import write_csv
from pipeline.results.format import current_name
from pipeline.results.markdown import table
from pipeline.results.startup import startup_section
from pipeline.results.tables import SUITE_TABLES, MachineNames, Rows

SECTIONS = ("train", "load", "au", "generate", "accuracy")  # the headline's order
SECTION_PLOTS = {"train": ("train", "scaling"), "load": ("load",), "au": ("au",), "generate": ("generate",),
                 "accuracy": ()}
CELLS = ("Table cells: median [p10-p90] of the repeats (or of the row's own p10/p90 rows), `!` where p10-p90 spans "
         "more than 10% of the median, `failed` where the cell failed (its error is in the CSV), blank where not "
         "measured. Machines by their letter in the headline's legend.")
NOTES = {
    "train": "Steady-state step time over at least one epoch, warm-up excluded, fed by our loader (`ours`, "
             "`ours-packed`), in-memory arrays or `synthetic` (one batch already on the device); input-bound = "
             "1 - synthetic / fed. Scaling: `fit` on our loader with a replica per device, the global batch "
             "split over them (a CPU's devices are logical ones sharing its cores).",
    "load": "Input pipelines in their steady state over whole epochs after a warm-up; median of round-robin "
            "windows. Each batch is pulled to where a step reads it; consumed by `tf.function` is how `fit` "
            "pulls tf.data (the figure training gets), by `python` a loop that costs nothing per batch. "
            "Unshuffled runs, first batch, memory and MB/s: in `report --out`'s CSV.",
    "au": "Accelerator utilization (DLIO): an emulated accelerator sleeps a fixed step and pulls batches as "
          "training does; demand = the step's samples/s over the loader's own. `synthetic` repeats one batch "
          "from memory: the most the consumer itself allows. `<x`: no step of the sweep kept it 95% busy, the "
          "slowest was x.",
    "generate": "Our Dask generator against the book's `generate_examples` (one core).",
    "accuracy": "Held-out accuracy after one epoch at the budget, over initial seeds.",
}


def headline(comp: Comparison | None, image: str | None, intro: str) -> list[str]:
    """The headline section: `intro`, the comparison's Markdown, the relative plot."""
    out = ["## Headline", "", intro, ""]
    if comp is None or not comp.cells:
        return out + ["No headline cells in these files.", ""]
    return out + [*render_markdown(comp), "", *([f"![relative throughput]({image})", ""] if image else [])]


def _shown(path: Path, relative_to: Path | None) -> str:
    """`path` as a document in `relative_to` links it (as given where None)."""
    if relative_to is None:
        return str(path)
    try:
        return str(Path(path).resolve().relative_to(relative_to.resolve()))
    except ValueError:
        return os.path.relpath(Path(path).resolve(), relative_to.resolve())


def sources(docs: list[tuple[Path, dict]], names: MachineNames, relative_to: Path | None = None) -> list[str]:
    """The merged files, oldest first: created, machine (letter), preset, commit; a shared folder said once."""
    docs = sorted(docs, key=lambda pd: pd[1].get("created", ""))
    folders = {_shown(Path(p).parent, relative_to) for p, _ in docs}
    shared = len(folders) == 1
    body = []
    for path, doc in docs:
        commit = ((doc.get("environment") or {}).get("git") or {}).get("commit")
        body.append([f"`{Path(path).name if shared else _shown(path, relative_to)}`", doc.get("created", "?"),
                     names.of_file(path, doc),
                     current_name((doc.get("config") or {}).get("preset", "?")), (commit or "?")[:10]])
    lead = [f"In `{folders.pop()}/`:", ""] if shared else []
    return ["## Sources", "", *lead, *table(["file", "created", "machine", "preset", "commit"], body, "lllll"), ""]


def suite_sections(rows: Rows, names: MachineNames, images: dict[str, str], suites) -> list[str]:
    """A section per suite that has rows: its note, wide tables and plots."""
    out = []
    for suite in SECTIONS:
        if suite not in suites or not any(r["suite"] == suite for r in rows.rows):
            continue
        out += [f"## {suite}", "", NOTES[suite], "", *SUITE_TABLES[suite](rows, names.short)]
        out += [f"![{plot}]({images[plot]})" for plot in SECTION_PLOTS[suite] if plot in images]
        out.append("")
    return out


def document(title: str, preamble: list[str], headline_intro: str, docs, rows: Rows, comp: Comparison | None,
             images: dict[str, str], suites, startup: tuple[str, dict] | None = None,
             relative_to: Path | None = None) -> str:
    """The page or report as Markdown text."""
    names = MachineNames(comp)
    out = [f"# {title}", "", *preamble, "", CELLS, "", *headline(comp, images.get("relative"), headline_intro),
           *suite_sections(rows, names, images, suites)]
    if startup is not None:
        out += startup_section(startup[1], startup[0], (images["startup"],) if "startup" in images else ())
    out += sources(docs, names, relative_to)
    return "\n".join(out).rstrip() + "\n"


def _linked_plots(path: Path, prefix: str) -> set[str]:
    """Names of the PNGs the page at `path`, as it stands, links beside itself with `prefix`."""
    if not path.is_file():
        return set()
    return {name for name in re.findall(r"!\[[^\]]*\]\(([^)/]+\.png)\)", path.read_text(errors="replace"))
            if name.startswith(prefix)}


def write_page(path: Path, docs, rows: Rows, comp: Comparison | None, suites, startup: tuple[Path, dict] | None = None,
               plots: bool = True) -> str:
    """Write the performance page at `path` and its PNGs beside it; return its text."""
    path.parent.mkdir(parents=True, exist_ok=True)
    prefix = f"{path.stem}-"
    drawn = plotting.draw_all(rows, comp, startup[1] if startup else None, path.parent, prefix,
                              MachineNames(comp)) if plots else {}
    for stale in _linked_plots(path, prefix) - {p.name for p in drawn.values()}:
        (path.parent / stale).unlink(missing_ok=True)
    text = document(
        "Performance",
        ["Generated by `make docs` (`python -m pipeline report FILE... --page PATH --startup FILE`) from the "
         "result files listed at the end; do not edit by hand. How a machine joins them: "
         "[results.md](results.md#adding-your-machine-to-the-references)."],
        "Every reference machine's headline cells (`python -m pipeline compare` places your own run among them).",
        docs, rows, comp, {k: p.name for k, p in drawn.items()}, suites,
        None if startup is None else (_shown(startup[0], path.parent), startup[1]), path.parent)
    path.write_text(text)
    return text


def write_report(out: Path, docs, rows: Rows, comp: Comparison | None, suites,
                 startup: tuple[Path, dict] | None = None, plots: bool = True) -> tuple[str, list[Path]]:
    """Write `out`/report.md, report.csv (every merged row, with its source file) and the PNGs; return the
    Markdown and the PNGs written."""
    out.mkdir(parents=True, exist_ok=True)
    drawn = plotting.draw_all(rows, comp, startup[1] if startup else None, out, "",
                              MachineNames(comp)) if plots else {}
    for name in set(plotting.PLOTS.values()) - {p.name for p in drawn.values()}:
        (out / name).unlink(missing_ok=True)  # an earlier report's plot this one does not draw
    text = document(
        "Bench report", [f"{len(docs)} result file(s) merged by `python -m pipeline report`; every row in "
                         "`report.csv`."],
        "The files' machines among themselves (`python -m pipeline compare FILE` places them among the "
        "reference machines).",
        docs, rows, comp, {k: p.name for k, p in drawn.items()}, suites,
        None if startup is None else (str(startup[0]), startup[1]))
    (out / "report.md").write_text(text)
    write_csv(out / "report.csv", rows.rows)
    return text, list(drawn.values())
