"""Fault injection for the MX listener (step 4's far end): lab and test scripts make the next
transactions answer a given reply, one each, to show retries and bounces."""

from __future__ import annotations

from collections import deque


class FaultInjector:
    """Lab and test fault injection: replies given to the next transactions, one each."""

    def __init__(self, replies_: tuple[str, ...] = ()) -> None:
        self._replies: deque[str] = deque(replies_)

    def script(self, *replies_: str) -> None:
        self._replies.extend(replies_)

    def clear(self) -> None:
        self._replies.clear()

    def pending(self) -> tuple[str, ...]:
        """The replies still scripted, in the order they will be given."""
        return tuple(self._replies)

    def next(self) -> str | None:
        return self._replies.popleft() if self._replies else None

    def __len__(self) -> int:
        return len(self._replies)
