"""The delivery trace: every protocol line of steps 3, 4 and 5, as the server sees it.

All hops report through one stdlib logger, ``labmail.trace``, with structured fields
(step, component, peer, direction "C" client or "S" server, line), so no package imports
another to be traced. ``mta serve --trace`` prints them; the demo and tests collect them.
"""

from __future__ import annotations

import logging
import re

TRACE = logging.getLogger("labmail.trace")

_AUTH = re.compile(r"^(AUTH\s+\S+)(\s+.*)?$", re.IGNORECASE)


def enabled() -> bool:
    return TRACE.isEnabledFor(logging.DEBUG)


def mask(line: str) -> str:
    """Hide AUTH secrets: ``AUTH PLAIN <b64>`` -> ``AUTH PLAIN ****``."""
    match = _AUTH.match(line)
    if match and match.group(2):
        return match.group(1) + " ****"
    return line


def line(step: int, component: str, peer: str, direction: str, text: str) -> None:
    TRACE.debug("%s %s %s: %s", component, peer, direction, text,
                extra={"step": step, "component": component, "peer": peer,
                       "direction": direction, "line": text})


def peer_text(peer: object) -> str:
    if isinstance(peer, tuple) and len(peer) >= 2:
        host = f"[{peer[0]}]" if ":" in str(peer[0]) else str(peer[0])
        return f"{host}:{peer[1]}"
    return str(peer)
