"""pipeline.input.reader: the TF-free reading core and its NumPy front end, against the tf.data one."""
from __future__ import annotations

import collections
import hashlib

import numpy as np
import pytest

from pipeline.dataset.generate import run_generation
from pipeline.dataset.manifest import DatasetParams, load_manifest
from pipeline.dataset.shards import read_sequences
from pipeline.errors import DataError
from pipeline.input import reader as reader_module
from pipeline.input.reader import WindowReader, batch_stream, rebatch, unpack_rows
from pipeline.input.source import open_dataset

SAMPLES = 150


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """nbit-gzip (packed rows) and gzip (frame rows) datasets of the same samples, size 10."""
    root = tmp_path_factory.mktemp("reader")
    out = {}
    for codec in ("nbit-gzip", "gzip"):
        out[codec] = root / codec
        params = DatasetParams(size=10, samples=SAMPLES, test_samples=20, shard_size=64, chunk=16, seed=4, codec=codec)
        run_generation(out[codec], params, workers=1, progress=False)
    return out


def stored(directory):
    parts = [read_sequences(directory / e["path"]) for e in load_manifest(directory).shards["train"]]
    return np.concatenate([p["frames"] for p in parts]), np.concatenate([p["labels"] for p in parts])


def keys(frames, labels):
    return collections.Counter(hashlib.sha1(f.tobytes()).hexdigest() + str(int(y)) for f, y in zip(frames, labels))


def gather(batches):
    frames, labels = zip(*batches)
    return np.concatenate(frames), np.concatenate(labels)


@pytest.mark.parametrize("codec", ["nbit-gzip", "gzip"])
def test_each_epoch_holds_every_sample_once_and_epochs_differ(data, codec):
    frames, labels = gather(batch_stream(data[codec], "train", 16, epochs=3, seed=2, shuffle_window=40))
    assert frames.shape == (3 * SAMPLES, 10, 10, 10) and frames.dtype == labels.dtype == np.uint8
    want = keys(*stored(data[codec]))
    epochs = [slice(k * SAMPLES, (k + 1) * SAMPLES) for k in range(3)]
    assert all(keys(frames[e], labels[e]) == want for e in epochs)
    assert not np.array_equal(frames[epochs[0]], frames[epochs[1]])


def test_unshuffled_is_stored_order(data):
    frames, labels = gather(batch_stream(data["gzip"], "train", 7, shuffle=False, readers=3))
    want_frames, want_labels = stored(data["gzip"])
    np.testing.assert_array_equal(frames, want_frames)
    np.testing.assert_array_equal(labels, want_labels)


def test_same_batches_whatever_the_number_of_readers_or_batches_cut_ahead(data):
    runs = [list(batch_stream(data["nbit-gzip"], "train", 12, epochs=2, seed=7, shuffle_window=20, readers=r,
                              prefetch=p)) for r, p in ((1, 2), (2, 2), (5, 2), (2, 0), (1, 5))]
    for other in runs[1:]:
        assert len(other) == len(runs[0])
        for (f0, l0), (f1, l1) in zip(runs[0], other):
            np.testing.assert_array_equal(f0, f1)
            np.testing.assert_array_equal(l0, l1)


def test_batches_cross_windows_and_epochs_drop_remainder(data):
    sizes = [len(y) for _, y in batch_stream(data["gzip"], "train", 40, epochs=2, shuffle_window=16)]
    assert sizes == [40] * 7 + [20]  # 300 samples, windows of one 16-sample chunk
    dropped = [len(y) for _, y in batch_stream(data["gzip"], "train", 40, epochs=2, drop_remainder=True)]
    assert dropped == [40] * 7


def test_packed_rows_unpack_to_the_frames(data):
    packed = gather(batch_stream(data["nbit-gzip"], "train", 16, seed=1, packed=True))
    frames = gather(batch_stream(data["nbit-gzip"], "train", 16, seed=1))
    assert packed[0].shape == (SAMPLES, 125)
    np.testing.assert_array_equal(unpack_rows(packed[0], 10), frames[0])
    np.testing.assert_array_equal(packed[1], frames[1])
    with pytest.raises(ValueError, match="bit-packed codec"):
        next(batch_stream(data["gzip"], "train", 16, packed=True))


@pytest.mark.parametrize("packed", [True, False])
def test_same_batches_as_the_tf_data_front_end(data, packed):
    """One core, two front ends: the same seed gives the same batches in the same order."""
    from pipeline.input.loader import make_dataset

    ours = list(batch_stream(data["nbit-gzip"], "train", 24, epochs=3, seed=11, shuffle_window=30, packed=packed))
    tf_batches = make_dataset(data["nbit-gzip"], "train", 24, repeat=True, seed=11, shuffle_window=30,
                              packed=packed).take(len(ours) - 1)
    for (frames, labels), (tf_frames, tf_labels) in zip(ours, tf_batches):
        np.testing.assert_array_equal(frames, tf_frames.numpy())
        np.testing.assert_array_equal(labels, tf_labels.numpy())


def test_corrupt_chunk_names_the_shard(data, tmp_path):
    import shutil

    d = tmp_path / "d"
    shutil.copytree(data["nbit-gzip"], d)
    src = open_dataset(d, "train")
    shard = d / "train-00001.h5"
    offset, nbytes = int(src.offset[src.shard == 1][0]), int(src.nbytes[src.shard == 1][0])
    raw = bytearray(shard.read_bytes())
    raw[offset + nbytes // 2] ^= 0xFF
    shard.write_bytes(bytes(raw))
    with pytest.raises(DataError, match=r"train-00001\.h5: corrupt chunk at sample 0"):
        gather(batch_stream(d, "train", 8, source=src, shuffle=False))


def test_batches_are_cut_off_the_callers_thread_and_closing_stops_it(data):
    import threading

    stream = batch_stream(data["nbit-gzip"], "train", 8, epochs=None, packed=True)
    next(stream)
    names = {t.name for t in threading.enumerate()}
    assert "batch-stream" in names and any(n.startswith("window") for n in names)
    stream.close()
    names = {t.name for t in threading.enumerate()}
    assert "batch-stream" not in names and not any(n.startswith("window") for n in names)
    inline = batch_stream(data["nbit-gzip"], "train", 8, epochs=None, packed=True, prefetch=0)
    next(inline)
    assert "batch-stream" not in {t.name for t in threading.enumerate()}
    inline.close()


@pytest.mark.parametrize("group_bytes", [0, 1, 40, 10 ** 6])
def test_rebatch_groups_hand_over_the_same_batches_a_window_at_most(group_bytes):
    windows = [(np.arange(a, b, dtype=np.uint8)[:, None].repeat(2, 1), np.arange(a, b)) for a, b in
               ((0, 10), (10, 13), (13, 40))]
    groups = list(reader_module.rebatch_groups(iter(windows), 4, group_bytes=group_bytes))
    flat = [b for g in groups for b in g]
    want = list(rebatch(iter(windows), 4))
    assert [y.tolist() for _, y in flat] == [y.tolist() for _, y in want]
    for group in groups:
        assert group and sum(rows.nbytes for rows, _ in group[:-1]) < max(group_bytes, 1)
        assert len({np.searchsorted([10, 13, 40], y[-1], side="right") for _, y in group}) == 1  # one window's
    if group_bytes == 0:
        assert all(len(g) == 1 for g in groups)


def test_window_reader_rounds_windows_to_chunks_and_refuses_other_codecs(data):
    src = open_dataset(data["gzip"], "train")
    reader = WindowReader(src, window_samples=20)
    assert reader.window_chunks == 2 and reader.row_bytes == 1000
    rows, labels = reader.read(0, 0)
    assert rows.shape == (32, 1000) and labels.shape == (32,)
    first = reader.order(0).window(0)
    stored = np.concatenate([np.frombuffer(__import__("zlib").decompress(src.stored(int(c))), np.uint8)
                             .reshape(-1, 1000)[:src.count[c]] for c in first])
    perm = reader.order(0).permutation(0)
    np.testing.assert_array_equal(rows, stored[perm])  # output position j holds stored sample perm[j]
    with pytest.raises(ValueError, match="cannot read"):
        WindowReader(src, decode="raw")


@pytest.mark.parametrize("bad", [dict(batch_size=0), dict(epochs=0), dict(seed=-1), dict(prefetch=-1),
                                 dict(prefetch=True)])
def test_bad_arguments(data, bad):
    kwargs = dict(batch_size=8) | bad
    with pytest.raises(ValueError, match=next(iter(bad))):
        next(batch_stream(data["gzip"], "train", kwargs.pop("batch_size"), **kwargs))


def test_imports_no_tensorflow():
    import subprocess
    import sys

    code = ("import sys, pipeline.input.reader, pipeline.input.order, pipeline.input.source\n"
            "print('tensorflow' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_a_train_only_dataset_reads_and_names_its_missing_test_split(tmp_path):
    d = tmp_path / "train-only"
    params = DatasetParams(size=8, samples=40, test_samples=0, shard_size=20, chunk=8)
    run_generation(d, params, workers=1, progress=False)
    assert sum(len(y) for _, y in batch_stream(d, "train", 16)) == 40
    with pytest.raises(DataError, match=r"split 'test' has no samples \(generated with --test-samples 0\)"):
        open_dataset(d, "test")


@pytest.mark.parametrize("sizes, batch", [([10, 10, 10], 4), ([3, 0, 2, 1, 7], 4), ([1, 1, 1, 1, 1], 2), ([8], 8),
                                          ([5, 3], 16), ([0, 0], 3), ([17, 33, 2, 64], 16)])
@pytest.mark.parametrize("drop_remainder", [False, True])
def test_rebatch_cuts_windows_into_the_same_stream_of_batches(sizes, batch, drop_remainder):
    start = np.cumsum([0, *sizes])
    windows = [(np.arange(a, b, dtype=np.int64)[:, None].repeat(3, 1), np.arange(a, b))
               for a, b in zip(start, start[1:])]
    batches = list(rebatch(iter(windows), batch, drop_remainder))
    total = int(start[-1])
    kept = total // batch * batch if drop_remainder else total
    assert [len(y) for _, y in batches] == [batch] * (total // batch) + ([] if drop_remainder or total % batch == 0
                                                                        else [total % batch])
    np.testing.assert_array_equal(np.concatenate([y for _, y in batches]) if batches else [], np.arange(kept))
    for rows, labels in batches:
        np.testing.assert_array_equal(rows[:, 0], labels)
        # a batch inside one window is a view of it; one spanning windows holds only its own rows
        inside = [w for w in windows if len(w[1]) and w[1][0] <= labels[0] and labels[-1] <= w[1][-1]]
        assert np.shares_memory(rows, inside[0][0]) if inside else rows.base is None or rows.base.size <= rows.size
