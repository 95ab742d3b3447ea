"""Corrupted datasets: `verify` names each bad file, and only those.

Randomized trials (flipped bytes at random offsets, truncation at random lengths, deleted shards,
shards swapped within and between datasets, hand-edited manifest hashes), beyond the fixed cases of
tests/test_verify.py. Each trial corrupts a fresh copy of the session's tiny dataset.
"""
from __future__ import annotations

import json
import os
import random
import shutil
import subprocess

import pytest

from faultlib import PY, ROOT
from pipeline.generate import run_generation
from pipeline.manifest import DatasetParams
from pipeline.verify import find_problems

pytestmark = pytest.mark.faults

SEED = int(os.environ.get("FAULTS_SEED", "20261122"))
SHARDS = ["train-00000.h5", "train-00001.h5", "train-00002.h5", "test-00000.h5", "test-00001.h5"]


@pytest.fixture(scope="module")
def other_dataset(tmp_path_factory):
    """Same shapes as tiny_dataset, another seed."""
    out = tmp_path_factory.mktemp("other") / "other"
    run_generation(out, DatasetParams(size=8, samples=96, test_samples=40, shard_size=32, chunk=8, seed=8),
                   workers=1, progress=False)
    return out


def named(problems: list[str], directory) -> set[str]:
    """The shard file names the problems start with."""
    return {p.split(":")[0].rsplit("/", 1)[-1] for p in problems if p.startswith(str(directory))}


def flip(path, rng):
    data = bytearray(path.read_bytes())
    offset = rng.randrange(len(data))
    data[offset] ^= rng.randrange(1, 256)
    path.write_bytes(bytes(data))


def truncate(path, rng):
    data = path.read_bytes()
    path.write_bytes(data[: rng.randrange(len(data))])


def run_trial(family, corrupt, tiny_dataset, tmp_path, rng, tally, via_cli=False):
    copy = tmp_path / f"copy-{rng.random()}"
    shutil.copytree(tiny_dataset, copy)
    bad = corrupt(copy, rng)
    if via_cli:
        r = subprocess.run([PY, "-m", "pipeline", "verify", str(copy), "--quiet"], cwd=ROOT, capture_output=True,
                           text=True, timeout=120)
        problems = [l for l in r.stdout.splitlines() if l.startswith(str(copy) + "/")]
        ok = r.returncode == 1 and "Traceback" not in r.stderr
    else:
        problems, ok = find_problems(copy), True
    got = named(problems, copy)
    survived = ok and got == bad
    tally(f"corruption: {family}", survived, 0, detected=bool(got))
    assert survived, (bad, problems)


@pytest.mark.parametrize("trial", range(12))
def test_flipped_bytes(trial, tiny_dataset, tmp_path, tally):
    rng = random.Random(f"{SEED}-flip-{trial}")

    def corrupt(copy, rng):
        victims = set(rng.sample(SHARDS, rng.randint(1, 3)))
        for name in victims:
            for _ in range(rng.randint(1, 4)):
                flip(copy / name, rng)
        return victims
    run_trial("flipped bytes", corrupt, tiny_dataset, tmp_path, rng, tally, via_cli=trial < 2)


@pytest.mark.parametrize("trial", range(8))
def test_truncated(trial, tiny_dataset, tmp_path, tally):
    rng = random.Random(f"{SEED}-trunc-{trial}")

    def corrupt(copy, rng):
        victims = set(rng.sample(SHARDS, rng.randint(1, 2)))
        for name in victims:
            truncate(copy / name, rng)
        return victims
    run_trial("truncation", corrupt, tiny_dataset, tmp_path, rng, tally, via_cli=trial < 2)


@pytest.mark.parametrize("trial", range(4))
def test_deleted(trial, tiny_dataset, tmp_path, tally):
    rng = random.Random(f"{SEED}-delete-{trial}")

    def corrupt(copy, rng):
        victims = set(rng.sample(SHARDS, rng.randint(1, 3)))
        for name in victims:
            (copy / name).unlink()
        return victims
    run_trial("deleted shard", corrupt, tiny_dataset, tmp_path, rng, tally, via_cli=trial < 1)


@pytest.mark.parametrize("trial", range(4))
def test_swapped_within_the_dataset(trial, tiny_dataset, tmp_path, tally):
    rng = random.Random(f"{SEED}-swap-{trial}")

    def corrupt(copy, rng):
        a, b = rng.sample(SHARDS[:3], 2)  # same shapes: only the hashes can tell
        (copy / a).rename(copy / "x")
        (copy / b).rename(copy / a)
        (copy / "x").rename(copy / b)
        return {a, b}
    run_trial("shards swapped within a dataset", corrupt, tiny_dataset, tmp_path, rng, tally)


@pytest.mark.parametrize("trial", range(4))
def test_swapped_in_from_another_dataset(trial, tiny_dataset, other_dataset, tmp_path, tally):
    rng = random.Random(f"{SEED}-foreign-{trial}")

    def corrupt(copy, rng):
        victims = set(rng.sample(SHARDS, rng.randint(1, 2)))
        for name in victims:
            shutil.copy(other_dataset / name, copy / name)
        return victims
    run_trial("shard from another dataset", corrupt, tiny_dataset, tmp_path, rng, tally, via_cli=trial < 1)


@pytest.mark.parametrize("trial", range(4))
def test_hand_edited_manifest_hash(trial, tiny_dataset, tmp_path, tally):
    rng = random.Random(f"{SEED}-hash-{trial}")

    def corrupt(copy, rng):
        doc = json.loads((copy / "manifest.json").read_text())
        entries = [e for s in doc["splits"].values() for e in s["shards"]]
        victims = rng.sample(entries, rng.randint(1, 2))
        for e in victims:
            e["sha256"] = "%064x" % rng.getrandbits(256)
        (copy / "manifest.json").write_text(json.dumps(doc, indent=1))
        return {e["path"] for e in victims}
    run_trial("hand-edited manifest hash", corrupt, tiny_dataset, tmp_path, rng, tally)


def test_temporary_file_is_never_taken_for_a_shard(tiny_dataset, tmp_path, tally):
    """A complete-looking temporary file next to a missing shard: verify reports both, neither is accepted."""
    copy = tmp_path / "copy"
    shutil.copytree(tiny_dataset, copy)
    (copy / "train-00001.h5").rename(copy / "train-00001.h5.tmp-12345")
    problems = find_problems(copy)
    got = named(problems, copy)
    survived = got == {"train-00001.h5", "train-00001.h5.tmp-12345"}
    tally("corruption: temporary file beside a missing shard", survived, 0)
    assert survived, problems


@pytest.mark.parametrize("key,value", [("seed", 99), ("variant", "dot"), ("wrap", True)])
def test_edited_generation_parameters_are_reported(key, value, tiny_dataset, tmp_path, tally):
    copy = tmp_path / "copy"
    shutil.copytree(tiny_dataset, copy)
    doc = json.loads((copy / "manifest.json").read_text())
    doc["params"][key] = value
    (copy / "manifest.json").write_text(json.dumps(doc, indent=1))
    problems = find_problems(copy)
    tally("corruption: edited manifest parameters", bool(problems), 0)
    assert problems
