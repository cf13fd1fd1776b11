"""Step 6: header values decoded for display, with bounded work per header.

A header is hostile input like the rest of a message, and the stdlib's header parser is
superlinear in it: a 1 MB Subject of 40,000 RFC 2047 encoded words took 85 s and 20 GB, a 3 MB
folded one 7.7 s. Here every value is first cut to ``MAX_HEADER_CHARS`` characters and
``MAX_ENCODED_WORDS`` encoded words (a real header is far below both: RFC 5322 2.1.1 limits a
line to 998 characters, RFC 2047 2 an encoded word to 75), then decoded in linear time with
the WHATWG charset labels of ``mua.charsets``. ``POLICY`` applies the same bound to every header
the stdlib parses, and keeps the MIME headers it consults for every part cheap.
"""

from __future__ import annotations

import re
from email.header import decode_header
from email.policy import EmailPolicy

from mua import charsets

# Bounds on the work per header (a real one is far below both: RFC 5322 2.1.1 limits a line to
# 998 characters, RFC 2047 2 an encoded word to 75). Beyond them the value is cut and shown so.
MAX_HEADER_CHARS = 16 * 1024
MAX_ENCODED_WORDS = 256
CUT_MARK = " [...]"
_ENCODED_WORD = re.compile(r"=\?[^?\s]*\?[bBqQ]\?[^?\s]*\?=")
_FOLD = re.compile(r"\r?\n(?=[ \t])|\r?\n$")
_MIME_HEADERS = frozenset({"content-type", "content-disposition", "content-transfer-encoding"})


def bounded(value: str) -> tuple[str, bool]:
    """``value`` cut to ``MAX_HEADER_CHARS`` and ``MAX_ENCODED_WORDS``; whether it was cut."""
    cut = len(value) > MAX_HEADER_CHARS
    value = value[:MAX_HEADER_CHARS]
    for count, word in enumerate(_ENCODED_WORD.finditer(value), start=1):
        if count == MAX_ENCODED_WORDS and word.end() < len(value.rstrip()):
            return value[: word.end()], True
    return value, cut


class _BoundedPolicy(EmailPolicy):
    """The default policy, with bounded work per header.

    Every value is cut by ``bounded`` before it is parsed (the stdlib header parser is
    superlinear: a 1 MB Subject of 40,000 encoded words took 85 s and 20 GB). The MIME headers
    the parser and the part walk consult for every part come back as plain strings, parsed
    with the cheap compat32 code (``Message.get_param``): a 5,000-part message then parses in
    a fraction of a second instead of seconds. Display headers are decoded by ``decode_words``.
    """

    def header_fetch_parse(self, name: str, value: str) -> object:
        if hasattr(value, "name"):
            return value
        value = _FOLD.sub("", bounded(value)[0])
        if name.lower() in _MIME_HEADERS:
            return value
        return super().header_fetch_parse(name, value)


POLICY = _BoundedPolicy()


def decode_words(raw: str) -> str:
    """A raw header value with its RFC 2047 encoded words decoded, cut when over the bounds."""
    value, cut = bounded(raw)
    # 8-bit header bytes (RFC 6532 UTF-8, or worse) reach here as surrogate escapes
    value = value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    value = _FOLD.sub("", value)
    try:
        pieces = decode_header(value)
    except Exception:  # a malformed encoded word: show the value as it is
        pieces = [(value, None)]
    text = "".join(
        piece if isinstance(piece, str)
        else charsets.decode(piece, charset) if charset
        else piece.decode("raw-unicode-escape", "replace")
        for piece, charset in pieces
    )
    return text + CUT_MARK if cut else text
