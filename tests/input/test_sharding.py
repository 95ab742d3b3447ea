"""One stream across processes: the shards' batches at every step, concatenated in shard order, are
the unsharded stream's batch; every sample comes once per epoch, none repeated; a position taken
with n shards resumes with m; a shard decodes only the chunks holding its rows."""
from __future__ import annotations

import json
from math import comb

import numpy as np
import pytest

from pipeline.dataset.generate import run_generation
from pipeline.dataset.manifest import DatasetParams
from pipeline.input.order import EpochOrder
from pipeline.input.reader import WindowReader, batch_stream
from pipeline.input.sharding import Shard, chunks_needed, decode_fraction, input_context_shard, jax_shard
from pipeline.input.source import open_dataset

SAMPLES = 150  # shards of 64 and 22 samples: chunks of 16 and shorter ones, windows of unequal sizes


@pytest.fixture(scope="module")
def src(tmp_path_factory):
    d = tmp_path_factory.mktemp("sharding") / "d"
    run_generation(d, DatasetParams(size=10, samples=SAMPLES, test_samples=20, shard_size=64, chunk=16, seed=3),
                   workers=1, progress=False)
    return open_dataset(d, "train")


def stream(src, batch_size=12, **options):
    options = {"seed": 5, "epochs": 2, "shuffle_window": 40, **options}
    return batch_stream(None, "train", batch_size, source=src, **options)


def shards(src, count, batch_size=12, **options):
    """Each of `count` shards' batches: list (shard) of lists (step) of (frames, labels)."""
    return [list(stream(src, batch_size, shard_index=i, shard_count=count, **options)) for i in range(count)]


def joined(per_shard):
    """The shards' batches at each step, concatenated in shard order."""
    return [tuple(np.concatenate(parts) for parts in zip(*step)) for step in zip(*per_shard)]


def same(a, b):
    assert len(a) == len(b)
    for (fa, la), (fb, lb) in zip(a, b):
        np.testing.assert_array_equal(fa, fb)
        np.testing.assert_array_equal(la, lb)


@pytest.mark.parametrize("batch_size, count, drop_remainder", [(12, 2, False), (12, 3, False), (16, 4, False),
                                                               (16, 4, True), (12, 12, False)])
def test_the_shards_batches_at_every_step_make_the_unsharded_batch(src, batch_size, count, drop_remainder):
    whole = list(stream(src, batch_size, drop_remainder=drop_remainder))
    parts = shards(src, count, batch_size, drop_remainder=drop_remainder)
    assert all(len(p) == len(whole) for p in parts)  # the same number of steps on every shard
    assert all(len(y) == batch_size // count for p in parts for _, y in p[:len(whole) - 1])
    same(joined(parts), whole)


def test_every_sample_comes_once_per_epoch_and_a_short_last_batch_is_clipped_never_padded(src):
    # 150 samples in batches of 16: 9 full ones and 6 rows, which shards 0 and 1 (4 rows each) split
    # as 4 + 2; shards 2 and 3 get an empty batch
    parts = shards(src, 4, 16, epochs=1, packed=True)
    assert [[len(y) for _, y in p][-1] for p in parts] == [4, 2, 0, 0]
    assert parts[3][-1][0].shape == (0, 125)
    stored = WindowReader(src, shuffle=False)
    rows = np.concatenate([stored.read(0, w)[0] for w in range(stored.windows_per_epoch())])
    got = np.concatenate([f for p in parts for f, _ in p])
    assert len(got) == SAMPLES
    assert sorted(map(bytes, got)) == sorted(map(bytes, rows))


@pytest.mark.parametrize("before, after", [(2, 4), (4, 1), (3, 2), (1, 6)])
def test_a_position_taken_with_n_shards_resumes_with_m(src, before, after):
    whole = list(stream(src))  # 300 samples in batches of 12: 25 steps
    for k in (0, 1, 7, 12, 13, 24, 25):
        its = [stream(src, shard_index=i, shard_count=before) for i in range(before)]
        for it in its:
            for _ in range(k):
                next(it)
        states = [json.loads(json.dumps(it.state())) for it in its]
        for it in its:
            it.close()
        assert all(s == states[0] for s in states)  # global: the same on every shard
        assert states[0] == {"seed": 5, "batch_size": 12, "step": k, "epoch": k * 12 // SAMPLES,
                             "next_sample": k * 12 % SAMPLES}
        same(joined(shards(src, after, start_step=states[0]["step"])), whole[k:])


def test_the_tf_data_front_end_gives_the_same_shards(src):
    from pipeline.input.loader import make_dataset

    endless = stream(src, 16, epochs=None, drop_remainder=True)
    whole = [next(endless) for _ in range(24)]
    endless.close()
    for count, start in ((4, 0), (2, 5)):
        parts = [[(f.numpy(), y.numpy()) for f, y in
                  make_dataset(None, "train", 16, source=src, seed=5, repeat=True, shuffle_window=40, packed=False,
                               drop_remainder=True, start_step=start, shard_index=i, shard_count=count)
                  .take(24 - start)] for i in range(count)]
        same(joined(parts), whole[start:])


def test_without_repeat_each_iteration_is_an_epoch_batched_from_its_own_start(src):
    from pipeline.input.loader import make_dataset

    def iterations(**shard):
        ds = make_dataset(None, "train", 12, source=src, seed=5, shuffle_window=40, start_step=10, **shard)
        return [[(f.numpy(), y.numpy()) for f, y in ds] for _ in range(2)]

    whole = iterations()
    assert [len(y) for _, y in whole[0]] == [12, 12, 6] and len(whole[1]) == 13
    parts = [iterations(shard_index=i, shard_count=4) for i in range(4)]
    assert [len(p[0][-1][1]) for p in parts] == [3, 3, 0, 0]
    for it in range(2):
        same(joined([p[it] for p in parts]), whole[it])


def test_a_shard_decodes_only_the_chunks_holding_its_rows(src, monkeypatch):
    decoded = []
    original = WindowReader._chunk_rows
    monkeypatch.setattr(WindowReader, "_chunk_rows", lambda self, *a: decoded.append(a[:2]) or original(self, *a))
    # unshuffled, in batches of 32 in 4 shards: a chunk of 16 holds rows of two shards only
    for shuffle in (False, True):
        counts = []
        for i in range(4):
            decoded.clear()
            list(stream(src, 32, epochs=1, shuffle=shuffle, shard_index=i, shard_count=4, readers=1))
            reader = WindowReader(src, seed=5, shuffle=shuffle, window_samples=40)
            shard = Shard(32, i, 4)
            expected = sum(int(chunks_needed(reader.order(0), w, reader.shard_need(shard, 0, w, 0)).sum())
                           for w in range(reader.windows_per_epoch()))
            assert len(decoded) == expected
            counts.append(len(decoded))
        assert all(c <= src.chunks for c in counts)
        if not shuffle:
            assert sum(counts) < 2.5 * src.chunks


@pytest.mark.parametrize("count", [2, 4, 8])
def test_at_the_default_geometry_a_shard_decodes_nearly_every_chunk(count):
    # size 50: chunks of 32 samples, windows of 100 chunks (48 MiB of packed rows), global batches of 256
    order = EpochOrder(np.full(1000, 32), 100, seed=0, epoch=0)
    measured = decode_fraction(order, 256, count)
    window, share = 3200, 3200 // count  # a chunk's 32 samples miss the shard's rows: hypergeometric
    expected = 1 - comb(window - share, 32) / comb(window, 32)
    assert abs(measured - expected) < 0.01
    assert measured > 0.98 > 1 / count


def test_bad_shards_are_refused(src):
    from pipeline.input.loader import make_dataset

    cases = [({"shard_index": 2, "shard_count": 2}, r"shard_index must be in \[0, shard_count\) = \[0, 2\)"),
             ({"shard_index": -1, "shard_count": 2}, "shard_index must be in"),
             ({"shard_count": 0}, "shard_count must be a positive integer"),
             ({"shard_count": True}, "shard_count must be an integer"),
             ({"shard_index": 1.0, "shard_count": 2}, "shard_index must be an integer"),
             ({"shard_count": 5}, "batch_size 12 is not a multiple of shard_count 5")]
    for shard, message in cases:
        with pytest.raises(ValueError, match=message):
            stream(src, **shard)
        with pytest.raises(ValueError, match=message):
            make_dataset(None, "train", 12, source=src, **shard)
    with pytest.raises(ValueError, match="shard_count > 1 needs mechanism 'isal' or 'process'"):
        make_dataset(None, "train", 12, source=src, mechanism="graph", shard_count=2)


def test_the_default_shards_come_from_jax_and_tf_distribute():
    import tensorflow as tf

    assert input_context_shard(tf.distribute.InputContext(num_input_pipelines=3, input_pipeline_id=1,
                                                          num_replicas_in_sync=6)) == (1, 3)
    pytest.importorskip("jax")
    assert jax_shard() == (0, 1)  # one process
