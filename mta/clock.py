"""Time for the queue and the relay worker (step 4): a real clock, or a fake one tests move.

The queue stores times as POSIX seconds; every "now" the queue and the relay worker use comes
from a ``Clock`` passed in, so tests drive retries and lifetimes deterministically
(``FakeClock.advance`` plus ``RelayWorker.run_once``) without sleeping.
"""

from __future__ import annotations

import time


class Clock:
    """Wall-clock time."""

    def now(self) -> float:
        return time.time()


class FakeClock(Clock):
    """A clock that only moves when told to."""

    def __init__(self, start: float | None = None) -> None:
        self._now = time.time() if start is None else start

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> float:
        if seconds < 0:
            raise ValueError("a clock does not go backwards")
        self._now += seconds
        return self._now

    def set(self, when: float) -> None:
        if when < self._now:
            raise ValueError("a clock does not go backwards")
        self._now = when
