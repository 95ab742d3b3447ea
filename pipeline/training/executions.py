"""Steps per execution: how many training steps Keras runs per call into the compiled step.

Each call costs the framework a fixed time on the host (Python, dispatch, callbacks) beside the
device's step. With K steps per call that cost is paid once per K steps. `train --steps-per-execution`
takes K, or `auto`: the per-call cost and the step are measured on a repeated batch, and K is the
smallest that brings the cost under `TARGET` of the K steps' time.

K must divide every stretch of steps that `fit` runs (an epoch, the rest of a resumed one) and the
checkpoint interval: Keras runs a whole K steps per call, so a K that overhangs an epoch would read the
next epoch's batches within it, and step k of a run would no longer be batch k of the stream.
"""
from __future__ import annotations

import math
import statistics
import time

from pipeline.errors import UsageError

TARGET = 0.05  # the per-call cost `auto` allows, as a share of the K steps' time
PROBE_K = 8  # steps per call of the second probe; the first runs one
PROBE_CALLS = 6  # timed calls of each probe, after two untimed ones (tracing, compilation)


def granularity(steps_per_epoch: int, checkpoint_every: int | None) -> int:
    """The number every K must divide: the steps of an epoch and the checkpoint interval."""
    return math.gcd(steps_per_epoch, checkpoint_every or steps_per_epoch)


def check(k: int, steps_per_epoch: int, checkpoint_every: int | None) -> int:
    """`k` if it divides the epoch's steps and the checkpoint interval; UsageError otherwise."""
    unit = granularity(steps_per_epoch, checkpoint_every)
    if unit % k:
        fits = [d for d in range(1, unit + 1) if unit % d == 0]
        raise UsageError(f"--steps-per-execution {k} must divide the {steps_per_epoch} steps of an epoch"
                         + (f" and --checkpoint-every {checkpoint_every}" if checkpoint_every else "")
                         + f": one of {', '.join(map(str, fits[-8:]))}")
    return k


def choose(call_s: float, step_s: float, unit: int, target: float = TARGET) -> int:
    """The smallest divisor K of `unit` with call_s <= target * K * step_s (`unit` if none is enough)."""
    for k in range(1, unit + 1):
        if unit % k == 0 and call_s <= target * k * max(step_s, 1e-9):
            return k
    return unit


def split_call(one_s: float, many_s: float, many: int) -> tuple[float, float]:
    """(per-call cost, per-step time) from the time of a call of one step and of a call of `many` steps:
    one = c + s, many = c + many * s."""
    step = max((many_s - one_s) / (many - 1), 0.0)
    return max(one_s - step, 0.0), step


def set_steps_per_execution(model, k: int) -> None:
    """Run `k` steps per call from the next `fit` on (the compiled train function is made anew)."""
    model.steps_per_execution = k
    model.train_function = None


def _call_seconds(model, batch, k: int) -> float:
    """Median seconds between the ends of consecutive calls of `k` steps each on `batch` repeated."""
    import keras

    ends: list[float] = []

    class Ends(keras.callbacks.Callback):
        def on_train_batch_end(self, step, logs=None):
            ends.append(time.perf_counter())

    set_steps_per_execution(model, k)
    model.fit(_repeated(batch), steps_per_epoch=k * (PROBE_CALLS + 2), epochs=1, verbose=0, shuffle=False,
              callbacks=[Ends()])
    return statistics.median(b - a for a, b in zip(ends[2:], ends[3:]))


def _repeated(batch):
    """`batch` endlessly, as the backend's training input takes it: a tf.data pipeline under TensorFlow
    (a Python generator there would add its own cost to every step), a generator elsewhere."""
    import keras

    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        return tf.data.Dataset.from_tensors(batch).repeat()
    return (batch for _ in iter(int, 1))  # a generator: Keras takes no other Python iterator


def measure(model, batch) -> tuple[float, float]:
    """(per-call cost, per-step time) in seconds of `model`'s compiled step on `batch` (x, y), repeated.
    The model's weights, optimizer state and metrics are put back as they were."""
    saved = [(v, v.numpy()) for v in (*model.variables, *model.optimizer.variables, *model.metrics_variables)]
    try:
        one = _call_seconds(model, batch, 1)
        many = _call_seconds(model, batch, PROBE_K)
    finally:
        for variable, value in saved:
            variable.assign(value)
        model.reset_metrics()
    return split_call(one, many, PROBE_K)


def choose_and_set(model, batch, unit: int) -> tuple[int, float, float]:
    """`auto`: measure `model`'s per-call cost and step on `batch` (`measure`), choose K among the divisors
    of `unit` (`choose`) and set it; (K, per-call cost, per-step time), times in seconds."""
    call_s, step_s = measure(model, batch)
    k = choose(call_s, step_s, unit)
    set_steps_per_execution(model, k)
    return k, call_s, step_s
