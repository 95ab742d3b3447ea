"""Shared fixtures: tiny datasets generated once per test run by the real generator."""
from __future__ import annotations

import pytest

from pipeline.dataset.generate import run_generation
from pipeline.dataset.manifest import DatasetParams


@pytest.fixture(scope="session")
def tiny_params() -> DatasetParams:
    return DatasetParams(size=8, samples=96, test_samples=40, shard_size=32, chunk=8, seed=7)


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory, tiny_params):
    """A complete size-8 dataset written by a local Dask cluster of 2 worker processes (do not modify)."""
    out = tmp_path_factory.mktemp("data") / "tiny"
    run_generation(out, tiny_params, workers=2, progress=False)
    return out
