"""The path argument of MAIL, RCPT and VRFY, checked before aiosmtpd parses it (steps 3, 4).

aiosmtpd parses paths with the email package's header parser, which takes ``<a@b`` without
its closing bracket as an address, raises ``IndexError`` on ``<@`` (an unexpected error: 451
and a traceback per line) and keeps octets that are not UTF-8 as surrogate escapes, which fail
only when the message is stored. Each is refused here, at its command, with a permanent reply
that does not echo the argument:

- a path with ``<`` and no ``>``, or a source route (``<@...``) without ``:`` and a mailbox:
  ``501 5.1.7`` at MAIL, ``501 5.1.3`` at RCPT and VRFY (RFC 5321 4.1.2, RFC 3463 3.2);
- octets that are not UTF-8: ``553 5.6.7`` (RFC 6531 3.3 allows UTF-8 only, and only with
  SMTPUTF8; without it, non-ASCII addresses get the same code).
"""

from __future__ import annotations

import re

from mta import replies

_SURROGATE = re.compile("[\udc80-\udcff]")  # how aiosmtpd keeps octets that are not UTF-8
_ROUTE = re.compile(r"@[^:<>]+:.")  # "@a,@b:" then at least something (RFC 5321 4.1.2)

_SYNTAX = {"MAIL": replies.BAD_SENDER_SYNTAX, "RCPT": replies.BAD_RECIPIENT_SYNTAX,
           "VRFY": replies.BAD_RECIPIENT_SYNTAX}


def refusal(command: str, path: str) -> str | None:
    """The reply refusing ``path`` (the argument after ``FROM:``/``TO:``, or VRFY's), or None
    when aiosmtpd may parse it."""
    if _SURROGATE.search(path):
        return replies.NOT_UTF8_ADDRESS
    text = path.strip()
    if not text.startswith("<"):
        return None
    end = text.find(">")
    if end < 0:
        return _SYNTAX[command]
    inner = text[1:end]
    if inner.startswith("@") and not _ROUTE.match(inner):
        return _SYNTAX[command]
    return None
