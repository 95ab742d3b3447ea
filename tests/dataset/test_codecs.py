"""Every codec round-trips frames through plain h5py; nbit-gzip chunks match HDF5's own N-bit encoding."""
import zlib

import h5py
import numpy as np
import pytest

from pipeline.dataset import codecs
from pipeline.dataset.synth import SequenceSpec, generate


def frames(n, size, seed=0):
    return generate(np.random.default_rng(seed), n, SequenceSpec(size)).frames


@pytest.mark.parametrize("codec", codecs.CODECS)
@pytest.mark.parametrize("size,n,chunk", [(8, 20, 8), (7, 10, 4), (9, 3, 32)])
def test_round_trip_through_plain_h5py(tmp_path, codec, size, n, chunk):
    data = frames(n, size)
    chunk = min(chunk, n)
    with h5py.File(tmp_path / "f.h5", "w") as f:
        d = codecs.create_frames(f, data.shape, chunk, codec)
        for start in range(0, n, chunk):
            codecs.write_frames(d, start, data[start:start + chunk], codec)
    with h5py.File(tmp_path / "f.h5", "r") as f:
        assert f["frames"].dtype == np.uint8 and f["frames"].chunks == (chunk, size, size, size)
        assert np.array_equal(f["frames"][:], data)


@pytest.mark.parametrize("size,chunk", [(8, 8), (7, 3), (9, 32), (5, 1)])
def test_pack_bits_is_the_nbit_filters_encoding(tmp_path, size, chunk):
    """Let HDF5 itself apply N-bit (precision 1) + deflate, inflate its stored chunk: our packing must equal it."""
    data = frames(chunk, size, seed=3)
    bit = h5py.h5t.NATIVE_UINT8.copy()
    bit.set_precision(1)
    dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
    dcpl.set_chunk(data.shape)
    dcpl.set_filter(h5py.h5z.FILTER_NBIT, 0)
    dcpl.set_deflate(1)
    with h5py.File(tmp_path / "hdf5.h5", "w") as f:
        h5py.h5d.create(f.id, b"frames", bit, h5py.h5s.create_simple(data.shape), dcpl).write(
            h5py.h5s.ALL, h5py.h5s.ALL, data)
    with h5py.File(tmp_path / "hdf5.h5", "r") as f:
        _, stored = f["frames"].id.read_direct_chunk((0, 0, 0, 0))
    assert zlib.decompress(stored) == codecs.pack_bits(data)


def test_nbit_gzip_is_small_and_uses_only_builtin_filters(tmp_path):
    data = frames(64, 20)
    with h5py.File(tmp_path / "f.h5", "w") as f:
        d = codecs.create_frames(f, data.shape, 32, "nbit-gzip")
        for start in (0, 32):
            codecs.write_frames(d, start, data[start:start + 32], "nbit-gzip")
        plist = d.id.get_create_plist()
        assert [plist.get_filter(i)[0] for i in range(plist.get_nfilters())] == [
            h5py.h5z.FILTER_NBIT, h5py.h5z.FILTER_DEFLATE]
        stored = sum(d.id.get_chunk_info(i).size for i in range(2))
    assert stored * 8 < data.nbytes / 8  # bit-packing alone is 8x; deflate adds at least another 8x here


def test_unknown_codec_is_refused():
    with pytest.raises(ValueError, match="codec must be one of"):
        codecs.filter_options("rar")


@pytest.mark.parametrize("dtype,shape", [(np.uint8, (37,)), (np.int16, (37, 9))])
def test_small_arrays_are_what_h5py_gzip_with_shuffle_stores(tmp_path, dtype, shape):
    values = np.random.default_rng(0).integers(0, 50, shape).astype(dtype)
    with h5py.File(tmp_path / "f.h5", "w") as f:
        ours = codecs.create_small(f, "ours", values)
        theirs = f.create_dataset("theirs", data=values, chunks=shape, compression="gzip", shuffle=dtype != np.uint8)
        assert ours.compression == "gzip" and ours.shuffle == theirs.shuffle
        origin = (0,) * len(shape)
        assert zlib.decompress(ours.id.read_direct_chunk(origin)[1]) == zlib.decompress(
            theirs.id.read_direct_chunk(origin)[1])
    with h5py.File(tmp_path / "f.h5", "r") as f:
        assert np.array_equal(f["ours"][:], values) and f["ours"].dtype == dtype
