"""What an SMTP reply of the submission (step 3) and MX (step 4) listeners looks like on the
wire: an RFC 3463 enhanced status code on every reply (RFC 2034; aiosmtpd's own replies carry
none) and nothing of a client's line echoed that could break the reply apart (issue 17 item 8).
"""

from __future__ import annotations

import functools
import re

from mta import replies

_ENHANCED = re.compile(r"^[245]\.\d{1,3}\.\d{1,3}( |$)")
# What a reply must not carry back from a client's line: controls, lone CR or LF, and the
# surrogates aiosmtpd keeps for octets that are not UTF-8 (issue 17 item 8).
_UNSAFE = re.compile("[\x00-\x09\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]|\r(?!\n)|(?<!\r)\n")


def safe(text: str) -> str:
    """``text`` with controls, lone CR or LF and surrogates replaced by "?"."""
    return _UNSAFE.sub("?", text) if _UNSAFE.search(text) else text


@functools.lru_cache(maxsize=256)  # replies repeat; ids in 250 replies just cycle through
def wire(text: str, utf8: bool) -> bytes:
    """A reply as aiosmtpd's ``SMTP.push`` puts it on the wire."""
    return text.encode("utf-8" if utf8 else "ascii") + b"\r\n"


@functools.lru_cache(maxsize=256)  # replies repeat; ids in 250 replies just cycle through
def with_enhanced_code(text: str) -> str:
    """Each line of ``text`` with an enhanced code after its reply code (the class's default
    for the code, ``replies.DEFAULT_ENHANCED``) unless it has one."""
    lines = text.split("\r\n")
    out = []
    for line in lines:
        code, sep, rest = line[:3], line[3:4], line[4:]
        if (len(line) >= 3 and code.isdigit() and code[0] in "245" and sep in (" ", "-", "")
                and not _ENHANCED.match(rest)):
            enhanced = replies.DEFAULT_ENHANCED.get(code, f"{code[0]}.0.0")
            line = f"{code}{sep or ' '}{enhanced} {rest}".rstrip()
        out.append(line)
    return "\r\n".join(out)
