"""The `train` suite: steady-state step time of `model.train_on_batch` by feed, and `fit` per epoch.

Steps, per size, model, precision and batch size; feeds (`feed` key):

* ``ours``: our loader, shuffled (`pipeline.bench.ours`: tf.data, or NumPy batches prefetched
  to the device with JAX); ``ours-packed``: its bit-packed batches into the same model behind
  `UnpackFrames` (unpacking is then part of the step).
* ``in-memory``: uint8 arrays in memory, a new permutation each epoch (`baselines`).
* ``synthetic`` / ``synthetic-packed``: one batch already on the device, repeated: the upper
  bound, no input cost.

Each feed runs on its own (never interleaved: another feed's steps would give a loader time
to fill its buffers): `train_warmup` steps (the first, with tracing and compilation, is
`first_step_ms`); then, untimed, as many batches as its pipeline may hold ready
(`untimed_batches`: what it prepared during the warm-up, which a timed step would get for free);
then at least one whole epoch of the bench dataset, and at least `BUFFER_MULTIPLE` times those
buffered batches, timed step by step (`train_on_batch` returns NumPy, so a step is materialized
before the clock is read; fetching the batch is inside the step). ``input_bound_fraction`` =
1 - synthetic / fed median step time (``ours-packed`` against ``synthetic-packed``): the share
of a step spent waiting for input.

`fit` (`fit_s_per_epoch`, `fit_ms_per_step`): `model.fit` for `fit_epochs` + 1 epochs, fed by
our loader (a repeated dataset, `steps_per_epoch` = one epoch) or by the in-memory arrays
(`fit(x, y, shuffle=True)`); epochs after the first are timed, median reported. Each at one step per
compiled call (`execution` "K=1") and at the K `train --steps-per-execution auto` picks ("K=auto"; rows
give `steps_per_execution`), with what `auto` measured on a repeated batch: `call_ms`, the framework's
cost per call, apart from `compiled_step_ms`, the step's own time. Feed ``synthetic`` there: one batch
repeated through `fit` (from tf.data under TensorFlow), so ``fit_input_bound_fraction`` = 1 - synthetic /
ours ms per step is the share of a `fit` step spent on our loader.

Impl ``book-workflow`` is the book's own float64 TimeDistributed model on `generate_examples` arrays.

With several device counts (`--devices`), `fit` on our loader with one replica per device as
`train --devices N` runs it: `pipeline.bench.scaling` (``scaling_samples_per_s``,
``scaling_efficiency``). Every other row here ran on one device (`devices` 1).
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from pipeline.bench import baselines, load, ours, scaling
from pipeline.bench.data import read_split, shuffle_window
from pipeline.bench.grid import FIT_FEEDS, Grid
from pipeline.bench.progress import log
from pipeline.bench.recorder import Recorder
from pipeline.bench.timing import Summary, epoch_clock, time_steps
from pipeline.errors import AUTO

STEP_METRICS = ("ms_per_step_median", "ms_per_step_p10", "ms_per_step_p90", "samples_per_s", "first_step_ms")
FIT_METRICS = ("fit_s_per_epoch", "fit_ms_per_step")
FIT_EXECUTIONS = (1, AUTO)  # steps per call of the `fit` cells: Keras's default, and what `auto` picks
PACKED_FEEDS = ("ours-packed", "synthetic-packed")
BOUND_AGAINST = {"ours": "synthetic", "in-memory": "synthetic", "ours-packed": "synthetic-packed"}
SEED = 0  # initial weights and the loader's order: step times do not depend on them, but runs repeat
# a fed cell times at least this many times the samples its pipeline may hold ready
BUFFER_MULTIPLE = 3
BUFFERED_IMPL = {"ours": "ours", "ours-packed": "ours-packed", "in-memory": "in-memory"}  # feed -> load cell


def buffered_batches(feed: str, backend: str, size: int, batch: int, shuffle_samples: int, epoch_samples: int) -> int:
    """Batches `feed`'s pipeline may hold ready ahead of the model (`load.buffered_bound`); 0 for synthetic feeds."""
    if feed not in BUFFERED_IMPL:
        return 0
    cell = load.LoadCell(BUFFERED_IMPL[feed], size, batch)
    return math.ceil(load.buffered_bound(cell, backend, shuffle_samples, epoch_samples) / batch)


def record_steps(rec: Recorder, impl: str, feed: str, times, *, size, batch_size, **extra) -> float:
    """Rows of one timed cell (`StepTimes` in seconds); returns the median in ms."""
    s = times.summary.scaled(1e3)
    key = dict(size=size, batch_size=batch_size, feed=feed, steps=len(times.steps), warmup=len(times.warmup), **extra)
    steps_ms = [t * 1e3 for t in times.steps]
    rec.add("train", impl, "ms_per_step_median", s.median, **key, repeat_values=steps_ms)
    rec.add("train", impl, "ms_per_step_p10", s.p10, **key)
    rec.add("train", impl, "ms_per_step_p90", s.p90, **key)
    rec.add("train", impl, "samples_per_s", batch_size * 1e3 / s.median, **key,
            repeat_values=[batch_size * 1e3 / t for t in steps_ms])
    rec.add("train", impl, "first_step_ms", times.first * 1e3, **key)
    return s.median


def input_bound(medians: dict[str, float]) -> dict[str, tuple[float, str]]:
    """feed -> (1 - synthetic / fed median, the synthetic feed it was measured against), where both exist."""
    out = {}
    for feed, against in BOUND_AGAINST.items():
        if medians.get(feed) and medians.get(against) is not None:
            out[feed] = (1 - medians[against] / medians[feed], against)
    return out


def _packed_rows(frames: np.ndarray) -> np.ndarray:
    """0/1 frames uint8 (B, T, S, S) -> bit-packed rows uint8 (B, S**3 / 8), bits MSB-first as stored."""
    return np.packbits(frames.reshape(len(frames), -1), axis=1)


def feed_batches(feed: str, backend: str, directory: Path, batch: int, frames, labels):
    """An endless iterator of (x, y) batches for one feed."""
    if feed in ("ours", "ours-packed"):
        return ours.batches(backend, directory, batch, packed=feed == "ours-packed", seed=SEED)
    if feed == "in-memory":
        if backend == "jax":
            return baselines.in_memory_batches(frames, labels, batch, seed=SEED)
        return iter(baselines.in_memory_dataset(frames, labels, batch, seed=SEED))
    x = frames[:batch] if feed == "synthetic" else _packed_rows(frames[:batch])
    return baselines.synthetic(backend, x, labels[:batch])


def run(rec: Recorder, grid: Grid, data: dict[int, Path]) -> None:
    import keras

    from pipeline.models.networks import build_model, precision_of

    backend = rec.backend
    for size in grid.sizes:
        frames, labels = read_split(data[size], "train")
        window_samples = shuffle_window(data[size])
        for precision in grid.train_precisions():
            for name, batch, feeds, steps in grid.train_cells():
                # bit-packed rows hold whole bytes only at even sizes
                feeds = [f for f in feeds if not (f in PACKED_FEEDS and size % 2)]
                models = {}

                def model_for(feed):
                    packed = feed in PACKED_FEEDS
                    if packed not in models:
                        keras.utils.set_random_seed(SEED)
                        models[packed] = build_model(name, size, precision=precision, packed_input=packed)
                    return models[packed]

                medians = {}
                for feed in feeds:
                    key = dict(size=size, batch_size=batch, feed=feed, precision=precision)
                    with rec.cell("train", name, STEP_METRICS, **key):
                        log(f"train {name} feed={feed} size={size} batch={batch} precision={precision}")
                        model = model_for(feed)
                        it = feed_batches(feed, backend, data[size], batch, frames, labels)
                        flush = buffered_batches(feed, backend, size, batch, window_samples,
                                                 grid.steps_per_epoch(batch) * batch)
                        times = time_steps(lambda it=it: model.train_on_batch(*next(it)),
                                           steps=max(steps, BUFFER_MULTIPLE * flush), warmup=grid.train_warmup,
                                           before_timed=lambda it=it: [next(it) for _ in range(flush)])
                        medians[feed] = record_steps(rec, name, feed, times, size=size, batch_size=batch,
                                                     precision=precision_of(model), untimed_batches=flush)
                        del it
                for feed, (fraction, against) in input_bound(medians).items():
                    rec.add("train", name, "input_bound_fraction", fraction, size=size, batch_size=batch,
                            feed=feed, precision=precision, against=against)
                models.clear()
                keras.backend.clear_session()
        if size in grid.fit_sizes:
            fit(rec, grid, size, data[size], frames, labels)
        scaling.run(rec, grid, size, data[size])
        if size <= grid.book_workflow_max_size:
            book_workflow(rec, grid, size)


def fit(rec: Recorder, grid: Grid, size: int, directory: Path, frames, labels) -> None:
    """`model.fit`'s wall time per epoch, fed by our loader, in-memory arrays and one batch repeated, in this
    device's precision, at each of `FIT_EXECUTIONS` steps per call; `auto` records the framework's cost per
    call beside the step."""
    import keras

    from pipeline.models.networks import build_model, precision_of
    from pipeline.runtime.devices import default_precision

    backend = rec.backend
    for name in grid.fit_models:
        for batch in [b for b in grid.batch_sizes if b in grid.fit_batch_sizes]:
            steps = grid.steps_per_epoch(batch)
            chosen: dict = {}  # the K that auto picked for this model and batch
            for execution in FIT_EXECUTIONS:
                for feed in FIT_FEEDS:
                    key = dict(size=size, batch_size=batch, feed=feed, precision=default_precision(),
                               execution=f"K={execution}")
                    with rec.cell("train", name, FIT_METRICS, **key):
                        log(f"train fit {name} feed={feed} size={size} batch={batch} steps per execution {execution}")
                        keras.utils.set_random_seed(SEED)
                        model = build_model(name, size, precision=key["precision"])
                        key["precision"] = precision_of(model)
                        k = steps_per_call(rec, name, model, execution, (frames[:batch], labels[:batch]), steps, key,
                                           chosen)
                        clock_ = epoch_clock()
                        epochs = grid.fit_epochs + 1
                        if feed in ("ours", "synthetic"):
                            model.fit(fit_source(feed, backend, directory, frames[:batch], labels[:batch]),
                                      steps_per_epoch=steps, epochs=epochs, callbacks=[clock_], verbose=0)
                            per_epoch = steps
                        else:
                            model.fit(frames, labels, batch_size=batch, epochs=epochs, shuffle=True,
                                      callbacks=[clock_], verbose=0)
                            per_epoch = -(-len(labels) // batch)
                        timed = Summary.of(clock_.seconds[1:])
                        extra = dict(epochs=grid.fit_epochs, steps_per_epoch=per_epoch, steps_per_execution=k,
                                     first_epoch_s=clock_.seconds[0], p10_s=timed.p10, p90_s=timed.p90)
                        rec.add("train", name, "fit_s_per_epoch", timed.median, **key, **extra,
                                repeat_values=clock_.seconds[1:])
                        rec.add("train", name, "fit_ms_per_step", timed.median * 1e3 / per_epoch, **key, **extra,
                                repeat_values=[t * 1e3 / per_epoch for t in clock_.seconds[1:]])
                        del model
                        keras.backend.clear_session()
                fit_input_bound(rec, name, size, batch, f"K={execution}")


def fit_input_bound(rec: Recorder, name: str, size: int, batch: int, execution: str) -> None:
    """The `fit_input_bound_fraction` row of a fit cell: 1 - synthetic / ours ms per step, where both ran."""
    def step(feed):
        return next((r for r in rec.rows if r["suite"] == "train" and r["impl"] == name and r["size"] == size
                     and r["batch_size"] == batch and r.get("execution") == execution and r["feed"] == feed
                     and r["metric"] == "fit_ms_per_step" and not r["error"]), None)

    fed, alone = step("ours"), step("synthetic")
    if fed and alone and fed["value"]:
        rec.add("train", name, "fit_input_bound_fraction", 1 - alone["value"] / fed["value"], size=size,
                batch_size=batch, feed="ours", precision=fed["precision"], execution=execution, against="synthetic",
                steps_per_execution=fed["steps_per_execution"])


def fit_source(feed: str, backend: str, directory: Path, frames, labels):
    """`fit`'s endless input for `feed`: our loader, or one batch repeated from the device (``synthetic``),
    ending as ours does under TensorFlow (batches made ready ahead by tf.data's prefetch)."""
    if feed == "ours":
        return (ours.tf_dataset(directory, len(labels), seed=SEED) if backend == "tensorflow"
                else ours.jax_batches(directory, len(labels), seed=SEED))
    if backend == "tensorflow":
        import tensorflow as tf

        from pipeline.input.loader import prefetch_ahead

        return prefetch_ahead(tf.data.Dataset.from_tensors((frames, labels)).repeat())
    return (batch for batch in baselines.synthetic(backend, frames, labels))  # a generator: what Keras takes


def steps_per_call(rec: Recorder, name: str, model, execution, batch, steps: int, key: dict, chosen: dict) -> int:
    """Set `model`'s steps per call as `train --steps-per-execution` would (`execution`: an int or "auto")
    and return K. `auto` measures once per cell, on `batch` repeated (feed ``synthetic``), and every feed of
    the cell then runs that K (`chosen` keeps it); it records what it measured: `call_ms`, the framework's
    cost per call, and `compiled_step_ms`, the step's own time."""
    from pipeline.training import executions

    if execution == AUTO and AUTO not in chosen:
        k, call_s, step_s = chosen[AUTO] = executions.choose_and_set(model, batch, steps)
        measured = {**key, "feed": "synthetic", "steps_per_execution": k}
        rec.add("train", name, "call_ms", call_s * 1e3, **measured)
        rec.add("train", name, "compiled_step_ms", step_s * 1e3, **measured)
        return k
    k = chosen[AUTO][0] if execution == AUTO else executions.check(execution, steps, None)
    executions.set_steps_per_execution(model, k)
    return k


def book_workflow(rec: Recorder, grid: Grid, size: int) -> None:
    """The book's own model (float64 TimeDistributed) on `generate_examples` arrays, via train_on_batch."""
    import random

    import keras

    from pipeline.models.book_workflow import build_book_model, generate_examples

    for batch in [b for b in grid.batch_sizes if b <= grid.train_reference_max_batch]:
        key = dict(size=size, batch_size=batch, feed="in-memory", precision="float64")
        with rec.cell("train", "book-workflow", STEP_METRICS, **key):
            log(f"train book-workflow size={size} batch={batch}")
            x, y = generate_examples(size, 2 * batch, random.Random(SEED))
            batches = [(x[:batch], y[:batch]), (x[batch:], y[batch:])]
            keras.utils.set_random_seed(SEED)
            model = build_book_model(size)
            turn = iter(range(10 ** 9))
            warmup = min(grid.train_warmup, 2)
            times = time_steps(lambda model=model, batches=batches: model.train_on_batch(*batches[next(turn) % 2]),
                               steps=grid.book_workflow_steps, warmup=warmup)
            record_steps(rec, "book-workflow", "in-memory", times, size=size, batch_size=batch, precision="float64")
            del model, x, y, batches
            keras.backend.clear_session()
