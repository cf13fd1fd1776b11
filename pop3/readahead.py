"""One session's view of a maildrop that reads ahead (step 5: the user agent retrieves its mail).

Clients download a maildrop in order (RETR 1, RETR 2, ...), and every maildrop call may be a
trip to a database thread. ``ReadAhead`` wraps a ``pop3.maildrop.Maildrop`` for one POP3
session: ``list_entries`` remembers the listing (the snapshot RFC 1939 sessions work on), and
``fetch`` of one entry loads the small entries after it in the same ``fetch_many`` call, keeping
them until their own RETR (or TOP) asks; once half of them are taken, the next batch is read in
the background, so a client going through the maildrop never waits for a read (a RETR that did
cost its round trip a trip to the database thread every 64 messages). Every other call goes
straight to the maildrop.

The server creates one per session and forgets it at the session's end, so nothing read ahead
outlives the maildrop lock that makes it valid.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence

from pop3.maildrop import EntryLike, Maildrop

# At most this many messages, of at most this many octets together, per read.
BATCH_MESSAGES = 64
BATCH_OCTETS = 256 * 1024


class ReadAhead:
    """Implements ``pop3.maildrop.Maildrop`` over another maildrop, for one session."""

    def __init__(
        self,
        maildrop: Maildrop,
        *,
        batch_messages: int = BATCH_MESSAGES,
        batch_octets: int = BATCH_OCTETS,
    ) -> None:
        self.maildrop = maildrop
        self.batch_messages = batch_messages
        self.batch_octets = batch_octets
        self._owner: str | None = None  # whose listing _listing is
        self._listing: list[tuple[int, int]] = []  # (entry id, size), oldest first
        self._position: dict[int, int] = {}  # entry id -> index in _listing
        self._loaded: dict[int, bytes] = {}  # read ahead, waiting for their RETR
        self._next = 0  # index in _listing of the first entry not read (ahead) yet
        self._coming: asyncio.Future[dict[int, bytes]] | None = None  # the next batch
        self._coming_ids: frozenset[int] = frozenset()

    def forget(self) -> None:
        """Drop what was read ahead (the session let go of the maildrop)."""
        self._loaded = {}
        self._drop_coming()

    def _drop_coming(self) -> None:
        if self._coming is not None:
            self._coming.cancel()
        self._coming, self._coming_ids = None, frozenset()

    def _read_on(self, owner: str) -> None:
        """Start reading the next batch when what is loaded runs low."""
        if (self._coming is not None or len(self._loaded) > self.batch_messages // 2
                or self._next >= len(self._listing)):
            return
        batch = self.batch_from(owner, self._listing[self._next][0])
        if len(batch) < 2:
            return  # a large message: read when asked, alone
        self._next += len(batch)
        self._coming = asyncio.ensure_future(self.maildrop.fetch_many(owner, batch))
        self._coming_ids = frozenset(batch)

    async def _take_coming(self) -> None:
        coming, self._coming, self._coming_ids = self._coming, None, frozenset()
        assert coming is not None
        # shielded: a session cancelled while it waits leaves the read to finish unheard
        with contextlib.suppress(Exception):
            self._loaded.update(await asyncio.shield(coming))

    def batch_from(self, owner: str, entry_id: int) -> list[int]:
        """``entry_id`` and the entries after it in the listing that fit in one read."""
        start = self._position.get(entry_id) if owner == self._owner else None
        if start is None:
            return [entry_id]
        batch: list[int] = []
        octets = 0
        for other, size in self._listing[start:start + self.batch_messages]:
            octets += size
            if batch and octets > self.batch_octets:
                break
            batch.append(other)
        return batch

    # -- the Maildrop interface --

    async def list_entries(self, owner: str) -> Sequence[EntryLike]:
        entries = list(await self.maildrop.list_entries(owner))
        self.forget()
        self._owner = owner
        self._listing = [(int(e.id), int(e.size)) for e in entries]
        self._position = {entry_id: i for i, (entry_id, _) in enumerate(self._listing)}
        return entries

    async def fetch(self, owner: str, entry_id: int) -> bytes:
        """One message; the small messages that follow it come along in the same read."""
        if owner == self._owner:
            if entry_id in self._coming_ids:
                await self._take_coming()
            if entry_id in self._loaded:
                raw = self._loaded.pop(entry_id)
                self._read_on(owner)
                return raw
        batch = self.batch_from(owner, entry_id)
        if len(batch) < 2:
            return await self.maildrop.fetch(owner, entry_id)
        found = await self.maildrop.fetch_many(owner, batch)
        if entry_id not in found:
            raise KeyError(entry_id)
        raw = found.pop(entry_id)
        self._drop_coming()
        self._loaded = found
        self._next = self._position[batch[-1]] + 1
        self._read_on(owner)
        return raw

    async def fetch_many(self, owner: str, entry_ids: Sequence[int]) -> dict[int, bytes]:
        return await self.maildrop.fetch_many(owner, entry_ids)

    async def authenticate(self, login: str, password: str) -> str | None:
        return await self.maildrop.authenticate(login, password)

    async def apop_secret(self, login: str) -> tuple[str, str] | None:
        return await self.maildrop.apop_secret(login)

    async def lock(self, owner: str, holder: str, lease_seconds: float) -> bool:
        return await self.maildrop.lock(owner, holder, lease_seconds)

    async def renew_lock(self, owner: str, holder: str, lease_seconds: float) -> bool:
        return await self.maildrop.renew_lock(owner, holder, lease_seconds)

    async def unlock(self, owner: str, holder: str) -> None:
        await self.maildrop.unlock(owner, holder)

    async def delete(self, owner: str, entry_ids: Sequence[int]) -> None:
        await self.maildrop.delete(owner, entry_ids)
