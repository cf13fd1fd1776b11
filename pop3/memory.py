"""An in-memory ``Maildrop`` for tests and demos (single process, nothing persists).

It behaves like the SQLite store where the POP3 server can tell: logins are case-insensitive
full addresses, UIDL values are never reused, the lock is a lease, ``delete`` is all or
nothing, and messages are kept with CRLF line ends so ``size`` is what RETR sends. Tests can
make calls fail (``fail_on``) and wait until a session has let go of a maildrop
(``wait_unlocked``).
"""

from __future__ import annotations

import asyncio
import hmac
import itertools
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from pop3.crlf import to_crlf  # the one CRLF rule, so sizes match the SQLite store


@dataclass(frozen=True, slots=True)
class MemoryEntry:
    id: int
    uid: str
    size: int


@dataclass
class _Mailbox:
    password: str
    apop_secret: str | None
    messages: dict[int, tuple[MemoryEntry, bytes]] = field(default_factory=dict)
    holder: str | None = None
    expires: float = 0.0


class MemoryMaildrop:
    """Implements ``pop3.maildrop.Maildrop`` in memory."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._boxes: dict[str, _Mailbox] = {}  # key: the canonical (lower-case) address
        self._ids = itertools.count(1)
        self._uid_prefix = secrets.token_hex(4)
        self._unlocked = asyncio.Condition()
        self.fail_on: set[str] = set()  # method names that raise RuntimeError (for tests)
        self.calls: list[tuple[str, str]] = []  # (method, owner) in call order

    # -- test/demo helpers --

    def add_account(self, address: str, password: str, *, apop_secret: str | None = None) -> str:
        owner = address.lower()
        self._boxes[owner] = _Mailbox(password, apop_secret)
        return owner

    def deliver(self, address: str, message: bytes | str) -> MemoryEntry:
        raw = to_crlf(message.encode("utf-8") if isinstance(message, str) else message)
        entry_id = next(self._ids)
        entry = MemoryEntry(entry_id, f"{self._uid_prefix}.{entry_id}", len(raw))
        self._boxes[address.lower()].messages[entry_id] = (entry, raw)
        return entry

    def messages(self, address: str) -> list[bytes]:
        return [raw for _, raw in self._boxes[address.lower()].messages.values()]

    def holder(self, address: str) -> str | None:
        box = self._boxes[address.lower()]
        return box.holder if box.expires > self._clock() else None

    async def wait_unlocked(self, address: str) -> None:
        async with self._unlocked:
            await self._unlocked.wait_for(lambda: self.holder(address) is None)

    # -- the Maildrop interface --

    def _record(self, method: str, owner: str) -> None:
        self.calls.append((method, owner))
        if method in self.fail_on:
            raise RuntimeError(f"{method} failed (test)")

    def _check(self, method: str, owner: str) -> _Mailbox:
        self._record(method, owner)
        return self._boxes[owner]

    async def authenticate(self, login: str, password: str) -> str | None:
        owner = login.lower()
        self._record("authenticate", owner)
        box = self._boxes.get(owner)
        if box is None or not hmac.compare_digest(box.password.encode(), password.encode()):
            return None
        return owner

    async def apop_secret(self, login: str) -> tuple[str, str] | None:
        owner = login.lower()
        self._record("apop_secret", owner)
        box = self._boxes.get(owner)
        if box is None:
            return None
        return None if box.apop_secret is None else (owner, box.apop_secret)

    async def lock(self, owner: str, holder: str, lease_seconds: float) -> bool:
        box = self._check("lock", owner)
        now = self._clock()
        if box.holder not in (None, holder) and box.expires > now:
            return False
        box.holder, box.expires = holder, now + lease_seconds
        return True

    async def renew_lock(self, owner: str, holder: str, lease_seconds: float) -> bool:
        box = self._check("renew_lock", owner)
        now = self._clock()
        if box.holder != holder or box.expires <= now:
            return False
        box.expires = now + lease_seconds
        return True

    async def unlock(self, owner: str, holder: str) -> None:
        box = self._check("unlock", owner)
        if box.holder == holder:
            box.holder, box.expires = None, 0.0
        async with self._unlocked:
            self._unlocked.notify_all()

    async def list_entries(self, owner: str) -> Sequence[MemoryEntry]:
        box = self._check("list_entries", owner)
        return [entry for entry, _ in box.messages.values()]

    async def fetch(self, owner: str, entry_id: int) -> bytes:
        box = self._check("fetch", owner)
        return box.messages[entry_id][1]  # KeyError if gone

    async def fetch_many(self, owner: str, entry_ids: Sequence[int]) -> dict[int, bytes]:
        box = self._check("fetch_many", owner)
        return {i: box.messages[i][1] for i in entry_ids if i in box.messages}

    async def delete(self, owner: str, entry_ids: Sequence[int]) -> None:
        box = self._check("delete", owner)
        for entry_id in entry_ids:
            box.messages.pop(entry_id, None)
