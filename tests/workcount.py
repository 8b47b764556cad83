"""Deterministic work counting, for "stays linear" checks without a wall clock.

A time limit depends on the machine and its load; the number of function
calls a piece of code makes for a given input does not.  :class:`count_calls`
counts the ``call`` events (Python functions, generator resumptions) and the
``c_call`` events (builtins and C methods called from Python) that
``sys.setprofile`` reports in the current thread while its block runs.  A
check ``calls <= k * len(data) + c`` then fails for any algorithm that makes
a superlinear number of calls -- whatever the machine.  Given that bound as
``limit``, the count stops the block with :class:`TooMuchWork` as soon as it
is passed, so a blow-up fails at once instead of running for hours.

What it does not see: work inside a single C call (a regex backtracking, a
``bytes.find`` over the whole buffer) and other threads or processes.  Those
stay covered by the memory bounds and by :func:`hang_net`, a safety net that
turns an exponential blow-up (the notebook's filename regex on a long name)
into a failure instead of a test run that never ends; it is no time limit:
its 60 s are thousands of times what the guarded calls take.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType, TracebackType
from typing import Any


class TooMuchWork(BaseException):
    """The block made more calls than its limit.

    A BaseException, so an ``except Exception`` in the code under test cannot swallow it.
    """


class count_calls:  # lower case: used like a function, ``with count_calls() as work:``
    """Context manager: ``work.calls`` is the number of calls made inside the block."""

    def __init__(self, limit: int | None = None) -> None:
        self.calls = 0
        self.limit = limit
        self._old: Any = None

    def _profile(self, frame: FrameType, event: str, arg: Any) -> None:
        if event == "call" or event == "c_call":
            self.calls += 1
            if self.limit is not None and self.calls > self.limit:
                raise TooMuchWork(f"over {self.limit} calls")

    def __enter__(self) -> count_calls:
        self._old = sys.getprofile()
        self.calls = 0
        sys.setprofile(self._profile)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        sys.setprofile(self._old)


def calls_of(
    fn: Any, *args: Any, expect: type[BaseException] | tuple[type[BaseException], ...] = (), limit: int | None = None
) -> int:
    """Calls made by ``fn(*args)``; an exception of type ``expect`` counts as an answer."""
    with count_calls(limit) as work:
        try:
            fn(*args)
        except expect:
            pass
    return work.calls


@contextmanager
def hang_net(seconds: float = 60.0) -> Iterator[None]:
    """Raise :class:`TooMuchWork` in the block if it is still running after ``seconds``.

    A safety net against hangs, like a subprocess timeout (no-op where
    ``SIGALRM`` is missing or off the main thread).
    """
    if not hasattr(signal, "setitimer") or threading.current_thread() is not threading.main_thread():
        yield
        return

    def _fire(signum: int, frame: FrameType | None) -> None:
        raise TooMuchWork(f"still running after {seconds} s: a hang")

    old = signal.signal(signal.SIGALRM, _fire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
