"""The `load` suite: samples/s out of each input pipeline in its steady state, every one shuffled.

Cells, per size and batch size (impl, and the row keys `front_end`, `shuffle`, `mechanism`,
`packed`, `readers`):

* TensorFlow backend: ours (`make_dataset`, shuffled, endless) bit-packed, unpacked, and
  packed through `mechanism="graph"` (TensorFlow ops only: what tf.data service runs);
  packed again with 1 and 2 readers (all cores is the default cell); each mechanism also
  unshuffled, to show what shuffling costs; the in-memory baseline (a fresh permutation
  each epoch, one gather per batch), unshuffled too; `from_generator` h5py block reads.
* Consumers: each pipeline is pulled from a Python loop (`consumer` "python"); the shuffled
  tf.data cells at the default readers are pulled again from inside a `tf.function`
  ("tf.function"), as `model.fit` pulls them, which costs the consumer's thread a function call
  per batch, and again `LOAD_STEPS_PER_CALL` batches per call ("tf.function-K", as `fit` with
  `steps_per_execution`: the pipeline's own pace). The summary's ratios compare cells of one consumer.
* JAX backend: the NumPy front end (`pipeline.input.reader.batch_stream`, front end "numpy"),
  against the NumPy in-memory baseline; no TensorFlow.

How: every cell's pipeline is built, its first batch timed (`first_batch_ms`: start-up,
first reads, tracing), then one whole epoch is read untimed (warm-up). Then the cells run
round-robin, `load_repeats` times each. A pipeline keeps working while the other cells
run, so each turn first reads, untimed, as many samples as any cell's pipeline may hold
ready (`buffered_bound`, the same count for every cell), and only then times its window:
at least `load_min_epochs` epochs and at least `load_min_windows` of our loader's shuffle
windows, whichever is more samples. A pull returns once the batch is where a training step
would read it (`pipeline.bench.consumers`): tf.data batches on the compute device, NumPy ones on
the host (`batches_on` in the row), so both sides of every ratio end in the same place.
`samples_per_s` is the median window; `_p10`/`_p90` its spread. `peak_rss_mb`: the peak
RSS of the process and its children while the cell ran; `rss_growth_mb`: that peak over
the RSS just before the cell's pipeline was built (the cell's own buffers, approximately:
other cells' pipelines stay alive meanwhile).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path

from pipeline.bench import baselines, ours
from pipeline.bench.consumers import puller
from pipeline.bench.data import read_split, shard_paths, shuffle_window
from pipeline.bench.grid import Grid
from pipeline.bench.memory import RssSampler, rss_bytes
from pipeline.bench.progress import log
from pipeline.bench.recorder import Recorder
from pipeline.bench.timing import Summary, clock
from pipeline.results.format import STEPS_PER_CALL_CONSUMER
from pipeline.runtime.cpus import default_readers, usable_cpus

METRICS = ("samples_per_s", "samples_per_s_p10", "samples_per_s_p90", "mb_per_s", "first_batch_ms",
           "peak_rss_mb", "rss_growth_mb")
IMPLS = ("ours", "ours-packed", "ours-graph-packed", "in-memory", "from_generator")
# batches per `tf.function` call of the STEPS_PER_CALL_CONSUMER cells: enough that the call's own cost,
# that of a score of batches pulled inside it, fades beside the batches
LOAD_STEPS_PER_CALL = 16


@dataclass(frozen=True)
class LoadCell:
    """One pipeline to time. readers: our loader's readers (None: the default); consumer: how its
    batches are pulled (`pipeline.bench.consumers.puller`)."""

    impl: str
    size: int
    batch_size: int
    shuffle: bool = True
    readers: int | None = None
    consumer: str = "python"

    @property
    def ours(self) -> bool:
        return self.impl.startswith("ours")

    @property
    def packed(self) -> bool:
        return self.impl.endswith("-packed")

    def mechanism(self, codec: str | None = None) -> str | None:
        """What decodes the cell's chunks: "graph", or "auto" resolved for `codec` when given."""
        if not self.ours:
            return None
        if "-graph" in self.impl:
            return "graph"
        if codec is not None:
            from pipeline.input.loader import mechanism_for

            return mechanism_for(codec)
        return "auto"

    def key(self, backend: str, codec: str | None = None) -> dict:
        return dict(size=self.size, batch_size=self.batch_size, front_end="numpy" if backend == "jax" else "tf.data",
                    consumer=self.consumer, shuffle=self.shuffle, packed=self.packed, mechanism=self.mechanism(codec),
                    **({"steps_per_execution": LOAD_STEPS_PER_CALL} if self.consumer == STEPS_PER_CALL_CONSUMER
                       else {}),
                    readers=(self.readers or default_readers()) if self.ours else None)


def cells(grid: Grid, size: int, batch: int, backend: str) -> list[LoadCell]:
    """The cells of one size and batch size, in the order they run."""
    out = [LoadCell("ours-packed", size, batch), LoadCell("ours", size, batch)]
    out += [LoadCell("ours-packed", size, batch, readers=r) for r in grid.reader_counts() if r != default_readers()]
    if grid.load_graph and backend == "tensorflow":
        out.append(LoadCell("ours-graph-packed", size, batch))
    out.append(LoadCell("in-memory", size, batch))
    if grid.load_unshuffled:
        out += [LoadCell(c.impl, size, batch, shuffle=False) for c in out if c.readers is None]
    if grid.load_from_generator and backend == "tensorflow":
        out.append(LoadCell("from_generator", size, batch))
    if grid.load_graph_consumer and backend == "tensorflow":
        out += [dataclasses.replace(c, consumer=consumer) for consumer in ("tf.function", STEPS_PER_CALL_CONSUMER)
                for c in out if c.shuffle and c.readers is None]
    return out


def window_batches(grid: Grid, batch: int, shuffle_samples: int) -> int:
    """Batches in one timed window: at least load_min_epochs epochs and load_min_windows shuffle windows
    (a shuffle window holds at most the whole epoch)."""
    epoch = grid.steps_per_epoch(batch) * batch
    samples = max(grid.load_min_epochs * epoch, grid.load_min_windows * min(shuffle_samples, grid.dataset_samples))
    return math.ceil(samples / batch)


def buffered_bound(cell: LoadCell, backend: str, shuffle_samples: int, epoch_samples: int) -> int:
    """Samples that `cell`'s pipeline may hold ready ahead of its consumer, an upper bound: what it
    prepares while the other cells run, and what a timed window would then get for free.

    Ours: `2 * readers + 1` shuffle windows plus the batches behind them (`pipeline.input.loader`),
    and for the NumPy front end the lists of batches its thread cuts ahead (`GROUP_BYTES` of rows
    and a batch each; rows of at least S**3 / 8 bytes). The tf.data baselines: `PREFETCH_BATCHES`
    batches and one per core in their parallel map. The NumPy in-memory baseline is a plain
    generator: nothing runs ahead.
    """
    from pipeline.input.loader import PREFETCH_BATCHES
    from pipeline.input.reader import GROUP_BYTES

    cores = usable_cpus()
    if cell.ours:
        readers = cell.readers or default_readers()
        ahead = (PREFETCH_BATCHES + readers) * cell.batch_size
        if backend == "jax":
            ahead += PREFETCH_BATCHES * (math.ceil(GROUP_BYTES / (cell.size ** 3 // 8)) + cell.batch_size)
        return (2 * readers + 1) * min(shuffle_samples, epoch_samples) + ahead
    if backend == "jax":
        return 0
    return (PREFETCH_BATCHES + cores) * cell.batch_size


def _pipeline(cell: LoadCell, backend: str, directory: Path, naive: Path | None, arrays):
    """A function that pulls `cell`'s next batch, as its consumer does, and returns its samples."""
    return puller(cell.consumer, _batches(cell, backend, directory, naive, arrays), LOAD_STEPS_PER_CALL)


def _batches(cell: LoadCell, backend: str, directory: Path, naive: Path | None, arrays):
    """An endless iterator of (frames, labels) batches for `cell`."""
    if cell.ours:
        if backend == "jax":
            return ours.numpy_batches(directory, cell.batch_size, packed=cell.packed, readers=cell.readers,
                                      shuffle=cell.shuffle)
        return iter(ours.tf_dataset(directory, cell.batch_size, packed=cell.packed, mechanism=cell.mechanism(),
                                    readers=cell.readers, shuffle=cell.shuffle))
    if cell.impl == "in-memory":
        frames, labels = arrays()
        if backend == "jax":
            return baselines.in_memory_batches(frames, labels, cell.batch_size, shuffle=cell.shuffle)
        return iter(baselines.in_memory_dataset(frames, labels, cell.batch_size, shuffle=cell.shuffle))
    return iter(baselines.from_generator_dataset(shard_paths(naive or directory), cell.batch_size, cell.size,
                                                 shuffle=cell.shuffle))


def _take(pull, batches: int) -> int:
    """Pull `batches` batches; returns the samples."""
    return sum(pull() for _ in range(batches))


class _Running:
    """A built cell: its pull function and what was measured so far."""

    def __init__(self, cell, pull, first_s, rss_before, window, shuffle_samples):
        self.cell, self.pull, self.first_s, self.rss_before = cell, pull, first_s, rss_before
        self.window, self.shuffle_samples = window, shuffle_samples
        self.rates: list[float] = []
        self.peak = 0


def run(rec: Recorder, grid: Grid, data: dict[int, Path], naive: dict[int, Path] | None = None) -> None:
    """naive: the same datasets in NAIVE_CODEC, read by the from_generator baseline."""
    from pipeline.dataset.manifest import load_manifest
    from pipeline.runtime.devices import compute_device

    backend = rec.backend
    for size in grid.sizes:
        held = {}

        def arrays():  # read once per size, only when an in-memory cell runs; one copy shared by its cells
            if "arrays" not in held:
                held["arrays"] = read_split(data[size], "train")
                if backend == "tensorflow":
                    import tensorflow as tf

                    held["arrays"] = tuple(tf.convert_to_tensor(a) for a in held["arrays"])
            return held["arrays"]

        codec = load_manifest(data[size]).params.codec
        window_samples = shuffle_window(data[size])  # opens the split once per size, not per cell
        naive_codec = load_manifest(naive[size]).params.codec if naive and size in naive else None
        batches_on = "host" if backend == "jax" else compute_device()
        for batch in grid.batch_sizes:
            running: list[_Running] = []
            group = cells(grid, size, batch, backend)
            epoch_samples = grid.steps_per_epoch(batch) * batch
            flush = math.ceil(max(buffered_bound(c, backend, window_samples, epoch_samples) for c in group) / batch)
            for cell in group:
                key = cell.key(backend, codec)
                with rec.cell("load", cell.impl, METRICS, **key):
                    log(f"load {cell.impl} size={size} batch={batch} shuffle={cell.shuffle} readers={key['readers']} "
                        f"consumer={cell.consumer}")
                    shuffle_samples = window_samples if cell.ours else 0
                    window = window_batches(grid, batch, window_samples)
                    rss_before = rss_bytes()
                    start = clock()
                    pull = _pipeline(cell, backend, data[size], (naive or {}).get(size), arrays)
                    _take(pull, 1)
                    first = clock() - start
                    state = _Running(cell, pull, first, rss_before, window, shuffle_samples)
                    with RssSampler() as rss:
                        _take(pull, grid.steps_per_epoch(batch) - 1)  # the rest of the first epoch: warm-up
                    state.peak = rss.peak
                    running.append(state)
            since = rec.mark()  # the round-robin windows of this batch size: the state its rows get
            for _ in range(grid.load_repeats):
                for state in list(running):
                    cell = state.cell
                    try:
                        with RssSampler() as rss:
                            _take(state.pull, flush)  # what it prepared while the other cells ran
                            start = clock()
                            samples = _take(state.pull, state.window)
                            seconds = clock() - start
                        state.rates.append(samples / seconds)
                        state.peak = max(state.peak, rss.peak)
                    except Exception as e:  # recorded as the cell's error; the other cells go on
                        running.remove(state)
                        rec.fail("load", cell.impl, METRICS, e, **cell.key(backend, codec))
            for state in running:
                cell = state.cell
                key = cell.key(backend, codec)
                spread = Summary.of(state.rates)
                extra = dict(repeats=spread.count, batches_on=batches_on, window_batches=state.window,
                             untimed_batches_per_window=flush,
                             epochs_per_window=round(state.window * batch / (grid.steps_per_epoch(batch) * batch), 2),
                             shuffle_window=state.shuffle_samples or None,
                             codec=naive_codec if cell.impl == "from_generator" and naive_codec else codec)
                rec.add("load", cell.impl, "samples_per_s", spread.median, **key, **extra, repeat_values=state.rates,
                        since=since)
                rec.add("load", cell.impl, "samples_per_s_p10", spread.p10, **key, **extra)
                rec.add("load", cell.impl, "samples_per_s_p90", spread.p90, **key, **extra)
                rec.add("load", cell.impl, "mb_per_s", spread.median * size ** 3 / 1e6, **key, **extra,
                        repeat_values=[r * size ** 3 / 1e6 for r in state.rates])
                rec.add("load", cell.impl, "first_batch_ms", state.first_s * 1e3, **key, **extra)
                rec.add("load", cell.impl, "peak_rss_mb", state.peak / 2 ** 20, **key, **extra)
                rec.add("load", cell.impl, "rss_growth_mb", max(0, state.peak - state.rss_before) / 2 ** 20, **key,
                        **extra)
            running.clear()
        held.clear()
