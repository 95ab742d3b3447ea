"""Loader throughput: `pipeline.loader` against an in-memory and a naive `from_generator` pipeline.

    python bench/loader_bench.py --data 50=/tmp/d50 --naive 50=/tmp/d50-zstd --max-samples 50=10000 ...

--data is a dataset in the default codec (nbit-gzip), read by our loader with each mechanism
("isal", the default, and "graph", what tf.data service runs), packed and unpacked; --naive the
same samples in zstd-fast, the naive pipeline's fastest format, also the in-memory copy's source.

Every cell is an endless pipeline (`repeat`), shuffled unless the cell says otherwise, consumed
as fast as possible (frames materialized on the host, no model); a pass is one epoch's whole
batches, after one warm-up pass; cells of a grid run round-robin, so that load from other
processes on the machine hits all of them alike. Rows have the bench's result format (suite
"load", `pipeline.bench.results`).

`measure_loader(data_dir, batch_size, impl, ...)` measures one cell; `run_grid` many.
impl: "ours" (pipeline.loader.make_dataset), "in-memory" (the uint8 arrays loaded first, a new
permutation each epoch, one gather per batch), "from_generator" (one generator yielding h5py
block reads of B samples, shard and block order permuted each epoch); the baselines are the
bench's own, `pipeline.bench.baselines`.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from pipeline.bench.memory import RssSampler, cpu_seconds
from pipeline.timing import Summary

IMPLS = ("ours", "ours-packed", "in-memory", "from_generator")


@dataclass(frozen=True)
class Cell:
    """One measurement: a dataset, a batch size and what reads it."""

    data_dir: str
    batch_size: int
    impl: str
    readers: int | None = None
    shuffle: bool = True
    mechanism: str = "auto"
    max_samples: int | None = None

    def __post_init__(self):
        if self.impl not in IMPLS:
            raise ValueError(f"impl must be one of {', '.join(IMPLS)}, got {self.impl!r}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {self.batch_size}")


def _steps(cell: Cell) -> int:
    """Batches in one pass: the split's whole batches, or max_samples' worth."""
    from pipeline.loader import open_dataset

    samples = open_dataset(cell.data_dir, "train", check_hashes=False).samples
    if cell.max_samples is not None:
        samples = min(samples, cell.max_samples)
    return max(1, samples // cell.batch_size)


def build(cell: Cell):
    """An endless iterator of a cell's batches, whose first element is the frames; the in-memory and
    from_generator pipelines are the bench's own (`pipeline.bench.baselines`)."""
    from pipeline.bench import baselines
    from pipeline.bench.data import read_split, shard_paths
    from pipeline.loader import make_dataset, open_dataset

    if cell.impl in ("ours", "ours-packed"):  # packed: bit-packed frames, for a model that unpacks on the device
        return iter(make_dataset(cell.data_dir, "train", cell.batch_size, shuffle=cell.shuffle, readers=cell.readers,
                                 repeat=True, mechanism=cell.mechanism, drop_remainder=True,
                                 packed=cell.impl == "ours-packed"))
    if cell.impl == "in-memory":
        frames, labels = read_split(Path(cell.data_dir), "train", limit=cell.max_samples)
        return iter(baselines.in_memory_dataset(frames, labels, cell.batch_size, shuffle=cell.shuffle))
    size = open_dataset(cell.data_dir, "train", check_hashes=False).size
    return iter(baselines.from_generator_dataset(shard_paths(Path(cell.data_dir)), cell.batch_size, size,
                                                 shuffle=cell.shuffle))


def time_pass(it, batches: int) -> tuple[int, float, float, float]:
    """(samples, seconds, seconds to the first batch, CPU seconds) of `batches` batches; each materialized."""
    samples = 0
    cpu = cpu_seconds()
    start = time.perf_counter()
    first = None
    for _ in range(batches):
        element = next(it)
        frames = element[0] if isinstance(element, tuple) else element
        samples += int(frames.shape[0])
        _ = frames.numpy()  # materialized on the host (a view, no copy)
        if first is None:
            first = time.perf_counter() - start
    return samples, time.perf_counter() - start, first or 0.0, cpu_seconds() - cpu


def _row(cell: Cell, size: int, rates: list[float], firsts: list[float], cpus: list[float], rss_added: int,
         samples: int) -> dict:
    """rss_added: largest rise of RSS (process + children) within one pass over its start."""
    spread = Summary.of(rates)
    return {"suite": "load", "impl": cell.impl, "size": size, "batch_size": cell.batch_size,
            "workers": cell.readers or os.cpu_count(), "metric": "samples_per_s",
            "value": round(spread.median, 1), "p10": round(spread.p10, 1), "p90": round(spread.p90, 1),
            "repeats": spread.count, "samples_per_pass": samples,
            "first_batch_s_median": round(Summary.of(firsts).median, 4),
            "cpu_ms_per_1k_samples": round(Summary.of(cpus).median, 1),
            "rss_added_mb": round(rss_added / 2**20, 1), "config": asdict(cell)}


def run_grid(cells: list[Cell], repeats: int = 5) -> list[dict]:
    """Measure `cells` round-robin: one warm-up pass each, then `repeats` passes each, interleaved.

    A cell that fails gets a row with `error` (and no value); the others go on.
    """
    from pipeline import malloc
    from pipeline.manifest import load_manifest

    built, steps, rates, firsts, cpus, rss_added, samples, errors = {}, {}, {}, {}, {}, {}, {}, {}
    for cell in cells:
        try:
            built[cell], steps[cell] = build(cell), _steps(cell)
            samples[cell] = time_pass(built[cell], steps[cell])[0]  # warm-up: one whole pass
            rates[cell], firsts[cell], cpus[cell], rss_added[cell] = [], [], [], 0
        except Exception as e:  # reported as a failed cell, never swallowed
            errors[cell] = f"{type(e).__name__}: {e}"
    # TensorFlow's from_generator sets glibc's trim threshold to 128 KB in the whole process; restore the
    # loader's allocator settings, so every cell is timed under the same ones (pipeline/malloc.py).
    malloc.keep_buffers_on_heap()
    for _ in range(repeats):
        for cell in built:
            with RssSampler() as rss:
                n, seconds, first, cpu = time_pass(built[cell], steps[cell])
            rates[cell].append(n / seconds)
            firsts[cell].append(first)
            cpus[cell].append(1000 * cpu / n * 1000)
            rss_added[cell] = max(rss_added[cell], rss.peak - rss.start)
    rows = []
    for cell in cells:
        size = load_manifest(Path(cell.data_dir)).params.size
        if cell in errors:
            rows.append({"suite": "load", "impl": cell.impl, "size": size, "batch_size": cell.batch_size,
                         "workers": cell.readers, "metric": "samples_per_s", "value": None,
                         "error": errors[cell], "config": asdict(cell)})
        else:
            rows.append(_row(cell, size, rates[cell], firsts[cell], cpus[cell], rss_added[cell], samples[cell]))
    built.clear()
    return rows


def peak_rss_mb(data_dir, batch_size: int, impl: str, max_samples: int | None = None) -> float:
    """Peak RSS (process + children, MB) of a fresh process making one pass with `impl`: TF itself included."""
    import subprocess

    code = ("import sys, bench.loader_bench as b; c = b.Cell(sys.argv[1], int(sys.argv[2]), sys.argv[3], "
            "max_samples=None if sys.argv[4] == 'None' else int(sys.argv[4]));"
            "r = b.RssSampler(); r.__enter__(); b.time_pass(b.build(c), b._steps(c)); r.__exit__(); print(r.peak)")
    out = subprocess.run([sys.executable, "-c", code, str(data_dir), str(batch_size), impl, str(max_samples)],
                         capture_output=True, text=True, check=True, cwd=Path(__file__).resolve().parents[1])
    return round(int(out.stdout.split()[-1]) / 2**20, 1)


def measure_loader(data_dir, batch_size: int, impl: str, *, readers: int | None = None, shuffle: bool = True,
                   mechanism: str = "auto", max_samples: int | None = None, repeats: int = 5) -> dict:
    """One row (see `run_grid`) for one impl: samples/s median, p10, p90, first batch, peak RSS."""
    return run_grid([Cell(str(data_dir), batch_size, impl, readers, shuffle, mechanism, max_samples)], repeats)[0]


def _grid(data: str, naive: str, batches: list[int], cap: int | None) -> list[Cell]:
    """The grid for one size: our mechanisms (packed and not), in-memory, from_generator, all
    shuffled; our mechanisms and in-memory also unshuffled, to show what shuffling costs."""
    cells = []
    for b in batches:
        shuffled = [Cell(data, b, "ours-packed", max_samples=cap),
                    Cell(data, b, "ours-packed", readers=1, max_samples=cap),
                    Cell(data, b, "ours-packed", mechanism="graph", max_samples=cap),
                    Cell(data, b, "ours", max_samples=cap),
                    Cell(data, b, "ours", mechanism="graph", max_samples=cap),
                    Cell(naive, b, "in-memory", max_samples=cap),
                    Cell(naive, b, "from_generator", max_samples=cap)]
        cells += shuffled + [dataclasses.replace(c, shuffle=False) for c in shuffled
                             if c.impl != "from_generator" and c.readers is None]
    return cells


def _markdown(rows: list[dict]) -> str:
    from pipeline.loader import mechanism_for
    from pipeline.manifest import load_manifest

    lines = ["| size | batch | impl | codec | mechanism | readers | shuffle | samples/s median (p10-p90) "
             "| vs in-memory | CPU ms / 1k samples | RSS added in a pass MB |", "|" + " --- |" * 11]
    base = {(r["size"], r["batch_size"]): r["value"] for r in rows  # against the shuffled in-memory pipeline
            if r["impl"] == "in-memory" and r.get("value") and r["config"]["shuffle"]}
    for r in rows:
        c = r["config"]
        codec = load_manifest(Path(c["data_dir"])).params.codec
        mech = c["mechanism"] if c["impl"] in ("ours", "ours-packed") else "-"
        if mech == "auto":
            mech = mechanism_for(codec)
        if r.get("value") is None:
            lines.append(f"| {r['size']} | {r['batch_size']} | {r['impl']} | {codec} | {mech} | | "
                         f"| failed: {r['error']} | | | |")
            continue
        cell = (r["size"], r["batch_size"])
        ratio = r["value"] / base[cell] if cell in base else float("nan")
        lines.append(f"| {r['size']} | {r['batch_size']} | {r['impl']} | {codec} | {mech} | {r['workers']} | "
                     f"{'yes' if c['shuffle'] else 'no'} | {r['value']:,.0f} ({r['p10']:,.0f}-{r['p90']:,.0f}) | "
                     f"{ratio:.2f}x | {r['cpu_ms_per_1k_samples']:,.0f} | {r['rss_added_mb']:,.0f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    pair = lambda s: (int(s.split("=", 1)[0]), s.split("=", 1)[1])  # noqa: E731
    parser.add_argument("--data", type=pair, action="append", required=True,
                        help="SIZE=DIR of a dataset in the default codec (nbit-gzip)")
    parser.add_argument("--naive", type=pair, action="append", default=[],
                        help="SIZE=DIR of the same samples in zstd-fast, for from_generator and in-memory "
                             "(default: the --data directory)")
    parser.add_argument("--batch", type=int, action="append", help="batch sizes (default 32 and 256)")
    parser.add_argument("--max-samples", type=pair, action="append", default=[], help="SIZE=N samples per pass")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, help="write the rows as JSON here")
    parser.add_argument("--peak-rss", action="store_true",
                        help="also: peak RSS of one pass in a fresh process per impl (batch 32, whole split, "
                             "then half of it, to show memory does not follow dataset size)")
    args = parser.parse_args(argv)
    caps = {size: int(n) for size, n in args.max_samples}
    naive = dict(args.naive)
    rows = []
    for size, path in args.data:  # one size at a time: in-memory copies are dataset-sized
        rows += run_grid(_grid(path, naive.get(size, path), args.batch or [32, 256], caps.get(size)), args.repeats)
        print(_markdown([r for r in rows if r["size"] == size]), flush=True)
    if args.peak_rss:
        print("| size | impl | samples in the pass | peak RSS MB |\n| --- | --- | --- | --- |")
        for size, path in args.data:
            from pipeline.loader import open_dataset

            total = open_dataset(path, "train", check_hashes=False).samples
            for impl in ("ours", "ours-packed", "in-memory", "from_generator"):
                for n in (total, total // 2):
                    mb = peak_rss_mb(path, 32, impl, n)
                    rows.append({"suite": "load", "impl": impl, "size": size, "batch_size": 32, "metric": "peak_rss_mb",
                                 "value": mb, "samples_per_pass": n, "config": {"data_dir": path}})
                    print(f"| {size} | {impl} ({Path(path).name}) | {n:,} | {mb:,.0f} |", flush=True)
    if args.out:
        args.out.write_text(json.dumps({"rows": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
