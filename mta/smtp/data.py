"""The DATA reader of both SMTP listeners (steps 3 and 4): the message body into one buffer.

aiosmtpd keeps the message as a list of line objects and then joins it: a 20 MB message of short
lines costs several times its size. ``DataBuffer`` takes what the listener reads and
dot-unstuffs each line (RFC 5321 4.5.2) straight into one bytearray: runs of whole lines up to
the next ``.`` + CRLF at once (``lines``; most messages are one run), or one line at a time, or
a piece the stream limit cut off. Its states are named like aiosmtpd's ``_DataState``:

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

    __slots__ = ("data", "line_limit", "received", "refusal", "size_limit", "state",
                 "at_line_start", "_dot", "_run")

    def __init__(self, size_limit: int, line_limit: int = LINE_LIMIT) -> None:
        self.size_limit = size_limit  # 0: no limit (aiosmtpd's convention)
        self.line_limit = line_limit
        self.state = DataState.READING
        self.data = bytearray()
        self.received = 0
        self.refusal: str | None = None  # the reply for a refused message, kept until DONE
        self._run = 0  # octets of the current line so far, for its limit (a bare LF ends it)
        self._dot = False  # that line began with a dot, which its limit does not count
        self.at_line_start = True  # at the start or after a CRLF: a "." line ends the data

    def overrun(self, piece: bytes) -> None:
        """Octets the reader's stream limit cut off before any CRLF: part of a line."""
        self._take(piece, complete=False)
        self.at_line_start = False

    def line(self, line: bytes) -> None:
        """Data read up to and including a CRLF."""
        if self.at_line_start and line == b".\r\n":
            self.state = DataState.DONE
            return
        self._take(line, complete=True)
        self.at_line_start = True

    def lines(self, run: bytes) -> None:
        """Whole lines read at a line start: up to and including the first "." + CRLF, or
        whole lines with none among them (the stream limit cut the run short)."""
        if run == b".\r\n":
            self.state = DataState.DONE
            return
        done = run.endswith(b"\r\n.\r\n")
        if done:
            run = run[:-3]
        if self.refusal is None and self.size_limit and self.received + len(run) > self.size_limit:
            self._each_line(run)  # the size limit is crossed here: which reason comes first?
        else:
            self.received += len(run)
            if self.refusal is None:
                self._keep(run)
        if done:
            self.state = DataState.DONE

    def _keep(self, run: bytes) -> None:
        """Whole lines within the size limit: refused for a line too long, else unstuffed."""
        if len(run) >= self.line_limit and _longest(run) >= self.line_limit - 1 \
                and _too_long(run, 0, False, self.line_limit, True):
            self._refuse(DataState.LINE_TOO_LONG)
            return
        # a "." + CRLF line ends the data, so none is inside: each CRLF "." is stuffing
        if run[:1] == b".":
            run = run[1:]
        self.data += run.replace(b"\r\n.", b"\r\n") if b"\r\n." in run else run

    def _each_line(self, run: bytes) -> None:
        start = 0
        while start < len(run):
            end = run.index(b"\r\n", start) + 2
            self._take(run[start:end], complete=True)
            start = end

    def take(self) -> bytes:
        """The message once DONE and not refused; the buffer is released."""
        content = bytes(self.data)
        self.data = bytearray()
        return content

    def _take(self, piece: bytes, *, complete: bool) -> None:
        at_start = self.at_line_start
        run, dot = self._run, self._dot
        if complete:
            self._run, self._dot = 0, False
        else:
            self._run, self._dot = _line_after(piece, run, dot)
        self.received += len(piece)
        if self.refusal is not None:
            return
        if self.size_limit and self.received > self.size_limit:
            self._refuse(DataState.TOO_MUCH)
        elif run + len(piece) >= self.line_limit and _too_long(piece, run, dot, self.line_limit,
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


def _longest(run: bytes) -> int:
    """The most octets between two LFs: a shorter line is never over the limit (with its CRLF
    a line counts at most two more), so most runs skip the count line by line."""
    return max(map(len, run.split(b"\n")))


def _line_after(piece: bytes, run: int, dot: bool) -> tuple[int, bool]:
    """The current line's octets and leading dot once ``piece`` (no line end) is read."""
    last = piece.rfind(b"\n")
    if last >= 0:
        return len(piece) - last - 1, piece[last + 1:last + 2] == b"."
    return run + len(piece), dot if run else piece[:1] == b"."


def _too_long(piece: bytes, run: int, dot: bool, limit: int, complete: bool) -> bool:
    """(Callers skip it when ``run + len(piece) < limit``: a bare LF counts one octet more.)
    Whether a line in ``piece`` (the first continuing ``run`` octets of a line that began with
    a dot or not) is over ``limit`` once each line end is CRLF; a leading dot (transparency)
    does not count."""
    segments = piece.split(b"\n")
    last = len(segments) - 1
    for i, segment in enumerate(segments):
        if i == last and not segment:
            break  # the piece ended with its line end
        length = len(segment) + (run if i == 0 else 0)
        if i < last or complete:
            length += 1 if segment.endswith(b"\r") else 2  # its line end, as CRLF
        if (dot if i == 0 and run else segment[:1] == b"."):
            length -= 1
        if length > limit:
            return True
    return False
