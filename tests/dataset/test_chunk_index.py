"""The chunk index as generation writes it: from the workers' entries, once per split, and on a rerun."""
from __future__ import annotations

import dataclasses
import shutil

import numpy as np

from helpers import cli
from pipeline.dataset import chunk_index
from pipeline.dataset.generate import run_generation
from pipeline.dataset.manifest import DatasetParams, load_manifest
from pipeline.dataset.shards import index_shard, write_shard

TINY = ["--size", 8, "--samples", 96, "--test-samples", 40, "--shard-size", 32, "--chunk", 8, "--seed", 7]


def test_a_workers_entry_is_the_one_read_back_from_its_shard(tmp_path, tiny_params):
    plan = tiny_params.plans()[1]
    record = write_shard(tmp_path, plan)
    again = index_shard(tmp_path / plan.name, plan)
    for field in dataclasses.fields(again):
        a, b = getattr(record.index, field.name), getattr(again, field.name)
        assert np.array_equal(a, b) if isinstance(a, np.ndarray) else a == b, field.name
    assert record.index.sha256 == record.sha256 and len(record.index.offset) == 4


def test_the_index_lists_the_manifests_shards(tiny_dataset):
    manifest = load_manifest(tiny_dataset)
    for split in ("train", "test"):
        index = chunk_index.load(tiny_dataset / chunk_index.index_name(split))
        rows = manifest.shards[split]
        assert [str(n) for n in index.shards] == [r["path"] for r in rows]
        assert [str(h) for h in index.sha256] == [r["sha256"] for r in rows]
        assert index.bytes.tolist() == [r["bytes"] for r in rows]
        assert len(index.labels) == manifest.params.split_samples(split)


def test_a_rerun_on_a_complete_dataset_writes_a_missing_index(tmp_path, tiny_dataset):
    out = tmp_path / "d"
    shutil.copytree(tiny_dataset, out)
    (out / "index-train.npz").unlink()
    r = cli("generate", "--out", out, *TINY, "--workers", 1, "--quiet")
    assert r.returncode == 0 and "nothing to do" in r.stdout, r.stderr
    assert chunk_index.load(out / "index-train.npz") is not None
    assert not list(out.glob("*.tmp-*"))


def test_a_train_only_dataset_has_a_train_index_only(tmp_path):
    out = tmp_path / "t"
    run_generation(out, DatasetParams(size=8, samples=40, test_samples=0, shard_size=20, chunk=8), workers=1,
                   progress=False)
    assert (out / "index-train.npz").is_file() and not (out / "index-test.npz").exists()
