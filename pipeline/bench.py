"""`bench`: measure generation, loading, training and accuracy over a grid; write a result file.

The grid (sizes x batch sizes x suites, and each suite's budget) is data: `PRESETS`
holds `quick` (~2 min on a 2-core CPU), `default` (~10 min there) and `full` (for GPUs);
`--sizes`, `--batch-sizes`, `--suites` override a preset. Datasets the suites read are
generated once under `--data-root` and reused while their manifest is complete and
has the same parameters.

Suites and what their numbers mean:

* ``generate``: our Dask generator (`run_generation`) into a temporary directory, on a
  local cluster of 1, 2 and all cores' worker processes, runs timed round-robin across
  the clusters and the seed. Each cluster is started and warmed up (one small untimed
  generation) *before* the clock starts; its start-up time is a separate row
  (`cluster_startup_s`), and so is the fixed cost of one run on the running cluster
  (`run_overhead_s`: connecting, planning, manifests; a 2-shard dataset of one sequence
  each). Side by side: the seed's per-pixel
  `generate_examples` (impl ``seed``), one call per fresh process as the seed's workflow
  makes it (first touching its float64 memory is most of its cost). `mb_per_s` counts uint8 frame bytes
  (size**3 per sample) for both, so the MB/s ratio equals the samples/s ratio;
  `stored_mb_per_s` counts bytes written to disk.
* ``load``: batches per second out of our loader (`pipeline.loader.make_dataset`),
  an in-memory `from_tensor_slices` pipeline and a `from_generator` pipeline yielding
  batch-sized h5py block reads; warm-up batches excluded, each batch materialized.
* ``train``: `model.train_on_batch` (returns NumPy, so each step is materialized before
  the clock is read) for `fast` and `seed`, fed from our loader (feed ``ours``) and from
  tensors already in memory (feed ``in-memory``); warm-up steps excluded, the first step
  reported apart (`first_step_ms`). ``input_bound_fraction`` = 1 - in-memory / ours
  median step time. Impl ``seed-workflow`` is the seed's own float64 TimeDistributed
  model on `generate_examples` arrays.
* ``accuracy``: held-out accuracy after a fixed budget (one epoch over
  `accuracy_train_samples` of the train split, batch `accuracy_batch`), on the test split;
  also on a ``wrap`` dataset where no single frame reveals the direction.

A failing cell (an exception, e.g. out of memory) becomes rows with `value: null` and
`error` set; the run goes on.
"""
from __future__ import annotations

import argparse
import contextlib
import csv
import dataclasses
import datetime as dt
import io
import json
import os
import shutil
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import DataError, UsageError

FORMAT = "moving-square-bench"
FORMAT_VERSION = 1
SUITES = ("generate", "load", "train", "accuracy")
ROW_KEYS = ("suite", "impl", "feed", "size", "batch_size", "workers", "metric", "value", "unit", "error", "device")
LOAD_IMPLS = ("ours", "ours-packed", "in-memory", "from_generator")
TRAIN_FEEDS = ("ours", "ours-packed", "in-memory")  # ours-packed: bit-packed batches, unpacked inside the model
UNITS = {"samples_per_s": "samples/s", "mb_per_s": "MB/s", "stored_mb_per_s": "MB/s",
         "per_worker_samples_per_s": "samples/s", "cluster_startup_s": "s", "run_overhead_s": "s", "ms_per_step_median": "ms",
         "ms_per_step_p10": "ms", "ms_per_step_p90": "ms", "first_step_ms": "ms", "first_batch_ms": "ms",
         "input_bound_fraction": "", "accuracy": "", "loss": ""}


@dataclass(frozen=True)
class Grid:
    """What one bench run measures, and with what budget. Validates itself.

    gen_raw_mb / seed_raw_mb: uint8 frame megabytes per timed generation run (ours / seed);
    samples = MB * 1e6 / size**3, at most gen_max_samples (ours) or the seed's 5,000 (seed).
    gen_shard_size: sequences per shard of those runs (fewer if a worker would get under 4 shards).
    workers: generator worker counts; () -> 1, 2, all cores.
    dataset_*: the train/test dataset each size's load/train/accuracy suites read.
    """

    sizes: tuple[int, ...] = (32, 50)
    batch_sizes: tuple[int, ...] = (16, 32, 64)
    suites: tuple[str, ...] = SUITES
    workers: tuple[int, ...] = ()
    gen_raw_mb: float = 40000.0  # 320,000 sequences at size 50: seconds of work, so a run's fixed cost fades
    gen_max_samples: int = 400_000
    gen_shard_size: int = 10_000
    gen_repeats: int = 5  # the VM drifts 10-20% between runs; the 2/1-worker ratio needs several pairs
    seed_raw_mb: float = 625.0  # 5,000 sequences at size 50: the seed's own call (5 GB of float64)
    seed_repeats: int = 3
    load_batches: int = 30
    load_warmup: int = 5
    train_models: tuple[str, ...] = ("fast", "seed", "rowcol")
    train_steps: int = 12
    train_warmup: int = 2
    seed_workflow_max_size: int = 50
    seed_workflow_steps: int = 4
    accuracy_models: tuple[str, ...] = ("fast", "rowcol")
    accuracy_train_samples: int = 1024
    accuracy_batch: int = 32
    accuracy_wrap: bool = True
    dataset_samples: int = 2048
    dataset_test_samples: int = 512
    dataset_shard_size: int = 512
    variant: str = "trail"

    def __post_init__(self):
        for name in ("sizes", "batch_sizes", "suites"):
            if not getattr(self, name):
                raise ValueError(f"{name.replace('_', '-')} is empty: nothing to measure")
        for s in self.sizes:
            if isinstance(s, bool) or not isinstance(s, int) or not 4 <= s <= 512:
                raise ValueError(f"sizes must be integers in 4..512, got {s!r}")
        for b in self.batch_sizes:
            if isinstance(b, bool) or not isinstance(b, int) or b < 1:
                raise ValueError(f"batch sizes must be positive integers, got {b!r}")
        for w in self.workers:
            if isinstance(w, bool) or not isinstance(w, int) or not 1 <= w <= 1024:
                raise ValueError(f"workers must be integers in 1..1024, got {w!r}")
        unknown = [s for s in self.suites if s not in SUITES]
        if unknown:
            raise ValueError(f"unknown suite {unknown[0]!r}; suites are {', '.join(SUITES)}")
        for name in ("gen_max_samples", "gen_shard_size", "gen_repeats", "seed_repeats", "load_batches", "train_steps", "seed_workflow_steps",
                     "accuracy_train_samples", "accuracy_batch", "dataset_samples", "dataset_test_samples",
                     "dataset_shard_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if max(self.batch_sizes) > self.dataset_samples:
            raise ValueError(f"batch size {max(self.batch_sizes)} exceeds the bench dataset ({self.dataset_samples} samples)")

    def worker_counts(self) -> tuple[int, ...]:
        return self.workers or tuple(sorted({1, 2, os.cpu_count() or 1}))


PRESETS = {
    "quick": Grid(sizes=(32,), batch_sizes=(16, 32), gen_raw_mb=200.0, gen_repeats=2, seed_raw_mb=10.0,
                  seed_repeats=1, load_batches=15, load_warmup=3, train_steps=6, train_warmup=2,
                  seed_workflow_steps=3, accuracy_train_samples=512, accuracy_wrap=False, train_models=("fast", "seed"),
                  dataset_samples=512, dataset_test_samples=256, dataset_shard_size=256),
    "default": Grid(),
    "full": Grid(sizes=(32, 50, 100, 200), batch_sizes=(16, 32, 64, 128, 256), gen_raw_mb=20000.0,
                 gen_repeats=3, load_batches=200, load_warmup=20, train_steps=100,
                 train_warmup=10, seed_workflow_steps=20, accuracy_models=("fast", "seed", "rowcol"),
                 accuracy_train_samples=20000, dataset_samples=20000, dataset_test_samples=2000,
                 dataset_shard_size=1000),
    # The seed's training budget (one epoch over 5,000 sequences, batch 32) judged on 10,000 held out.
    "seed-budget": Grid(sizes=(10, 25, 50), batch_sizes=(32,), suites=("accuracy",),
                        accuracy_models=("seed", "fast", "rowcol"),
                        accuracy_train_samples=5000, accuracy_batch=32, accuracy_wrap=True, dataset_samples=5000,
                        dataset_test_samples=10000, dataset_shard_size=1000),
}


# ---------------------------------------------------------------- arguments

def _int_list(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    return values


def _name_list(text: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in text.split(",") if v.strip())


def add_arguments(p: argparse.ArgumentParser) -> None:
    preset = p.add_mutually_exclusive_group()
    preset.add_argument("--quick", action="store_true", help="small grid, ~2 min on a 2-core CPU")
    preset.add_argument("--full", action="store_true", help="large grid meant for GPUs")
    preset.add_argument("--seed-budget", action="store_true",
                        help="accuracy only: the seed's budget (1 epoch of 5,000, batch 32), 10,000 held out, sizes 10/25/50")
    p.add_argument("--suites", type=_name_list, help=f"comma-separated subset of {','.join(SUITES)} (default: all)")
    p.add_argument("--sizes", type=_int_list, help="comma-separated image sizes (default: the preset's)")
    p.add_argument("--batch-sizes", type=_int_list, help="comma-separated batch sizes (default: the preset's)")
    p.add_argument("--workers", type=_int_list, help="generator worker counts (default: 1, 2, all cores)")
    p.add_argument("--train-steps", type=int, help="timed steps per train cell (default: the preset's)")
    p.add_argument("--out", type=Path, default=Path("bench/results"), help="directory for result files")
    p.add_argument("--data-root", type=Path, default=Path("datasets"), help="where bench datasets are generated and reused")
    p.add_argument("--verify-data", action="store_true", help="check reused datasets' SHA-256 against their manifests")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object on stdout")


def grid_from_args(args) -> tuple[str, Grid]:
    name = "quick" if args.quick else "full" if args.full else "seed-budget" if args.seed_budget else "default"
    overrides = {key: value for key, value in (("suites", args.suites), ("sizes", args.sizes),
                                               ("batch_sizes", args.batch_sizes), ("workers", args.workers),
                                               ("train_steps", args.train_steps)) if value is not None}
    try:
        return name, dataclasses.replace(PRESETS[name], **overrides)
    except ValueError as e:
        raise UsageError(str(e)) from None


def _check_writable(path: Path, option: str) -> None:
    if path.exists() and not path.is_dir():
        raise UsageError(f"{option} {path} exists and is not a directory")
    existing = path if path.exists() else next(p for p in path.absolute().parents if p.exists())
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UsageError(f"{option} {path}: {existing} is not writable")


# ---------------------------------------------------------------- rows

_T0 = time.monotonic()


def log(message: str) -> None:
    print(f"bench [{time.monotonic() - _T0:6.1f} s]: {message}", file=sys.stderr, flush=True)


class Recorder:
    """Collects result rows; `cell()` turns a failing measurement into error rows and goes on."""

    def __init__(self, device: str):
        self.device = device
        self.rows: list[dict] = []

    def add(self, suite, impl, metric, value, *, size, batch_size=None, workers=None, feed=None, error=None, **extra):
        row = {"suite": suite, "impl": impl, "feed": feed, "size": size, "batch_size": batch_size,
               "workers": workers, "metric": metric, "value": None if value is None else float(value),
               "unit": UNITS.get(metric, ""), "error": error, "device": self.device, **extra}
        self.rows.append(row)
        return row

    @contextlib.contextmanager
    def cell(self, suite, impl, metrics, **key):
        """Run the body; on an exception record one error row per expected metric."""
        try:
            yield
        except (KeyboardInterrupt, UsageError):
            raise
        except Exception as e:  # a failed cell is a result: recorded with its error, never dropped
            text = f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"[:500]
            log(f"FAILED {suite}/{impl} {key}: {text}")
            traceback.print_exc(file=sys.stderr)
            for metric in metrics:
                self.add(suite, impl, metric, None, error=text, **key)


# ---------------------------------------------------------------- datasets

NAIVE_CODEC = "zstd-fast"  # the from_generator baseline reads the same sequences in h5py's fastest format


def dataset_params(grid: Grid, size: int, wrap: bool = False, codec: str | None = None):
    from pipeline.codecs import DEFAULT_CODEC
    from pipeline.manifest import DatasetParams

    return DatasetParams(size=size, variant=grid.variant, wrap=wrap, seed=0, samples=grid.dataset_samples,
                         test_samples=grid.dataset_test_samples,
                         shard_size=min(grid.dataset_shard_size, grid.dataset_samples), codec=codec or DEFAULT_CODEC)


def dataset_ready(directory: Path, params, verify: bool = False) -> bool:
    """True if `directory` holds a complete dataset with exactly `params` (and, with verify, matching hashes)."""
    from pipeline.manifest import load_manifest
    from pipeline.shards import sha256_of

    try:
        manifest = load_manifest(directory)
    except DataError:
        return False
    if not manifest.complete or manifest.params != params:
        return False
    for entries in manifest.shards.values():
        for entry in entries:
            path = directory / entry["path"]
            if not entry["sha256"] or not path.is_file() or path.stat().st_size != entry["bytes"]:
                return False
            if verify and sha256_of(path) != entry["sha256"]:
                return False
    return True


def ensure_dataset(root: Path, params, verify: bool = False) -> Path:
    """The bench dataset for `params` under `root`: reused when ready, else (re)generated."""
    from pipeline.generate import run_generation

    name = (f"bench-{params.variant}{'-wrap' if params.wrap else ''}-s{params.size}-n{params.samples}"
            f"-t{params.test_samples}-{params.codec}")
    directory = root / name
    if dataset_ready(directory, params, verify):
        log(f"reusing {directory}")
        return directory
    log(f"generating {directory}")
    with contextlib.redirect_stdout(io.StringIO()):
        run_generation(directory, params, workers=os.cpu_count() or 1, overwrite=True, progress=False)
    return directory


def read_split(directory: Path, split: str, limit: int | None = None):
    """(frames uint8 (n, T, S, S), labels uint8 (n,)) of a split, read with plain h5py."""
    import h5py
    import numpy as np

    from pipeline.manifest import load_manifest

    manifest = load_manifest(directory)
    frames, labels, have = [], [], 0
    for entry in manifest.shards[split]:
        if limit is not None and have >= limit:
            break
        with h5py.File(directory / entry["path"], "r") as f:
            take = entry["samples"] if limit is None else min(entry["samples"], limit - have)
            frames.append(f["frames"][:take])
            labels.append(f["labels"][:take])
            have += take
    return np.concatenate(frames), np.concatenate(labels)


# ---------------------------------------------------------------- suite: generate

def suite_generate(rec: Recorder, grid: Grid, tmp: Path) -> None:
    """Per size: start a local cluster per worker count, then time runs round-robin (1 worker, 2, ...,
    the seed, again), so that the machine's drift falls on every cell alike."""
    from pipeline.generate import local_cluster, run_generation
    from pipeline.manifest import DatasetParams
    from pipeline.seed_workflow import SEED_TRAIN_SAMPLES, cold_generate_seconds
    from pipeline.timing import Stopwatch, Summary

    for size in grid.sizes:
        samples = max(16, min(grid.gen_max_samples, int(grid.gen_raw_mb * 1e6 / size ** 3)))
        # at most the seed's own call: per sequence, a cold call costs more the more it allocates
        seed_samples = max(2, min(SEED_TRAIN_SAMPLES, int(grid.seed_raw_mb * 1e6 / size ** 3)))
        tiny = DatasetParams(size=size, variant=grid.variant, samples=1, test_samples=1, shard_size=1, chunk=1)
        runs = iter(range(10 ** 6))
        stored = {}

        def generate_once(address: str, workers: int, p: DatasetParams) -> float:
            """Seconds of one run; deleting its files (~1 s for 320,000 sequences) is not timed."""
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
                        clusters[workers] = stack.enter_context(local_cluster(workers)).scheduler_address  # as `generate`'s
                    startup[workers] = sw.seconds
                    generate_once(clusters[workers], workers, dataclasses.replace(tiny, samples=2 * workers))  # warm-up
                    overhead[workers] = Summary.of([generate_once(clusters[workers], workers, tiny)
                                                    for _ in range(grid.gen_repeats)])
                    shards[workers] = max(1, min(grid.gen_shard_size, samples // max(8, 4 * workers)))
                    times[workers] = []
                except Exception as e:  # recorded below as this cell's error
                    failed[workers] = e
            times["seed"] = []
            for round_ in range(max(grid.gen_repeats, grid.seed_repeats)):
                for workers in [w for w in times if w != "seed" and w not in failed and round_ < grid.gen_repeats]:
                    log(f"generate ours size={size} workers={workers} samples={samples} (round {round_ + 1})")
                    params = DatasetParams(size=size, variant=grid.variant, samples=samples, test_samples=1,
                                           shard_size=shards[workers], chunk=min(32, shards[workers]))
                    try:
                        times[workers].append(generate_once(clusters[workers], workers, params))
                    except Exception as e:
                        failed[workers] = e
                if round_ < grid.seed_repeats and "seed" not in failed:
                    log(f"generate seed size={size} samples={seed_samples} (round {round_ + 1})")
                    try:  # cold, one call per fresh process, as the seed's workflow runs it
                        times["seed"].append(cold_generate_seconds(size, seed_samples))
                    except Exception as e:
                        failed["seed"] = e

        raw_mb = samples * size ** 3 / 1e6
        metrics = ("cluster_startup_s", "run_overhead_s", "samples_per_s", "mb_per_s", "stored_mb_per_s",
                   "per_worker_samples_per_s")
        for workers in grid.worker_counts():
            key = dict(size=size, workers=workers, samples=samples)
            with rec.cell("generate", "ours", metrics, **key):
                if workers in failed:
                    raise failed[workers]
                summary = Summary.of(times[workers])
                median = summary.median
                rec.add("generate", "ours", "cluster_startup_s", startup[workers], **key)
                rec.add("generate", "ours", "run_overhead_s", overhead[workers].median, **key,
                        repeats=grid.gen_repeats, measured="a run of 2 one-sequence shards, cluster already up")
                extra = dict(repeats=grid.gen_repeats, p10_s=summary.p10, p90_s=summary.p90, shard_size=shards[workers],
                             excludes="cluster start-up and warm-up; includes the run's fixed cost and manifest writes")
                rec.add("generate", "ours", "samples_per_s", samples / median, **key, **extra)
                rec.add("generate", "ours", "mb_per_s", raw_mb / median, **key, **extra)
                rec.add("generate", "ours", "stored_mb_per_s", stored[workers] / 1e6 / median, **key, **extra)
                rec.add("generate", "ours", "per_worker_samples_per_s", samples / median / workers, **key, **extra)
        key = dict(size=size, workers=1, samples=seed_samples)
        with rec.cell("generate", "seed", ("samples_per_s", "mb_per_s", "per_worker_samples_per_s"), **key):
            if "seed" in failed:
                raise failed["seed"]
            summary = Summary.of(times["seed"])
            median = summary.median
            extra = dict(repeats=grid.seed_repeats, p10_s=summary.p10, p90_s=summary.p90, measured="cold",
                         float64_mb_per_s=seed_samples * size ** 3 * 8 / 1e6 / median)
            rec.add("generate", "seed", "samples_per_s", seed_samples / median, **key, **extra)
            rec.add("generate", "seed", "mb_per_s", seed_samples * size ** 3 / 1e6 / median, **key, **extra)
            rec.add("generate", "seed", "per_worker_samples_per_s", seed_samples / median, **key, **extra)


# ---------------------------------------------------------------- suite: load

def our_dataset(directory: Path, batch_size: int, *, shuffle: bool = True, packed: bool = False):
    """Our loader, repeating, whole batches only; `packed`: bit-packed frames (B, S**3 / 8)."""
    from pipeline.loader import make_dataset

    return make_dataset(directory, "train", batch_size, shuffle=shuffle, seed=0, repeat=True, drop_remainder=True,
                        packed=packed)


def in_memory_dataset(frames, labels, batch_size: int):
    import tensorflow as tf

    return (tf.data.Dataset.from_tensor_slices((frames, labels)).batch(batch_size, drop_remainder=True)
            .repeat().prefetch(tf.data.AUTOTUNE))


def from_generator_dataset(directory: Path, batch_size: int, size: int):
    """`from_generator` over the train shards, yielding batch-sized h5py block reads (no cross-shard batches)."""
    import h5py
    import tensorflow as tf

    from pipeline.manifest import load_manifest

    paths = [directory / e["path"] for e in load_manifest(directory).shards["train"]]

    def blocks():
        while True:
            for path in paths:
                with h5py.File(path, "r") as f:
                    n = f["labels"].shape[0]
                    for start in range(0, n - batch_size + 1, batch_size):
                        yield f["frames"][start:start + batch_size], f["labels"][start:start + batch_size]

    spec = (tf.TensorSpec((batch_size, size, size, size), tf.uint8), tf.TensorSpec((batch_size,), tf.uint8))
    return tf.data.Dataset.from_generator(blocks, output_signature=spec).prefetch(tf.data.AUTOTUNE)


def suite_load(rec: Recorder, grid: Grid, data: dict[int, Path], naive: dict[int, Path]) -> None:
    """naive: the same datasets in NAIVE_CODEC, read by the from_generator baseline."""
    from pipeline.manifest import load_manifest
    from pipeline.timing import time_steps

    for size in grid.sizes:
        frames = labels = None
        for batch in grid.batch_sizes:
            for impl in LOAD_IMPLS:
                key = dict(size=size, batch_size=batch)
                with rec.cell("load", impl, ("samples_per_s", "mb_per_s", "first_batch_ms"), **key):
                    log(f"load {impl} size={size} batch={batch}")
                    if impl in ("ours", "ours-packed"):
                        ds = our_dataset(data[size], batch, packed=impl == "ours-packed")
                    elif impl == "in-memory":
                        if frames is None:
                            frames, labels = read_split(data[size], "train")
                        ds = in_memory_dataset(frames, labels, batch)
                    else:
                        ds = from_generator_dataset(naive[size], batch, size)
                    it = iter(ds)
                    times = time_steps(lambda: next(it), steps=grid.load_batches, warmup=grid.load_warmup)
                    rate = batch * grid.load_batches / times.total
                    source = naive[size] if impl == "from_generator" else data[size]
                    extra = dict(steps=grid.load_batches, warmup=grid.load_warmup,
                                 codec=load_manifest(source).params.codec)
                    rec.add("load", impl, "samples_per_s", rate, **key, **extra)
                    rec.add("load", impl, "mb_per_s", rate * size ** 3 / 1e6, **key, **extra)
                    rec.add("load", impl, "first_batch_ms", times.first * 1e3, **key, **extra)
                    del it, ds


# ---------------------------------------------------------------- suite: train

STEP_METRICS = ("ms_per_step_median", "ms_per_step_p10", "ms_per_step_p90", "samples_per_s", "first_step_ms")


def _record_steps(rec, impl, feed, times, *, size, batch_size, steps, warmup):
    s = times.summary.scaled(1e3)
    key = dict(size=size, batch_size=batch_size, feed=feed, steps=steps, warmup=warmup)
    rec.add("train", impl, "ms_per_step_median", s.median, **key)
    rec.add("train", impl, "ms_per_step_p10", s.p10, **key)
    rec.add("train", impl, "ms_per_step_p90", s.p90, **key)
    rec.add("train", impl, "samples_per_s", batch_size * 1e3 / s.median, **key)
    rec.add("train", impl, "first_step_ms", times.first * 1e3, **key)
    return s.median


def suite_train(rec: Recorder, grid: Grid, data: dict[int, Path]) -> None:
    import keras
    import tensorflow as tf

    from pipeline.models import build_model
    from pipeline.timing import time_steps

    for size in grid.sizes:
        frames, labels = read_split(data[size], "train", limit=4 * max(grid.batch_sizes))
        for name in grid.train_models:
            model = None
            with rec.cell("train", name, STEP_METRICS, size=size, feed=None):
                # No keras.utils.set_random_seed here: step times do not depend on the initial
                # weights, and make_dataset fails while a global TF seed is set (loader issue).
                model = build_model(name, size)
            if model is None:
                continue
            packed_model = None
            for batch in grid.batch_sizes:
                medians = {}
                for feed in TRAIN_FEEDS:
                    with rec.cell("train", name, STEP_METRICS, size=size, batch_size=batch, feed=feed):
                        log(f"train {name} feed={feed} size={size} batch={batch}")
                        if feed == "ours":
                            it = iter(our_dataset(data[size], batch))
                            step = lambda: model.train_on_batch(*next(it))  # noqa: E731
                        elif feed == "ours-packed":  # the same model behind UnpackFrames: unpacking is in the step
                            packed_model = packed_model or build_model(name, size, packed_input=True)
                            it = iter(our_dataset(data[size], batch, packed=True))
                            step = lambda: packed_model.train_on_batch(*next(it))  # noqa: E731
                        else:
                            batches = [(tf.constant(frames[i:i + batch]), tf.constant(labels[i:i + batch]))
                                       for i in range(0, 4 * batch, batch)]
                            turn = iter(range(10 ** 9))
                            step = lambda: model.train_on_batch(*batches[next(turn) % len(batches)])  # noqa: E731
                        times = time_steps(step, steps=grid.train_steps, warmup=grid.train_warmup)
                        medians[feed] = _record_steps(rec, name, feed, times, size=size, batch_size=batch,
                                                      steps=grid.train_steps, warmup=grid.train_warmup)
                for feed in ("ours", "ours-packed"):
                    if feed in medians and "in-memory" in medians:
                        rec.add("train", name, "input_bound_fraction", 1 - medians["in-memory"] / medians[feed],
                                size=size, batch_size=batch, feed=feed)
            del model, packed_model
            keras.backend.clear_session()
        if size <= grid.seed_workflow_max_size:
            _train_seed_workflow(rec, grid, size)


def _train_seed_workflow(rec: Recorder, grid: Grid, size: int) -> None:
    """The seed's own model (float64 TimeDistributed) on `generate_examples` arrays, via train_on_batch."""
    import random

    import keras

    from pipeline.seed_workflow import build_seed_model, generate_examples
    from pipeline.timing import time_steps

    for batch in grid.batch_sizes:
        with rec.cell("train", "seed-workflow", STEP_METRICS, size=size, batch_size=batch, feed="in-memory"):
            log(f"train seed-workflow size={size} batch={batch}")
            x, y = generate_examples(size, 2 * batch, random.Random(0))
            batches = [(x[:batch], y[:batch]), (x[batch:], y[batch:])]
            model = build_seed_model(size)
            turn = iter(range(10 ** 9))
            times = time_steps(lambda: model.train_on_batch(*batches[next(turn) % 2]),
                               steps=grid.seed_workflow_steps, warmup=min(grid.train_warmup, 2))
            _record_steps(rec, "seed-workflow", "in-memory", times, size=size, batch_size=batch,
                          steps=grid.seed_workflow_steps, warmup=min(grid.train_warmup, 2))
            del model, x, y, batches
            keras.backend.clear_session()


# ---------------------------------------------------------------- suite: accuracy

def suite_accuracy(rec: Recorder, grid: Grid, data: dict[tuple[int, bool], Path]) -> None:
    import keras

    from pipeline.models import build_model

    for (size, wrap), directory in data.items():
        x, y = read_split(directory, "train", limit=grid.accuracy_train_samples)
        tx, ty = read_split(directory, "test")
        for name in grid.accuracy_models:
            key = dict(size=size, batch_size=grid.accuracy_batch, feed="in-memory",
                       variant=grid.variant + ("+wrap" if wrap else ""), train_samples=int(len(y)),
                       test_samples=int(len(ty)), epochs=1)
            with rec.cell("accuracy", name, ("accuracy", "loss"), **key):
                log(f"accuracy {name} size={size} wrap={wrap}")
                keras.utils.set_random_seed(0)
                model = build_model(name, size)
                model.fit(x, y, batch_size=grid.accuracy_batch, epochs=1, shuffle=True, verbose=0)
                loss, accuracy = model.evaluate(tx, ty, batch_size=grid.accuracy_batch, verbose=0)
                rec.add("accuracy", name, "accuracy", accuracy, **key)
                rec.add("accuracy", name, "loss", loss, **key)
                del model
                keras.backend.clear_session()


# ---------------------------------------------------------------- output

def value_of(rows, **match):
    """The value of the one error-free row matching all of `match`, else None."""
    for row in rows:
        if row["error"] is None and all(row.get(k) == v for k, v in match.items()):
            return row["value"]
    return None


def _fmt(value, digits: int = 3) -> str:
    if value is None:
        return "-"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.{digits}g}"


def _ratio(a, b) -> str:
    return f"{a / b:.2f}x" if a is not None and b else "-"


def markdown_summary(doc: dict) -> str:
    """The end-of-run tables, with speedups of ours over the baselines."""
    rows = doc["rows"]
    out = [f"### Bench {doc['created']} on {doc['environment']['device']['name']} "
           f"(preset {doc['config']['preset']}, commit {(doc['environment']['git']['commit'] or '?')[:10]}"
           f"{' dirty' if doc['environment']['git']['dirty'] else ''})", ""]
    suites = {r["suite"] for r in rows}
    if "generate" in suites:
        out += ["**generate** (cluster start-up excluded; MB/s = uint8 frame bytes; run s = fixed cost of one run)", "",
                "| size | impl | workers | samples/s | MB/s | per worker | start-up s | run s | vs seed | vs 1 worker |",
                "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for size in sorted({r["size"] for r in rows if r["suite"] == "generate"}):
            seed = value_of(rows, suite="generate", impl="seed", size=size, metric="samples_per_s")
            cells = sorted({(r["impl"] != "seed", r["impl"], r["workers"]) for r in rows
                            if r["suite"] == "generate" and r["size"] == size})
            for _, impl, workers in cells:
                m = dict(suite="generate", impl=impl, size=size, workers=workers)
                rate = value_of(rows, metric="samples_per_s", **m)
                out.append(f"| {size} | {impl} | {workers} | {_fmt(rate)} | {_fmt(value_of(rows, metric='mb_per_s', **m))} "
                           f"| {_fmt(value_of(rows, metric='per_worker_samples_per_s', **m))} "
                           f"| {_fmt(value_of(rows, metric='cluster_startup_s', **m))} "
                           f"| {_fmt(value_of(rows, metric='run_overhead_s', **m))} | {_ratio(rate, seed)} "
                           f"| {_ratio(rate, value_of(rows, metric='samples_per_s', **{**m, 'workers': 1})) if impl == 'ours' else '-'} |")
        out.append("")
    grid_cells = sorted({(r["size"], r["batch_size"]) for r in rows if r["batch_size"] is not None})
    if "load" in suites:
        out += [f"**load** (samples/s, warm-up excluded; from_generator reads the same sequences stored as {NAIVE_CODEC})",
                "",
                "| size | batch | ours | ours, packed | in-memory | from_generator | ours / in-memory "
                "| packed / in-memory | ours / from_generator |",
                "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for size, batch in grid_cells:
            v = {impl: value_of(rows, suite="load", impl=impl, size=size, batch_size=batch, metric="samples_per_s")
                 for impl in LOAD_IMPLS}
            if any(r["suite"] == "load" and r["size"] == size and r["batch_size"] == batch for r in rows):
                out.append(f"| {size} | {batch} | {_fmt(v['ours'])} | {_fmt(v['ours-packed'])} | {_fmt(v['in-memory'])} "
                           f"| {_fmt(v['from_generator'])} | {_ratio(v['ours'], v['in-memory'])} "
                           f"| {_ratio(v['ours-packed'], v['in-memory'])} | {_ratio(v['ours'], v['from_generator'])} |")
        out.append("")
    if "train" in suites:
        out += ["**train** (ms/step median [p10-p90], warm-up excluded; speedups on in-memory feed)", "",
                "| size | batch | model | fed by our loader | fed packed | in memory | input-bound (ours, packed) "
                "| samples/s | vs seed | vs seed-workflow |",
                "| ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
        models = sorted({r["impl"] for r in rows if r["suite"] == "train"}, key=lambda m: (m == "seed-workflow", m))
        for size, batch in grid_cells:
            seed = value_of(rows, suite="train", impl="seed", feed="in-memory", size=size, batch_size=batch,
                            metric="ms_per_step_median")
            workflow = value_of(rows, suite="train", impl="seed-workflow", feed="in-memory", size=size,
                                batch_size=batch, metric="ms_per_step_median")
            for model in models:
                m = dict(suite="train", impl=model, size=size, batch_size=batch)
                if not any(all(r.get(k) == v for k, v in m.items()) for r in rows):
                    continue

                def spread(feed):
                    med = value_of(rows, feed=feed, metric="ms_per_step_median", **m)
                    if med is None:
                        return "-"
                    return (f"{_fmt(med)} [{_fmt(value_of(rows, feed=feed, metric='ms_per_step_p10', **m))}-"
                            f"{_fmt(value_of(rows, feed=feed, metric='ms_per_step_p90', **m))}]")
                mem = value_of(rows, feed="in-memory", metric="ms_per_step_median", **m)
                bounds = [value_of(rows, feed=f, metric="input_bound_fraction", **m) for f in ("ours", "ours-packed")]
                rate = value_of(rows, feed="ours", metric="samples_per_s", **m) or value_of(
                    rows, feed="in-memory", metric="samples_per_s", **m)
                out.append(f"| {size} | {batch} | {model} | {spread('ours')} | {spread('ours-packed')} | {spread('in-memory')} "
                           f"| {', '.join('-' if b is None else f'{b:.0%}' for b in bounds)} | {_fmt(rate)} "
                           f"| {_ratio(seed, mem)} | {_ratio(workflow, mem)} |")
        out.append("")
    if "accuracy" in suites:
        out += ["**accuracy** (held-out, after one epoch over the train budget)", "",
                "| size | variant | model | train samples | test samples | accuracy | loss |",
                "| ---: | --- | --- | ---: | ---: | ---: | ---: |"]
        for r in rows:
            if r["suite"] == "accuracy" and r["metric"] == "accuracy":
                loss = value_of(rows, suite="accuracy", impl=r["impl"], size=r["size"], variant=r.get("variant"),
                                metric="loss")
                out.append(f"| {r['size']} | {r.get('variant')} | {r['impl']} | {r.get('train_samples')} "
                           f"| {r.get('test_samples')} | {_fmt(r['value'])} | {_fmt(loss)} |")
        out.append("")
    failed = [r for r in rows if r["error"]]
    if failed:
        out += [f"**{len(failed)} failed rows:**", ""]
        seen = set()
        for r in failed:
            tag = (r["suite"], r["impl"], r["feed"], r["size"], r["batch_size"], r["workers"], r["error"])
            if tag not in seen:
                seen.add(tag)
                out.append(f"- {r['suite']}/{r['impl']}{'/' + r['feed'] if r['feed'] else ''} size={r['size']} "
                           f"batch={r['batch_size']} workers={r['workers']}: {r['error']}")
        out.append("")
    return "\n".join(out)


def write_csv(path: Path, rows: list[dict]) -> None:
    """Rows as CSV: the common keys first, any extra keys after, in first-seen order."""
    keys = list(ROW_KEYS)
    for row in rows:
        keys += [k for k in row if k not in keys]
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=keys, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def write_result(doc: dict, out: Path) -> Path:
    """DIR/<timestamp>-<host>.json (atomically), with .csv and .md beside it."""
    out.mkdir(parents=True, exist_ok=True)
    stamp = doc["created"].replace(":", "").replace("-", "")
    host = "".join(c if c.isalnum() or c in "-_." else "_" for c in doc["environment"]["host"])
    path = out / f"{stamp}-{host}.json"
    tmp = path.with_name(path.name + f".tmp-{os.getpid()}")
    tmp.write_text(json.dumps(doc, indent=1) + "\n")
    os.replace(tmp, path)
    write_csv(path.with_suffix(".csv"), doc["rows"])
    path.with_suffix(".md").write_text(markdown_summary(doc) + "\n")
    return path


# ---------------------------------------------------------------- command

def run_bench(grid: Grid, *, preset: str, out: Path, data_root: Path, verify: bool = False) -> tuple[dict, Path]:
    """Run every suite of `grid`; write and return the result document and its path."""
    from pipeline import devices, environment
    from pipeline.timing import Stopwatch

    started = dt.datetime.now(dt.timezone.utc)
    device = devices.describe()
    rec = Recorder(device["name"])
    datasets: dict[str, Path] = {}
    with Stopwatch() as wall, tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        needs_data = [s for s in grid.suites if s in ("load", "train", "accuracy")]
        data: dict[int, Path] = {}
        if needs_data:
            for size in grid.sizes:
                data[size] = ensure_dataset(data_root, dataset_params(grid, size), verify)
                datasets[data[size].name] = data[size]
        for suite in SUITES:
            if suite not in grid.suites:
                continue
            log(f"suite {suite}")
            if suite == "generate":
                suite_generate(rec, grid, Path(tmp))
            elif suite == "load":
                naive = {size: ensure_dataset(data_root, dataset_params(grid, size, codec=NAIVE_CODEC), verify)
                         for size in grid.sizes}
                datasets.update({d.name: d for d in naive.values()})
                suite_load(rec, grid, data, naive)
            elif suite == "train":
                suite_train(rec, grid, data)
            else:
                acc_data = {(size, False): data[size] for size in grid.sizes}
                if grid.accuracy_wrap:
                    for size in grid.sizes:
                        with rec.cell("accuracy", "dataset", ("accuracy",), size=size, variant=grid.variant + "+wrap"):
                            acc_data[(size, True)] = ensure_dataset(data_root, dataset_params(grid, size, wrap=True), verify)
                            datasets[acc_data[(size, True)].name] = acc_data[(size, True)]
                suite_accuracy(rec, grid, acc_data)
    doc = {"format": FORMAT, "format_version": FORMAT_VERSION,
           "created": started.strftime("%Y-%m-%dT%H:%M:%SZ"), "wall_s": round(wall.seconds, 1),
           "environment": environment.collect(datasets, device=device),
           "config": {"preset": preset, "grid": dataclasses.asdict(grid), "data_root": str(data_root),
                      "timing": "time.perf_counter around each materialized step; warm-up steps excluded"},
           "rows": rec.rows}
    return doc, write_result(doc, out)


def run(args) -> int:
    preset, grid = grid_from_args(args)
    _check_writable(args.out, "--out")
    _check_writable(args.data_root, "--data-root")
    real_stdout = sys.stdout
    with contextlib.redirect_stdout(sys.stderr if args.json else sys.stdout):
        doc, path = run_bench(grid, preset=preset, out=args.out, data_root=args.data_root, verify=args.verify_data)
        print(markdown_summary(doc))
        print(f"wrote {path} (+ .csv, .md); {len(doc['rows'])} rows, "
              f"{sum(1 for r in doc['rows'] if r['error'])} failed, {doc['wall_s']} s")
    if args.json:
        real_stdout.write(json.dumps(doc) + "\n")
        real_stdout.flush()
    return 0
