"""What the sans-IO POP3 core asks its I/O layer to do (step 5: the user agent retrieves mail).

``pop3.protocol.POP3Protocol`` answers every line with a list of these, carried out in order:

- ``Send``: bytes to write (``data`` then ``body``), with the text to trace for them;
- ``AuthFailed`` / ``LoggedIn``: hints for the failed-login delay and the log;
- ``Unlock``: release the maildrop lock; ``StartTLS``: discard anything buffered and start TLS,
  then call ``tls_started``; ``Close``: close the connection;
- a *request* (``Authenticate``, ``GetApopSecret``, ``Lock``, ``ListEntries``, ``Fetch``,
  ``Delete``), always the last action of a list: the I/O layer asks the maildrop and hands the
  answer back with ``complete(request, result)``, or ``fail(request)`` if the maildrop raised.
  Until then the session takes no other line.

Plain frozen dataclasses; no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Send:
    """Write ``data`` then ``body`` (``body`` is a dot-stuffed, terminated message or empty)."""

    data: bytes
    trace: tuple[str, ...]
    body: bytes = b""


@dataclass(frozen=True, slots=True)
class AuthFailed:
    login: str


@dataclass(frozen=True, slots=True)
class LoggedIn:
    owner: str


@dataclass(frozen=True, slots=True)
class Unlock:
    owner: str


@dataclass(frozen=True, slots=True)
class StartTLS:
    pass


@dataclass(frozen=True, slots=True)
class Close:
    pass


@dataclass(frozen=True, slots=True)
class Authenticate:
    """Result: the canonical owner, or None."""

    login: str
    password: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class GetApopSecret:
    """Result: ``(owner, secret)`` or None."""

    login: str


@dataclass(frozen=True, slots=True)
class Lock:
    """Result: True if the lock is now held by this session."""

    owner: str


@dataclass(frozen=True, slots=True)
class ListEntries:
    """Result: a sequence of EntryLike, oldest first."""

    owner: str


@dataclass(frozen=True, slots=True)
class Fetch:
    """Result: the raw message (CRLF), or None if it is gone."""

    owner: str
    entry_id: int


@dataclass(frozen=True, slots=True)
class Delete:
    """Result: None once the entries are removed (one transaction)."""

    owner: str
    entry_ids: tuple[int, ...]


Request = Authenticate | GetApopSecret | Lock | ListEntries | Fetch | Delete
Action = Send | AuthFailed | LoggedIn | Unlock | StartTLS | Close | Request


class ProtocolUsageError(RuntimeError):
    """The I/O layer broke the contract (a line while a request is outstanding, ...)."""
