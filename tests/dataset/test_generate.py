"""`generate` end to end: real Dask clusters, real files, the real command line."""
import os

import h5py
import numpy as np
import pytest

from helpers import cli, file_hashes, held_generator, kill_group, wait_for
from helpers import manifest_hashes as hashes
from pipeline.dataset.generate import DEFAULT_DASHBOARD, LOCAL_DASK_CONFIG, WORKER_MALLOC, local_cluster, run_generation
from pipeline.dataset.manifest import DatasetParams, load_manifest
from pipeline.dataset.shards import read_sequences
from pipeline.dataset.synth import SequenceSpec, generate
from pipeline.dataset.verify import find_problems

TINY = ["--size", 8, "--samples", 96, "--test-samples", 40, "--shard-size", 32, "--chunk", 8, "--seed", 7]


def test_manifest_records_every_shard(tiny_dataset, tiny_params):
    m = load_manifest(tiny_dataset)
    assert m.complete and m.params == tiny_params
    assert [e["samples"] for e in m.shards["train"]] == [32, 32, 32]
    assert [e["samples"] for e in m.shards["test"]] == [32, 8]
    for split in ("train", "test"):
        for e in m.shards[split]:
            assert len(e["sha256"]) == 64 and (tiny_dataset / e["path"]).stat().st_size == e["bytes"]


def test_shards_readable_by_plain_h5py(tiny_dataset):
    import hdf5plugin  # noqa: F401  (the Zstd filter)

    with h5py.File(tiny_dataset / "train-00001.h5", "r") as f:
        assert f["frames"].dtype == np.uint8 and f["frames"].shape == (32, 8, 8, 8)
        assert f["frames"].chunks == (8, 8, 8, 8)
        assert f["labels"].dtype == np.uint8 and f["rows"].dtype == np.int16
        assert f.attrs["size"] == 8 and f.attrs["split"] == "train" and f.attrs["first_sample"] == 32
        frames, rows, cols = f["frames"][:], f["rows"][:], f["cols"][:]
    assert set(np.unique(frames)) == {0, 1}
    assert (frames.reshape(32, 8, -1).sum(-1) == np.arange(1, 9)).all()
    n, t = np.nonzero(np.ones((32, 8), bool))
    assert (frames[n, t, rows[n, t], cols[n, t]] == 1).all()


def test_splits_use_different_streams(tiny_dataset):
    train = read_sequences(tiny_dataset / "train-00000.h5")
    test = read_sequences(tiny_dataset / "test-00000.h5")
    assert not np.array_equal(train["rows"], test["rows"])


def test_bytes_do_not_depend_on_worker_count(tmp_path, tiny_dataset, tiny_params):
    run_generation(tmp_path / "one", tiny_params, workers=1, progress=False)
    assert hashes(tmp_path / "one") == hashes(tiny_dataset)  # tiny_dataset used 2 workers


def test_shard_content_matches_the_generator(tiny_dataset, tiny_params):
    """Shard k of a split is exactly generate() on the rng of (seed, split, k)."""
    plan = tiny_params.plans()[1]
    expected = generate(plan.rng(), plan.samples, SequenceSpec(tiny_params.size))
    got = read_sequences(tiny_dataset / plan.name)
    assert np.array_equal(got["frames"], expected.frames) and np.array_equal(got["labels"], expected.labels)


def test_rerun_is_a_no_op_and_other_params_are_refused(tmp_path, tiny_params):
    out = tmp_path / "d"
    run_generation(out, tiny_params, workers=1, progress=False)
    before = (out / "manifest.json").read_bytes()
    r = cli("generate", "--out", out, *TINY, "--workers", 1, "--quiet")
    assert r.returncode == 0 and "nothing to do" in r.stdout
    r = cli("generate", "--out", out, *TINY[:1], 9, *TINY[2:], "--workers", 1, "--quiet")
    assert r.returncode == 2 and "--overwrite" in r.stderr and "size 8 vs 9" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert (out / "manifest.json").read_bytes() == before
    r = cli("generate", "--out", out, "--size", 9, "--samples", 64, "--test-samples", 16, "--shard-size", 32,
            "--workers", 1, "--quiet", "--overwrite")
    assert r.returncode == 0, r.stderr
    assert load_manifest(out).params.size == 9 and sorted(p.name for p in out.glob("*.h5")) == [
        "test-00000.h5", "train-00000.h5", "train-00001.h5"]


def test_overwrite_deletes_only_the_datasets_own_files(tmp_path, tiny_params):
    """--overwrite replaces the old dataset's shards, manifest and temporary files; the user's files stay,
    `*.h5` or not, even ones that look like a leftover."""
    out = tmp_path / "d"
    run_generation(out, tiny_params, workers=1, progress=False)
    mine = {"notes.h5": b"the user's own HDF5 file", "train-00000.h5.bak": b"a backup",
            "results.tmp-1": b"not a writer's", "test-1.h5": b"close to a shard name, not one"}
    for name, data in mine.items():
        (out / name).write_bytes(data)
    (out / "train-00002.h5.tmp-4242").write_bytes(b"a crashed writer's")
    r = cli("generate", "--out", out, "--size", 9, "--samples", 64, "--test-samples", 16, "--shard-size", 32,
            "--workers", 1, "--quiet", "--overwrite")
    assert r.returncode == 0, r.stderr
    left = {p.name for p in out.iterdir()}
    assert left == {*mine, "manifest.json", ".lock", "train-00000.h5", "train-00001.h5", "test-00000.h5",
                    "index-train.npz", "index-test.npz"}
    assert all((out / name).read_bytes() == data for name, data in mine.items())
    assert not find_problems(out)


def test_overwrite_of_an_unreadable_manifest_keeps_the_users_files(tmp_path, tiny_params):
    out = tmp_path / "d"
    run_generation(out, tiny_params, workers=1, progress=False)
    (out / "notes.h5").write_bytes(b"mine")
    (out / "manifest.json").write_text((out / "manifest.json").read_text().replace('"format_version"', '"fv"'))
    r = cli("generate", "--out", out, *TINY, "--workers", 1, "--quiet")
    assert r.returncode == 2 and "unreadable manifest" in r.stderr
    r = cli("generate", "--out", out, *TINY[:1], 9, *TINY[2:3], 64, *TINY[4:], "--workers", 1, "--quiet", "--overwrite")
    assert r.returncode == 0, r.stderr
    assert (out / "notes.h5").read_bytes() == b"mine" and not find_problems(out)
    # train-00002.h5 is gone: the unreadable manifest still named it
    assert sorted(p.name for p in out.glob("*.h5")) == [
        "notes.h5", "test-00000.h5", "test-00001.h5", "train-00000.h5", "train-00001.h5"]


def test_zero_test_samples_gives_a_train_only_dataset(tmp_path):
    out = tmp_path / "train-only"
    r = cli("generate", "--out", out, *TINY[:4], "--test-samples", 0, *TINY[6:], "--workers", 1, "--quiet")
    assert r.returncode == 0, r.stderr
    m = load_manifest(out)
    assert m.complete and m.params.test_samples == 0 and m.shards["test"] == []
    assert [e["samples"] for e in m.shards["train"]] == [32, 32, 32]
    assert sorted(p.name for p in out.glob("*.h5")) == ["train-00000.h5", "train-00001.h5", "train-00002.h5"]
    v = cli("verify", out, "--regenerate", 2, "--seed", 0)
    assert v.returncode == 0 and "OK (3 shards, 96 sequences, 2 regenerated byte-identical)" in v.stdout, v.stdout
    s = cli("show", out, "--split", "test", "--out", tmp_path / "seq.png")
    assert s.returncode == 2 and "test split" in s.stderr and "empty" in s.stderr
    assert cli("show", out, "--index", 95, "--out", tmp_path / "seq.png").returncode == 0


def _listening_hosts(port: int) -> set[str]:
    import psutil

    return {c.laddr.ip for c in psutil.Process().net_connections("inet")
            if c.status == psutil.CONN_LISTEN and c.laddr.port == port}


def test_local_dashboard_listens_on_loopback_only():
    """The local cluster's scheduler and dashboard run in this process; neither listens beyond loopback."""
    from urllib.parse import urlparse

    assert DEFAULT_DASHBOARD.startswith("127.0.0.1:")
    with local_cluster(1) as cluster:
        dashboard = urlparse(cluster.dashboard_link).port
        scheduler = int(cluster.scheduler_address.rsplit(":", 1)[1])
        assert _listening_hosts(dashboard) == {"127.0.0.1"}
        assert _listening_hosts(scheduler) == {"127.0.0.1"}


@pytest.mark.parametrize("address", ["8787", "localhost:port", "127.0.0.1:70000", ""])
def test_bad_dashboard_address_is_refused(tmp_path, address):
    out = tmp_path / "never"
    r = cli("generate", "--out", out, "--samples", 10, "--shard-size", 10, "--quiet", "--dashboard-address", address)
    assert r.returncode == 2 and "--dashboard-address" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not out.exists()


@pytest.mark.parametrize("args,message", [
    (["--size", "1"], "size"),
    (["--size", "100000"], "size"),
    (["--samples", "0"], "samples"),
    (["--test-samples", "-3"], "test-samples"),
    (["--test-samples", "1000000001"], "test-samples"),
    (["--shard-size", "50000"], "shard-size"),
    (["--variant", "circle"], "variant"),
    (["--codec", "rar"], "codec"),
    (["--workers", "0"], "workers"),
    (["--samples", "ten"], "invalid int"),
])
def test_bad_input_one_line_exit_2_nothing_written(tmp_path, args, message):
    out = tmp_path / "never"
    r = cli("generate", "--out", out, "--samples", 100, "--shard-size", 50, "--quiet", *args)
    assert r.returncode == 2
    assert message in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not out.exists()


def test_output_path_that_is_a_file_is_refused(tmp_path):
    target = tmp_path / "file"
    target.write_text("x")
    r = cli("generate", "--out", target, "--samples", 10, "--shard-size", 10, "--quiet")
    assert r.returncode == 2 and "not a directory" in r.stderr and target.read_text() == "x"


def test_second_generator_on_the_same_directory_is_refused(tmp_path):
    import fcntl

    out = tmp_path / "locked"
    out.mkdir()
    with open(out / ".lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        held.write("4242\n")
        held.flush()
        r = cli("generate", "--out", out, "--samples", 10, "--shard-size", 10, "--quiet")
    assert r.returncode == 2 and "another generator (pid 4242)" in r.stderr
    assert not (out / "manifest.json").exists()


@pytest.mark.slow
def test_kill_9_mid_run_then_rerun_gives_identical_dataset(tmp_path):
    """SIGKILL the generator (client and workers) while it is held inside its 5th manifest update, so that
    it is certainly mid-run; the same command then finishes a byte-identical dataset."""
    args = ["--size", 40, "--samples", 6000, "--test-samples", 400, "--shard-size", 200, "--workers", 2, "--quiet"]
    clean, crashed = tmp_path / "clean", tmp_path / "crashed"
    assert cli("generate", "--out", clean, *args).returncode == 0
    proc, held, _release = held_generator(crashed, args, 5, tmp_path)
    try:
        wait_for(held.exists, 120, "the generator's 5th manifest update")
    finally:
        kill_group(proc)
    assert not load_manifest(crashed).complete
    r = cli("generate", "--out", crashed, *args)
    assert r.returncode == 0, r.stderr
    assert hashes(crashed) == hashes(clean) and file_hashes(crashed) == file_hashes(clean)
    assert not list(crashed.glob("*.tmp-*"))
    assert cli("verify", crashed, "--quiet").returncode == 0


def test_many_shards_per_worker_are_byte_identical_across_runs(tmp_path):
    """Each worker writes dozens of shards here: their bytes must not depend on the worker's history.
    (Small datasets placed in a process-dependent order showed up only intermittently, under the faults
    suite's SIGKILL trials; this stays a plain determinism check.)"""
    params = DatasetParams(size=16, samples=480, test_samples=40, shard_size=8, chunk=8, seed=3)
    run_generation(tmp_path / "two", params, workers=2, progress=False)
    run_generation(tmp_path / "one", params, workers=1, progress=False)
    assert hashes(tmp_path / "one") == hashes(tmp_path / "two")


def _worker_settings():
    import dask

    return {"malloc": {k: os.environ.get(k) for k in WORKER_MALLOC},
            "dask": {k: dask.config.get(k) for k in LOCAL_DASK_CONFIG}}


def test_local_workers_start_with_the_malloc_and_dask_settings():
    """Both are speedups: a worker that silently lost them would only be slower, so nothing else would notice."""
    from dask.distributed import Client

    before = dict(os.environ)
    with local_cluster(2) as cluster, Client(cluster) as client:
        found = client.run(_worker_settings)
    assert len(found) == 2
    for settings in found.values():
        assert settings == {"malloc": WORKER_MALLOC, "dask": LOCAL_DASK_CONFIG}
    # the nanny sets them in this process's environment to spawn the workers: put back afterwards, or every
    # process started from here later would run with the workers' allocator and thread settings
    assert dict(os.environ) == before
