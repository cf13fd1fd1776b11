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

``parse`` is what aiosmtpd's ``SMTP._getaddr`` does, for ``LabSMTP``: a plain ``<local@domain>``
(dot-atoms, ASCII) is read by one regular expression, and everything else by the email
package's parser as before. aiosmtpd defines a ``typing.Protocol`` class inside ``_getaddr``
on every call; with the parser that was a sixth of the MX's event loop per message (issue 16).
"""

from __future__ import annotations

import re
from email._header_value_parser import get_addr_spec, get_angle_addr
from email.errors import HeaderParseError

from mta import replies

_SURROGATE = re.compile("[\udc80-\udcff]")  # how aiosmtpd keeps octets that are not UTF-8
_ROUTE = re.compile(r"@[^:<>]+:.")  # "@a,@b:" then at least something (RFC 5321 4.1.2)

_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
# RFC 5322 dot-atom local part and an ASCII dot-atom domain: the parser returns these unchanged
_PLAIN_PATH = re.compile(rf"<({_ATEXT}(?:\.{_ATEXT})*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*)>")

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


def parse(arg: str, local_part_limit: int) -> tuple[str | None, str | None]:
    """(address, rest of the argument) as aiosmtpd's ``_getaddr`` returns them; ``(None, None)``
    for what does not parse, including what makes the email package's parser raise something
    other than ``HeaderParseError`` (``IndexError`` on ``<@``: 553, never an unexpected error)."""
    if not arg:
        return "", ""
    plain = _PLAIN_PATH.match(arg)
    rest = arg[plain.end():].lstrip(" \t") if plain is not None else ""
    if plain is not None and not rest.startswith("("):  # the parser eats CFWS after ">"
        address = plain.group(1)
    else:
        try:
            token, rest = (get_angle_addr(arg) if arg.lstrip().startswith("<")
                           else get_addr_spec(arg))
            address = token.addr_spec
        except (HeaderParseError, ValueError, IndexError, TypeError, AttributeError):
            return None, None
    if local_part_limit and len(address.rpartition("@")[0]) > local_part_limit:
        return None, None
    return address, rest
