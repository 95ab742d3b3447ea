"""Resident memory of this process and its children (the loader's reader processes)."""
from __future__ import annotations

import threading


def _tree():
    import psutil

    proc = psutil.Process()
    return proc, proc.children(recursive=True)


def rss_bytes() -> int:
    """RSS of this process plus its live children, bytes."""
    proc, children = _tree()
    total = proc.memory_info().rss
    for child in children:
        try:
            total += child.memory_info().rss
        except Exception:  # a child that exited between listing and reading
            continue
    return total


class RssSampler:
    """Peak RSS (bytes) of this process and its children while the block runs, sampled every
    `interval` seconds: ``with RssSampler() as r: ...`` then ``r.peak`` and ``r.start``."""

    def __init__(self, interval: float = 0.02):
        self.interval = interval
        self.start = self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, rss_bytes())

    def __enter__(self) -> RssSampler:
        self.start = self.peak = rss_bytes()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_bytes())
