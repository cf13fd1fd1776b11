"""The one CRLF rule (step 5's sizes and steps 3-4's normalising share it).

RFC 1939 11 counts a message's size in octets as sent, with CRLF line ends; RFC 5321 2.3.8
allows a bare CR or LF in mail data only as part of CRLF. Both sides of labmail normalise with
this one function, so a size the maildrop reports always matches the bytes RETR sends.
"""

from __future__ import annotations

import re

_EOL = re.compile(rb"\r\n|\r|\n")


def to_crlf(data: bytes) -> bytes:
    """Every line end as CRLF; a non-empty message ends with CRLF."""
    crlf = data.count(b"\r\n")
    if not (crlf == data.count(b"\r") == data.count(b"\n")):
        data = _EOL.sub(b"\r\n", data)
    if data and not data.endswith(b"\r\n"):
        data += b"\r\n"
    return data
