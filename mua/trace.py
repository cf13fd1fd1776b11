"""The client's side of the protocol transcript (steps 3 and 5, as the user agent sees them).

Every protocol line the user agent sends or receives goes through the stdlib logger named
``labmail.trace`` with structured fields (``step``, ``component``, ``peer``, ``direction``,
``line``), the same fields the servers use, so nothing imports anything else to be traced.
AUTH secrets (SMTP ``AUTH`` and its continuation lines, POP3 ``PASS`` and ``AUTH``) are masked
before they reach the logger. ``mua --trace`` attaches ``TracePrinter`` to show the lines.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

LOGGER_NAME = "labmail.trace"
logger = logging.getLogger(LOGGER_NAME)

MASK = "****"


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
        logger.info(
            "%s %s: %s",
            self.peer,
            direction,
            line,
            extra={
                "step": self.step,
                "component": "mua",
                "peer": self.peer,
                "direction": direction,
                "line": line,
            },
        )


def _is_continuation(line: str) -> bool:
    # SMTP 334 (RFC 4954 4) and POP3 "+ " (RFC 5034 4) ask the client for more AUTH data.
    return line.startswith("334") or line == "+" or line.startswith("+ ")


class TracePrinter(logging.Handler):
    """Prints the user agent's trace records as ``[peer] C: line`` on a stream."""

    def __init__(self, stream: TextIO | None = None) -> None:
        super().__init__(logging.INFO)
        self.stream = stream

    def emit(self, record: logging.LogRecord) -> None:
        if getattr(record, "component", None) != "mua":
            return
        stream = self.stream if self.stream is not None else sys.stderr
        try:
            stream.write(f"[{record.peer}] {record.direction}: {record.line}\n")
            stream.flush()
        except Exception:  # a logging handler must never raise
            self.handleError(record)


@contextmanager
def printing(stream: TextIO | None = None) -> Iterator[TracePrinter]:
    """Print the client's transcript on ``stream`` (stderr by default) inside the block."""
    handler = TracePrinter(stream)
    previous = logger.level
    logger.addHandler(handler)
    if logger.getEffectiveLevel() > logging.INFO:
        logger.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous)
