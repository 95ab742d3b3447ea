"""The `au` suite: accelerator utilization (AU) as DLIO defines it, with an emulated accelerator.

The emulated accelerator (`Accelerator`) takes a fixed time per step, a timeline beside the host
that leaves the CPU to the loader as a real accelerator would. The host consumes each front
end the way training does (tf.data from inside a `tf.function`, as `model.fit` pulls batches;
NumPy batches and JAX device arrays from a Python loop) and hands each call's steps to the
accelerator, which runs them after those before while the host pulls the next batches: as a GPU
runs a step while the host dispatches the next, the host at most one call ahead. (DLIO sleeps in
the consumer's own thread instead, so the host's cost of each pull adds to every step: what no
accelerator that runs asynchronously pays.) AU = the accelerator's busy time / wall time of a
window of steps, the first call excluded.

Per front end, size and batch size (our loader, packed, shuffled, endless, the default readers):

1. `alone_samples_per_s`: the loader consumed back to back by the same consumer, after a
   warm-up epoch and an untimed read of all its pipeline may hold ready (as the load suite),
   measured afresh before each demand (a shared machine drifts); the row gives the median.
2. For each demand `f` of `au_demands`, a step of `batch / (f * alone)` seconds, `alone` as
   just measured: the accelerator that would ask for `f` times what the loader delivers alone
   (`step_ms` in the row). Untimed steps at
   that pace first (as many samples as the pipeline may hold ready: the buffers settle at the
   level this pace keeps), then a window of at least `au_buffer_multiple` times those samples
   and at least one epoch. `au` is that window's AU (`demand`, `step_ms` in the row).
3. `au95_step_ms`: the shortest step of the sweep whose AU is at least 95%, and
   `au95_samples_per_s`, the samples/s of that accelerator: the fastest accelerator this
   loader keeps busy on this host (None when no step of the sweep reaches 95%).

tf.data is consumed twice: a batch per `tf.function` call (consumer ``tf.function``, as `fit` runs
by default) and K batches per call (``tf.function-K``, as `train --steps-per-execution auto` runs):
the consumer's cost per call is measured on the synthetic batch (a call of one batch against a call
of `executions.PROBE_K`), and each demand's K is the smallest that brings it under 5% of K steps
(`executions.choose`, bounded by an epoch; the row's `steps_per_execution`). Its `alone` pulls
`PROBE_K` batches per call.

Impl `synthetic`, the baseline: the same consumer and the same step times over one batch
repeated from memory, a loader that costs nothing. Its AU is the most the consumer itself allows
(a `tf.function` call that takes a batch costs the consumer's thread time of its own, more after
the thread slept); ours is judged against it.
"""
from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable
from pathlib import Path

from pipeline.bench import load, ours
from pipeline.bench.consumers import TRAINING_CONSUMER, graph_puller, python_puller
from pipeline.bench.data import shuffle_window
from pipeline.bench.grid import Grid
from pipeline.bench.progress import log
from pipeline.bench.recorder import Recorder
from pipeline.bench.timing import Summary, clock
from pipeline.results.format import STEPS_PER_CALL_CONSUMER
from pipeline.training import executions

METRICS = ("alone_samples_per_s", "au", "au95_step_ms", "au95_samples_per_s")
AU_TARGET = 0.95
FRONT_ENDS = {"tensorflow": ("tf.data", "numpy"), "jax": ("numpy", "jax")}  # per backend process
EMULATION = "async"  # the accelerator runs beside the host (`Accelerator`), not in the consumer's thread
CALL_PROBES = 20  # timed calls of each size when the K consumer's cost per call is measured


def utilization(compute: list[float], wall: float) -> float:
    """AU of a window: the accelerator's busy seconds over the window's wall seconds."""
    return min(1.0, sum(compute) / wall) if wall > 0 else 0.0


def fetcher(front_end: str, directory: Path, batch: int) -> tuple[Callable[..., int], Callable[[], None]]:
    """(pull one batch and return its samples, stop the pipeline) for `front_end`, our loader packed;
    tf.data's `pull(k)` takes k batches in one call."""
    if front_end == "tf.data":
        return graph_puller(ours.tf_dataset(directory, batch, packed=True)), (lambda: None)
    stream = (ours.jax_batches if front_end == "jax" else ours.numpy_batches)(directory, batch, packed=True)
    return python_puller(stream), getattr(stream, "close", lambda: None)


def synthetic_fetcher(front_end: str, directory: Path, batch: int) -> Callable[..., int]:
    """The same consumer over one batch of our loader repeated from memory: a loader that costs
    nothing, so its AU is the most this consumer allows on this host."""
    stream = ours.numpy_batches(directory, batch, packed=True)
    frames, labels = next(stream)
    frames, labels = frames.copy(), labels.copy()
    stream.close()
    if front_end == "tf.data":
        import tensorflow as tf

        from pipeline.input.loader import prefetch_ahead

        return graph_puller(prefetch_ahead(tf.data.Dataset.from_tensors((frames, labels)).repeat()))
    if front_end == "jax":
        import jax

        frames, labels = jax.device_put(frames), jax.device_put(labels)
    return python_puller(itertools.repeat((frames, labels)))


def call_cost(pull: Callable[..., int]) -> float:
    """Seconds a `tf.function` consumer costs per call beside its batches (`executions.split_call` of a
    call of one batch and a call of `executions.PROBE_K`), over a puller that takes `pull(k)`."""
    medians = []
    for k in (1, executions.PROBE_K):
        pull(k)
        times = []
        for _ in range(CALL_PROBES):
            start = clock()
            pull(k)
            times.append(clock() - start)
        medians.append(Summary.of(times).median)
    return executions.split_call(medians[0], medians[1], executions.PROBE_K)[0]


class Accelerator:
    """An emulated accelerator, as a timeline: each call's steps start when the call is submitted or
    when the steps before them end, whichever is later. The host may be one call ahead: `submit` waits
    (sleeps, the CPU left to the loader) until the call submitted before it has started. No thread of
    its own, so no step waits for Python's GIL as a thread's wake-up would."""

    def __init__(self):
        self.busy = 0.0  # seconds of steps submitted
        self.free_at = clock()  # when the steps submitted so far end
        self._started_at = self.free_at  # when the last call submitted starts

    def submit(self, seconds: float) -> None:
        now = clock()
        if self._started_at > now:  # a call is still queued: wait until it starts
            time.sleep(self._started_at - now)
            now = self._started_at
        self._started_at = max(now, self.free_at)
        self.free_at = self._started_at + seconds
        self.busy += seconds

    def drain(self) -> float:
        """Wait until every step submitted has run; the time then."""
        now = clock()
        if self.free_at > now:
            time.sleep(self.free_at - now)
        return max(now, self.free_at)


def paced(pull: Callable[[], int], calls: int, step_s: float, steps_per_call: int = 1) -> tuple[float, int]:
    """`calls` calls of pull-then-submit, each pulling `steps_per_call` batches and giving the accelerator
    that many steps of `step_s`; (AU of the calls after the first, until their steps have run; samples)."""
    accelerator = Accelerator()
    samples, start = 0, None
    for i in range(calls):
        if i == 1:
            start = accelerator.drain()
            accelerator.busy = 0.0
        samples += pull()
        accelerator.submit(step_s * steps_per_call)
    return utilization([accelerator.busy], accelerator.drain() - start), samples


def sweep(pull_for: Callable[[int], Callable[[], int]], demands, step_for: Callable[[float], float],
          k_for: Callable[[float], int], settle_steps: int, window: int) -> list[tuple[float, float, float, int]]:
    """(demand, step seconds, AU, steps per call) for each of `demands`, in increasing demand: `settle_steps`
    untimed steps at the demand's pace (the buffers settle at the level it keeps), then `window` timed ones,
    K = k_for(step seconds) steps per call of pull_for(K).

    step_for(demand): that demand's step time, asked for just before its point is measured.
    """
    out = []
    for demand in sorted(demands):
        step_s = step_for(demand)
        k = k_for(step_s)
        pull = pull_for(k)
        paced(pull, max(2, math.ceil(settle_steps / k)), step_s, k)
        au, _ = paced(pull, math.ceil(window / k) + 1, step_s, k)
        out.append((demand, step_s, au, k))
    return out


def fastest_kept_busy(points) -> float | None:
    """The shortest step time whose AU reaches AU_TARGET among `sweep`'s points, or None."""
    busy = [step_s for _, step_s, au, *_ in points if au >= AU_TARGET]
    return min(busy) if busy else None


def consumers_of(front_end: str) -> tuple[str, ...]:
    """How the suite consumes `front_end`: as training does, and tf.data also K steps per call."""
    return (TRAINING_CONSUMER[front_end], *((STEPS_PER_CALL_CONSUMER,) if front_end == "tf.data" else ()))


def run(rec: Recorder, grid: Grid, data: dict[int, Path]) -> None:
    from pipeline.dataset.manifest import load_manifest

    backend = rec.backend
    for size in grid.sizes:
        window_samples = shuffle_window(data[size])
        codec = load_manifest(data[size]).params.codec
        for batch in grid.batch_sizes:
            epoch_steps = grid.steps_per_epoch(batch)
            cell = load.LoadCell("ours-packed", size, batch)
            buffered = load.buffered_bound(cell, backend, window_samples, epoch_steps * batch)
            window = math.ceil(max(grid.au_buffer_multiple * buffered, epoch_steps * batch) / batch)
            extra = dict(window_batches=window, untimed_batches=math.ceil(buffered / batch))
            for front_end in FRONT_ENDS[backend]:
                for consumer in consumers_of(front_end):
                    key = dict(size=size, batch_size=batch, front_end=front_end, consumer=consumer, packed=True,
                               shuffle=True, emulation=EMULATION, **{k: v for k, v in cell.key(backend, codec).items()
                                                if k in ("readers", "mechanism")})
                    sweep_cell(rec, grid, data[size], key, extra, epoch_steps)


def sweep_cell(rec: Recorder, grid: Grid, directory: Path, key: dict, extra: dict, epoch_steps: int) -> None:
    """One front end and consumer: ours' sweep, then the synthetic floor's over the very same steps."""
    batch, front_end, window = key["batch_size"], key["front_end"], extra["window_batches"]
    per_call = key["consumer"] == STEPS_PER_CALL_CONSUMER
    synthetic = synthetic_fetcher(front_end, directory, batch)
    call_s = call_cost(synthetic) if per_call else 0.0
    k_for = (lambda step_s: executions.choose(call_s, step_s, epoch_steps)) if per_call else (lambda step_s: 1)
    alone_k = min(executions.PROBE_K, epoch_steps) if per_call else 1
    with rec.cell("au", "ours-packed", METRICS, **key):
        log(f"au {front_end} from {key['consumer']} size={key['size']} batch={batch}")
        pull, stop = fetcher(front_end, directory, batch)
        try:
            for _ in range(epoch_steps):  # warm-up
                pull()
            rates = []

            def alone() -> float:  # what it delivers back to back, past what it held ready
                for _ in range(extra["untimed_batches"]):
                    pull()
                start, samples = clock(), sum(pull(alone_k) if per_call else pull()
                                              for _ in range(math.ceil(window / alone_k)))
                rates.append(samples / (clock() - start))
                return rates[-1]

            points = sweep(lambda k: (lambda: pull(k)) if per_call else pull, grid.au_demands,
                           lambda d: batch / (d * alone()), k_for, extra["untimed_batches"], window)
        finally:
            stop()
        extra_ = {**extra, **({"call_ms": call_s * 1e3} if per_call else {})}
        rec.add("au", "ours-packed", "alone_samples_per_s", Summary.of(rates).median, **key, **extra_,
                repeat_values=rates)
        record_sweep(rec, "ours-packed", points, batch, key, extra_, rates)
    with rec.cell("au", "synthetic", METRICS[1:], **key):
        for _ in range(extra["untimed_batches"]):
            synthetic()
        steps = {demand: step_s for demand, step_s, *_ in points}  # the very steps ours was given
        ks = {step_s: k for _, step_s, _, k in points}
        record_sweep(rec, "synthetic", sweep(lambda k: (lambda: synthetic(k)) if per_call else synthetic, steps,
                                             steps.get, ks.get, 0, window), batch, key, extra_)


def record_sweep(rec: Recorder, impl: str, points, batch: int, key: dict, extra: dict,
                 alone_rates: list[float] = ()) -> None:
    """Rows of one sweep: AU per demand (with its steps per call), and the fastest accelerator kept busy.
    `alone_rates`: the sweep's measurements of the loader alone; the fastest accelerator's demand times
    each is its repeat values."""
    for demand, step_s, au, k in points:
        rec.add("au", impl, "au", au, **key, demand=demand, step_ms=step_s * 1e3, steps_per_execution=k, **extra)
    best = fastest_kept_busy(points)
    rec.add("au", impl, "au95_step_ms", None if best is None else best * 1e3, **key, **extra)
    demand = next((d for d, step_s, *_ in points if step_s == best), None)
    rec.add("au", impl, "au95_samples_per_s", None if best is None else batch / best, **key, **extra,
            repeat_values=[demand * r for r in alone_rates] if demand is not None else [])
