"""pipeline.input.source and the chunk index: open reads it, not the shards; what is found at open, what at read.

Damage at open is tried on an *indexed* copy (copied, opened once so that the index describes the copy's
files), so that it is the index's checks that find it, not the full check a fresh copy gets.
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil

import numpy as np
import pytest

from pipeline.dataset import chunk_index
from pipeline.dataset.generate import run_generation
from pipeline.dataset.manifest import DatasetParams
from pipeline.dataset.verify import find_problems
from pipeline.errors import DataError
from pipeline.input import source as source_module
from pipeline.input.reader import batch_stream
from pipeline.input.source import open_dataset

FIELDS = ("paths", "labels", "shard", "start", "count", "offset", "nbytes", "crc", "adler", "first", "file_bytes")


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    """Two gzip datasets of the same parameters but the seed: {seed: directory}."""
    root = tmp_path_factory.mktemp("index")
    out = {}
    for seed in (1, 2):
        out[seed] = root / f"s{seed}"
        run_generation(out[seed], DatasetParams(size=8, samples=96, test_samples=16, shard_size=32, chunk=8,
                                                seed=seed, codec="gzip"), workers=1, progress=False)
    return out


def indexed_copy(src, tmp_path, name="d"):
    d = tmp_path / name
    shutil.copytree(src, d)
    open_dataset(d, "train")  # new inodes: checked in full once, and the index rewritten for the copy
    return d


def no_shard_reads(monkeypatch):
    """Any shard read in full (index or check) fails the test."""
    def refuse(*args, **kwargs):
        raise AssertionError(f"a shard was read: {args[0]}")

    monkeypatch.setattr(chunk_index, "index_shard", refuse)
    monkeypatch.setattr(chunk_index, "check_shard", refuse)


def counted(monkeypatch):
    """The shards checked in full, in order."""
    seen, real = [], chunk_index.index_shard

    def index_shard(path, plan, **kw):
        seen.append(path.name)
        return real(path, plan, **kw)

    monkeypatch.setattr(chunk_index, "index_shard", index_shard)
    return seen


def flip_in_chunk(path, src, keep_mtime=False):
    """Flip a byte in the middle of `path`'s second chunk; with keep_mtime the stat signature stays."""
    st = os.stat(path)
    shard = src.paths.index(str(path.resolve()))
    c = np.flatnonzero(src.shard == shard)[1]
    with open(path, "r+b") as f:
        f.seek(int(src.offset[c] + src.nbytes[c] // 2))
        byte = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte[0] ^ 0xFF]))
    if keep_mtime:
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_generation_writes_the_index_and_open_reads_no_shard(datasets, monkeypatch):
    d = datasets[1]
    assert (d / "index-train.npz").is_file() and (d / "index-test.npz").is_file()
    full = open_dataset(d, "train", check_hashes=True)
    no_shard_reads(monkeypatch)
    src = open_dataset(d, "train")
    for name in FIELDS:
        a, b = getattr(src, name), getattr(full, name)
        assert (a == b) if isinstance(a, tuple) else np.array_equal(a, b), name
    assert src.samples == 96 and src.chunks == 12 and open_dataset(d, "test").samples == 16


def test_check_hashes_reads_and_hashes_every_shard(datasets, tmp_path, monkeypatch):
    d = indexed_copy(datasets[1], tmp_path)
    seen = counted(monkeypatch)
    open_dataset(d, "train", check_hashes=True)
    assert seen == ["train-00000.h5", "train-00001.h5", "train-00002.h5"]
    before = (d / "index-train.npz").stat().st_mtime_ns
    open_dataset(d, "train", check_hashes=True)
    assert (d / "index-train.npz").stat().st_mtime_ns == before, "a current index is not rewritten"


def test_a_dataset_without_an_index_opens_and_keeps_one(datasets, tmp_path, monkeypatch):
    d = tmp_path / "old"
    shutil.copytree(datasets[1], d)
    for split in ("train", "test"):
        (d / f"index-{split}.npz").unlink()
    src = open_dataset(d, "train")
    assert (d / "index-train.npz").is_file() and not list(d.glob("*.tmp-*"))
    assert not (d / "index-test.npz").exists(), "only the split opened is indexed"
    no_shard_reads(monkeypatch)
    assert np.array_equal(open_dataset(d, "train").crc, src.crc)


def test_only_the_changed_shard_is_checked_again(datasets, tmp_path, monkeypatch):
    d = indexed_copy(datasets[1], tmp_path)
    st = os.stat(d / "train-00001.h5")
    os.utime(d / "train-00001.h5", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # touched: same bytes
    seen = counted(monkeypatch)
    open_dataset(d, "train")
    assert seen == ["train-00001.h5"]
    seen.clear()
    open_dataset(d, "train")
    assert seen == []


def test_a_damaged_index_is_rebuilt(datasets, tmp_path):
    d = indexed_copy(datasets[1], tmp_path)
    raw = bytearray((d / "index-train.npz").read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    (d / "index-train.npz").write_bytes(bytes(raw))
    assert chunk_index.load(d / "index-train.npz") is None  # the zip's CRC-32 catches it
    src = open_dataset(d, "train")
    assert chunk_index.load(d / "index-train.npz") is not None
    assert np.array_equal(src.crc, open_dataset(datasets[1], "train").crc)


def test_a_read_only_directory_keeps_its_index_in_the_user_cache(datasets, tmp_path, monkeypatch):
    d = tmp_path / "ro"
    shutil.copytree(datasets[1], d)
    (d / "index-train.npz").unlink()
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    real = chunk_index.save

    def save(path, index):  # what a read-only directory does, whoever runs the test (root ignores modes)
        if path.parent == d:
            raise PermissionError(13, "Permission denied", str(path))
        real(path, index)

    monkeypatch.setattr(chunk_index, "save", save)
    src = open_dataset(d, "train")
    cached = chunk_index.cache_path(d, "train")
    assert cached.is_file() and not (d / "index-train.npz").exists()
    no_shard_reads(monkeypatch)
    assert np.array_equal(open_dataset(d, "train").adler, src.adler)


def test_nowhere_to_keep_the_index_still_opens(datasets, tmp_path, monkeypatch):
    d = tmp_path / "nowhere"
    shutil.copytree(datasets[1], d)
    (d / "index-train.npz").unlink()

    def save(path, index):
        raise OSError(30, "Read-only file system", str(path))

    monkeypatch.setattr(chunk_index, "save", save)
    assert open_dataset(d, "train").samples == 96


def _swap(d, other):
    (d / "train-00000.h5").rename(d / "x")
    (d / "train-00001.h5").rename(d / "train-00000.h5")
    (d / "x").rename(d / "train-00001.h5")
    return "train-00000.h5"


def _edit_hash(d, other):
    doc = json.loads((d / "manifest.json").read_text())
    doc["splits"]["train"]["shards"][2]["sha256"] = "0" * 64
    (d / "manifest.json").write_text(json.dumps(doc))
    return "train-00002.h5"


def _rewrite(d, other):
    path = d / "train-00001.h5"
    data = bytearray(path.read_bytes())
    data[len(data) // 3] ^= 0x01
    path.write_bytes(bytes(data))
    return path.name


DAMAGE = {
    "delete": lambda d, other: (d / "train-00002.h5").unlink() or "train-00002.h5",
    "truncate": lambda d, other: os.truncate(d / "train-00001.h5", 1000) or "train-00001.h5",
    "foreign": lambda d, other: shutil.copy(other / "train-00001.h5", d / "train-00001.h5") and "train-00001.h5",
    "foreign-kept-mtime": lambda d, other: shutil.copy2(other / "train-00001.h5", d / "train-00001.h5") and
    "train-00001.h5",
    "swap": _swap,
    "edit-hash": _edit_hash,
    "rewrite-anywhere": _rewrite,
}


@pytest.mark.parametrize("kind", DAMAGE)
def test_damage_to_an_indexed_dataset_is_found_at_open(kind, datasets, tmp_path):
    d = indexed_copy(datasets[1], tmp_path)
    bad = DAMAGE[kind](d, datasets[2])
    with pytest.raises(DataError) as err:
        open_dataset(d, "train")
    assert bad in str(err.value) and len(str(err.value).splitlines()) == 1, str(err.value)


def test_damage_that_keeps_the_stat_signature_is_found_at_read(datasets, tmp_path):
    d = indexed_copy(datasets[1], tmp_path)
    src = open_dataset(d, "train")
    flip_in_chunk(d / "train-00002.h5", src, keep_mtime=True)
    src = open_dataset(d, "train")  # unseen at open: size, mtime and inode are the indexed ones
    with pytest.raises(DataError, match=r"train-00002\.h5: corrupt chunk at sample 8"):
        for _ in batch_stream(d, "train", 8, source=src, shuffle=False):
            pass
    with pytest.raises(DataError, match=r"train-00002\.h5: SHA-256 differs"):
        open_dataset(d, "train", check_hashes=True)
    assert any("train-00002.h5" in p for p in find_problems(d))


def test_verify_names_an_index_that_disagrees_with_its_shard(datasets, tmp_path):
    d = indexed_copy(datasets[1], tmp_path)
    index = chunk_index.load(d / "index-train.npz")
    crc = index.crc.copy()
    crc[4] ^= 1  # chunk 0 of train-00001.h5, under the shard's own signature
    chunk_index.save(d / "index-train.npz", dataclasses.replace(index, crc=crc))
    problems = find_problems(d)
    assert len(problems) == 1 and problems[0].startswith(f"{d / 'index-train.npz'}: the entry for train-00001.h5")
    with pytest.raises(DataError, match=r"train-00001\.h5: corrupt chunk at sample 0"):
        for _ in batch_stream(d, "train", 8, shuffle=False):
            pass


def test_a_reader_killed_mid_index_leaves_nothing_verify_minds(datasets, tmp_path):
    d = indexed_copy(datasets[1], tmp_path)
    (d / f"index-train.npz.tmp-{os.getpid() + 1}").write_bytes(b"half an index")
    assert find_problems(d) == []
    assert open_dataset(d, "train").samples == 96


# ---------------------------------------------------------------- the graph mechanism reads byte ranges

def reference_keys(d, split="train"):
    import collections
    import hashlib

    from pipeline.dataset.manifest import load_manifest
    from pipeline.dataset.shards import read_sequences

    parts = [read_sequences(d / e["path"]) for e in load_manifest(d).shards[split]]
    frames, labels = np.concatenate([p["frames"] for p in parts]), np.concatenate([p["labels"] for p in parts])
    return collections.Counter(hashlib.sha1(f.tobytes()).hexdigest() + str(y) for f, y in zip(frames, labels))


def graph_keys(d, **kw):
    import collections
    import hashlib

    from pipeline.input.loader import make_dataset

    got = collections.Counter()
    for frames, labels in make_dataset(d, "train", 8, mechanism="graph", readers=1, prefetch=False, **kw):
        got.update(hashlib.sha1(f.tobytes()).hexdigest() + str(y) for f, y in zip(frames.numpy(), labels.numpy()))
    return got


@pytest.mark.parametrize("block", [16, 1 << 18])  # 16: a block is the largest chunk, chunks span two
@pytest.mark.parametrize("shuffle", [False, True])
def test_graph_reads_byte_ranges_of_its_shards_only(block, shuffle, datasets, monkeypatch):
    import tensorflow as tf

    from pipeline.input import loader

    def refuse(*args, **kwargs):
        raise AssertionError("the graph mechanism read a whole file or the stored chunks at build")

    monkeypatch.setattr(tf.io, "read_file", refuse)
    monkeypatch.setattr(source_module.Source, "stored", refuse)
    monkeypatch.setattr(loader, "GRAPH_BLOCK", block)
    assert graph_keys(datasets[1], shuffle=shuffle, seed=4) == reference_keys(datasets[1])


def test_graph_names_a_chunk_that_changed_under_its_stat_signature(datasets, tmp_path):
    import tensorflow as tf

    d = indexed_copy(datasets[1], tmp_path)
    flip_in_chunk(d / "train-00001.h5", open_dataset(d, "train"), keep_mtime=True)
    with pytest.raises(tf.errors.OpError, match=r"corrupt chunk in shard.*train-00001\.h5"):
        graph_keys(d, shuffle=False)


@pytest.mark.parametrize("keep", [0.3, 0.6, 0.9])
def test_graph_names_a_shard_truncated_after_open(keep, datasets, tmp_path):
    import tensorflow as tf

    from pipeline.input.loader import make_dataset

    d = indexed_copy(datasets[1], tmp_path)
    src = open_dataset(d, "train")
    path = d / "train-00002.h5"
    os.truncate(path, int(path.stat().st_size * keep))
    with pytest.raises(tf.errors.OpError, match=r"train-00002\.h5"):
        for _ in make_dataset(d, "train", 8, mechanism="graph", source=src, shuffle=False, readers=1):
            pass


def test_graph_names_a_shard_shortened_by_whole_blocks(datasets, tmp_path, monkeypatch):
    """A file shorter by whole blocks reads as fewer blocks, not as an error of the reader: the end of
    every run is checked."""
    import tensorflow as tf

    from pipeline.input import loader

    monkeypatch.setattr(loader, "GRAPH_BLOCK", 16)  # blocks of the largest chunk: several per shard
    d = indexed_copy(datasets[1], tmp_path)
    src = open_dataset(d, "train")
    path = d / "train-00002.h5"
    os.truncate(path, path.stat().st_size - int(loader.graph_block_bytes(src)[2]))
    with pytest.raises(tf.errors.OpError, match=r"truncated shard.*train-00002\.h5"):
        for _ in loader.make_dataset(d, "train", 8, mechanism="graph", source=src, shuffle=False, readers=1):
            pass


def test_adler32_in_graph_ops_is_zlibs():
    import zlib

    import tensorflow as tf

    from pipeline.input.loader import ADLER_ROW, _adler32

    rng = np.random.default_rng(0)
    for n in (0, 1, 7, ADLER_ROW - 1, ADLER_ROW, ADLER_ROW + 1, 3 * ADLER_ROW + 5, 70_000):
        for data in (rng.integers(0, 256, n, dtype=np.uint8).tobytes(), b"\xff" * n):
            assert int(_adler32(tf.constant(data))) == zlib.adler32(data), n
