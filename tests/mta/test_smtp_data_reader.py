"""``LabSMTP._read_data`` reads whole runs of lines at once (issue 16); what it makes of any
stream is exactly what reading one CRLF line at a time makes of it: the same message, the same
refusal, the same octets counted and the same bytes left for the next command."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from hypothesis import example, given, settings
from hypothesis import strategies as st

from mta import replies
from mta.smtp.data import DataBuffer, DataState
from mta.smtp.server import LabSMTP


async def one_line_at_a_time(reader: asyncio.StreamReader, size_limit: int) -> DataBuffer:
    """The reader before issue 16: readuntil CRLF, pieces cut by the limit as overruns."""
    buffer = DataBuffer(size_limit)
    while buffer.state is not DataState.DONE:
        try:
            buffer.line(await reader.readuntil(b"\r\n"))
        except asyncio.LimitOverrunError as exc:
            buffer.overrun(await reader.readexactly(exc.consumed))
    return buffer


async def read(stream: bytes, limit: int, size_limit: int, *, runs: bool
               ) -> tuple[object, ...]:
    reader = asyncio.StreamReader(limit=limit)
    reader.feed_data(stream)
    reader.feed_eof()
    if runs:
        session = SimpleNamespace(_reader=reader, data_size_limit=size_limit, transport=object())
        buffer = await LabSMTP._read_data(session)  # type: ignore[arg-type]
    else:
        buffer = await one_line_at_a_time(reader, size_limit)
    rest = await reader.read()
    return buffer.state, buffer.refusal, buffer.received, bytes(buffer.data), rest


def what_rfc_5321_says(stream: bytes) -> tuple[bool, bytes]:
    """(a line over 1000 octets, the message): the data ends at the first "." line after a
    CRLF; each line loses one leading dot (4.5.2); a bare LF ends a line for its count and a
    leading dot is not counted (4.5.3.1.6)."""
    data = b"" if stream.startswith(b".\r\n") else stream[:stream.index(b"\r\n.\r\n") + 2]
    lines = data.split(b"\r\n")[:-1]
    message = b"".join((line[1:] if line[:1] == b"." else line) + b"\r\n" for line in lines)
    counts = (len(seg) + (1 if seg.endswith(b"\r") else 2) - (seg[:1] == b".")
              for seg in data.split(b"\n")[:-1])
    return any(count > 1000 for count in counts), message


_PIECES = st.sampled_from([b"a", b"Subject: x", b".", b"..", b"\r\n", b"\n", b"\r", b"\r\n.",
                           b".\r\n", b" ", b"x" * 70, b"y" * 997, b"z" * 1200])
_BODY = st.lists(_PIECES, max_size=40).map(b"".join)


@settings(max_examples=400, deadline=None)
@given(body=_BODY, limit=st.sampled_from([16, 100, 1001, 8192]),
       size_limit=st.sampled_from([0, 50, 1500, 100_000]))
@example(body=b"", limit=8192, size_limit=0)
@example(body=b".\r\n", limit=8192, size_limit=0)
@example(body=b"..\r\n.a\r\nb.\r\n", limit=8192, size_limit=0)
@example(body=b"a\n.\r\nb", limit=8192, size_limit=0)
@example(body=b"x" * 1200 + b"\r\n" + b"y" * 40 + b"\r\n", limit=8192, size_limit=100)
def test_runs_of_lines_read_as_single_lines_do(body: bytes, limit: int, size_limit: int) -> None:
    # the data always ends, at a line start, and a command follows it
    stream = body + (b"" if body.endswith(b"\r\n") or not body else b"\r\n") + b".\r\nQUIT\r\n"

    async def both() -> tuple[tuple[object, ...], tuple[object, ...]]:
        return (await read(stream, limit, size_limit, runs=True),
                await read(stream, limit, size_limit, runs=False))

    runs, single = asyncio.run(both())
    assert runs == single
    if not size_limit:
        too_long, message = what_rfc_5321_says(stream)
        assert runs[1] == (replies.DATA_LINE_TOO_LONG if too_long else None)
        if not too_long:
            assert runs[3] == message
