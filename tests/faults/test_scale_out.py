"""Generation on a Dask cluster started as separate processes: same bytes, a worker killed mid-shard, two generators."""
from __future__ import annotations

import pytest

from faultlib import bytes_lost, file_bytes, free_port, shard_difference
from helpers import PY, cli, held_generator, kill_group, manifest_hashes, spawn, wait_for
from pipeline.dataset.generate import run_generation
from pipeline.dataset.manifest import DatasetParams
from pipeline.dataset.verify import find_problems

pytestmark = pytest.mark.faults

SMALL = ["--size", 16, "--samples", 480, "--test-samples", 40, "--shard-size", 8, "--chunk", 8, "--seed", 3, "--quiet"]
# Shards big enough to take a worker a noticeable while to write, so that one can be caught mid-shard.
BIG_PARAMS = DatasetParams(size=48, samples=2400, test_samples=200, shard_size=200, chunk=25, seed=11)
BIG = ["--size", 48, "--samples", 2400, "--test-samples", 200, "--shard-size", 200, "--chunk", 25, "--seed", 11,
       "--quiet"]


@pytest.fixture(scope="module")
def big_reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("big") / "reference"
    run_generation(out, BIG_PARAMS, workers=2, progress=False)
    return out


def test_dask_cluster_gives_the_same_bytes_as_a_local_run(dask_cluster, tmp_path, tally):
    local, remote = tmp_path / "local", tmp_path / "remote"
    assert cli("generate", "--out", local, *SMALL, "--workers", 2).returncode == 0
    r = cli("generate", "--out", remote, *SMALL, "--scheduler", dask_cluster.address)
    assert r.returncode == 0, r.stderr
    assert dask_cluster.address in r.stdout
    v = cli("verify", remote, "--quiet")
    lost = bytes_lost(local, remote)
    tally("scale-out: Dask cluster vs local (same bytes)", lost == 0 and v.returncode == 0, lost)
    # each assertion names what differs, so that a failure says which of them it was
    ours, theirs = file_bytes(local), file_bytes(remote)
    assert sorted(theirs) == sorted(ours), ("shards missing or extra", sorted(set(ours) ^ set(theirs)))
    assert lost == 0, ("shards whose bytes or recorded hash differ",
                       [shard_difference(local / n, remote / n) for n in ours if theirs[n] != ours[n]],
                       {n: h for n, h in manifest_hashes(remote).items() if h != manifest_hashes(local)[n]})
    assert (remote / "manifest.json").read_text() == (local / "manifest.json").read_text()
    assert v.returncode == 0, v.stdout + v.stderr


def test_a_shard_difference_names_the_chunk_or_the_metadata(tmp_path):
    """What the comparison above reports when bytes differ: the chunk whose encoding differs, else HDF5's metadata."""
    import shutil
    import zlib

    import h5py
    import numpy as np

    from pipeline.dataset.shards import write_shard

    plan = DatasetParams(size=16, samples=32, test_samples=0, shard_size=32, chunk=8, seed=3).plans()[0]
    shard = tmp_path / plan.name
    write_shard(tmp_path, plan)
    reencoded, edited = tmp_path / "reencoded.h5", tmp_path / "edited.h5"
    shutil.copy(shard, reencoded)
    shutil.copy(shard, edited)
    with h5py.File(reencoded, "r+") as f:  # the same frames, deflated at another level: another length
        _, stored = f["frames"].id.read_direct_chunk((8, 0, 0, 0))
        f["frames"].id.write_direct_chunk((8, 0, 0, 0), zlib.compress(zlib.decompress(stored), 9))
    with h5py.File(edited, "r+") as f:
        f.attrs["seed"] = np.int64(4)
    assert "frames chunk 1 (" in shard_difference(shard, reencoded)
    assert "every chunk the same" in shard_difference(shard, edited) and "metadata differs from byte" in \
        shard_difference(shard, edited)


@pytest.mark.parametrize("trial", range(2))
def test_worker_killed_mid_shard_is_redone(trial, fresh_dask_cluster, big_reference, tmp_path, tally):
    cluster = fresh_dask_cluster
    victim = cluster.workers[trial % 2]
    out = tmp_path / "d"
    gen = spawn([PY, "-m", "pipeline", "generate", "--out", out, *BIG, "--scheduler", cluster.address],
                stdout=open(tmp_path / "gen.log", "w"), stderr=open(tmp_path / "gen.err", "w"))
    try:
        # Wait until the victim has a shard open under its temporary name (its pid is in the name), then kill it.
        wait_for(lambda: list(out.glob(f"*.h5.tmp-{victim.pid}")) if out.exists() else None, 120,
                 "the victim worker to start a shard", interval=0.005)
        kill_group(victim)
        code = gen.wait(timeout=300)
    finally:
        kill_group(gen)
    problems = find_problems(out) if (out / "manifest.json").exists() else ["no manifest"]
    leftovers = sorted(p.name for p in out.glob("*.tmp-*"))
    lost = bytes_lost(big_reference, out)
    survived = code == 0 and not problems and lost == 0
    tally("Dask worker SIGKILLed mid-shard", survived, lost, leftover_tmp=bool(leftovers))
    assert code == 0, (tmp_path / "gen.err").read_text()[-2000:]
    assert lost == 0
    assert not problems, problems


# (manifest update the first generator is held in, whether the second asks for other parameters):
# update 1 is the plan, saved before the first generator's cluster starts; later ones record shards.
SECOND_GENERATOR = [(1, False), (3, False), (2, True)]


@pytest.mark.parametrize("hold_at,other_params", SECOND_GENERATOR)
def test_second_generator_on_the_same_directory_is_refused(hold_at, other_params, tmp_path, big_reference, tally):
    """The first generator is held inside a manifest update (it holds DIR/.lock) while the second runs, then
    released: the second is refused in one line, the first finishes a sound, byte-identical dataset."""
    out = tmp_path / "d"
    first, held, release = held_generator(out, [*BIG, "--workers", 2], hold_at, tmp_path)
    try:
        wait_for(held.exists, 120, f"the first generator to reach manifest update {hold_at}")
        args = [*BIG[:1], 47, *BIG[2:]] if other_params else BIG
        second = cli("generate", "--out", out, *args, "--workers", 1)
        still_running = first.poll() is None
        release.touch()
        code = first.wait(timeout=300)
    finally:
        kill_group(first)
    lines = second.stderr.strip().splitlines()
    refused = second.returncode == 2 and len(lines) == 1 and "another generator" in lines[0]
    problems = find_problems(out)
    lost = bytes_lost(big_reference, out)
    tally("two generators on one directory", refused and code == 0 and not problems and lost == 0, lost)
    assert still_running, "the held generator exited before it was released"
    assert refused, second.stderr
    assert code == 0 and not problems and lost == 0, ((tmp_path / "held.err").read_text()[-2000:], problems)


@pytest.mark.parametrize("address", ["tcp://127.0.0.1:{port}", "not-an-address"])
def test_unreachable_scheduler_is_a_one_line_error_and_nothing_is_written(address, tmp_path, tally):
    out = tmp_path / "never"
    r = cli("generate", "--out", out, *SMALL, "--scheduler", address.format(port=free_port()), timeout=120)
    lines = r.stderr.strip().splitlines()
    ok = r.returncode == 2 and len(lines) == 1 and "scheduler" in lines[0] and not out.exists()
    tally("malformed input: unreachable --scheduler", ok, 0)
    assert ok, (r.returncode, r.stderr[-2000:], out.exists() and sorted(p.name for p in out.iterdir()))


def test_two_clients_on_one_scheduler_write_shards_of_the_same_names(dask_cluster, tmp_path, tally):
    """Two generators on one shared scheduler at once, from one process (so one PID, as two containers
    may have), writing datasets whose shards have the same names: each gets its own shards."""
    import threading

    params = [DatasetParams(size=16, samples=480, test_samples=40, shard_size=8, chunk=8, seed=seed)
              for seed in (21, 22)]
    local = [tmp_path / f"local-{i}" for i in range(2)]
    for out, p in zip(local, params):
        run_generation(out, p, workers=1, progress=False)
    remote = [tmp_path / f"remote-{i}" for i in range(2)]
    errors = []

    def generate(out, p):
        try:
            run_generation(out, p, workers=1, scheduler=dask_cluster.address, progress=False)
        except Exception as e:  # reported below, with the other thread's outcome
            errors.append(f"{out.name}: {type(e).__name__}: {e}")

    threads = [threading.Thread(target=generate, args=pair) for pair in zip(remote, params)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    lost = sum(bytes_lost(a, b) for a, b in zip(local, remote))
    problems = [p for out in remote if (out / "manifest.json").exists() for p in find_problems(out)]
    ok = not errors and not problems and lost == 0
    tally("scale-out: two clients, one scheduler, the same shard names", ok, lost)
    assert not errors, errors
    assert not problems and lost == 0, problems
