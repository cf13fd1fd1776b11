"""Step 6: the one gate between a message and the terminal.

Every string that comes from a message (a header, a MIME parameter, a file name, a MIME type, a
body) passes through ``text`` or ``line`` before ``mua`` prints it, so mail cannot drive the
terminal: no C0 control but TAB and LF, no DEL, no C1 control (0x80-0x9f, which some terminals
take as CSI and OSC) and no invisible format characters such as bidi overrides (which reorder
what is shown, CVE-2021-42574) survive. ESC (0x1b) is a C0 control, so no escape sequence can
start. Rich markup is not a concern here: ``mua.cli`` hands message text to rich as ``Text``,
which is never parsed for markup.
"""

from __future__ import annotations

import re
import unicodedata

# C0 controls except TAB and LF, DEL and the C1 controls (ECMA-48 5.2).
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_ZERO_WIDTH_JOINER = "\u200d"  # joins emoji sequences: harmless and needed


def text(value: str) -> str:
    """``value`` safe to print: line ends normalised to LF, controls and format characters gone."""
    value = value.replace("\r\n", "\n").replace("\r", "\n")
    value = _CONTROL.sub("", value)
    if value.isascii():
        return value
    return "".join(
        c for c in value if c == _ZERO_WIDTH_JOINER or unicodedata.category(c) != "Cf"
    )


def line(value: str) -> str:
    """``value`` safe to print on one line: ``text`` with every run of white space one space."""
    return " ".join(text(value).split())
