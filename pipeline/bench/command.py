"""`python -m pipeline bench`: arguments, one run over a grid, the result file.

One process runs one Keras backend (`--backend`, set before Keras is imported). `--gpu`
without `--backend` runs the GPU preset once per importable backend, each in a fresh
process writing its own result file.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from pipeline.bench.grid import PRESETS, SUITES, Grid
from pipeline.errors import UsageError, positive_int
from pipeline.runtime.backends import BACKENDS
from pipeline.runtime.devices import PRECISIONS

PRESET_FLAGS = ("quick", "full", "gpu", "book_budget")


def _int_list(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def _name_list(text: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in text.split(",") if v.strip())


def add_arguments(p: argparse.ArgumentParser) -> None:
    preset = p.add_mutually_exclusive_group()
    preset.add_argument("--quick", action="store_true", help="small grid, about 2 minutes on a 2-core CPU")
    preset.add_argument("--full", action="store_true", help="large grid, sizes up to 100")
    preset.add_argument("--gpu", action="store_true",
                        help="GPU preset: sizes 50 and 100, batches 32/256/1024, fast and book, loader/in-memory/"
                             "synthetic feeds, float32 and bfloat16; every importable backend unless --backend")
    preset.add_argument("--book-budget", action="store_true",
                        help="accuracy only: the book's budget (1 epoch of 5,000, batch 32), 10,000 held out, "
                             "sizes 10/25/50")
    p.add_argument("--backend", choices=BACKENDS, help="Keras backend (default: tensorflow)")
    p.add_argument("--suites", type=_name_list, help=f"comma-separated subset of {','.join(SUITES)} (default: all)")
    p.add_argument("--sizes", type=_int_list,
                   help="comma-separated image sizes, for every suite (default: the preset's)")
    p.add_argument("--batch-sizes", type=_int_list, help="comma-separated batch sizes (default: the preset's)")
    p.add_argument("--workers", type=_int_list, help="generator worker counts (default: 1, 2, all cores)")
    p.add_argument("--models", type=_name_list,
                   help="comma-separated models for the train and accuracy suites (default: the preset's)")
    p.add_argument("--wrap", action=argparse.BooleanOptionalAction, default=None,
                   help="accuracy also on a --wrap dataset, where no single frame reveals the direction "
                        "(default: the preset's)")
    p.add_argument("--precision", type=_name_list, metavar="POLICIES",
                   help=f"comma-separated Keras dtype policies for the train suite, of {','.join(PRECISIONS)} "
                        "(default: the preset's; else this device's: mixed_bfloat16 on GPUs of compute capability "
                        ">= 8.0, mixed_float16 on 7.x, float32 elsewhere)")
    p.add_argument("--devices", type=_int_list, metavar="COUNTS",
                   help="comma-separated device counts for the train suite's scaling rows: fit on our loader, the "
                        "global batch split over N replicas, beside N=1 (default: every visible GPU where there are "
                        "several, else no scaling rows; on a CPU the N devices are logical ones sharing its cores)")
    p.add_argument("--train-steps", type=positive_int,
                   help="timed steps per train cell, at least (default: one epoch of the bench dataset; a fed cell "
                        "also times three times what its pipeline may hold ready)")
    p.add_argument("--out", type=Path, default=Path("bench/results"), help="directory for result files")
    p.add_argument("--data-root", type=Path, default=Path("datasets"),
                   help="where bench datasets are generated and reused")
    p.add_argument("--verify-data", action="store_true", help="check reused datasets' SHA-256 against their manifests")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object on stdout")


def preset_name(args) -> str:
    for flag in PRESET_FLAGS:
        if getattr(args, flag, False):
            return flag.replace("_", "-")
    return "default"


def grid_from_args(args) -> tuple[str, Grid]:
    name = preset_name(args)
    overrides = {key: value for key, value in (("suites", args.suites), ("sizes", args.sizes),
                                               ("batch_sizes", args.batch_sizes), ("workers", args.workers),
                                               ("train_steps", args.train_steps), ("precisions", args.precision),
                                               ("devices", args.devices))
                 if value is not None}
    if args.sizes is not None:  # --sizes names every size measured, the accuracy suite's too
        overrides["accuracy_sizes"] = None
    if args.models is not None:
        overrides.update(train_models=args.models, accuracy_models=args.models)
    if args.wrap is not None:
        overrides["accuracy_wrap"] = args.wrap
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


def _datasets(grid: Grid, data_root: Path, verify: bool, datasets: dict) -> dict:
    """size -> the bench dataset of every size a suite reads (generated or reused)."""
    from pipeline.bench.data import dataset_params, ensure_dataset

    sizes = set()
    if {"load", "au", "train"} & set(grid.suites):
        sizes |= set(grid.sizes)
    if "accuracy" in grid.suites:
        sizes |= set(grid.accuracy_grid_sizes())
    out = {}
    for size in sorted(sizes):
        out[size] = ensure_dataset(data_root, dataset_params(grid, size), verify)
        datasets[out[size].name] = out[size]
    return out


def run_bench(grid: Grid, *, preset: str, out: Path, data_root: Path, verify: bool = False,
              backend: str = "tensorflow") -> tuple[dict, Path]:
    """Run every suite of `grid` on `backend` (already selected); write and return the result document and its path."""
    from pipeline.bench import accuracy, au, generate, load, scaling, train
    from pipeline.bench.data import NAIVE_CODEC, dataset_params, ensure_dataset
    from pipeline.bench.monitor import Monitor, static_facts
    from pipeline.bench.progress import log
    from pipeline.bench.recorder import Recorder, collect_environment
    from pipeline.bench.timing import Stopwatch
    from pipeline.results.files import write_result
    from pipeline.results.format import FORMAT, FORMAT_VERSION
    from pipeline.results.summary import markdown_summary
    from pipeline.runtime import devices, environment

    started = dt.datetime.now(dt.UTC)
    if "train" in grid.suites:  # before anything starts the backend, which then fixes its device count
        scaling.configure(backend, grid.devices)
    device = devices.describe()
    datasets: dict[str, Path] = {}
    with Stopwatch() as wall, tempfile.TemporaryDirectory(prefix="bench-") as tmp, Monitor() as monitor:
        rec = Recorder(device["name"], backend, environment.version(backend),
                       device_count=device.get("gpu_count") or 1,
                       host_cpu=f"{device['cpu_model']} ({device['cpu_cores']} cores)", grid=dataclasses.asdict(grid),
                       monitor=monitor)
        data = _datasets(grid, data_root, verify, datasets)
        for suite in SUITES:
            if suite not in grid.suites:
                continue
            log(f"suite {suite} ({backend})")
            if suite == "generate":
                generate.run(rec, grid, Path(tmp))
            elif suite == "load":
                naive = {}
                if grid.load_from_generator and backend == "tensorflow":
                    naive = {size: ensure_dataset(data_root, dataset_params(grid, size, codec=NAIVE_CODEC), verify)
                             for size in grid.sizes}
                    datasets.update({d.name: d for d in naive.values()})
                load.run(rec, grid, data, naive)
            elif suite == "au":
                au.run(rec, grid, data)
            elif suite == "train":
                train.run(rec, grid, data)
            else:
                acc_data = {(size, False): data[size] for size in grid.accuracy_grid_sizes()}
                if grid.accuracy_wrap:
                    for size in grid.accuracy_grid_sizes():
                        with rec.cell("accuracy", "dataset", ("accuracy",), size=size, variant=grid.variant + "+wrap"):
                            acc_data[(size, True)] = ensure_dataset(data_root, dataset_params(grid, size, wrap=True),
                                                                    verify)
                            datasets[acc_data[(size, True)].name] = acc_data[(size, True)]
                accuracy.run(rec, grid, acc_data)
    doc = {"format": FORMAT, "format_version": FORMAT_VERSION,
           "created": started.strftime("%Y-%m-%dT%H:%M:%SZ"), "wall_s": round(wall.seconds, 1),
           "environment": collect_environment(datasets, device, backend, static_facts()),
           "config": {"preset": preset, "backend": backend, "grid": dataclasses.asdict(grid),
                      "data_root": str(data_root),
                      "timing": "time.perf_counter around each materialized step or window; warm-up excluded"},
           "rows": rec.rows}
    return doc, write_result(doc, out, markdown_summary(doc))


def _argv(args, backend: str) -> list[str]:
    """The `bench` command line of `args`, for one backend."""
    argv = ["bench", *(f"--{flag.replace('_', '-')}" for flag in PRESET_FLAGS if getattr(args, flag, False)),
            "--backend", backend, "--out", str(args.out), "--data-root", str(args.data_root)]
    for option in ("suites", "sizes", "batch_sizes", "workers", "models", "precision", "devices"):
        value = getattr(args, option)
        if value is not None:
            argv += [f"--{option.replace('_', '-')}", ",".join(map(str, value))]
    if args.train_steps is not None:
        argv += ["--train-steps", str(args.train_steps)]
    if args.wrap is not None:
        argv.append("--wrap" if args.wrap else "--no-wrap")
    return argv + [flag for flag, on in (("--verify-data", args.verify_data), ("--json", args.json)) if on]


def _children(args, backends: tuple[str, ...]) -> int:
    """One fresh `bench --backend B` process per backend (Keras fixes its backend per process); the worst status."""
    status = 0
    for name in backends:
        status = max(status, subprocess.run([sys.executable, "-m", "pipeline", *_argv(args, name)]).returncode)
    return status


def headline(doc: dict, path: Path) -> str:
    """The run's headline (`pipeline.results.headline`), at most 30 lines, and the command that compares it."""
    from pipeline.results.files import merge
    from pipeline.results.fingerprint import fingerprint
    from pipeline.results.headline import headline_cells, headline_lines

    cells = headline_cells(merge([(path, doc)]), doc["environment"]["device"])
    lines = headline_lines(cells, f"headline: {fingerprint(doc).label}")[:28]
    return "\n".join([*lines, f"compare with the reference machines: python -m pipeline compare {path}"])


def run(args) -> int:
    from pipeline.runtime import backends

    preset, grid = grid_from_args(args)
    _check_writable(args.out, "--out")
    _check_writable(args.data_root, "--data-root")
    if args.backend:
        chosen = (args.backend,)
    elif preset == "gpu":
        chosen = backends.installed()
        if not chosen:
            raise UsageError(f"none of the backends {', '.join(BACKENDS)} is installed")
    else:
        chosen = ("tensorflow",)
    if len(chosen) > 1:
        return _children(args, chosen)
    backends.use(chosen[0])
    from pipeline.results.summary import markdown_summary

    real_stdout = sys.stdout
    with contextlib.redirect_stdout(sys.stderr if args.json else sys.stdout):
        doc, path = run_bench(grid, preset=preset, out=args.out, data_root=args.data_root, verify=args.verify_data,
                              backend=chosen[0])
        print(markdown_summary(doc))
        print(f"wrote {path} (+ .csv, .md); {len(doc['rows'])} rows, "
              f"{sum(1 for r in doc['rows'] if r['error'])} failed, {doc['wall_s']} s")
        print(headline(doc, path))
    if args.json:
        real_stdout.write(json.dumps(doc) + "\n")
        real_stdout.flush()
    return 0
