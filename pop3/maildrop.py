"""The maildrop contract the POP3 server needs (implemented by labmail's SQLite store).

Everything here is typing only: no I/O, no imports from ``mta``. A maildrop keeps one mailbox per
owner; the server never sees SQL. All methods are coroutines so a store may run them off the
event loop.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable


@runtime_checkable
class EntryLike(Protocol):
    """One message in a mailbox, without its body."""

    @property
    def id(self) -> int: ...  # the maildrop's own id, passed back to fetch/delete

    @property
    def uid(self) -> str: ...  # UIDL value: 1-70 chars 0x21-0x7E, never changes, never reused

    @property
    def size(self) -> int: ...  # exact octets of the message as fetch() returns it (CRLF)


@runtime_checkable
class Maildrop(Protocol):
    """What a POP3 session asks of the mail store (RFC 1939 sessions over a shared store).

    - ``authenticate``/``apop_secret`` take the login as typed (a full address, any case) and
      return the canonical owner, which every other method receives.
    - ``apop_secret`` returns ``(owner, shared secret)`` only for accounts with APOP enabled
      (lab-only: APOP needs the secret stored in clear), else None.
    - ``lock`` is an exclusive lease per owner, held in the store so that it holds across
      processes: it returns False while another *live* holder has it (lease not expired); the
      same holder may re-lock. ``renew_lock`` extends it and returns False if it was lost.
    - ``list_entries`` returns the mailbox oldest first, without bodies.
    - ``fetch`` returns the raw message with CRLF line ends (ending in CRLF), exactly ``size``
      octets; raises KeyError if the entry is gone.
    - ``fetch_many`` returns several of the owner's entries in one call, as ``fetch`` would,
      keyed by id; ids that are gone (or not the owner's) are left out. The server reads the
      messages that follow a RETR along with it (``pop3.readahead``), so one call should be one
      trip to the store, not one per entry.
    - ``delete`` removes all the given entries in one transaction (all or nothing).
    """

    async def authenticate(self, login: str, password: str) -> str | None: ...

    async def apop_secret(self, login: str) -> tuple[str, str] | None: ...

    async def lock(self, owner: str, holder: str, lease_seconds: float) -> bool: ...

    async def renew_lock(self, owner: str, holder: str, lease_seconds: float) -> bool: ...

    async def unlock(self, owner: str, holder: str) -> None: ...

    async def list_entries(self, owner: str) -> Sequence[EntryLike]: ...

    async def fetch(self, owner: str, entry_id: int) -> bytes: ...

    async def fetch_many(self, owner: str, entry_ids: Sequence[int]) -> dict[int, bytes]: ...

    async def delete(self, owner: str, entry_ids: Sequence[int]) -> None: ...
