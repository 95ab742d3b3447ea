"""Micro-benchmarks of the pipeline's inner loops, one BATCH of SIZE-pixel sequences each.

render kernel, shard write, one chunk decoded by h5py, one loader batch, one `fast` train step.
"""
from __future__ import annotations

import numpy as np

from pipeline.dataset import codecs
from pipeline.dataset.shards import ShardPlan, write_shard
from pipeline.dataset.synth import SequenceSpec, render, trajectories


def test_render_kernel(benchmark, micro_size, micro_batch):
    SIZE, BATCH, SPEC = micro_size, micro_batch, SequenceSpec(micro_size)
    labels, rows, cols = trajectories(np.random.default_rng(0), BATCH, SPEC)
    frames = benchmark(render, rows, cols, SPEC)
    assert frames.shape == (BATCH, SIZE, SIZE, SIZE) and frames.dtype == np.uint8
    assert frames[:, -1].sum() <= BATCH * SIZE


def test_shard_write(benchmark, tmp_path, micro_size, micro_batch):
    BATCH, SPEC = micro_batch, SequenceSpec(micro_size)
    plan = ShardPlan("train", 0, 0, BATCH, 0, SPEC, codecs.DEFAULT_CHUNK, codecs.DEFAULT_CODEC)
    record = benchmark(write_shard, tmp_path, plan)
    assert record.samples == BATCH and (tmp_path / plan.name).stat().st_size == record.bytes


def test_chunk_decode(benchmark, micro_dataset, micro_size):
    """h5py read (and filter decode) of exactly one stored chunk of `frames`."""
    SIZE = micro_size
    import h5py

    with h5py.File(micro_dataset / "train-00000.h5", "r") as f:
        frames = f["frames"]
        chunk = frames.chunks[0]
        out = benchmark(lambda: frames[:chunk])
    assert out.shape == (chunk, SIZE, SIZE, SIZE)


def test_loader_batch(benchmark, micro_dataset, micro_size, micro_batch):
    """One batch out of a warmed-up, repeating loader pipeline (materialized as NumPy)."""
    SIZE, BATCH = micro_size, micro_batch
    from pipeline.input.loader import make_dataset

    it = iter(make_dataset(micro_dataset, "train", BATCH, repeat=True, drop_remainder=True))
    for _ in range(3):
        next(it)
    frames, labels = benchmark(lambda: tuple(t.numpy() for t in next(it)))
    assert frames.shape == (BATCH, SIZE, SIZE, SIZE) and labels.shape == (BATCH,)


def test_train_step_fast(benchmark, micro_dataset, micro_size, micro_batch):
    """One `fast` train step on an in-memory batch; `train_on_batch` returns NumPy, so the step is materialized."""
    SIZE, BATCH = micro_size, micro_batch
    import h5py
    import keras
    import tensorflow as tf

    from pipeline.models.networks import build_model

    with h5py.File(micro_dataset / "train-00000.h5", "r") as f:
        x, y = tf.constant(f["frames"][:BATCH]), tf.constant(f["labels"][:BATCH])
    keras.utils.set_random_seed(0)
    model = build_model("fast", SIZE)
    for _ in range(3):  # trace and warm up outside the measurement
        model.train_on_batch(x, y)
    loss = benchmark.pedantic(model.train_on_batch, args=(x, y), rounds=15, iterations=1, warmup_rounds=1)
    assert np.isfinite(loss).all()
