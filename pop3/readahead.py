"""One session's view of a maildrop that reads ahead (step 5: the user agent retrieves its mail).

Clients download a maildrop in order (RETR 1, RETR 2, ...), and every maildrop call may be a
trip to a database thread. ``ReadAhead`` wraps a ``pop3.maildrop.Maildrop`` for one POP3
session: ``list_entries`` remembers the listing (the snapshot RFC 1939 sessions work on), and
``fetch`` of one entry loads the small entries after it in the same ``fetch_many`` call, keeping
them until their own RETR (or TOP) asks. Every other call goes straight to the maildrop.

The server creates one per session and forgets it at the session's end, so nothing read ahead
outlives the maildrop lock that makes it valid.
"""

from __future__ import annotations

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

    def forget(self) -> None:
        """Drop what was read ahead (the session let go of the maildrop)."""
        self._loaded = {}

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
        self._owner = owner
        self._listing = [(int(e.id), int(e.size)) for e in entries]
        self._position = {entry_id: i for i, (entry_id, _) in enumerate(self._listing)}
        self._loaded = {}
        return entries

    async def fetch(self, owner: str, entry_id: int) -> bytes:
        """One message; the small messages that follow it come along in the same read."""
        if owner == self._owner and entry_id in self._loaded:
            return self._loaded.pop(entry_id)
        batch = self.batch_from(owner, entry_id)
        if len(batch) < 2:
            return await self.maildrop.fetch(owner, entry_id)
        found = await self.maildrop.fetch_many(owner, batch)
        if entry_id not in found:
            raise KeyError(entry_id)
        raw = found.pop(entry_id)
        self._loaded = found
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
