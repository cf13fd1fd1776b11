"""The DATA reader of both SMTP listeners (steps 3 and 4): the message body into one buffer.

aiosmtpd keeps the message as a list of line objects and then joins it: a 20 MB message of short
lines costs several times its size. ``DataBuffer`` takes the lines the listener reads (split at
CRLF only) and dot-unstuffs each (RFC 5321 4.5.2) straight into one bytearray. Its states are
named like aiosmtpd's ``_DataState``:

- ``READING``: lines go into the buffer;
- ``LINE_TOO_LONG`` and ``TOO_MUCH``: a line over the limit (RFC 5321 4.5.3.1.6) or data over the
  size limit was seen; the buffer is dropped and the rest is read to the end and refused;
- ``DONE``: the end of data, a lone "." line after CRLF (never the tail of an over-long line,
  so nothing can be smuggled in after a fake end of data).
"""

from __future__ import annotations

import enum

from mta import replies


class DataState(enum.Enum):
    READING = "reading"
    LINE_TOO_LONG = "line too long"
    TOO_MUCH = "too much"
    DONE = "done"


_REFUSALS = {DataState.LINE_TOO_LONG: replies.DATA_LINE_TOO_LONG,
             DataState.TOO_MUCH: replies.DATA_TOO_MUCH}


class DataBuffer:
    """The lines of one DATA command, from ``354`` to the end of data."""

    __slots__ = ("data", "line_limit", "received", "refusal", "size_limit", "state", "_tail")

    def __init__(self, size_limit: int, line_limit: int) -> None:
        self.size_limit = size_limit  # 0: no limit (aiosmtpd's convention)
        self.line_limit = line_limit
        self.state = DataState.READING
        self.data = bytearray()
        self.received = 0
        self.refusal: str | None = None  # the reply for a refused message, kept until DONE
        self._tail = False  # the next line is the rest of an over-long line

    def overrun(self, consumed: int) -> None:
        """The reader's stream limit cut a line after ``consumed`` octets (read and dropped)."""
        self.received += consumed
        self._tail = True
        self._refuse(DataState.LINE_TOO_LONG)

    def line(self, line: bytes) -> None:
        """One line read up to and including its CRLF."""
        if self._tail:  # the tail of an over-long line, never an end of data
            self._tail = False
            self.received += len(line)
            return
        if line == b".\r\n":
            self.state = DataState.DONE
            return
        self.received += len(line)
        if self.refusal is not None:
            return
        if self.size_limit and self.received > self.size_limit:
            self._refuse(DataState.TOO_MUCH)
        elif len(line) > self.line_limit:
            self._refuse(DataState.LINE_TOO_LONG)
        elif line[:1] == b".":
            self.data += memoryview(line)[1:]
        else:
            self.data += line

    def take(self) -> bytes:
        """The message once DONE and not refused; the buffer is released."""
        content = bytes(self.data)
        self.data = bytearray()
        return content

    def _refuse(self, state: DataState) -> None:
        if self.refusal is None:  # the first reason is the one given
            self.state = state
            self.refusal = _REFUSALS[state]
            self.data = bytearray()
