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
_SHORT = 7 * MAX_ENCODED_WORDS  # "=?a?q??=" is the shortest encoded word, 7 characters + space
_MIME_HEADERS = frozenset({"content-type", "content-disposition", "content-transfer-encoding"})


def bounded(value: str) -> tuple[str, bool]:
    """``value`` cut to ``MAX_HEADER_CHARS`` and ``MAX_ENCODED_WORDS``; whether it was cut."""
    cut = len(value) > MAX_HEADER_CHARS
    value = value[:MAX_HEADER_CHARS]
    for count, word in enumerate(_ENCODED_WORD.finditer(value), start=1):
        if count == MAX_ENCODED_WORDS and word.end() < len(value.rstrip()):
            return value[: word.end()], True
    return value, cut


MAX_HEADER_FIELDS = 1000  # a real message has a few dozen; a Received: chain stops at ~100
_BIG_SECTION = 64 * 1024


def bound_header_section(data: bytes) -> bytes:
    """``data`` with the message's header section cut to the bounds before any parsing.

    The stdlib parser spends Python work on every header line (a 3 MB Subject folded over
    150,000 lines took 7.7 s), so a field's continuation lines past ``MAX_HEADER_CHARS`` and
    fields past ``MAX_HEADER_FIELDS`` are dropped here; ``decode_words`` marks the cut field.
    """
    end = min((i for i in (data.find(b"\n\n"), data.find(b"\n\r\n")) if i >= 0),
              default=len(data))
    if end <= _BIG_SECTION:
        return data
    kept: list[bytes] = []
    fields = field_size = 0
    for line in data[:end].split(b"\n"):
        if line[:1] not in (b" ", b"\t"):
            fields += 1
            field_size = 0
        field_size += len(line)
        if fields <= MAX_HEADER_FIELDS and field_size <= MAX_HEADER_CHARS + len(line):
            kept.append(line)
    return b"\n".join(kept) + data[end:]


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
        if len(value) > _SHORT:  # shorter ones can hold neither too many words nor characters
            value = bounded(value)[0]
        if "\n" in value:
            value = _FOLD.sub("", value)
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
