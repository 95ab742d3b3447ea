"""Corrupted datasets: `verify` names each bad file, and only those.

Randomized trials, one table of corruptions (flipped bytes at random offsets, truncation at random
lengths, deleted shards, shards swapped within and between datasets, hand-edited manifest hashes),
beyond the fixed cases of tests/dataset/test_verify.py. Each trial corrupts a fresh copy of the shared tiny
dataset (tests/conftest.py).
"""
from __future__ import annotations

import json
import os
import random
import shutil

import pytest

from helpers import cli
from pipeline.dataset.generate import run_generation
from pipeline.dataset.manifest import DatasetParams
from pipeline.dataset.verify import find_problems

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


# Each corruption takes (copy, rng, other dataset) and returns the file names `verify` must report.

def flip_bytes(copy, rng, other):
    victims = set(rng.sample(SHARDS, rng.randint(1, 3)))
    for name in victims:
        for _ in range(rng.randint(1, 4)):
            flip(copy / name, rng)
    return victims


def truncate_shards(copy, rng, other):
    victims = set(rng.sample(SHARDS, rng.randint(1, 2)))
    for name in victims:
        truncate(copy / name, rng)
    return victims


def delete_shards(copy, rng, other):
    victims = set(rng.sample(SHARDS, rng.randint(1, 3)))
    for name in victims:
        (copy / name).unlink()
    return victims


def swap_within(copy, rng, other):
    a, b = rng.sample(SHARDS[:3], 2)  # same shapes: only the hashes (and first_sample) can tell
    (copy / a).rename(copy / "x")
    (copy / b).rename(copy / a)
    (copy / "x").rename(copy / b)
    return {a, b}


def swap_in_foreign(copy, rng, other):
    victims = set(rng.sample(SHARDS, rng.randint(1, 2)))
    for name in victims:
        shutil.copy(other / name, copy / name)
    return victims


def edit_manifest_hash(copy, rng, other):
    doc = json.loads((copy / "manifest.json").read_text())
    entries = [e for s in doc["splits"].values() for e in s["shards"]]
    victims = rng.sample(entries, rng.randint(1, 2))
    for e in victims:
        e["sha256"] = f"{rng.getrandbits(256):064x}"
    (copy / "manifest.json").write_text(json.dumps(doc, indent=1))
    return {e["path"] for e in victims}


# family (as tallied), tag (seeds the trial's RNG, names it), corruption, trials, how many of them
# run through the command line (the rest call find_problems)
CORRUPTIONS = [
    ("flipped bytes", "flip", flip_bytes, 12, 2),
    ("truncation", "trunc", truncate_shards, 8, 2),
    ("deleted shard", "delete", delete_shards, 4, 1),
    ("shards swapped within a dataset", "swap", swap_within, 4, 0),
    ("shard from another dataset", "foreign", swap_in_foreign, 4, 1),
    ("hand-edited manifest hash", "hash", edit_manifest_hash, 4, 0),
]
TRIALS = [(family, f"{tag}-{trial}", corrupt, trial < via_cli)
          for family, tag, corrupt, trials, via_cli in CORRUPTIONS for trial in range(trials)]


@pytest.mark.parametrize("family,name,corrupt,via_cli", TRIALS, ids=[t[1] for t in TRIALS])
def test_verify_names_exactly_the_corrupted_files(family, name, corrupt, via_cli, tiny_dataset, other_dataset,
                                                  tmp_path, tally):
    rng = random.Random(f"{SEED}-{name}")
    copy = tmp_path / "copy"
    shutil.copytree(tiny_dataset, copy)
    bad = corrupt(copy, rng, other_dataset)
    if via_cli:
        r = cli("verify", copy, "--quiet", timeout=120)
        problems = [line for line in r.stdout.splitlines() if line.startswith(str(copy) + "/")]
        ok = r.returncode == 1 and "Traceback" not in r.stderr
    else:
        problems, ok = find_problems(copy), True
    got = named(problems, copy)
    survived = ok and got == bad
    tally(f"corruption: {family}", survived, 0, detected=bool(got))
    assert survived, (bad, problems)


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
def test_edited_generation_parameters_are_reported(key, value, tiny_dataset, tiny_params, tmp_path, tally):
    """Every shard's attributes contradict the edited parameter: each shard is named, for that attribute."""
    copy = tmp_path / "copy"
    shutil.copytree(tiny_dataset, copy)
    doc = json.loads((copy / "manifest.json").read_text())
    doc["params"][key] = value
    (copy / "manifest.json").write_text(json.dumps(doc, indent=1))
    problems = find_problems(copy)
    expected = sorted(f"{copy / name}: attribute {key} is {getattr(tiny_params, key)!r}, "
                      f"the manifest's parameters say {value!r}" for name in SHARDS)
    survived = sorted(problems) == expected
    tally("corruption: edited manifest parameters", survived, 0)
    assert survived, problems
