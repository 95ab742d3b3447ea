"""The loader never trains on bad data, and reads every sample exactly once under tf.data service with two workers.

Randomized damage (tests/input/test_loader.py has the fixed cases): before `open_dataset` it must refuse with a
DataError naming the damaged file; after open (the file changes under a running job) reading must fail
naming the shard, or else every sample it yields is byte-identical to the reference. A short `model.fit`
on a damaged dataset must fail rather than train.
"""
from __future__ import annotations

import collections
import hashlib
import json
import os
import random
import shutil

import h5py
import numpy as np
import pytest

pytestmark = pytest.mark.faults

tf = pytest.importorskip("tensorflow")
from pipeline.dataset.generate import run_generation  # noqa: E402
from pipeline.dataset.manifest import DatasetParams, load_manifest  # noqa: E402
from pipeline.dataset.shards import read_sequences  # noqa: E402
from pipeline.errors import DataError  # noqa: E402
from pipeline.input import loader  # noqa: E402
from pipeline.input.source import open_dataset  # noqa: E402

SEED = int(os.environ.get("FAULTS_SEED", "20261122"))
SIZE = 10
CODECS = ("gzip", "zstd-fast")
# every way chunks are decoded: ISA-L in tf.data threads, TF ops only, h5py worker processes
READS = (("gzip", "isal"), ("gzip", "graph"), ("zstd-fast", "process"))
DAMAGE = ("flip-chunk", "flip-anywhere", "truncate", "delete", "foreign", "swap", "edit-hash", "incomplete")


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    root = tmp_path_factory.mktemp("loader-faults")
    out = {}
    for codec in CODECS:
        for seed in (3, 4):
            params = DatasetParams(size=SIZE, samples=120, test_samples=24, shard_size=40, chunk=8, seed=seed,
                                   codec=codec)
            out[codec, seed] = root / f"{codec}-{seed}"
            run_generation(out[codec, seed], params, workers=1, progress=False)
    return out


def sample_keys(frames, labels) -> collections.Counter:
    return collections.Counter(hashlib.sha1(f.tobytes()).hexdigest() + str(int(label))
                               for f, label in zip(frames, labels))


def reference_keys(directory, split="train") -> collections.Counter:
    parts = [read_sequences(directory / e["path"]) for e in load_manifest(directory).shards[split]]
    return sample_keys(np.concatenate([p["frames"] for p in parts]), np.concatenate([p["labels"] for p in parts]))


def damage(d, other, kind, rng) -> str:
    """Damage dataset `d` in place; return the name of the file an error must name."""
    name = rng.choice(["train-00000.h5", "train-00001.h5", "train-00002.h5"])
    path = d / name
    if kind in ("flip-chunk", "flip-anywhere"):
        data = bytearray(path.read_bytes())
        if kind == "flip-chunk":
            with h5py.File(path, "r") as f:
                info = f["frames"].id.get_chunk_info(rng.randrange(f["frames"].id.get_num_chunks()))
            offset = info.byte_offset + rng.randrange(info.size)
        else:
            offset = rng.randrange(len(data))
        data[offset] ^= rng.randrange(1, 256)
        path.write_bytes(bytes(data))
    elif kind == "truncate":
        data = path.read_bytes()
        path.write_bytes(data[: rng.randrange(len(data))])
    elif kind == "delete":
        path.unlink()
    elif kind == "foreign":
        shutil.copy(other / name, path)
    elif kind == "swap":
        names = ["train-00000.h5", "train-00001.h5"]
        (d / names[0]).rename(d / "x")
        (d / names[1]).rename(d / names[0])
        (d / "x").rename(d / names[1])
        return names[0]
    elif kind == "edit-hash":
        doc = json.loads((d / "manifest.json").read_text())
        entry = next(e for e in doc["splits"]["train"]["shards"] if e["path"] == name)
        entry["sha256"] = f"{rng.getrandbits(256):064x}"
        (d / "manifest.json").write_text(json.dumps(doc))
    elif kind == "incomplete":
        doc = json.loads((d / "manifest.json").read_text())
        doc["complete"] = False
        (d / "manifest.json").write_text(json.dumps(doc))
        return "manifest.json"
    return name


TRIALS = ([(codec, "-", kind, "before-open") for codec in CODECS for kind in DAMAGE]  # open_dataset: no mechanism yet
          + [(codec, mechanism, kind, "after-open") for codec, mechanism in READS for kind in DAMAGE
             if kind not in ("edit-hash", "incomplete")])  # the manifest is read at open only


@pytest.mark.parametrize("codec,mechanism,kind,when", TRIALS, ids=["-".join(t) for t in TRIALS])
def test_loader_refuses_or_names_the_damaged_shard(codec, mechanism, kind, when, datasets, tmp_path, tally):
    rng = random.Random(f"{SEED}-{codec}-{kind}-{when}")
    d = tmp_path / "d"
    shutil.copytree(datasets[codec, 3], d)
    expected = reference_keys(datasets[codec, 3])
    family = f"loader: damage {when.replace('-', ' ')}"
    if when == "before-open":
        bad = damage(d, datasets[codec, 4], kind, rng)
        with pytest.raises(DataError) as err:
            open_dataset(d, "train")
        survived = bad in str(err.value) and len(str(err.value).splitlines()) == 1
        tally(family, survived, 0, outcome="refused at open")
        assert survived, str(err.value)
        return
    src = open_dataset(d, "train")
    bad = damage(d, datasets[codec, 4], kind, rng)
    got_frames, got_labels, error = [], [], None
    try:  # every mechanism checks a chunk against the index as it reads it
        ds = loader.make_dataset(d, "train", 8, source=src, shuffle=False, readers=1, prefetch=False,
                                 mechanism=mechanism)
        for frames, labels in ds:
            got_frames.append(frames.numpy())
            got_labels.append(labels.numpy())
    except (tf.errors.OpError, DataError) as e:
        error = e
    got = sample_keys(np.concatenate(got_frames), np.concatenate(got_labels)) if got_frames else collections.Counter()
    clean = not (got - expected)  # every sample yielded is a reference sample, none altered
    if error is not None:
        survived = clean and bad in str(error)
        outcome = "failed naming the shard"
    else:
        survived = got == expected  # damage outside the bytes the loader reads: a full, correct epoch
        outcome = "epoch intact"
    tally(family, survived, 0, outcome=outcome)
    assert survived, (bad, outcome, str(error)[:500])


@pytest.mark.parametrize("codec,mechanism", READS)
def test_fit_on_damaged_data_fails_instead_of_training(codec, mechanism, datasets, tmp_path, tally):
    import keras

    d = tmp_path / "d"
    shutil.copytree(datasets[codec, 3], d)
    src = open_dataset(d, "train")
    damage(d, None, "flip-chunk", random.Random(f"{SEED}-fit-{codec}-{mechanism}"))
    inputs = keras.Input((SIZE, SIZE, SIZE), dtype="uint8")
    x = keras.layers.Flatten()(keras.ops.cast(inputs, "float32"))
    model = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(x))
    model.compile("adam", "binary_crossentropy")
    with pytest.raises((tf.errors.OpError, DataError)) as err:
        ds = loader.make_dataset(d, "train", 8, source=src, shuffle=False, readers=1, prefetch=False,
                                 mechanism=mechanism)
        model.fit(ds, epochs=1, verbose=0)
    tally("loader: model.fit on damaged data", "train-0000" in str(err.value), 0)
    assert "train-0000" in str(err.value)


# ---------------------------------------------------------------- tf.data service, two workers

@pytest.fixture(scope="module")
def data_service():
    """A dispatcher and two workers on loopback (in this process; stopped at teardown)."""
    service = tf.data.experimental.service
    dispatcher = service.DispatchServer(service.DispatcherConfig(port=0))
    address = dispatcher.target.split("://")[1]
    config = service.WorkerConfig(dispatcher_address=address, port=0, worker_address="localhost:%port%")
    workers = [service.WorkerServer(config) for _ in range(2)]
    yield dispatcher.target, workers
    for worker in workers:
        worker.stop()
    dispatcher.stop()


@pytest.fixture(scope="module")
def static_service():
    """A dispatcher that knows its two workers in advance (fixed loopback ports), for static sharding."""
    from faultlib import free_port

    service = tf.data.experimental.service
    ports = [free_port(), free_port()]
    addresses = [f"localhost:{p}" for p in ports]
    dispatcher = service.DispatchServer(service.DispatcherConfig(port=free_port(), worker_addresses=addresses))
    address = dispatcher.target.split("://")[1]
    workers = [service.WorkerServer(service.WorkerConfig(dispatcher_address=address, worker_address=a, port=p))
               for a, p in zip(addresses, ports)]
    yield dispatcher.target
    for worker in workers:
        worker.stop()
    dispatcher.stop()


@pytest.mark.parametrize("epoch", range(2))
def test_distributed_epoch_on_two_workers_reads_every_sample_exactly_once(epoch, datasets, data_service, tally):
    target, workers = data_service
    d = datasets["gzip", 3]
    ds = loader.make_dataset(d, "train", 8, seed=epoch, prefetch=False, splittable=True)
    ds = ds.apply(tf.data.experimental.service.distribute(processing_mode="distributed_epoch", service=target,
                                                          job_name=f"faults-exactly-once-{epoch}"))
    frames, labels = zip(*((f.numpy(), y.numpy()) for f, y in ds))
    got, expected = sample_keys(np.concatenate(frames), np.concatenate(labels)), reference_keys(d)
    survived = got == expected
    tally("tf.data service: distributed_epoch, 2 workers, exactly once", survived, 0,
          missing=sum((expected - got).values()), extra=sum((got - expected).values()))
    assert survived, (sum((expected - got).values()), sum((got - expected).values()))


@pytest.mark.parametrize("epoch", range(2))
def test_static_data_sharding_on_two_workers_reads_every_sample_exactly_once(epoch, datasets, static_service, tally):
    """Static sharding, ShardingPolicy.DATA (each worker keeps every 2nd element of the same deterministic
    order; each reads all shards, so no I/O is saved, but every sample is delivered exactly once)."""
    d = datasets["gzip", 3]
    ds = loader.make_dataset(d, "train", 8, seed=epoch, prefetch=False, mechanism="graph")
    ds = ds.apply(tf.data.experimental.service.distribute(
        processing_mode=tf.data.experimental.service.ShardingPolicy.DATA, service=static_service,
        job_name=f"faults-static-{epoch}"))
    frames, labels = zip(*((f.numpy(), y.numpy()) for f, y in ds))
    got, expected = sample_keys(np.concatenate(frames), np.concatenate(labels)), reference_keys(d)
    survived = got == expected
    tally("tf.data service: static DATA sharding, 2 workers, exactly once", survived, 0,
          missing=sum((expected - got).values()), extra=sum((got - expected).values()))
    assert survived, (sum((expected - got).values()), sum((got - expected).values()))


def test_training_under_tf_data_service_on_two_workers(datasets, data_service, tally):
    import keras

    target, workers = data_service
    ds = loader.make_dataset(datasets["gzip", 3], "train", 8, prefetch=False, repeat=True, mechanism="graph")
    ds = ds.apply(tf.data.experimental.service.distribute(processing_mode="distributed_epoch", service=target,
                                                          job_name="faults-fit"))
    inputs = keras.Input((SIZE, SIZE, SIZE), dtype="uint8")
    x = keras.layers.Flatten()(keras.ops.cast(inputs, "float32"))
    model = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(x))
    model.compile("adam", "binary_crossentropy", metrics=["accuracy"])
    history = model.fit(ds, steps_per_epoch=10, epochs=2, verbose=0)
    ok = len(history.history["loss"]) == 2 and bool(np.isfinite(history.history["loss"]).all())
    tally("tf.data service: model.fit, 2 workers", ok, 0)
    assert ok
