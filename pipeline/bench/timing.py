"""Timers for benchmarks: warm up, then time; summarize with median and p10/p90.

A timed step must *end* when its result exists: the callable passed to
`time_steps` has to return only after materializing its output (e.g.
``model.train_on_batch`` returns NumPy values; a tf.data batch is materialized
when the iterator hands it over). The clock is `time.perf_counter`.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from pipeline.errors import require_positive_int

clock = time.perf_counter


def percentile(values, q: float) -> float:
    """q-th percentile (0..100) with linear interpolation; ValueError on an empty list."""
    values = np.asarray(list(values), dtype=np.float64)
    if values.size == 0:
        raise ValueError("percentile of an empty list")
    if not 0 <= q <= 100:
        raise ValueError(f"q must be in 0..100, got {q!r}")
    return float(np.percentile(values, q))


@dataclass(frozen=True)
class Summary:
    """Spread of repeated measurements (seconds or any unit): median, p10, p90, count."""

    median: float
    p10: float
    p90: float
    count: int

    @classmethod
    def of(cls, values) -> Summary:
        values = list(values)
        return cls(percentile(values, 50), percentile(values, 10), percentile(values, 90), len(values))

    def scaled(self, factor: float) -> Summary:
        return Summary(self.median * factor, self.p10 * factor, self.p90 * factor, self.count)


@dataclass(frozen=True)
class StepTimes:
    """Per-step wall times in seconds: `warmup` (excluded, first one included) and `steps` (timed)."""

    warmup: tuple[float, ...]
    steps: tuple[float, ...]

    @property
    def first(self) -> float:
        """The first call (usually tracing/compilation), reported apart from the steady state."""
        return (self.warmup or self.steps)[0]

    @property
    def summary(self) -> Summary:
        return Summary.of(self.steps)


def time_steps(step: Callable[[], object], *, steps: int, warmup: int = 1,
               before_timed: Callable[[], object] | None = None) -> StepTimes:
    """Call `step` `warmup` times untimed-for-the-summary, then `steps` times, timing each call.

    `step` must return only once its work is materialized (see module docstring).
    before_timed: called once, untimed, between the warm-up and the first timed step.
    """
    require_positive_int("steps", steps)
    if not isinstance(warmup, int) or warmup < 0:
        raise ValueError(f"warmup must be a non-negative integer, got {warmup!r}")
    warm, timed = [], []
    for i in range(warmup + steps):
        if i == warmup and before_timed is not None:
            before_timed()
        start = clock()
        step()
        elapsed = clock() - start
        (warm if i < warmup else timed).append(elapsed)
    return StepTimes(tuple(warm), tuple(timed))


class Stopwatch:
    """``with Stopwatch() as sw: ...`` then ``sw.seconds``."""

    def __enter__(self) -> Stopwatch:
        self.seconds = float("nan")
        self._start = clock()
        return self

    def __exit__(self, *exc) -> None:
        self.seconds = clock() - self._start


def epoch_clock():
    """A Keras callback whose `seconds` lists each epoch's wall seconds."""
    import keras

    class EpochClock(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.seconds: list[float] = []

        def on_epoch_begin(self, epoch, logs=None):
            self._start = clock()

        def on_epoch_end(self, epoch, logs=None):
            self.seconds.append(clock() - self._start)

    return EpochClock()
