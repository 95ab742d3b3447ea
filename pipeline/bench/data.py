"""The datasets the bench reads: generated once under `--data-root`, reused while complete.

A dataset is reused while its manifest is complete and holds exactly the parameters asked
for (and, with `verify`, every shard's SHA-256 matches); otherwise it is generated again.
"""
from __future__ import annotations

import contextlib
import io
from pathlib import Path

from pipeline.bench.progress import log
from pipeline.errors import DataError
from pipeline.runtime.cpus import usable_cpus

NAIVE_CODEC = "zstd-fast"  # the from_generator baseline reads the same sequences in h5py's fastest format


def dataset_params(grid, size: int, wrap: bool = False, codec: str | None = None):
    """The bench dataset's `DatasetParams` for one size of `grid`."""
    from pipeline.dataset.codecs import DEFAULT_CODEC
    from pipeline.dataset.manifest import DatasetParams

    return DatasetParams(size=size, variant=grid.variant, wrap=wrap, seed=0, samples=grid.dataset_samples,
                         test_samples=grid.dataset_test_samples,
                         shard_size=min(grid.dataset_shard_size, grid.dataset_samples), codec=codec or DEFAULT_CODEC)


def dataset_ready(directory: Path, params, verify: bool = False) -> bool:
    """True if `directory` holds a complete dataset with exactly `params` (and, with verify, matching hashes)."""
    from pipeline.dataset.manifest import load_manifest
    from pipeline.dataset.shards import sha256_of

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


def dataset_dir(root: Path, params) -> Path:
    return root / (f"bench-{params.variant}{'-wrap' if params.wrap else ''}-s{params.size}-n{params.samples}"
                   f"-t{params.test_samples}-{params.codec}")


def ensure_dataset(root: Path, params, verify: bool = False) -> Path:
    """The bench dataset for `params` under `root`: reused when ready, else (re)generated."""
    from pipeline.dataset.generate import run_generation

    directory = dataset_dir(root, params)
    if dataset_ready(directory, params, verify):
        log(f"reusing {directory}")
        return directory
    log(f"generating {directory}")
    with contextlib.redirect_stdout(io.StringIO()):
        run_generation(directory, params, workers=usable_cpus(), overwrite=True, progress=False)
    return directory


def read_split(directory: Path, split: str, limit: int | None = None):
    """(frames uint8 (n, T, S, S), labels uint8 (n,)) of a split in stored order, read with plain h5py."""
    import h5py
    import numpy as np

    from pipeline.dataset.manifest import load_manifest

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


def shard_paths(directory: Path, split: str = "train") -> list[Path]:
    from pipeline.dataset.manifest import load_manifest

    return [Path(directory) / e["path"] for e in load_manifest(Path(directory)).shards[split]]


def shuffle_window(directory: Path) -> int:
    """Samples our loader permutes together by default (its shuffle window), for sizing load windows."""
    from pipeline.input.reader import default_window
    from pipeline.input.source import open_dataset

    return int(default_window(open_dataset(directory, "train", check_hashes=False)))
