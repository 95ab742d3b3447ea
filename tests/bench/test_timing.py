"""Timers: warm-up excluded, first call reported apart, median/p10/p90 by linear interpolation."""
from __future__ import annotations

import math
import time

import pytest

from pipeline.bench import timing


def test_percentiles_interpolate_linearly():
    values = [5.0, 1.0, 3.0, 2.0, 4.0]
    assert timing.percentile(values, 50) == 3.0
    assert timing.percentile(values, 10) == pytest.approx(1.4)
    assert timing.percentile(values, 90) == pytest.approx(4.6)
    summary = timing.Summary.of(values)
    assert (summary.median, summary.count) == (3.0, 5)
    assert summary.scaled(1000).p90 == pytest.approx(4600.0)


@pytest.mark.parametrize("values, q", [([], 50), ([1.0], 101), ([1.0], -1)])
def test_percentile_rejects_bad_input(values, q):
    with pytest.raises(ValueError):
        timing.percentile(values, q)


class FakeClock:
    """Returns the given readings in order and logs each read in `events` (shared with the timed step)."""

    def __init__(self, readings, events):
        self.readings, self.events = list(readings), events

    def __call__(self) -> float:
        self.events.append("clock")
        return self.readings.pop(0)


def fake_clock(monkeypatch, readings) -> tuple[FakeClock, list]:
    events: list[str] = []
    clock = FakeClock(readings, events)
    monkeypatch.setattr(timing, "clock", clock)
    return clock, events


def test_the_clock_is_perf_counter():
    assert timing.clock is time.perf_counter


def test_time_steps_excludes_warmup_and_keeps_first(monkeypatch):
    # call k (from 1) takes k seconds; the clock is read just before and just after each call
    starts = [100.0, 101.5, 104.0, 108.0, 113.0, 119.0]
    readings = [r for start, k in zip(starts, range(1, 7)) for r in (start, start + k)]
    clock, events = fake_clock(monkeypatch, readings)
    times = timing.time_steps(lambda: events.append("step"), steps=4, warmup=2)
    assert events == ["clock", "step", "clock"] * 6 and clock.readings == []
    assert times.warmup == (1.0, 2.0)
    assert times.steps == (3.0, 4.0, 5.0, 6.0)
    assert times.first == 1.0
    assert times.summary.median == 4.5 and times.summary.count == 4


def test_time_steps_without_warmup_reports_first_timed_step(monkeypatch):
    clock, events = fake_clock(monkeypatch, [0.0, 0.25, 1.0, 1.5, 2.0, 2.125])
    times = timing.time_steps(lambda: None, steps=3, warmup=0)
    assert times.warmup == () and times.steps == (0.25, 0.5, 0.125) and times.first == 0.25
    assert clock.readings == []


@pytest.mark.parametrize("steps, warmup", [(0, 1), (1, -1), (1.5, 0)])
def test_time_steps_rejects_bad_counts(steps, warmup):
    with pytest.raises(ValueError):
        timing.time_steps(lambda: None, steps=steps, warmup=warmup)


def test_stopwatch_measures_the_block(monkeypatch):
    clock, events = fake_clock(monkeypatch, [50.0, 52.75])
    with timing.Stopwatch() as sw:
        events.append("block")
        assert math.isnan(sw.seconds)  # no reading until the block ends
    assert sw.seconds == 2.75
    assert events == ["clock", "block", "clock"]


def test_stopwatch_measures_a_block_that_raises(monkeypatch):
    fake_clock(monkeypatch, [7.0, 7.5])
    with pytest.raises(KeyError):
        with timing.Stopwatch() as sw:
            raise KeyError("x")
    assert sw.seconds == 0.5


def test_time_steps_runs_the_untimed_hook_between_warmup_and_timing(monkeypatch):
    clock, events = fake_clock(monkeypatch, [0.0, 1.0, 1.0, 2.0, 2.0, 3.0])
    times = timing.time_steps(lambda: events.append("step"), steps=2, warmup=1,
                              before_timed=lambda: events.append("drain"))
    assert events == ["clock", "step", "clock", "drain", "clock", "step", "clock", "clock", "step", "clock"]
    assert times.warmup == (1.0,) and times.steps == (1.0, 1.0)
