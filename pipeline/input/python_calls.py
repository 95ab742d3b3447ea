"""Python called from tf.data's threads (`tf.numpy_function`), stopped before the interpreter exits.

Python's finalization ends any thread that asks for the GIL after it has begun. A tf.data thread that
enters one of our NumPy functions then dies mid-call, and the iterator's destructor, run as the
script's globals are cleared, waits for that call for ever: a script that ends while an iterator is
alive never exits. `guarded(fn)` counts the calls in progress; at exit, before finalization, every
later call fails at once (the pipelines fill their buffers with these errors and stop calling) and
the exit waits until no call has run for `QUIET_S`, at most `DRAIN_S`. TensorFlow may log a refused
call as a warning on the way out.
"""
from __future__ import annotations

import atexit
import threading
import time
from collections.abc import Callable

QUIET_S = 0.2  # no call for this long: the pipelines have stopped calling into Python
DRAIN_S = 10.0  # the longest the exit waits for calls in progress (a window's decode takes well under it)


class InterpreterExiting(RuntimeError):
    """Raised in place of a guarded call once the interpreter has begun to exit."""


class _Calls:
    def __init__(self):
        self._lock = threading.Lock()
        self._running = 0
        self._last = 0.0
        self._closed = False
        self._registered = False

    def guarded(self, fn: Callable) -> Callable:
        with self._lock:
            if not self._registered:
                atexit.register(self.drain)
                self._registered = True

        def call(*args):
            with self._lock:
                if self._closed:  # a refusal is a call too: the pipelines are still calling
                    self._last = time.monotonic()
                    raise InterpreterExiting("the interpreter is exiting")
                self._running += 1
            try:
                return fn(*args)
            finally:
                with self._lock:
                    self._running -= 1
                    self._last = time.monotonic()

        return call

    def drain(self) -> None:
        """Refuse every later call; return once none has run for QUIET_S (or after DRAIN_S)."""
        with self._lock:
            self._closed = True
        deadline = time.monotonic() + DRAIN_S
        while time.monotonic() < deadline:
            with self._lock:
                if self._running == 0 and time.monotonic() - self._last >= QUIET_S:
                    return
            time.sleep(0.01)


_CALLS = _Calls()


def guarded(fn: Callable) -> Callable:
    """`fn` for `tf.numpy_function`, refused once the interpreter exits (see the module docstring)."""
    return _CALLS.guarded(fn)
