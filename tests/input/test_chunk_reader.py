"""The worker processes of `pipeline.input.chunk_reader`: chunks as stored, no /dev/shm file left
behind even when the parent is SIGKILLed, a dead worker replaced, a worker that keeps dying an error."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from helpers import ROOT, wait_for
from pipeline.errors import DataError
from pipeline.input import chunk_reader
from pipeline.input.source import open_dataset

SHM = Path("/dev/shm")


def chunk_args(src, c: int) -> tuple:
    return (src.paths[src.shard[c]], int(src.start[c]), int(src.count[c]), int(src.offset[c]), int(src.nbytes[c]),
            int(src.crc[c]), src.frame_shape)


def shm_files() -> set[str]:
    return {p.name for p in SHM.glob("chunk-reader-*")} if SHM.is_dir() else set()


@pytest.fixture
def reader():
    r = chunk_reader.ChunkReader()
    r.grow(1)
    yield r
    r.close()


def test_a_worker_reads_the_chunk_as_stored(tiny_dataset, reader):
    import h5py

    src = open_dataset(tiny_dataset, "train")
    for c in (0, src.chunks - 1):
        path, start, count = chunk_args(src, c)[:3]
        with h5py.File(path) as f:
            want = f["frames"][start:start + count]
        assert np.array_equal(reader.read(*chunk_args(src, c)), want)


def test_a_dead_worker_is_replaced_and_the_chunk_read_again(tiny_dataset, reader):
    src = open_dataset(tiny_dataset, "train")
    want = reader.read(*chunk_args(src, 1))
    victim = reader._workers[0].proc
    victim.kill()
    victim.wait()
    assert np.array_equal(reader.read(*chunk_args(src, 1)), want)
    assert reader._workers[0].proc.pid != victim.pid and reader._workers[0].proc.poll() is None


def test_a_worker_that_keeps_dying_is_an_error_naming_the_chunk(tiny_dataset, monkeypatch):
    src = open_dataset(tiny_dataset, "train")
    real = subprocess.Popen

    def exits_at_once(argv, **kw):  # a worker that dies before it answers
        return real([sys.executable, "-c", "import sys; sys.exit(3)"], **kw)

    monkeypatch.setattr(chunk_reader.subprocess, "Popen", exits_at_once)
    r = chunk_reader.ChunkReader()
    r.grow(1)
    try:
        path, start, count = chunk_args(src, 2)[:3]
        with pytest.raises(DataError, match=rf"{path}: chunk reader process \d+ died \(exit status 3\) reading "
                                            rf"samples {start}\.\.{start + count}"):
            r.read(*chunk_args(src, 2))
        with pytest.raises(DataError, match="died"):  # again at once: never a hang on a dead slot
            r.read(*chunk_args(src, 2))
    finally:
        r.close()


@pytest.mark.skipif(not SHM.is_dir(), reason="no /dev/shm")
def test_no_shared_memory_file_outlives_a_parent_killed_with_sigkill(tiny_dataset, tmp_path):
    before = shm_files()
    ready = tmp_path / "ready"
    code = (f"import time; from pathlib import Path; from pipeline.input.reader import batch_stream\n"
            f"s = batch_stream({str(tiny_dataset)!r}, 'train', 8, mechanism='process', readers=2, epochs=None)\n"
            f"next(s); Path({str(ready)!r}).touch(); time.sleep(120)")
    parent = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                              start_new_session=True)
    try:
        wait_for(ready.exists, 120, "the reader's first batch")
        assert shm_files() == before  # mapped, and already without a name
    finally:
        os.killpg(parent.pid, signal.SIGKILL)
        parent.wait(timeout=30)
    assert shm_files() == before


def test_worker_processes_stream_a_bit_packed_dataset_as_the_core_does(tiny_dataset):
    from pipeline.input.reader import batch_stream

    streams = [batch_stream(tiny_dataset, "train", 16, mechanism=m, readers=2, epochs=2) for m in ("process", "isal")]
    try:
        for (frames, labels), (want_frames, want_labels) in zip(*streams, strict=True):
            assert np.array_equal(frames, want_frames) and np.array_equal(labels, want_labels)
    finally:
        for s in streams:
            s.close()
