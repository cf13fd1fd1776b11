"""POP3 replies as bytes (step 5: the user agent retrieves mail; RFC 1939 3, RFC 2449 8, 3206).

The replies used in more than one place, with their response codes in brackets (RFC 2449 8,
RFC 3206), and the builders every reply goes through: one-line and multi-line replies, and a
message dot-stuffed and terminated for RETR and TOP. No I/O.
"""

from __future__ import annotations

from collections.abc import Sequence

from pop3.actions import Send

# Replies used in more than one place (RFC 2449 8 / RFC 3206 response codes in brackets).
UNKNOWN_COMMAND = "-ERR unknown command"
WRONG_STATE = "-ERR command not valid in this state"
SYNTAX = "-ERR syntax error"
BAD_ENCODING = "-ERR command is not valid UTF-8"
PLAINTEXT_DISABLED = "-ERR plaintext authentication disabled, use STLS first"
AUTH_FAILED = "-ERR [AUTH] invalid login or password"
IN_USE = "-ERR [IN-USE] maildrop is locked by another session"
SYS_TEMP = "-ERR [SYS/TEMP] internal error"
NO_SUCH_MESSAGE = "-ERR no such message"
CONTINUE = "+ "


def line(text: str) -> Send:
    """A one-line reply."""
    return Send(text.encode("utf-8") + b"\r\n", (text,))


def multiline(status: str, lines: Sequence[str]) -> Send:
    """A multi-line reply (RFC 1939 3): status, lines, then ``.``; lines never start with '.'."""
    all_lines = [status, *lines, "."]
    return Send("".join(f"{x}\r\n" for x in all_lines).encode("utf-8"), tuple(all_lines))


def dot_stuff(raw: bytes) -> bytes:
    """Byte-stuff a CRLF message and terminate it (RFC 1939 3): ready to follow a +OK line."""
    if raw and not raw.endswith(b"\r\n"):
        raw += b"\r\n"
    stuffed = raw.replace(b"\r\n.", b"\r\n..")
    if stuffed.startswith(b"."):
        stuffed = b"." + stuffed
    return stuffed + b".\r\n"


def top_of(raw: bytes, body_lines: int) -> bytes:
    """The header, the blank line and the first ``body_lines`` lines of the body (RFC 1939 7)."""
    if raw.startswith(b"\r\n"):
        split = 2
    else:
        end = raw.find(b"\r\n\r\n")
        if end < 0:
            return raw
        split = end + 4
    pos = split
    for _ in range(body_lines):
        nl = raw.find(b"\r\n", pos)
        if nl < 0:
            return raw
        pos = nl + 2
    return raw[:pos]
