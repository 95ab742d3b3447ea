"""The train suite's scaling cells: `model.fit` on our loader with one replica per device, as
`train --devices N` runs it, for each device count N of `Grid.scaling_counts()`.

Per size, model and batch size (the global batch, split evenly over the N replicas; a count it
does not split over, or that the backend does not see, is skipped with a logged note), every
count's model is built first, then `fit` runs `scaling_repeats` times round-robin over the counts
(so that a machine's drift falls on every count alike), each call one untimed epoch (tracing and
compilation on the first call; on later ones tf.data starts its pipeline again, while a JAX feed
runs on) and `scaling_epochs` timed ones; an epoch is one pass of the bench dataset. Rows (impl = model, feed
``ours``, `devices` = N, `processes` = 1):

* ``scaling_samples_per_s`` (+ ``_p10``, ``_p90``): global samples per second over the timed
  epochs of every call (`batch_size * steps_per_epoch / epoch seconds`).
* ``scaling_efficiency`` = samples/s(N) / (N x samples/s(1)), both medians of this run; 1 for N = 1.

JAX: `keras.distribution.DataParallel` over the first N of `jax.devices()`; TensorFlow: no
strategy for one device, `MirroredStrategy` over the first N GPUs or logical CPU devices for
more, fed per replica by `replicas.distributed`. Every count runs the same step program, so that
the efficiency measures replicas and nothing else: TensorFlow without XLA (which cannot compile
a mirrored step), JAX with it (the model's default).

How many devices there are is fixed when the backend starts: `configure` makes the largest
requested count visible on a CPU before anything starts it, and every cell takes the first N.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.bench import ours
from pipeline.bench.grid import Grid
from pipeline.bench.progress import log
from pipeline.bench.recorder import Recorder
from pipeline.bench.timing import Summary, epoch_clock

SCALING_METRICS = ("scaling_samples_per_s", "scaling_samples_per_s_p10", "scaling_samples_per_s_p90",
                   "scaling_efficiency")
PROCESSES = 1  # every replica runs in this one process; several processes (hosts) are not measured
SEED = 0


def configure(backend: str, counts: tuple[int, ...] | None) -> None:
    """Make max(`counts`) devices visible where there is no GPU: JAX host devices, TensorFlow
    logical CPU devices. Call before anything starts the backend; once it has started, a note says
    so and the counts it does not see are skipped.

    One process configured once for the largest count, every cell on the first N devices, rather
    than a process per count: the counts are then measured side by side, round-robin, in the same
    warm process; and on a GPU node nothing is configured (every GPU is visible), where a second
    process would find the GPU memory this one holds (JAX takes 75% of it at start)."""
    count = max(counts or (1,))
    if count < 2:
        return
    if backend == "jax":
        import jax

        try:  # the CPU platform only: on a GPU node jax.devices() stays the GPUs
            jax.config.update("jax_num_cpu_devices", count)
        except RuntimeError as e:
            log(f"scaling: JAX has started, its CPU device count is fixed ({e})")
        return
    import tensorflow as tf

    from pipeline.training.replicas import logical_cpus

    if tf.config.list_physical_devices("GPU"):
        return
    try:
        logical_cpus(count)
    except RuntimeError as e:
        log(f"scaling: TensorFlow has started, its logical CPU devices are fixed ({e})")


def visible(backend: str) -> int:
    """Devices a replica may run on: JAX's default devices; TensorFlow's GPUs, else its logical CPU devices."""
    if backend == "jax":
        import jax

        return len(jax.devices())
    import tensorflow as tf

    kind = "GPU" if tf.config.list_physical_devices("GPU") else "CPU"
    return len(tf.config.list_logical_devices(kind))


def replicas_on(backend: str, count: int):
    """(a function returning a fresh context to build and fit in, the TensorFlow strategy or None)
    for `count` replicas on the first `count` devices.

    `replicas.strategy_scope` sets the JAX distribution for the whole process and configures
    exactly `count` logical CPU devices, which holds one count per process; the cells here hold
    several counts in one process, each model with its own distribution."""
    if count == 1:
        return contextlib.nullcontext, None
    if backend == "jax":
        import jax
        import keras

        return keras.distribution.DataParallel(devices=jax.devices()[:count]).scope, None
    import tensorflow as tf

    kind = "GPU" if tf.config.list_physical_devices("GPU") else "CPU"
    strategy = tf.distribute.MirroredStrategy([d.name for d in tf.config.list_logical_devices(kind)[:count]])
    return strategy.scope, strategy


def efficiency(samples_per_s: dict[int, float]) -> dict[int, float]:
    """device count -> samples/s(N) / (N x samples/s(1)), for every count, given the count 1; else {}."""
    one = samples_per_s.get(1)
    if not one:
        return {}
    return {n: rate / (n * one) for n, rate in samples_per_s.items()}


@dataclass
class _Cell:
    """One device count's model, its context, its data and the samples/s of its timed epochs."""

    model: object
    context: object
    data: object
    first_epoch_s: float | None = None
    rates: list[float] = field(default_factory=list)


def usable_counts(grid: Grid, backend: str, batch: int, seen: int) -> list[int]:
    """The scaling counts that `batch` splits evenly over and the backend sees (`seen`); a note for each other."""
    out = []
    for n in grid.scaling_counts():
        if n > seen:
            log(f"scaling: {n} devices skipped: {backend} sees {seen}")
        elif batch % n:
            log(f"scaling: {n} devices skipped: batch {batch} does not split evenly over them")
        else:
            out.append(n)
    return out


def _data(backend: str, directory: Path, batch: int, strategy):
    """Our loader as `train` feeds `fit`: endless shuffled whole batches; per replica under a strategy."""
    if backend == "jax":  # global batches, which DataParallel shards along their first axis
        return ours.jax_batches(directory, batch, seed=SEED)
    if strategy is None:
        return ours.tf_dataset(directory, batch, seed=SEED)
    from pipeline.training.replicas import distributed

    return distributed(strategy, lambda context: ours.tf_dataset(
        directory, context.get_per_replica_batch_size(batch), seed=SEED))


def run(rec: Recorder, grid: Grid, size: int, directory: Path) -> None:
    """The scaling rows of one size (module docstring); nothing where `grid.scaling_counts()` is empty."""
    if not grid.scaling_counts():
        return
    import keras

    from pipeline.models.networks import build_model
    from pipeline.runtime.devices import default_precision

    backend = rec.backend
    seen = visible(backend)
    # the same step program on every count: TensorFlow cannot XLA-compile a mirrored step
    jit = False if backend == "tensorflow" else None
    for name in grid.train_models:
        for batch in grid.batch_sizes:
            key = dict(size=size, batch_size=batch, feed="ours", precision=default_precision(), processes=PROCESSES)
            steps = grid.steps_per_epoch(batch)
            cells: dict[int, _Cell] = {}
            for n in usable_counts(grid, backend, batch, seen):
                with rec.cell("train", name, SCALING_METRICS, **key, devices=n):
                    log(f"train scaling {name} size={size} batch={batch} devices={n}")
                    context, strategy = replicas_on(backend, n)
                    keras.utils.set_random_seed(SEED)
                    with context():
                        model = build_model(name, size, precision=key["precision"], jit_compile=jit)
                    cells[n] = _Cell(model, context, _data(backend, directory, batch, strategy))
            for _ in range(grid.scaling_repeats):
                for n, cell in list(cells.items()):
                    done = False
                    with rec.cell("train", name, SCALING_METRICS, **key, devices=n):
                        clock_ = epoch_clock()
                        with cell.context():
                            cell.model.fit(cell.data, steps_per_epoch=steps, epochs=1 + grid.scaling_epochs,
                                           callbacks=[clock_], verbose=0)
                        if cell.first_epoch_s is None:
                            cell.first_epoch_s = clock_.seconds[0]
                        cell.rates += [batch * steps / s for s in clock_.seconds[1:]]
                        done = True
                    if not done:  # its error rows are written; the other counts go on
                        _close(backend, cells.pop(n))
            record(rec, name, cells, key, repeats=grid.scaling_repeats, steps=steps)
            for cell in cells.values():
                _close(backend, cell)
            cells.clear()
            keras.backend.clear_session()


def _close(backend: str, cell: _Cell) -> None:
    """Stop a JAX feed's thread and readers now, not whenever it is collected (tf.data's stop with their iterators)."""
    if backend == "jax":
        cell.data.close()


def record(rec: Recorder, name: str, cells: dict[int, _Cell], key: dict, *, repeats: int, steps: int) -> None:
    """The rows of one size, model and batch: samples/s per count, and the efficiency against one device."""
    from pipeline.models.networks import precision_of

    extra, medians = {}, {}
    for n, cell in cells.items():
        s = Summary.of(cell.rates)
        medians[n] = s.median
        extra[n] = dict(key, precision=precision_of(cell.model), devices=n,
                        batch_size_per_device=key["batch_size"] // n, steps_per_epoch=steps, epochs=s.count,
                        repeats=repeats, first_epoch_s=cell.first_epoch_s, jit_compile=cell.model.jit_compile,
                        replication=replication(rec.backend, n))
        rec.add("train", name, "scaling_samples_per_s", s.median, **extra[n], repeat_values=cell.rates)
        for metric, value in (("scaling_samples_per_s_p10", s.p10), ("scaling_samples_per_s_p90", s.p90)):
            rec.add("train", name, metric, value, **extra[n])
    for n, value in efficiency(medians).items():
        rec.add("train", name, "scaling_efficiency", value, **extra[n])


def replication(backend: str, n: int) -> str:
    """How `n` replicas are made, as `train --devices N` makes them: "none" for one device."""
    if n == 1:
        return "none"
    return "DataParallel" if backend == "jax" else "MirroredStrategy"
