"""glibc allocator settings for processes that allocate and free multi-megabyte buffers in a loop.

By default glibc serves a large request with a fresh mmap, or trims the heap once a few MB are
free, so every chunk-sized buffer (a shard chunk being written, a chunk being inflated) is paid
for again in page faults, 4 KB at a time: CPU taken from the generator's and the loader's own
work. Keeping up to TRIM_THRESHOLD of freed memory on the heap, and buffers below MMAP_THRESHOLD
off mmap, makes them reusable.

ENVIRON is for processes started later (the generator's Dask workers); `keep_buffers_on_heap()`
applies the same settings to the running process (the loader).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import functools

TRIM_THRESHOLD = 256 << 20  # bytes of free heap glibc keeps instead of returning them to the OS
MMAP_THRESHOLD = 64 << 20  # requests below this come from the heap, not a fresh mmap
ENVIRON = {"MALLOC_TRIM_THRESHOLD_": str(TRIM_THRESHOLD), "MALLOC_MMAP_THRESHOLD_": str(MMAP_THRESHOLD)}

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt parameters, from glibc's malloc.h


def keep_buffers_on_heap() -> bool:
    """Set this process's trim and mmap thresholds as ENVIRON does; False if glibc is not the allocator.

    Cheap after the first call, so a loop can reapply it where another library may have changed them.
    """
    mallopt = _mallopt()
    if mallopt is None:
        return False
    return bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)) and bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD))


@functools.cache
def _mallopt():
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):  # not glibc (macOS, musl without mallopt): nothing to tune
        return None
