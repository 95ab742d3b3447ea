"""Open time, time to first batch and peak memory against dataset size: the chunk index at work.

    python bench/open_scaling.py --samples 10000,100000,1000000,10000000 --data-root datasets \\
        --old-code /tmp/old-code --out bench/results/open-scaling.json

For each train split of N size-`--size` sequences (shards of `--shard-size`, so the shard count grows
with N; generated once under --data-root, reused while complete), for each variant and for the
default mechanism and `graph`, `--repeats` fresh processes (round-robin over the cells) each measure
(page cache warm: every shard is read once before the first cell, and the index brought up to date):

  open_s         `open_dataset(dir, "train")`
  first_batch_s  from before that open to the first batch of `make_dataset(..., source=src)`
  peak_mb        the process's peak resident memory (ru_maxrss) after `--batches` more batches,
  growth_mb      and its growth over the resident memory before the open (TensorFlow started)
  bound_mb       (graph) the memory bound `pipeline.input.loader.graph_memory_bound` states

Variants: `index` (this checkout: the split's chunk index and one stat per shard), `check_hashes`
(this checkout, `open_dataset(..., check_hashes=True)`: every shard read and hashed, the cost every
open had before the index), and `old` (the code in `--old-code DIR`, e.g. a `git worktree` of the
commit before the index, run with PYTHONPATH=DIR: its open reads and hashes every shard, and its
graph mechanism holds every stored chunk in memory; its graph cells run only up to
`--old-graph-max` samples). Prints a table (medians; memory the most of any repeat); `--out` also
writes the result file `python -m pipeline report --startup FILE` draws (`pipeline.results.startup`).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def cell(directory: Path, mechanism: str, variant: str, batch_size: int, batches: int) -> dict:
    """One measurement, in this (fresh) process."""
    import resource

    import tensorflow as tf

    from pipeline.bench.memory import rss_bytes
    from pipeline.input.loader import make_dataset
    from pipeline.input.source import open_dataset

    for _ in tf.data.Dataset.range(64).map(lambda x: x + 1, num_parallel_calls=2).batch(8).prefetch(2):
        pass  # TensorFlow's runtime (thread pools, function tracing) started before the baseline
    before = rss_bytes()
    started = time.perf_counter()
    src = open_dataset(directory, "train", check_hashes=True) if variant == "check_hashes" else \
        open_dataset(directory, "train")
    opened = time.perf_counter()
    ds = make_dataset(directory, "train", batch_size, source=src, repeat=True, mechanism=mechanism)
    batches_seen = iter(ds)
    next(batches_seen)
    first = time.perf_counter()
    for _ in range(batches):
        next(batches_seen)
    row = {"samples": int(src.samples), "shards": len(src.paths), "chunks": int(src.chunks), "variant": variant,
           "mechanism": mechanism, "open_s": opened - started, "first_batch_s": first - started,
           "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e6,
           "growth_mb": (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before) / 1e6}
    if mechanism == "graph" and variant != "old":
        from pipeline.input.loader import graph_memory_bound

        row["bound_mb"] = graph_memory_bound(src, batch_size) / 1e6
    return row


def ensure(root: Path, size: int, samples: int, shard_size: int) -> Path:
    """The dataset of `samples` train sequences under `root`, generated (with progress) unless complete."""
    from pipeline.bench.data import dataset_dir, dataset_ready
    from pipeline.dataset.generate import run_generation
    from pipeline.dataset.manifest import DatasetParams
    from pipeline.runtime.cpus import usable_cpus

    params = DatasetParams(size=size, variant="trail", samples=samples, test_samples=1000,
                           shard_size=min(shard_size, samples))
    directory = dataset_dir(root, params)
    if not dataset_ready(directory, params):
        print(f"generating {directory} ({samples:,} sequences)", file=sys.stderr, flush=True)
        run_generation(directory, params, workers=usable_cpus(), overwrite=True, progress=True)
    return directory


def summarize(runs: list[dict]) -> dict:
    """One row from a cell's repeats: open_s and first_batch_s as median, _min and _max; growth_mb and
    peak_mb the most of any repeat (what a bound must hold), growth_mb_median beside it."""
    import numpy as np

    row = {k: v for k, v in runs[0].items() if k not in ("open_s", "first_batch_s", "peak_mb", "growth_mb")}
    for metric in ("open_s", "first_batch_s"):
        values = [r[metric] for r in runs]
        row.update({metric: float(np.median(values)), f"{metric}_min": min(values), f"{metric}_max": max(values)})
    row.update(peak_mb=max(r["peak_mb"] for r in runs), growth_mb=max(r["growth_mb"] for r in runs),
               growth_mb_median=float(np.median([r["growth_mb"] for r in runs])), repeats=len(runs))
    return row


def run_cell(directory: Path, mechanism: str, variant: str, code: Path, args) -> dict | str:
    """One cell in a fresh process running the code under `code`: its row, or the error's last line."""
    env = {**os.environ, "PYTHONPATH": str(code.resolve()), "TF_CPP_MIN_LOG_LEVEL": "2"}
    argv = [sys.executable, str(Path(__file__).resolve()), "--cell", str(directory.resolve()), mechanism,
            variant, "--batch-size", str(args.batch_size), "--batches", str(args.batches)]
    r = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=code)
    if r.returncode != 0:
        return (r.stderr.strip().splitlines() or [f"exit status {r.returncode}"])[-1]
    return json.loads(r.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--samples", default="10000,100000", help="comma-separated train split sizes")
    p.add_argument("--size", type=int, default=50)
    p.add_argument("--shard-size", type=int, default=2000)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--batches", type=int, default=1000, help="batches read after the first, for the peak")
    p.add_argument("--repeats", type=int, default=3, help="fresh processes per cell, round-robin over the cells")
    p.add_argument("--data-root", type=Path, default=Path("datasets"))
    p.add_argument("--old-code", type=Path, help="a checkout of the code before the chunk index, for the old rows")
    p.add_argument("--old-graph-max", type=int, default=1_000_000,
                   help="largest split the old graph mechanism is run on (it holds every chunk in memory)")
    p.add_argument("--out", type=Path, help="also write the rows as JSON here (see pipeline.results.startup)")
    p.add_argument("--cell", nargs=3, metavar=("DIR", "MECHANISM", "VARIANT"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.cell:
        directory, mechanism, variant = args.cell
        print(json.dumps(cell(Path(directory), mechanism, variant, args.batch_size, args.batches)))
        return 0
    try:
        sizes = [int(v) for v in args.samples.split(",")]
    except ValueError:
        p.error(f"--samples must be comma-separated integers, got {args.samples!r}")
    if args.repeats < 1:
        p.error(f"--repeats must be at least 1, got {args.repeats}")
    if args.old_code and not (args.old_code / "pipeline" / "input" / "source.py").is_file():
        p.error(f"--old-code {args.old_code}: no pipeline/input/source.py there")
    from pipeline.bench.recorder import collect_environment
    from pipeline.input.source import open_dataset
    from pipeline.results.startup import STARTUP_FORMAT
    from pipeline.runtime import devices

    variants = ["index", "check_hashes"] + (["old"] if args.old_code else [])
    created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    rows, directories = [], {}
    print(f"{'samples':>11} {'shards':>6} {'variant':>12} {'mechanism':>9} {'open s':>8} {'1st batch s':>11} "
          f"{'peak MB':>8} {'growth MB':>9} {'bound MB':>8}", flush=True)
    for n in sizes:
        directory = directories[f"train-{n}"] = ensure(args.data_root, args.size, n, args.shard_size)
        # every shard read once (the page cache warm for every variant) and the index current: no cell
        # below pays for building it
        open_dataset(directory, "train", check_hashes=True)
        cells = [(v, m) for v in variants for m in ("auto", "graph")
                 if not (v == "old" and m == "graph" and n > args.old_graph_max)]
        runs: dict[tuple, list] = {c: [] for c in cells}
        for _ in range(args.repeats):
            for variant, mechanism in cells:
                got = run_cell(directory, mechanism, variant, args.old_code if variant == "old" else ROOT, args)
                if isinstance(got, str):
                    print(f"{n:>11,} {variant:>12} {mechanism:>9} failed: {got}", flush=True)
                else:
                    runs[(variant, mechanism)].append(got)
        for (variant, mechanism), done in runs.items():
            if not done:
                continue
            row = summarize(done)
            rows.append(row)
            bound = f"{row['bound_mb']:8.0f}" if "bound_mb" in row else f"{'':>8}"
            print(f"{row['samples']:>11,} {row['shards']:>6} {variant:>12} {mechanism:>9} {row['open_s']:8.3f} "
                  f"{row['first_batch_s']:11.3f} {row['peak_mb']:8.0f} {row['growth_mb']:9.0f} {bound}", flush=True)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        doc = {"format": STARTUP_FORMAT, "format_version": 1, "created": created,
               "config": {"size": args.size, "shard_size": args.shard_size, "batch_size": args.batch_size,
                          "batches": args.batches, "repeats": args.repeats,
                          "old_code": str(args.old_code) if args.old_code else None},
               "environment": collect_environment(directories, devices.describe(), "tensorflow"), "rows": rows}
        tmp = args.out.with_name(f"{args.out.name}.tmp-{os.getpid()}")
        tmp.write_text(json.dumps(doc, indent=1) + "\n")
        os.replace(tmp, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
