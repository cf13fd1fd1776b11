"""Message bytes as the servers handle them (steps 3 and 4): line ends and trace headers.

Rule for bare CR or LF inside DATA (RFC 5321 2.3.8 allows them only as CRLF): labmail
normalises each to CRLF (``pop3.crlf.to_crlf``, the one CRLF rule). End of data is recognised
only at CRLF.CRLF (aiosmtpd reads lines up to CRLF), so ``\\n.\\n`` cannot end a message early
(no SMTP smuggling); after normalisation it is an ordinary line "." that the next hop's client
dot-stuffs again. For the 1000-octet line limit a bare LF ends a line too (``mta.smtp.data``).
"""

from __future__ import annotations

import datetime
import functools
import re
import time
from collections.abc import Sequence
from email.utils import format_datetime

_RECEIVED = re.compile(rb"^received[ \t]*:", re.IGNORECASE | re.MULTILINE)
_MESSAGE_ID = re.compile(rb"^message-id[ \t]*:[ \t]*(.*(?:\r\n[ \t].*)*)", re.I | re.M)


def header_section(raw: bytes) -> bytes:
    end = raw.find(b"\r\n\r\n")
    return raw if end < 0 else raw[: end + 2]


def message_id(raw: bytes) -> str:
    """The Message-ID field of ``raw`` unfolded ("" when there is none)."""
    match = _MESSAGE_ID.search(header_section(raw))
    if not match:
        return ""
    return " ".join(match.group(1).decode("utf-8", "replace").split())


def count_received(raw: bytes) -> int:
    """How many hops the message has made (RFC 5321 6.3: a loop shows as many Received)."""
    return len(_RECEIVED.findall(header_section(raw)))


def needs_smtputf8(declared: bool, sender: str, recipients: Sequence[str], raw: bytes) -> bool:
    """Whether a message accepted with ``declared`` SMTPUTF8 needs it on the next hop too: its
    addresses or its header section are not ASCII (RFC 6531 3.4, RFC 6532 3). Carried through
    the queue, so the relay does not have to guess from the addresses alone."""
    return declared and not (sender.isascii() and all(r.isascii() for r in recipients)
                             and header_section(raw).isascii())


def has_header(raw: bytes, name: str) -> bool:
    pattern = re.compile(rb"^" + re.escape(name.encode()) + rb"[ \t]*:", re.I | re.M)
    return pattern.search(header_section(raw)) is not None


def with_protocol(*, esmtp: bool, tls: bool, auth: bool, smtputf8: bool) -> str:
    """The ``with`` keyword of a Received header (RFC 3848, RFC 6531 3.7.3)."""
    if not esmtp:
        return "SMTP"
    base = "UTF8SMTP" if smtputf8 else "ESMTP"
    return base + ("S" if tls else "") + ("A" if auth else "")


def received_header(*, helo: str | None, peer_ip: str, by: str, protocol: str, queue_id: str,
                    recipients: list[str], when: float | None = None) -> bytes:
    """A Received header (RFC 5321 4.4), folded; ``for`` only when there is one recipient."""
    stamp = _stamp(int(time.time()) if when is None else when)
    helo = _clean(helo or "unknown")
    lines = [f"Received: from {helo} ([{peer_ip}])", f"\tby {_clean(by)} (labmail) with {protocol}"
             f" id {queue_id}"]
    if len(recipients) == 1:
        lines.append(f"\tfor <{_clean(recipients[0])}>;")
    else:
        lines[-1] += ";"
    lines.append(f"\t{stamp}")
    return ("\r\n".join(lines) + "\r\n").encode("utf-8", "surrogateescape")


def return_path(sender: str) -> bytes:
    """The Return-Path header for final delivery (RFC 5321 4.4); ``<>`` for bounces."""
    sender = "" if sender in ("", "<>") else _clean(sender)
    return f"Return-Path: <{sender}>\r\n".encode("utf-8", "surrogateescape")


def _clean(text: str) -> str:
    # Nothing from the client may break the header: no CR, LF or other controls.
    return "".join(c if c.isprintable() or c == " " else "?" for c in text)[:255]


@functools.lru_cache(maxsize=4)  # one formatted date per second, not per message
def _stamp(when: float) -> str:
    return format_datetime(_local(when))


def _local(when: float) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(when).astimezone()
