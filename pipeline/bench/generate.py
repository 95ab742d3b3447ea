"""The `generate` suite: our Dask generator against the book's `generate_examples`.

Per size: a local cluster of 1, 2 and all cores' worker processes, each started and warmed up
(one small untimed generation) before the clock starts; runs are timed round-robin across the
clusters and the book's generator, so that the machine's drift falls on every cell alike. A cluster's
start-up (`cluster_startup_s`) and one run's fixed cost on a running cluster (`run_overhead_s`:
connecting, planning, manifests; a 2-shard dataset of one sequence each) are rows of their own.
The book's per-pixel `generate_examples` runs as its workflow runs it: one call per fresh
process (first touching its float64 memory is most of its cost). `mb_per_s` counts uint8 frame
bytes (size**3 per sample) for both, so the MB/s ratio equals the samples/s ratio;
`stored_mb_per_s` counts bytes written to disk.
"""
from __future__ import annotations

import contextlib
import dataclasses
import io
import shutil
from pathlib import Path

from pipeline.bench.grid import Grid
from pipeline.bench.progress import log
from pipeline.bench.recorder import Recorder

METRICS = ("cluster_startup_s", "run_overhead_s", "samples_per_s", "mb_per_s", "stored_mb_per_s",
           "per_worker_samples_per_s")


def run(rec: Recorder, grid: Grid, tmp: Path) -> None:
    """Per size: start a local cluster per worker count, then time runs round-robin (1 worker, 2, ...,
    the book's generator, again), so that the machine's drift falls on every cell alike."""
    from pipeline.bench.timing import Stopwatch, Summary
    from pipeline.dataset.generate import local_cluster, run_generation
    from pipeline.dataset.manifest import DatasetParams
    from pipeline.models.book_workflow import BOOK_TRAIN_SAMPLES, cold_generate_seconds

    for size in grid.sizes:
        samples = max(16, min(grid.gen_max_samples, int(grid.gen_raw_mb * 1e6 / size ** 3)))
        # at most the book's own call: per sequence, a cold call costs more the more it allocates
        book_samples = max(2, min(BOOK_TRAIN_SAMPLES, int(grid.book_raw_mb * 1e6 / size ** 3)))
        tiny = DatasetParams(size=size, variant=grid.variant, samples=1, test_samples=1, shard_size=1, chunk=1)
        runs = iter(range(10 ** 6))
        stored = {}

        def generate_once(address: str, workers: int, p: DatasetParams) -> float:
            """Seconds of one run; deleting its files afterwards is not timed."""
            out = tmp / f"gen-{size}-{workers}-{next(runs)}"
            with contextlib.redirect_stdout(io.StringIO()), Stopwatch() as run:
                manifest = run_generation(out, p, workers=workers, scheduler=address, progress=False)
            stored[workers] = sum(e["bytes"] for s in manifest.shards.values() for e in s)
            shutil.rmtree(out, ignore_errors=True)
            return run.seconds

        clusters, shards, startup, overhead, times, failed = {}, {}, {}, {}, {}, {}
        with contextlib.ExitStack() as stack:
            for workers in grid.worker_counts():
                log(f"generate ours size={size} workers={workers}: start the cluster")
                try:
                    with Stopwatch() as sw:
                        # as `generate`'s
                        clusters[workers] = stack.enter_context(local_cluster(workers)).scheduler_address
                    startup[workers] = sw.seconds
                    generate_once(clusters[workers], workers, dataclasses.replace(tiny, samples=2 * workers))  # warm-up
                    overhead[workers] = Summary.of([generate_once(clusters[workers], workers, tiny)
                                                    for _ in range(grid.gen_repeats)])
                    shards[workers] = max(1, min(grid.gen_shard_size, samples // max(8, 4 * workers)))
                    times[workers] = []
                except Exception as e:  # recorded below as this cell's error
                    failed[workers] = e
            times["book"] = []
            since = rec.mark()  # the round-robin runs: the window every row of this size gets the state of
            for round_ in range(max(grid.gen_repeats, grid.book_repeats)):
                for workers in [w for w in times if w != "book" and w not in failed and round_ < grid.gen_repeats]:
                    log(f"generate ours size={size} workers={workers} samples={samples} (round {round_ + 1})")
                    params = DatasetParams(size=size, variant=grid.variant, samples=samples, test_samples=1,
                                           shard_size=shards[workers], chunk=min(32, shards[workers]))
                    try:
                        times[workers].append(generate_once(clusters[workers], workers, params))
                    except Exception as e:
                        failed[workers] = e
                if round_ < grid.book_repeats and "book" not in failed:
                    log(f"generate book size={size} samples={book_samples} (round {round_ + 1})")
                    try:  # cold, one call per fresh process, as the book's workflow runs it
                        times["book"].append(cold_generate_seconds(size, book_samples))
                    except Exception as e:
                        failed["book"] = e

        raw_mb = samples * size ** 3 / 1e6
        for workers in grid.worker_counts():
            key = dict(size=size, workers=workers, samples=samples)
            with rec.cell("generate", "ours", METRICS, **key):
                if workers in failed:
                    raise failed[workers]
                summary = Summary.of(times[workers])
                median = summary.median
                rec.add("generate", "ours", "cluster_startup_s", startup[workers], **key, since=since)
                rec.add("generate", "ours", "run_overhead_s", overhead[workers].median, **key, since=since,
                        repeats=grid.gen_repeats, measured="a run of 2 one-sequence shards, cluster already up")
                extra = dict(repeats=grid.gen_repeats, p10_s=summary.p10, p90_s=summary.p90, shard_size=shards[workers],
                             excludes="cluster start-up and warm-up; includes the run's fixed cost and manifest writes")
                rates = [samples / t for t in times[workers]]
                rec.add("generate", "ours", "samples_per_s", samples / median, **key, **extra, repeat_values=rates,
                        since=since)
                rec.add("generate", "ours", "mb_per_s", raw_mb / median, **key, **extra, since=since)
                rec.add("generate", "ours", "stored_mb_per_s", stored[workers] / 1e6 / median, **key, **extra,
                        since=since)
                rec.add("generate", "ours", "per_worker_samples_per_s", samples / median / workers, **key, **extra,
                        repeat_values=[r / workers for r in rates], since=since)
        key = dict(size=size, workers=1, samples=book_samples)
        with rec.cell("generate", "book", ("samples_per_s", "mb_per_s", "per_worker_samples_per_s"), **key):
            if "book" in failed:
                raise failed["book"]
            summary = Summary.of(times["book"])
            median = summary.median
            extra = dict(repeats=grid.book_repeats, p10_s=summary.p10, p90_s=summary.p90, measured="cold",
                         float64_mb_per_s=book_samples * size ** 3 * 8 / 1e6 / median)
            rec.add("generate", "book", "samples_per_s", book_samples / median, **key, **extra,
                    repeat_values=[book_samples / t for t in times["book"]], since=since)
            rec.add("generate", "book", "mb_per_s", book_samples * size ** 3 / 1e6 / median, **key, **extra,
                    since=since)
            rec.add("generate", "book", "per_worker_samples_per_s", book_samples / median, **key, **extra,
                    since=since)
