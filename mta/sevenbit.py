"""7-bit conversion for a next hop without 8BITMIME (step 4, RFC 6152 3).

A relay that received 8-bit data and must pass it to a server that does not offer 8BITMIME
either converts the message to 7-bit MIME or returns it as undeliverable. ``to_7bit`` re-encodes
each 8-bit leaf part with the stdlib ``email`` package: text as quoted-printable, anything else
as base64 (RFC 2045 6); a ``message/rfc822`` or multipart container whose parts are now 7-bit is
relabelled ``7bit`` (RFC 2046 5.2.1 allows no other encoding for it). Header text is never
re-encoded: 8-bit header text without SMTPUTF8 cannot be converted (``CannotConvert``, which the
relay bounces with ``5.6.3``); with SMTPUTF8 (``utf8_headers``) UTF-8 headers stay as they are.
Parts that are 7-bit already are written back as they came.
"""

from __future__ import annotations

import email
import email.policy
import quopri
from email import encoders
from email.generator import BytesGenerator
from email.message import Message
from io import BytesIO

_POLICY = email.policy.compat32.clone(linesep="\r\n", max_line_length=0)
_EIGHT_BIT = {"8bit", "binary"}


class CannotConvert(ValueError):
    """The message cannot be made 7-bit (8-bit header text without SMTPUTF8)."""


def to_7bit(raw: bytes, *, utf8_headers: bool = False) -> bytes:
    """``raw`` (CRLF line ends) as 7-bit MIME; headers may stay UTF-8 if ``utf8_headers``."""
    message = email.message_from_bytes(raw, policy=_POLICY)
    _convert(message)
    out = BytesIO()
    BytesGenerator(out, mangle_from_=False, policy=_POLICY).flatten(message)
    converted = out.getvalue()
    if not converted.isascii() and not (utf8_headers and _body_is_ascii(converted)):
        raise CannotConvert("8-bit header text needs SMTPUTF8 (RFC 6152 3, RFC 6531)")
    return converted


def _convert(part: Message) -> None:
    if part.is_multipart():
        for child in part.get_payload():
            _convert(child)
        if str(part.get("Content-Transfer-Encoding", "")).strip().lower() in _EIGHT_BIT:
            part.replace_header("Content-Transfer-Encoding", "7bit")
        return
    payload = part.get_payload()
    if not isinstance(payload, str) or payload.isascii():
        return
    data = part.get_payload(decode=True)
    del part["Content-Transfer-Encoding"]
    if part.get_content_maintype() == "text":
        # line by line, spaces kept readable (the generator writes CRLF line ends again)
        encoded = quopri.encodestring(data.replace(b"\r\n", b"\n"), quotetabs=False)
        part.set_payload(encoded.decode("ascii"))
        part["Content-Transfer-Encoding"] = "quoted-printable"
    else:
        part.set_payload(data)
        encoders.encode_base64(part)


def _body_is_ascii(raw: bytes) -> bool:
    end = raw.find(b"\r\n\r\n")
    return end >= 0 and raw[end:].isascii()
