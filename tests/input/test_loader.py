"""pipeline.input.loader: every sample once per epoch, orders, batching, codecs, bad data, tf.data service, fit."""
from __future__ import annotations

import collections
import hashlib
import json
import shutil

import h5py
import numpy as np
import pytest
import tensorflow as tf

from pipeline.dataset.generate import run_generation
from pipeline.dataset.manifest import DatasetParams, load_manifest
from pipeline.dataset.shards import read_sequences
from pipeline.errors import DataError
from pipeline.input.loader import make_dataset
from pipeline.input.source import open_dataset

SIZE = 10
SAMPLES = 200  # shards of 64, 64, 64, 8: the last chunk of each shard is partial or short
CODECS = ("zstd-fast", "gzip", "nbit-gzip")
# (codec, mechanism): every way the loader decodes chunks
READS = [("zstd-fast", "process"), ("gzip", "isal"), ("gzip", "graph"), ("nbit-gzip", "isal"), ("nbit-gzip", "graph")]


@pytest.fixture(scope="session")
def datasets(tmp_path_factory):
    """A tiny dataset per codec, same samples: {codec: directory}."""
    root = tmp_path_factory.mktemp("loader")
    out = {}
    for codec in CODECS:
        params = DatasetParams(size=SIZE, samples=SAMPLES, test_samples=40, shard_size=64, chunk=16, seed=3,
                               codec=codec)
        out[codec] = root / codec
        run_generation(out[codec], params, workers=1, progress=False)
    return out


def reference(directory, split="train"):
    """(frames, labels) of a split, shard after shard, read with plain h5py."""
    manifest = load_manifest(directory)
    parts = [read_sequences(directory / e["path"]) for e in manifest.shards[split]]
    return np.concatenate([p["frames"] for p in parts]), np.concatenate([p["labels"] for p in parts])


def collect(ds):
    frames, labels = zip(*((f.numpy(), y.numpy()) for f, y in ds))
    return np.concatenate(frames), np.concatenate(labels)


def keys(frames, labels):
    return collections.Counter(hashlib.sha1(f.tobytes()).hexdigest() + str(y) for f, y in zip(frames, labels))


def copy_dataset(src, tmp_path):
    dst = tmp_path / src.name
    shutil.copytree(src, dst)
    return dst


def chunk_position(path, index=1):
    with h5py.File(path, "r") as f:
        info = f["frames"].id.get_chunk_info(index)
    return info.byte_offset, info.size


def flip_bytes(path, index=1):
    offset, size = chunk_position(path, index)
    with open(path, "r+b") as f:
        f.seek(offset + size // 2)
        data = f.read(8)
        f.seek(offset + size // 2)
        f.write(bytes(b ^ 0xFF for b in data))


# --- every sample, orders ---------------------------------------------------------------

@pytest.mark.parametrize("codec, mechanism", READS)
def test_every_sample_read_exactly_once_per_epoch(datasets, codec, mechanism):
    want_frames, want_labels = reference(datasets[codec])
    ds = make_dataset(datasets[codec], "train", 24, mechanism=mechanism, seed=1, shuffle_window=50)
    frames, labels = collect(ds)
    assert frames.dtype == np.uint8 and labels.dtype == np.uint8
    assert frames.shape == (SAMPLES, SIZE, SIZE, SIZE) and labels.shape == (SAMPLES,)
    assert keys(frames, labels) == keys(want_frames, want_labels)
    assert not np.array_equal(frames, want_frames)  # shuffled


@pytest.mark.parametrize("codec, mechanism", READS)
def test_unshuffled_single_reader_is_file_order(datasets, codec, mechanism):
    want_frames, want_labels = reference(datasets[codec], "test")
    frames, labels = collect(make_dataset(datasets[codec], "test", 16, mechanism=mechanism, shuffle=False, readers=1))
    np.testing.assert_array_equal(frames, want_frames)
    np.testing.assert_array_equal(labels, want_labels)


@pytest.mark.parametrize("codec, mechanism", READS)
def test_same_seed_same_order_other_seed_and_next_epoch_differ(datasets, codec, mechanism):
    def first_epochs(seed, epochs=2):
        ds = make_dataset(datasets[codec], "train", 32, mechanism=mechanism, seed=seed, shuffle_window=40)
        return [collect(ds)[1] for _ in range(epochs)]  # labels suffice to tell orders apart

    a, b = first_epochs(5), first_epochs(5)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[0], a[1]), "the second epoch repeats the first one's order"
    assert not np.array_equal(a[0], first_epochs(6, 1)[0])
    frames_a, _ = collect(make_dataset(datasets[codec], "train", 32, mechanism=mechanism, seed=5, shuffle_window=40))
    frames_b, _ = collect(make_dataset(datasets[codec], "train", 32, mechanism=mechanism, seed=5, shuffle_window=40))
    np.testing.assert_array_equal(frames_a, frames_b)


@pytest.mark.parametrize("codec, mechanism", READS)
def test_one_chunk_windows_still_shuffle(datasets, codec, mechanism):
    want_frames, want_labels = reference(datasets[codec])
    frames, labels = collect(make_dataset(datasets[codec], "train", 16, mechanism=mechanism, shuffle_window=1))
    assert keys(frames, labels) == keys(want_frames, want_labels)
    assert not np.array_equal(frames, want_frames)


@pytest.mark.parametrize("codec, mechanism", READS)
def test_same_order_whatever_the_number_of_readers(datasets, codec, mechanism):
    def labels(readers):
        ds = make_dataset(datasets[codec], "train", 16, mechanism=mechanism, seed=9, shuffle_window=40,
                          readers=readers, repeat=True).take(2 * SAMPLES // 16)
        return np.concatenate([y.numpy() for _, y in ds]), np.concatenate([f.numpy() for f, _ in ds])

    one, three = labels(1), labels(3)
    np.testing.assert_array_equal(one[0], three[0])
    np.testing.assert_array_equal(one[1], three[1])


# --- batching ---------------------------------------------------------------------------

def test_drop_remainder_and_repeat(datasets):
    d = datasets["gzip"]
    sizes = lambda ds: [int(y.shape[0]) for _, y in ds]  # noqa: E731
    assert sizes(make_dataset(d, "train", 32)) == [32] * 6 + [8]
    assert sizes(make_dataset(d, "train", 32, drop_remainder=True)) == [32] * 6
    assert sizes(make_dataset(d, "train", 32, repeat=True).take(20)) == [32] * 20
    assert sizes(make_dataset(d, "train", 32, shuffle=False, repeat=True).take(13)) == [32] * 13
    # repeat: consecutive epochs each hold every sample once
    frames, labels = collect(make_dataset(d, "train", 40, repeat=True).take(2 * SAMPLES // 40))
    want = keys(*reference(d))
    assert keys(frames[:SAMPLES], labels[:SAMPLES]) == want
    assert keys(frames[SAMPLES:], labels[SAMPLES:]) == want


@pytest.mark.parametrize("bad", [dict(batch_size=0), dict(readers=0), dict(shuffle_window=0),
                                 dict(mechanism="threads")])
def test_bad_arguments_raise_value_error(datasets, bad):
    kwargs = dict(batch_size=8) | bad
    with pytest.raises(ValueError, match=next(iter(bad))):
        make_dataset(datasets["gzip"], "train", kwargs.pop("batch_size"), **kwargs)


def test_graph_mechanism_refuses_zstd(datasets):
    with pytest.raises(ValueError, match="zstd"):
        make_dataset(datasets["zstd-fast"], "train", 8, mechanism="graph")


# --- bad data at open -------------------------------------------------------------------

def test_open_reports_the_dataset(datasets):
    src = open_dataset(datasets["zstd-fast"], "train", expected_size=SIZE)
    assert src.samples == SAMPLES and src.size == SIZE and src.chunks == 3 * 4 + 1
    assert len(src.paths) == 4 and int(src.count.sum()) == SAMPLES


def test_other_size_than_expected(datasets):
    with pytest.raises(DataError, match=r"manifest\.json.*size 10, expected 50"):
        open_dataset(datasets["gzip"], "train", expected_size=50)
    with pytest.raises(DataError, match="expected 50"):
        make_dataset(datasets["gzip"], "train", 8, expected_size=50)


def test_missing_shard(datasets, tmp_path):
    d = copy_dataset(datasets["gzip"], tmp_path)
    (d / "train-00002.h5").unlink()
    with pytest.raises(DataError, match=r"train-00002\.h5: missing"):
        make_dataset(d, "train", 8)


def test_wrong_dtype(datasets, tmp_path):
    d = copy_dataset(datasets["zstd-fast"], tmp_path)
    with h5py.File(d / "train-00001.h5", "r+") as f:
        labels = f["labels"][:]
        del f["labels"]
        f["labels"] = labels.astype(np.int32)
    with pytest.raises(DataError, match=r"train-00001\.h5: labels is int32"):
        open_dataset(d, "train", check_hashes=False)


def test_wrong_shape(datasets, tmp_path):
    d = copy_dataset(datasets["gzip"], tmp_path)
    with h5py.File(d / "train-00000.h5", "r+") as f:
        frames = f["frames"][:]
        del f["frames"]
        f.create_dataset("frames", data=frames[:, :, :, :5], chunks=(16, SIZE, SIZE, 5), compression="gzip")
    with pytest.raises(DataError, match=r"train-00000\.h5: frames is uint8\(64, 10, 10, 5\)"):
        open_dataset(d, "train", check_hashes=False)


def test_count_disagrees_with_manifest(datasets, tmp_path):
    d = copy_dataset(datasets["gzip"], tmp_path)
    doc = json.loads((d / "manifest.json").read_text())
    doc["splits"]["train"]["shards"][1]["samples"] = 63
    (d / "manifest.json").write_text(json.dumps(doc))
    with pytest.raises(DataError, match=r"manifest\.json"):
        open_dataset(d, "train")
    # a shard rewritten with fewer samples than the manifest records
    d2 = copy_dataset(datasets["zstd-fast"], tmp_path / "b")
    shard = d2 / "train-00001.h5"
    with h5py.File(shard, "r+") as f:
        for name in ("frames", "labels", "rows", "cols"):
            data = f[name][:60]
            del f[name]
            f.create_dataset(name, data=data)
    with pytest.raises(DataError, match=r"train-00001\.h5: frames is uint8\(60,"):
        open_dataset(d2, "train", check_hashes=False)


@pytest.mark.parametrize("codec", CODECS)
def test_truncated_shard_at_open(datasets, tmp_path, codec):
    d = copy_dataset(datasets[codec], tmp_path)
    shard = d / "train-00001.h5"
    shard.write_bytes(shard.read_bytes()[:-300])
    with pytest.raises(DataError, match=r"train-00001\.h5"):
        open_dataset(d, "train")


@pytest.mark.parametrize("codec", CODECS)
def test_flipped_bytes_at_open(datasets, tmp_path, codec):
    d = copy_dataset(datasets[codec], tmp_path)
    flip_bytes(d / "train-00003.h5", 0)
    with pytest.raises(DataError, match=r"train-00003\.h5: SHA-256 differs"):
        open_dataset(d, "train")


# --- bad data while reading -------------------------------------------------------------

@pytest.mark.parametrize("codec, mechanism", READS)
@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_damage_after_open_names_the_shard_while_reading(datasets, tmp_path, codec, mechanism, damage):
    d = copy_dataset(datasets[codec], tmp_path)
    src = open_dataset(d, "train")
    shard = d / "train-00002.h5"
    if damage == "flip":
        flip_bytes(shard, 1)
    else:
        offset, size = chunk_position(shard, 1)
        with open(shard, "r+b") as f:
            f.truncate(offset + size // 2)
    # every mechanism checks a chunk against the index as it reads it (the graph one in TensorFlow ops)
    with pytest.raises((tf.errors.OpError, DataError), match=r"train-00002\.h5"):
        collect(make_dataset(d, "train", 16, source=src, shuffle=False, readers=1, mechanism=mechanism))


# --- tf.data service, training ----------------------------------------------------------

@pytest.fixture(scope="module")
def data_service():
    dispatcher = tf.data.experimental.service.DispatchServer(tf.data.experimental.service.DispatcherConfig(port=0))
    address = dispatcher.target.split("://")[1]
    worker = tf.data.experimental.service.WorkerServer(
        tf.data.experimental.service.WorkerConfig(dispatcher_address=address, port=0))
    yield dispatcher.target
    worker.stop()
    dispatcher.stop()


@pytest.mark.parametrize("mode", ["parallel_epochs", "distributed_epoch"])
def test_gzip_pipeline_runs_under_tf_data_service(datasets, data_service, mode):
    ds = make_dataset(datasets["gzip"], "train", 25, seed=2, prefetch=False, mechanism="graph")
    ds = ds.apply(tf.data.experimental.service.distribute(processing_mode=mode, service=data_service,
                                                          job_name=f"loader-test-{mode}"))
    frames, labels = collect(ds)
    assert keys(frames, labels) == keys(*reference(datasets["gzip"]))


def tiny_model():
    import keras

    inputs = keras.Input((SIZE, SIZE, SIZE), dtype="uint8")
    x = keras.layers.Flatten()(keras.ops.cast(inputs, "float32"))
    model = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(x))
    model.compile("adam", "binary_crossentropy", metrics=["accuracy"])
    return model


@pytest.mark.parametrize("codec, mechanism", READS)
def test_model_fit_and_custom_loop(datasets, codec, mechanism):
    model = tiny_model()
    history = model.fit(make_dataset(datasets[codec], "train", 32, mechanism=mechanism, repeat=True),
                        steps_per_epoch=4, epochs=2, verbose=0)
    assert len(history.history["loss"]) == 2 and np.isfinite(history.history["loss"]).all()
    # finite epochs, re-iterated
    model.fit(make_dataset(datasets[codec], "train", 32, mechanism=mechanism), epochs=2, verbose=0)
    seen = 0
    for frames, labels in make_dataset(datasets[codec], "test", 8, mechanism=mechanism).take(3):
        seen += model.train_on_batch(frames, labels) is not None and int(labels.shape[0])
    assert seen == 24


def test_data_service_training_with_fit(datasets, data_service):
    ds = make_dataset(datasets["gzip"], "train", 32, repeat=True, prefetch=False, mechanism="graph")
    ds = ds.apply(tf.data.experimental.service.distribute("parallel_epochs", data_service, job_name="loader-fit"))
    history = tiny_model().fit(ds, steps_per_epoch=3, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"]).all()


WORKER = """
import sys, time
import tensorflow as tf
service = tf.data.experimental.service
worker = service.WorkerServer(service.WorkerConfig(dispatcher_address=sys.argv[1], port=0))
print("ready", flush=True)
time.sleep(300)
"""


@pytest.mark.parametrize("codec", ["gzip", "nbit-gzip"])
def test_graph_mechanism_runs_on_a_service_worker_in_another_process(datasets, codec):
    """A worker process has none of this process's Python: only graph ops run there, so "isal" fails by name."""
    import subprocess
    import sys

    service = tf.data.experimental.service
    dispatcher = service.DispatchServer(service.DispatcherConfig(port=0))
    worker = subprocess.Popen([sys.executable, "-c", WORKER, dispatcher.target.split("://")[1]],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert worker.stdout.readline().strip() == "ready"
        runs = {}
        for mechanism in ("graph", "isal"):
            ds = make_dataset(datasets[codec], "train", 25, seed=4, prefetch=False, mechanism=mechanism)
            runs[mechanism] = ds.apply(service.distribute("parallel_epochs", dispatcher.target,
                                                          job_name=f"remote-{codec}-{mechanism}"))
        assert keys(*collect(runs["graph"])) == keys(*reference(datasets[codec]))
        with pytest.raises(tf.errors.OpError, match="Could not find callback"):
            collect(runs["isal"])
    finally:
        worker.kill()
        worker.wait()
        dispatcher.stop()


def test_auto_mechanism_by_codec_and_service_use(datasets):
    from pipeline.input.loader import mechanism_for

    codecs = ("nbit-gzip", "gzip", "none", "zstd-fast")
    assert [mechanism_for(c) for c in codecs] == ["isal", "isal", "isal", "process"]
    assert mechanism_for("nbit-gzip", splittable=True) == "graph"
    with pytest.raises(ValueError, match="splittable=True is for tf.data service"):
        make_dataset(datasets["gzip"], "train", 8, mechanism="isal", splittable=True)
    with pytest.raises(ValueError, match="mechanism 'isal' decodes only"):
        make_dataset(datasets["zstd-fast"], "train", 8, mechanism="isal")
    with pytest.raises(ValueError, match="packed=True reads the stored bits itself"):
        make_dataset(datasets["nbit-gzip"], "train", 8, mechanism="process", packed=True)


def test_packed_frames_unpack_to_the_stored_frames(tmp_path_factory):
    """nbit-gzip, packed=True: every sample once, bits MSB-first; UnpackFrames in the model restores the frames."""
    from pipeline.dataset.generate import run_generation
    from pipeline.dataset.manifest import DatasetParams
    from pipeline.models.layers import UnpackFrames

    out = tmp_path_factory.mktemp("packed") / "d"
    run_generation(out, DatasetParams(size=10, samples=70, test_samples=10, shard_size=35, chunk=16),
                   workers=1, progress=False)
    stored = {}
    for path in sorted(out.glob("train-*.h5")):
        data = read_sequences(path)
        stored.update({f.tobytes(): int(y) for f, y in zip(data["frames"], data["labels"])})
    batches = list(make_dataset(out, "train", 8, seed=3, packed=True))
    assert sum(len(y) for _, y in batches) == 70 and batches[0][0].shape[1:] == (125,)
    seen = set()
    for packed, labels in batches:
        unpacked = UnpackFrames(10)(packed).numpy()
        assert np.array_equal(unpacked, np.unpackbits(packed.numpy(), axis=1).reshape(-1, 10, 10, 10))
        for f, y in zip(unpacked, labels.numpy()):
            assert stored[f.tobytes()] == y
            seen.add(f.tobytes())
    assert len(seen) == 70


def test_packed_needs_a_bit_packed_codec_and_an_even_size(tiny_dataset, tmp_path_factory):
    from pipeline.dataset.generate import run_generation
    from pipeline.dataset.manifest import DatasetParams

    odd = tmp_path_factory.mktemp("odd") / "d"
    run_generation(odd, DatasetParams(size=7, samples=16, test_samples=4, shard_size=16, chunk=8),
                   workers=1, progress=False)
    with pytest.raises(ValueError, match="even size"):
        make_dataset(odd, "train", 4, packed=True)
    unpacked = np.concatenate([f.numpy() for f, _ in make_dataset(odd, "train", 4, shuffle=False)])
    expected = np.concatenate([read_sequences(p)["frames"] for p in sorted(odd.glob("train-*.h5"))])
    assert np.array_equal(unpacked, expected)  # odd sizes decode fine unpacked
