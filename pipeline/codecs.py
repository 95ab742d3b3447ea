"""HDF5 compression filters for the `frames` dataset, by name.

Measured by `write_shard` at size 50, 2,048 samples, 32-sample chunks, one core
(README "Codec choice" has the table): Zstd at its fast level -3 writes about 35,000
samples/s at 516 bytes per sample (242x smaller than raw), 3x faster to write than Zstd
level 1 for 25% more bytes; so `zstd-fast` is the default. `gzip` is plain HDF5 deflate,
readable without plugins. Readers of a Zstd/LZ4/Blosc dataset need `import hdf5plugin`
before opening it (this module does that on import).
"""
from __future__ import annotations

import hdf5plugin

CODECS = ("zstd-fast", "zstd", "lz4", "blosc-lz4", "gzip", "none")
DEFAULT_CODEC = "zstd-fast"
DEFAULT_CHUNK = 32  # samples per HDF5 chunk; 64 falls off the CPU caches and writes 3x slower


def filter_options(codec: str) -> dict:
    """Keyword arguments for h5py `create_dataset` that apply `codec`."""
    if codec == "zstd-fast":
        return dict(hdf5plugin.Zstd(clevel=-3))
    if codec == "zstd":
        return dict(hdf5plugin.Zstd(clevel=1))
    if codec == "lz4":
        return dict(hdf5plugin.LZ4())
    if codec == "blosc-lz4":
        return dict(hdf5plugin.Blosc(cname="lz4", clevel=5, shuffle=hdf5plugin.Blosc.BITSHUFFLE))
    if codec == "gzip":
        return {"compression": "gzip", "compression_opts": 1}
    if codec == "none":
        return {}
    raise ValueError(f"codec must be one of {', '.join(CODECS)}, got {codec!r}")
