"""`generate`: write a sharded dataset with one Dask task per shard.

Each task opens its own HDF5 file (HDF5 files are not safe to share between
processes) and derives its random stream from (seed, split, shard index), so the
bytes do not depend on the number of workers or the order in which shards finish.
The client alone writes the manifest, after each shard lands, and, once every shard
has landed, each split's chunk index (`pipeline.dataset.chunk_index`) from the entries
the workers computed. A rerun of the same command resumes: shards already recorded (or
renamed into place but not yet recorded) are kept, the rest are written; a crash's
temporary files are removed; shards the index lacks are indexed from their files (a
complete dataset written before indexes existed gets its index this way).
Only files the dataset owns are ever deleted (see `owned_files`); anything else in the
directory is left alone, with or without --overwrite.
"""
from __future__ import annotations

import argparse
import contextlib
import fcntl
import logging
import os
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from pipeline.dataset import chunk_index, codecs
from pipeline.dataset.manifest import (
    DEFAULT_SHARD_SIZE,
    MANIFEST,
    SPLITS,
    DatasetParams,
    Manifest,
    listed_shards,
    load_manifest,
)
from pipeline.dataset.shards import (
    ShardIndex,
    ShardPlan,
    ShardRecord,
    check_shard,
    sha256_of,
    temporary_files,
    write_shard,
)
from pipeline.dataset.synth import VARIANTS
from pipeline.errors import DataError, UsageError
from pipeline.runtime import malloc
from pipeline.runtime.cpus import usable_cpus

LOCK = ".lock"
# The local cluster's dashboard listens on loopback only, on a free port: it shows the run to anyone who can
# reach it. `--dashboard-address 0.0.0.0:8787` opens it to the network.
DEFAULT_DASHBOARD = "127.0.0.1:0"


def add_arguments(p: argparse.ArgumentParser) -> None:
    d = DatasetParams()
    p.add_argument("--out", type=Path, default=Path("datasets/moving-square-50"), help="dataset directory")
    p.add_argument("--size", type=int, default=d.size, help="image side in pixels (= frames per sequence)")
    p.add_argument("--variant", default=d.variant, help=f"what a frame shows: {', '.join(VARIANTS)}")
    p.add_argument("--square", type=int, default=d.square, help="block side for --variant square")
    p.add_argument("--wrap", action="store_true",
                   help="start at a random column and wrap: no frame reveals the direction")
    p.add_argument("--samples", type=int, default=d.samples, help="sequences in the train split")
    p.add_argument("--test-samples", type=int, default=d.test_samples,
                   help="sequences in the test split; 0 makes a train-only dataset")
    p.add_argument("--shard-size", type=int, help=f"sequences per shard file (default: {DEFAULT_SHARD_SIZE:,}, or the "
                   "whole train split if smaller); each shard adds fixed work (file, fsync, Dask task)")
    p.add_argument("--chunk", type=int, default=d.chunk, help="sequences per HDF5 chunk")
    p.add_argument("--codec", default=d.codec, help=f"frames compression: {', '.join(codecs.CODECS)}")
    p.add_argument("--seed", type=int, default=d.seed, help="root seed; train and test get separate streams")
    p.add_argument("--workers", type=int, default=usable_cpus(),
                   help="local worker processes (default: the CPUs this process may use; ignored with --scheduler)")
    p.add_argument("--scheduler", metavar="ADDRESS", help="use an existing Dask cluster, e.g. tcp://10.0.0.5:8786")
    p.add_argument("--dashboard-address", metavar="HOST:PORT", default=DEFAULT_DASHBOARD,
                   help="where the local cluster's dashboard listens: HOST:PORT, port 0 for a free one; "
                   "':PORT' listens on every interface (ignored with --scheduler)")
    p.add_argument("--overwrite", action="store_true", help="replace a dataset generated with other parameters "
                   "(deletes only that dataset's own files)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def params_from_args(args) -> DatasetParams:
    try:
        return DatasetParams(size=args.size, variant=args.variant, square=args.square, wrap=args.wrap,
                             seed=args.seed, samples=args.samples, test_samples=args.test_samples,
                             shard_size=args.shard_size, chunk=args.chunk, codec=args.codec)
    except ValueError as e:
        raise UsageError(str(e)) from None


def check_output_dir(out: Path) -> None:
    """UsageError unless `out` is (or can become) a writable directory; creates nothing."""
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} exists and is not a directory")
    existing = out if out.exists() else next(p for p in out.absolute().parents if p.exists())
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise UsageError(f"--out {out}: {existing} is not writable")


@contextlib.contextmanager
def exclusive_lock(out: Path):
    """Hold DIR/.lock for the run; a second generator on DIR gets a UsageError.

    Released on any exit, kill -9 included.
    """
    fd = os.open(out / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            raise UsageError(f"another generator (pid {holder}) is writing {out}; wait for it to finish") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)


def prepare(out: Path, params: DatasetParams, overwrite: bool) -> tuple[Manifest, list[ShardPlan]]:
    """Under the lock: reconcile DIR with `params`; return the manifest and the shards still to write."""
    remove_leftovers(out)
    manifest = Manifest.planned(params)
    if (out / MANIFEST).exists():
        try:
            old = load_manifest(out)
        except DataError:
            old = None
        if old is None or old.params != params:
            if not overwrite:
                what = ("an unreadable manifest" if old is None
                        else f"a dataset with other parameters ({_diff(old.params, params)})")
                raise UsageError(f"{out} holds {what}; pass --overwrite to replace it")
            for stale in owned_files(out, params):
                stale.unlink(missing_ok=True)
        else:
            manifest = old
    todo = []
    for plan in params.plans():
        entry = manifest.entry(plan.split, plan.name)
        path = out / plan.name
        if entry["sha256"] and path.exists() and path.stat().st_size == entry["bytes"]:
            continue
        if path.exists():  # renamed into place, but the crash came before the manifest recorded it
            try:
                check_shard(path, plan)
                entry.update(sha256=sha256_of(path), bytes=path.stat().st_size)
                continue
            except DataError:
                path.unlink()
        entry.update(sha256=None, bytes=None)
        todo.append(plan)
    manifest.complete = not todo
    return manifest, todo


def owned_files(out: Path, params: DatasetParams) -> list[Path]:
    """The shard and index files in `out` that a dataset there owns: the shards its manifest lists and those
    `params` would write, and the splits' chunk indexes. Other files, `*.h5` or not, are the user's.
    (Temporary files: `remove_leftovers`.)"""
    names = listed_shards(out) | {plan.name for plan in params.plans()} | {chunk_index.index_name(s) for s in SPLITS}
    return sorted(out / name for name in names if (out / name).is_file())


def _diff(old: DatasetParams, new: DatasetParams) -> str:
    return ", ".join(f"{k} {getattr(old, k)!r} vs {getattr(new, k)!r}"
                     for k in old.__dataclass_fields__ if getattr(old, k) != getattr(new, k))


# Dask starts workers with MALLOC_TRIM_THRESHOLD_=65536, which also freezes glibc's mmap threshold at
# 128 KB: every multi-megabyte buffer becomes a fresh mmap paid for in page faults. Keeping big buffers
# on the heap lets a worker reuse them (pipeline.runtime.malloc).
WORKER_MALLOC = malloc.ENVIRON

# Settings of the local cluster:
# - Dask's upkeep wakes an idle worker many times a second (the statistical profiler, the event-loop
#   tick, the memory and system monitors), CPU taken from writing shards. Slowed down or off; the
#   dashboard's Profile page stays empty.
# - worker-saturation "inf" sends every task to a worker up front instead of ~1 per thread, so the next
#   shard starts without a round trip through the scheduler. Work stealing still balances the workers.
LOCAL_DASK_CONFIG = {"distributed.worker.profile.enabled": False, "distributed.admin.system-monitor.interval": "2s",
                     "distributed.admin.tick.interval": "500ms", "distributed.worker.memory.monitor-interval": "1s",
                     "distributed.scheduler.worker-saturation": "inf"}


@contextlib.contextmanager
def dask_client(workers: int, scheduler: str | None, dashboard_address: str = DEFAULT_DASHBOARD):
    """A Client on `scheduler`, or on a new local cluster of `workers` single-threaded processes whose
    dashboard listens on `dashboard_address` (HOST:PORT)."""
    from dask.distributed import Client

    for name in ("distributed", "bokeh", "tornado"):
        logging.getLogger(name).setLevel(logging.ERROR)
    if scheduler:
        try:
            client = Client(scheduler, timeout="20s")
        except (OSError, ValueError, TypeError) as e:  # unreachable, or not an address
            raise UsageError(f"--scheduler {scheduler}: cannot connect to a Dask scheduler ({e})") from None
        with client:
            yield client
        return
    # Local workers write to this terminal. Every task's error reaches the client, which reports it in one
    # line, so the workers' own error logs and h5py's "Exception ignored" notes (a failed write's file
    # close, e.g. on a full disk) are kept out of it.
    with local_cluster(workers, silence_logs=logging.CRITICAL, dashboard_address=dashboard_address) as cluster, \
            Client(cluster) as client:
        client.register_plugin(_quiet_local_worker(), name="pipeline-quiet-local-worker")
        yield client


@contextlib.contextmanager
def local_cluster(workers: int, silence_logs: int = logging.ERROR, dashboard_address: str = DEFAULT_DASHBOARD):
    """A LocalCluster of `workers` single-threaded worker processes, with WORKER_MALLOC and LOCAL_DASK_CONFIG.

    The scheduler listens on loopback, and so does its dashboard unless `dashboard_address` (HOST:PORT)
    names another interface; Dask binds ':PORT' to every interface.

    Dask sets the workers' environment (allocator and thread settings, PYTHONHASHSEED) and the scheduler's
    address in this process's own `os.environ`, and leaves them there: the environment is put back as it
    was on exit, so that processes this one starts later (a benchmark's cells, a training run) do not
    inherit them."""
    import dask
    from dask.distributed import LocalCluster

    environ = {**dask.config.get("distributed.nanny.pre-spawn-environ"), **WORKER_MALLOC}
    saved = dict(os.environ)
    try:
        with dask.config.set({"distributed.nanny.pre-spawn-environ": environ, **LOCAL_DASK_CONFIG}), \
                LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                             dashboard_address=dashboard_address, silence_logs=silence_logs) as cluster:
            yield cluster
    finally:
        for key in set(os.environ) - set(saved):
            del os.environ[key]
        os.environ.update({key: value for key, value in saved.items() if os.environ.get(key) != value})


def _quiet_local_worker():
    """Worker plugin for the local cluster: exceptions h5py can only print (Cython `__dealloc__`, through
    sys.excepthook and sys.unraisablehook) go to the log at DEBUG instead of this terminal."""
    from distributed import WorkerPlugin

    class QuietLocalWorker(WorkerPlugin):
        def setup(self, worker):
            import sys

            log = logging.getLogger("pipeline.dataset.shards")
            sys.unraisablehook = lambda u: log.debug("ignored: %r", u.exc_value)
            sys.excepthook = lambda kind, value, tb: log.debug("printed by an extension: %r", value)

    return QuietLocalWorker()


def run_generation(out: Path, params: DatasetParams, *, workers: int, scheduler: str | None = None,
                   overwrite: bool = False, progress: bool = True,
                   on_shard: Callable[[ShardRecord], None] | None = None,
                   dashboard_address: str = DEFAULT_DASHBOARD) -> Manifest:
    """Generate (or finish) the dataset in `out`. Returns the complete manifest.

    overwrite: replace a dataset in `out` made with other parameters (its own files only).
    dashboard_address: where a local cluster's dashboard listens, HOST:PORT (port 0: a free one).

    on_shard: called in this process with each shard's record as it lands (after the manifest records it).
    """
    check_output_dir(out)
    if not scheduler and not 1 <= workers <= 1024:
        raise UsageError(f"workers must be in 1..1024, got {workers}")
    try:
        with contextlib.ExitStack() as stack:
            # An external scheduler is reached first: a bad address is a usage error with nothing written.
            client = stack.enter_context(dask_client(workers, scheduler)) if scheduler else None
            out.mkdir(parents=True, exist_ok=True)
            stack.enter_context(exclusive_lock(out))
            manifest, todo = prepare(out, params, overwrite)
            manifest.save(out)
            if not todo:
                write_indexes(out, manifest, {})  # one stat per shard where they are current
                print(f"{out}: complete, nothing to do")
                return manifest
            if client is None:  # a local cluster only when there is work, and inside the lock
                client = stack.enter_context(dask_client(workers, None, dashboard_address))
            indexes: dict[str, ShardIndex] = {}
            _write_shards(client, out, manifest, todo, scheduler or f"local cluster, {workers} worker process"
                          f"{'es' if workers > 1 else ''}", progress, on_shard, indexes)
            remove_leftovers(out)  # of workers killed mid-shard: their tasks were redone elsewhere
            write_indexes(out, manifest, indexes)
            manifest.complete = True
            manifest.save(out)
        return manifest
    except OSError as e:  # disk full, permissions, I/O errors in this process: one line, no traceback
        raise DataError(f"writing {out} failed: {_reason(e)}"
                        + (f" ({e.filename})" if getattr(e, "filename", None) else "")) from None


def _reason(e: OSError) -> str:
    """One line: the errno's text where there is one (h5py's own messages span lines)."""
    return os.strerror(e.errno) if e.errno else (str(e).splitlines() or [type(e).__name__])[0]


def write_indexes(out: Path, manifest: Manifest, known: dict[str, ShardIndex]) -> None:
    """Bring each split's chunk index in `out` up to date, from `known` (this run's workers' entries) where it
    can, else from the shards (`chunk_index.refresh`, which raises DataError naming a shard that fails its
    check). Written in `out` itself: an OSError (a full disk) ends the run as a shard's would, and a rerun
    writes them."""
    for split in SPLITS:
        if manifest.shards[split]:
            chunk_index.refresh(out, manifest, split, known=known, anywhere=False)


def remove_leftovers(out: Path) -> None:
    """Delete the temporary files (`train-00003.h5.tmp-PID`, `manifest.json.tmp-PID`, `index-train.npz.tmp-PID`)
    of writers that died before renaming them."""
    for leftover in temporary_files(out):
        leftover.unlink(missing_ok=True)


# Finished shards are recorded in batches, at most this often: their records are fetched from the
# workers in one gather and the manifest is rewritten (and fsynced) once. Fetching each record on its
# own costs the client CPU per shard and interrupts the busy workers with a request each. A shard
# renamed into place but not yet recorded is checked and hashed on resume, so nothing is lost.
RECORD_INTERVAL_S = 0.25


def _write_shards(client, out: Path, manifest: Manifest, todo: list[ShardPlan], where: str, progress: bool,
                  on_shard: Callable[[ShardRecord], None] | None, indexes: dict[str, ShardIndex]) -> None:
    """Run one task per shard on `client`; record finished shards in the manifest as they land, and their
    chunk index entries in `indexes` (by shard name)."""
    from dask.distributed import as_completed
    from tqdm import tqdm

    print(f"dask: {where}; dashboard: {client.dashboard_link}")
    directory = out.absolute()
    # Keys unique to this run: a scheduler takes a key it already holds for the same task, and two
    # clients on one shared scheduler may write shards of the same names from processes of the same
    # PID (each in its own container).
    run = uuid.uuid4().hex
    futures = client.map(write_shard, [directory] * len(todo), todo, retries=2,
                         key=[f"write-{plan.name}-{run}" for plan in todo])  # one message for all tasks
    plan_of = dict(zip((f.key for f in futures), todo))
    bar = tqdm(total=sum(p.samples for p in todo), unit=" seq", unit_scale=True, disable=not progress,
               smoothing=0.1, desc=f"{out.name}")
    landed, recorded = [], time.monotonic()
    try:
        for done, future in enumerate(as_completed(futures), 1):
            landed.append(future)
            bar.update(plan_of[future.key].samples)
            if done == len(futures) or future.status == "error" or time.monotonic() - recorded >= RECORD_INTERVAL_S:
                _record(client, out, manifest, landed, plan_of, on_shard, indexes)
                landed, recorded = [], time.monotonic()
    finally:
        bar.close()
        for future in futures:
            future.cancel()


def _record(client, out: Path, manifest: Manifest, landed: list, plan_of: dict,
            on_shard: Callable[[ShardRecord], None] | None, indexes: dict[str, ShardIndex]) -> None:
    """Fetch the records of the `landed` futures in one gather, enter them in the manifest (and their index
    entries in `indexes`) and save it.

    A failed shard ends the run with a DataError naming it (after its siblings' records are saved)."""
    failed = next((f for f in landed if f.status == "error"), None)
    finished = [f for f in landed if f.status != "error"]
    for future, record in zip(finished, client.gather(finished)):
        plan = plan_of[future.key]
        manifest.entry(plan.split, plan.name).update(sha256=record.sha256, bytes=record.bytes)
        if record.index is not None:
            indexes[plan.name] = record.index
        if on_shard:
            on_shard(record)
    manifest.save(out)
    if failed is not None:
        error = failed.exception()
        if isinstance(error, OSError):
            raise DataError(f"writing {out / plan_of[failed.key].name} failed: {_reason(error)}") from None
        raise error


def dashboard_from_args(args) -> str:
    """--dashboard-address, checked: UsageError unless HOST:PORT or :PORT with a port in 0..65535."""
    address = args.dashboard_address.strip()
    _host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise UsageError(f"--dashboard-address must be HOST:PORT or :PORT, got {args.dashboard_address!r}")
    return address


def run(args) -> int:
    params = params_from_args(args)
    dashboard = dashboard_from_args(args)
    started = time.perf_counter()
    peak_rss = []
    manifest = run_generation(args.out, params, workers=args.workers, scheduler=args.scheduler,
                              overwrite=args.overwrite, progress=not args.quiet, dashboard_address=dashboard,
                              on_shard=lambda record: peak_rss.append(record.peak_rss_bytes))
    doc = manifest.to_json()
    total = params.samples + params.test_samples
    stored = sum(e["bytes"] for s in doc["splits"].values() for e in s["shards"])
    seconds = time.perf_counter() - started
    print(f"{args.out}: {total:,} sequences of {params.size}x{params.size}x{params.size} in "
          f"{sum(len(s['shards']) for s in doc['splits'].values())} shards, {stored / 1e6:.1f} MB "
          f"({doc['storage']['stored_bytes_per_sample']} B/sequence, "
          f"{total * params.size ** 3 / max(stored, 1):.0f}x smaller than raw), {seconds:.1f} s"
          + (f", peak worker memory {max(peak_rss) / 2**20:.0f} MiB" if peak_rss else ""))
    return 0
