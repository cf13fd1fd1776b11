"""The client's side of the protocol transcript (steps 3 and 5, as the user agent sees them).

Every protocol line the user agent sends or receives becomes a ``ClientLine`` (step, peer,
direction, line) handed to whoever listens in this process: ``mua --trace`` prints them
(``printing``), tests record them (``recording``). The servers' own view is ``mta.events``; the
user agent's core imports nothing from ``mta``, so it declares its one kind of line here.
AUTH secrets (SMTP ``AUTH`` and its continuation lines, POP3 ``PASS`` and ``AUTH``) are masked
before any listener sees them.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TextIO

MASK = "****"


@dataclass(frozen=True)
class ClientLine:
    """One line of the user agent's dialogue; ``direction`` "C" (sent) or "S" (received)."""

    step: int
    peer: str
    direction: str
    line: str


_listeners: list[Callable[[ClientLine], None]] = []


@contextmanager
def listening(callback: Callable[[ClientLine], None]) -> Iterator[None]:
    """Call ``callback`` with every line traced inside the block."""
    _listeners.append(callback)
    try:
        yield
    finally:
        _listeners.remove(callback)


@contextmanager
def recording() -> Iterator[list[ClientLine]]:
    """Collect the lines traced inside the block (tests, the demo)."""
    lines: list[ClientLine] = []
    with listening(lines.append):
        yield lines


class Transcript:
    """One connection's transcript: logs lines and masks authentication secrets.

    While an authentication exchange is in progress (from the client's ``AUTH`` command to the
    server's final reply) every client line after the mechanism name is masked: that covers
    SMTP ``AUTH PLAIN <b64>``, ``AUTH LOGIN`` continuations and POP3 SASL exchanges.
    """

    def __init__(self, step: int, peer: str) -> None:
        self.step = step
        self.peer = peer
        self._in_auth = False

    def client(self, line: str) -> None:
        self._emit("C", self._mask_client(line))

    def server(self, line: str) -> None:
        if self._in_auth and not _is_continuation(line):
            self._in_auth = False
        self._emit("S", line)

    def note(self, direction: str, line: str) -> None:
        """Log a summary line (e.g. ``[12 more lines]``) without masking logic."""
        self._emit(direction, line)

    def _mask_client(self, line: str) -> str:
        if self._in_auth:
            return MASK
        words = line.split(" ")
        verb = words[0].upper()
        if verb == "AUTH":
            self._in_auth = True
            if len(words) > 2:
                return " ".join(words[:2] + [MASK])
            return line
        if verb == "PASS" and len(words) > 1:  # RFC 1939 7: PASS string
            return "PASS " + MASK
        return line

    def _emit(self, direction: str, line: str) -> None:
        if _listeners:
            traced = ClientLine(self.step, self.peer, direction, line)
            for listener in list(_listeners):
                listener(traced)


def _is_continuation(line: str) -> bool:
    # SMTP 334 (RFC 4954 4) and POP3 "+ " (RFC 5034 4) ask the client for more AUTH data.
    return line.startswith("334") or line == "+" or line.startswith("+ ")


@contextmanager
def printing(stream: TextIO | None = None) -> Iterator[None]:
    """Print the client's transcript as ``[peer] C: line`` on ``stream`` (stderr by default)."""

    def show(traced: ClientLine) -> None:
        out = stream if stream is not None else sys.stderr
        out.write(f"[{traced.peer}] {traced.direction}: {traced.line}\n")
        out.flush()

    with listening(show):
        yield
