"""SIGKILL the whole generator (client + local Dask workers) at random moments, rerun, compare bytes.

Three ways to pick the moment, 24 trials in all:

* `random`: a uniform delay over the generation phase of an uninterrupted run;
* `after-rename`: as soon as the k-th shard appears under its final name (the window between a
  worker's rename and the client's manifest update);
* `manifest`: inside the k-th manifest update (the manifest's own temporary file written, not yet
  renamed), using `held_generate.py`, which pauses just before that rename.

After each kill the directory is inspected (which windows the kill hit; every file under a final
name is a complete shard byte-identical to the reference; every hash the manifest records is the
reference's), then the same command is rerun and the result must verify and be byte-identical
(shard files and manifest hashes) to an uninterrupted run.
"""
from __future__ import annotations

import json
import os
import random
import time
from pathlib import Path

import pytest

from faultlib import bytes_lost, file_bytes
from helpers import HELD_GENERATE, PY, cli, kill_group, manifest_hashes, spawn, wait_for
from pipeline.dataset.generate import run_generation
from pipeline.dataset.manifest import DatasetParams, load_manifest
from pipeline.dataset.verify import find_problems

pytestmark = pytest.mark.faults

PARAMS = DatasetParams(size=16, samples=480, test_samples=40, shard_size=8, chunk=8, seed=3)
ARGS = ["--size", 16, "--samples", 480, "--test-samples", 40, "--shard-size", 8, "--chunk", 8, "--seed", 3,
        "--workers", 2, "--quiet"]
SEED = int(os.environ.get("FAULTS_SEED", "20261122"))
TRIALS = ([("random", i) for i in range(12)] + [("after-rename", i) for i in range(6)]
          + [("manifest", i) for i in range(6)])


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted CLI run, and how long its generation phase (manifest written -> exit) lasted."""
    out = tmp_path_factory.mktemp("kill") / "reference"
    proc = spawn([PY, "-m", "pipeline", "generate", "--out", out, *ARGS])
    wait_for(lambda: (out / "manifest.json").exists(), 120, "the manifest")
    started = time.monotonic()
    assert proc.wait(timeout=300) == 0
    return out, time.monotonic() - started


def windows_hit(directory: Path, reference_hashes: dict) -> list[str]:
    """Which windows of the write protocol the kill landed in, read off the directory it left."""
    names = {p.name for p in directory.iterdir()}
    hit = []
    if "manifest.json" not in names:
        return ["before-manifest"]
    if any(n.startswith("manifest.json.tmp-") for n in names):
        hit.append("manifest-update")
    if any(".h5.tmp-" in n for n in names):
        hit.append("mid-shard")
    recorded = {p for p, h in manifest_hashes(directory).items() if h}
    if any(n.endswith(".h5") and n not in recorded for n in names):
        hit.append("renamed-not-recorded")
    if json.loads((directory / "manifest.json").read_text())["complete"]:
        hit.append("after-complete")
    return hit or ["between-shards"]


@pytest.mark.parametrize("how,trial", TRIALS, ids=[f"{h}-{i}" for h, i in TRIALS])
def test_sigkill_then_rerun_is_byte_identical(how, trial, reference, dask_cluster, tmp_path, tally):
    ref_dir, gen_seconds = reference
    ref_files, ref_hashes = file_bytes(ref_dir), manifest_hashes(ref_dir)
    rng = random.Random(f"{SEED}-{how}-{trial}")
    out = tmp_path / "crashed"
    env = dict(os.environ)
    if how == "manifest":
        sentinels = tmp_path / "sentinels"
        sentinels.mkdir()
        env.update(FAULTS_SENTINEL_DIR=str(sentinels), FAULTS_MANIFEST_PAUSE="0.3")
        argv = [PY, HELD_GENERATE, "generate", "--out", out, *ARGS]
    else:
        argv = [PY, "-m", "pipeline", "generate", "--out", out, *ARGS]
    proc = spawn(argv, env=env, stdout=open(tmp_path / "gen.log", "w"), stderr=open(tmp_path / "gen.err", "w"))
    try:
        wait_for(lambda: (out / "manifest.json").exists(), 120, "the manifest")
        if how == "random":
            time.sleep(rng.uniform(0, gen_seconds))
        elif how == "after-rename":
            k = rng.randint(1, len(ref_files) - 1)
            wait_for(lambda: len(list(out.glob("*.h5"))) >= k, 120, f"{k} shards", interval=0.001)
        else:
            k = rng.randint(2, 20)  # save 1 is the plan, written before the cluster starts
            wait_for(lambda: (sentinels / f"manifest-{k}").exists(), 120, f"manifest update {k}", interval=0.005)
    finally:
        kill_group(proc)

    hit = windows_hit(out, ref_hashes)
    # Atomicity: whatever carries a final name is a complete shard, identical to the reference.
    torn = [p.name for p in out.glob("*.h5") if p.read_bytes() != ref_files[p.name]]
    doc = json.loads((out / "manifest.json").read_text())
    wrong = [e["path"] for s in doc["splits"].values() for e in s["shards"]
             if e["sha256"] and e["sha256"] != ref_hashes[e["path"]]]
    assert not torn and not wrong, (torn, wrong)
    if "after-complete" not in hit:
        assert not load_manifest(out).complete and find_problems(out), "an interrupted run must not verify"

    run_generation(out, PARAMS, workers=1, scheduler=dask_cluster.address, progress=False)
    lost = bytes_lost(ref_dir, out)
    leftovers = sorted(p.name for p in out.glob("*.tmp-*"))
    problems = find_problems(out)
    survived = lost == 0 and not leftovers and not problems and manifest_hashes(out) == ref_hashes
    for window in hit:
        tally(f"SIGKILL generator (window: {window})", survived, lost)
    tally("SIGKILL generator", survived, lost, how=how)
    assert survived, (lost, leftovers, problems)


def test_rerun_after_kill_through_the_cli_verifies(reference, tmp_path, tally):
    """One kill + rerun entirely through `python -m pipeline generate` and `verify` (no in-process shortcut)."""
    ref_dir, gen_seconds = reference
    out = tmp_path / "crashed"
    proc = spawn([PY, "-m", "pipeline", "generate", "--out", out, *ARGS])
    try:
        wait_for(lambda: len(list(out.glob("*.h5"))) >= 10, 120, "10 shards")
    finally:
        kill_group(proc)
    r = cli("generate", "--out", out, *ARGS)
    assert r.returncode == 0, r.stderr
    v = cli("verify", out, "--quiet", "--regenerate", 3, "--seed", 1)
    lost = bytes_lost(ref_dir, out)
    tally("SIGKILL generator", v.returncode == 0 and lost == 0, lost, how="cli-rerun")
    assert v.returncode == 0, v.stdout
    assert lost == 0
