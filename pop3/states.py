"""POP3's session states and which commands each takes (step 5: the user agent retrieves mail).

One table, ``ALLOWED``, read by ``pop3.protocol`` before any command runs: a command missing
from it is unknown, a command in the wrong state is refused, and no ``cmd_VERB`` method checks
the state again. Plain data; no I/O.
"""

from __future__ import annotations

from enum import Enum


class State(Enum):
    """RFC 1939 3: the session states, named verbatim."""

    AUTHORIZATION = "AUTHORIZATION"
    TRANSACTION = "TRANSACTION"
    UPDATE = "UPDATE"


AUTHORIZATION = State.AUTHORIZATION
TRANSACTION = State.TRANSACTION
UPDATE = State.UPDATE

# Which commands each state allows (RFC 1939 4-6, RFC 2449 5, RFC 5034 4, RFC 2595 4).
ALLOWED: dict[str, frozenset[State]] = {
    "USER": frozenset({AUTHORIZATION}),
    "PASS": frozenset({AUTHORIZATION}),
    "APOP": frozenset({AUTHORIZATION}),
    "AUTH": frozenset({AUTHORIZATION}),
    "STLS": frozenset({AUTHORIZATION}),
    "CAPA": frozenset({AUTHORIZATION, TRANSACTION}),
    "QUIT": frozenset({AUTHORIZATION, TRANSACTION}),
    "STAT": frozenset({TRANSACTION}),
    "LIST": frozenset({TRANSACTION}),
    "RETR": frozenset({TRANSACTION}),
    "DELE": frozenset({TRANSACTION}),
    "NOOP": frozenset({TRANSACTION}),
    "RSET": frozenset({TRANSACTION}),
    "TOP": frozenset({TRANSACTION}),
    "UIDL": frozenset({TRANSACTION}),
}
