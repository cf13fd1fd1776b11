"""The DATA reader of both SMTP listeners (steps 3 and 4): the message body into one buffer.

aiosmtpd keeps the message as a list of line objects and then joins it: a 20 MB message of short
lines costs several times its size. ``DataBuffer`` takes what the listener reads (split at CRLF
only, or cut by the stream limit) and dot-unstuffs each line (RFC 5321 4.5.2) straight into one
bytearray. Its states are named like aiosmtpd's ``_DataState``:

- ``READING``: lines go into the buffer;
- ``LINE_TOO_LONG`` and ``TOO_MUCH``: a line over ``LINE_LIMIT`` or data over the size limit
  was seen; the buffer is dropped and the rest is read to the end and refused;
- ``DONE``: the end of data, a lone "." line after CRLF (never the tail of a cut line nor a "."
  after a bare LF, so nothing can be smuggled in after a fake end of data).

The line limit is RFC 5321 4.5.3.1.6: 1000 octets including the CRLF (998 of text), not
counting a leading dot added for transparency. A bare LF ends a line for this count (the
listeners normalise it to CRLF, ``mta.message``), so a message sent with LF line ends is judged
by its real lines, not as one long line.
"""

from __future__ import annotations

import enum

from mta import replies

LINE_LIMIT = 1000  # octets, CRLF included (RFC 5321 4.5.3.1.6)


class DataState(enum.Enum):
    READING = "reading"
    LINE_TOO_LONG = "line too long"
    TOO_MUCH = "too much"
    DONE = "done"


_REFUSALS = {DataState.LINE_TOO_LONG: replies.DATA_LINE_TOO_LONG,
             DataState.TOO_MUCH: replies.DATA_TOO_MUCH}


class DataBuffer:
    """The lines of one DATA command, from ``354`` to the end of data."""

    __slots__ = ("data", "line_limit", "received", "refusal", "size_limit", "state", "_run")

    def __init__(self, size_limit: int, line_limit: int = LINE_LIMIT) -> None:
        self.size_limit = size_limit  # 0: no limit (aiosmtpd's convention)
        self.line_limit = line_limit
        self.state = DataState.READING
        self.data = bytearray()
        self.received = 0
        self.refusal: str | None = None  # the reply for a refused message, kept until DONE
        self._run = 0  # octets of the current line read so far (0: at the start of a line)

    def overrun(self, piece: bytes) -> None:
        """Octets the reader's stream limit cut off before any CRLF: part of a line."""
        self._take(piece, complete=False)

    def line(self, line: bytes) -> None:
        """Data read up to and including a CRLF."""
        if self._run == 0 and line == b".\r\n":
            self.state = DataState.DONE
            return
        self._take(line, complete=True)

    def take(self) -> bytes:
        """The message once DONE and not refused; the buffer is released."""
        content = bytes(self.data)
        self.data = bytearray()
        return content

    def _take(self, piece: bytes, *, complete: bool) -> None:
        at_start = self._run == 0
        run = self._run
        self._run = 0 if complete else _run_after(piece, run)
        self.received += len(piece)
        if self.refusal is not None:
            return
        if self.size_limit and self.received > self.size_limit:
            self._refuse(DataState.TOO_MUCH)
        elif run + len(piece) > self.line_limit and _too_long(piece, run, self.line_limit,
                                                              complete):
            self._refuse(DataState.LINE_TOO_LONG)
        elif at_start and piece[:1] == b".":
            self.data += memoryview(piece)[1:]
        else:
            self.data += piece

    def _refuse(self, state: DataState) -> None:
        if self.refusal is None:  # the first reason is the one given
            self.state = state
            self.refusal = _REFUSALS[state]
            self.data = bytearray()


def _run_after(piece: bytes, run: int) -> int:
    last = piece.rfind(b"\n")
    return run + len(piece) if last < 0 else len(piece) - last - 1


def _too_long(piece: bytes, run: int, limit: int, complete: bool) -> bool:
    """Whether a line in ``piece`` (the first continuing ``run`` octets) is over ``limit``
    once each line end is CRLF; a leading dot (transparency) does not count."""
    segments = piece.split(b"\n")
    last = len(segments) - 1
    for i, segment in enumerate(segments):
        if i == last and not segment:
            break  # the piece ended with its line end
        length = len(segment) + (run if i == 0 else 0)
        if i < last or complete:
            length += 1 if segment.endswith(b"\r") else 2  # its line end, as CRLF
        if segment[:1] == b"." and (i > 0 or run == 0):
            length -= 1
        if length > limit:
            return True
    return False
