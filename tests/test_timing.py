"""Timers: warm-up excluded, first call reported apart, median/p10/p90 by linear interpolation."""
from __future__ import annotations

import itertools

import pytest

from pipeline import timing


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


def test_time_steps_excludes_warmup_and_keeps_first(monkeypatch):
    # a fake clock: call k takes k seconds (1, 2, 3, ...)
    ticks = itertools.count()
    durations = itertools.count(1)
    now = [0.0]

    def clock():
        if next(ticks) % 2:  # reading after a call: advance by that call's duration
            now[0] += next(durations)
        return now[0]

    monkeypatch.setattr(timing, "clock", clock)
    calls = []
    times = timing.time_steps(lambda: calls.append(1), steps=4, warmup=2)
    assert len(calls) == 6
    assert times.warmup == (1.0, 2.0)
    assert times.steps == (3.0, 4.0, 5.0, 6.0)
    assert times.first == 1.0
    assert times.total == 18.0
    assert times.summary.median == 4.5


def test_time_steps_without_warmup_reports_first_timed_step():
    times = timing.time_steps(lambda: None, steps=3, warmup=0)
    assert times.warmup == () and len(times.steps) == 3 and times.first == times.steps[0]


@pytest.mark.parametrize("steps, warmup", [(0, 1), (1, -1), (1.5, 0)])
def test_time_steps_rejects_bad_counts(steps, warmup):
    with pytest.raises(ValueError):
        timing.time_steps(lambda: None, steps=steps, warmup=warmup)


def test_stopwatch_measures_the_block():
    with timing.Stopwatch() as sw:
        sum(range(1000))
    assert 0 <= sw.seconds < 1
