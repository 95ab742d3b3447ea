"""One stream across processes: which rows of each global batch a process takes, and which chunks it decodes.

    shard_index, shard_count = jax_shard()    # or input_context_shard(context) under tf.distribute
    for frames, labels in batch_stream(data, "train", 256, shard_index=shard_index, shard_count=shard_count):
        ...   # this process's 256 / shard_count rows of each global batch of 256

The global stream (`pipeline.input.order`, cut into batches of `batch_size`) does not depend on
`shard_count`: process i takes rows [i*b, (i+1)*b) of every global batch, b = batch_size / shard_count,
so the processes' batches at step k, concatenated in shard order, are the unsharded stream's batch k,
and a position (`BatchStream.state()`, the global step) taken with n processes resumes with m.

Remainder: a short global batch of r rows (drop_remainder=False: the last of finite epochs, or of
each `make_dataset` iteration without repeat) is cut the same way, clipped to r: shards with
i*b >= r get an empty batch (0 rows). Every process yields the same number of batches, every sample
comes once per epoch across them, nothing is padded or repeated. Where processes must step with
equal shapes, pass drop_remainder=True (the short global batch is then dropped on every process).

Decoding: a process decodes only the chunks that hold any of its rows (`chunks_needed`). The samples
of a chunk land at uniformly random places of its window, so a chunk of c samples holds none of a
process's rows with probability about (1 - 1/shard_count)**c: at c = 32 (the default chunk) a process
decodes 100% of a window's chunks at 2 or 4 processes, 99% at 8, 87% at 16 (`decode_fraction`
counts it), against its share of 1/shard_count. So each process's decoding does not shrink as
processes are added; its cutting, copying and unpacking do. Making it shrink would take an order in
which each process's rows come from its own chunks (MosaicML's canonical nodes): an order tied to a
fixed node count, with processes resuming only in counts that divide it. The order here stays
independent of `shard_count`, which is what lets any n resume as any m.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.input.order import EpochOrder


@dataclass(frozen=True)
class Shard:
    """Process `index` of `count` in a stream of global batches of `batch_size` samples."""

    batch_size: int
    index: int = 0
    count: int = 1

    def __post_init__(self):
        for name, value in (("shard_count", self.count), ("shard_index", self.index)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise ValueError(f"{name} must be an integer, got {value!r}")
        if self.count < 1:
            raise ValueError(f"shard_count must be a positive integer, got {self.count!r}")
        if not 0 <= self.index < self.count:
            raise ValueError(f"shard_index must be in [0, shard_count) = [0, {self.count}), got {self.index!r}")
        if self.batch_size % self.count:
            raise ValueError(f"batch_size {self.batch_size} is not a multiple of shard_count {self.count}: "
                             f"each process takes batch_size / shard_count rows of every global batch")

    @property
    def whole(self) -> bool:
        """The unsharded stream (one process)."""
        return self.count == 1

    @property
    def rows(self) -> slice:
        """This process's rows of a global batch: [index*b, (index+1)*b), b = batch_size / count
        (clipped by slicing where the batch is short)."""
        b = self.batch_size // self.count
        return slice(self.index * b, (self.index + 1) * b)

    def takes(self, first: int, n: int) -> np.ndarray:
        """bool (n,): which of n consecutive samples of the stream this process takes, the first of them
        `first` samples past the start of a global batch (negative: before the stream starts, not taken)."""
        at = np.arange(first, first + n)
        return (at >= 0) & (at % self.batch_size // (self.batch_size // self.count) == self.index)


def chunks_needed(order: EpochOrder, w: int, need: np.ndarray) -> np.ndarray:
    """bool (chunks of window `w`,): the chunks holding any of the window's output positions that
    `need` (bool (n,), n the window's samples) marks."""
    counts = order.counts[order.window(w)]
    perm = order.permutation(w)
    stored = need if perm is None else need[np.argsort(perm)]  # need of each stored sample, chunk after chunk
    return np.logical_or.reduceat(stored, np.concatenate([[0], np.cumsum(counts)[:-1]]))


def decode_fraction(order: EpochOrder, batch_size: int, shard_count: int) -> float:
    """Of the chunks of one epoch (`order`, batches cut from its start), the fraction one process
    decodes, averaged over the `shard_count` processes; its share of the rows is 1 / shard_count.
    A count of chunks, nothing read."""
    decoded, start = 0, 0
    for w in range(order.windows):
        n = int(order.counts[order.window(w)].sum())
        for i in range(shard_count):
            decoded += int(chunks_needed(order, w, Shard(batch_size, i, shard_count).takes(start, n)).sum())
        start += n
    return decoded / (len(order.counts) * shard_count)


def jax_shard() -> tuple[int, int]:
    """(shard_index, shard_count) of this JAX process: (`jax.process_index()`, `jax.process_count()`).
    Each process's batch is then its slice of the global batch, in process order: what
    `jax.make_array_from_process_local_data` takes where the batch axis runs over the processes in that order."""
    import jax

    return jax.process_index(), jax.process_count()


def input_context_shard(context) -> tuple[int, int]:
    """(shard_index, shard_count) of a `tf.distribute.InputContext`: (`input_pipeline_id`,
    `num_input_pipelines`), one shard per input pipeline (worker). A pipeline's batch is then its
    replicas' rows together; `.rebatch(context.get_per_replica_batch_size(batch_size))` cuts it
    into their per-replica batches, in replica order."""
    return context.input_pipeline_id, context.num_input_pipelines
