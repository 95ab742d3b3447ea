"""Micro-benchmark fixtures and the machine info pytest-benchmark saves with every run.

Run: `pytest bench/micro --benchmark-enable --benchmark-only --benchmark-json=FILE`
(`--benchmark-enable` overrides the `--benchmark-disable` that pyproject.toml sets for
the unit tests). Compare runs with `--benchmark-save=NAME` / `--benchmark-compare`.
MICRO_SIZE (default 50) and MICRO_BATCH (default 32) set the image and batch size.
"""
from __future__ import annotations

import os

import pytest

SIZE = int(os.environ.get("MICRO_SIZE", "50"))
BATCH = int(os.environ.get("MICRO_BATCH", "32"))


def pytest_benchmark_update_machine_info(config, machine_info):
    """Add the accelerator (GPU name, memory, driver, CUDA/cuDNN; or CPU model and cores) and versions."""
    from pipeline.runtime import devices, environment

    machine_info["device"] = devices.describe()
    machine_info["versions"] = environment.versions()
    machine_info["git"] = environment.git_info()
    machine_info["micro_size"] = SIZE
    machine_info["micro_batch"] = BATCH


@pytest.fixture(scope="session")
def micro_size() -> int:
    return SIZE


@pytest.fixture(scope="session")
def micro_batch() -> int:
    return BATCH


@pytest.fixture(scope="session")
def micro_dataset(tmp_path_factory):
    """A small dataset of SIZE-pixel sequences, two shards of 4 * BATCH samples, written once per test run."""
    from pipeline.dataset.generate import run_generation
    from pipeline.dataset.manifest import DatasetParams

    out = tmp_path_factory.mktemp("micro") / "data"
    params = DatasetParams(size=SIZE, samples=8 * BATCH, test_samples=BATCH, shard_size=4 * BATCH)
    run_generation(out, params, workers=1, progress=False)
    return out
