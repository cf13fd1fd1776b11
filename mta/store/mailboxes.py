"""Local mailboxes: delivery (end of step 4) and the POP3 maildrop (step 5).

``deliver`` returns only after the transaction holding the message has committed, so the MX
listener's ``250`` covers it. The store implements ``pop3.maildrop.Maildrop`` (lock, list
entries, fetch, delete a set) without importing it; the maildrop lock (RFC 1939 8) is a row
with a lease, so it holds across processes and runs out when its holder dies.

Python names the id of the SMTP transaction ``queue_id`` (the id the 250 reply names); the
``mailbox`` table's column for it is still called ``txn_id`` (schema 001).
"""

from __future__ import annotations

import secrets
import sqlite3
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from mta.addresses import normalise
from mta.store.connection import StoreBase, StoreError, check_text

# Messages this big are written into SQLite in pieces (no whole copy for the trace headers).
LARGE_MESSAGE = 1024 * 1024
BLOB_CHUNK = 1024 * 1024

_INSERT_ENTRY = ("INSERT INTO mailbox (owner, uid, received, size, txn_id, sender, raw) "
                 "VALUES (?, ?, ?, ?, ?, ?, ?)")
# column txn_id is Entry.queue_id
_SELECT_ENTRY = "SELECT id, uid, size, received, owner, sender, txn_id FROM mailbox"


@dataclass(frozen=True)
class Entry:
    """A mailbox entry without its body (what POP3's STAT/LIST/UIDL need)."""

    id: int
    uid: str
    size: int
    received: float
    owner: str
    sender: str
    queue_id: str


@dataclass(frozen=True)
class Delivered:
    """What a delivery committed: one (owner, entry uid) per local recipient, and the
    mailbox row id of each entry (``ids``, same order), for the stored event."""

    queue_id: str
    entries: tuple[tuple[str, str], ...]
    ids: tuple[int, ...] = ()
    message_id: str = ""  # the Message-ID field, when the caller read it
    sender: str = ""
    size: int = 0


EntryRow = tuple[str, str, float, int, str, str, bytes]


def insert_entries(db: sqlite3.Connection, rows: Sequence[EntryRow]) -> tuple[int, ...]:
    """Insert mailbox rows one by one (``executemany`` keeps no row ids); their ids."""
    return tuple(db.execute(_INSERT_ENTRY, row).lastrowid or 0 for row in rows)


class MaildropLocked(StoreError):
    """A POP3 session holds the maildrop (RFC 1939 8): an administrator's delete must wait."""


def new_uid() -> str:
    """A UIDL value: printable ASCII (RFC 1939 7), unique across databases, never reused."""
    return uuid.uuid4().hex


def new_queue_id() -> str:
    """The id a 250 reply names: short, unique, greppable in logs."""
    return secrets.token_hex(6).upper()


class Mailboxes(StoreBase):
    """The ``mailbox`` and ``maildrop_locks`` tables."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # (owner, holder) of locks whose sessions ended but whose unlock did not commit (a full
        # disk): the next lock() removes them in its own transaction (issue 17 item 11)
        self._unreleased: set[tuple[str, str]] = set()

    def _delivery_rows(self, owners: Sequence[str], raw: bytes, sender: str,
                       queue_id: str, received: float | None = None
                       ) -> tuple[list[EntryRow], tuple[tuple[str, str], ...]]:
        """The rows that put ``raw`` into each owner's mailbox, and (owner, uid) pairs."""
        received = time.time() if received is None else received
        rows: list[EntryRow] = []
        entries = []
        for owner in owners:
            uid = new_uid()
            owner = normalise(owner)
            rows.append((owner, uid, received, len(raw), queue_id, sender, raw))
            entries.append((owner, uid))
        return rows, tuple(entries)

    async def deliver(self, owners: Sequence[str], raw: bytes, sender: str,
                      queue_id: str | None = None, *, prefix: bytes = b"",
                      message_id: str = "") -> Delivered:
        """Store ``prefix + raw`` once per local mailbox owner, durably, before returning.

        ``prefix`` (the trace headers) is kept apart so that a large message is never copied
        whole just to put a few header lines in front of it: it is written into SQLite in
        pieces (incremental blob I/O) instead of being bound as one value.
        """
        check_text(sender, message_id, *owners)
        queue_id = queue_id or new_queue_id()
        if len(raw) < LARGE_MESSAGE:
            rows, entries = self._delivery_rows(owners, prefix + raw, sender, queue_id)
            ids = await self._write_fn(lambda db: insert_entries(db, rows), messages=1)
        else:
            entries, ids = await self._deliver_large(owners, (prefix, raw), sender, queue_id)
        delivered = Delivered(queue_id, entries, ids, message_id, sender,
                              len(prefix) + len(raw))
        self.notify(delivered)
        return delivered

    async def _deliver_large(self, owners: Sequence[str], parts: Sequence[bytes], sender: str,
                             queue_id: str
                             ) -> tuple[tuple[tuple[str, str], ...], tuple[int, ...]]:
        size = sum(len(part) for part in parts)
        received = time.time()
        entries = tuple((normalise(owner), new_uid()) for owner in owners)

        def run(db: sqlite3.Connection) -> tuple[int, ...]:
            ids = []
            for owner, uid in entries:
                cursor = db.execute(
                    "INSERT INTO mailbox (owner, uid, received, size, txn_id, sender, raw) "
                    "VALUES (?, ?, ?, ?, ?, ?, zeroblob(?))",
                    (owner, uid, received, size, queue_id, sender, size))
                ids.append(cursor.lastrowid or 0)
                with db.blobopen("mailbox", "raw", cursor.lastrowid) as blob:
                    for part in map(memoryview, parts):
                        for start in range(0, len(part), BLOB_CHUNK):
                            blob.write(part[start:start + BLOB_CHUNK])
            return tuple(ids)

        return entries, await self._write_fn(run, messages=1)

    # -- pop3.maildrop.Maildrop: the lock (RFC 1939 8) ----------------------------------------

    async def lock(self, owner: str, holder: str, lease_seconds: float) -> bool:
        owner = normalise(owner)
        unreleased = list(self._unreleased)

        def run(db: sqlite3.Connection) -> bool:
            now = time.time()
            db.executemany("DELETE FROM maildrop_locks WHERE owner = ? AND holder = ?",
                           unreleased)
            db.execute("DELETE FROM maildrop_locks WHERE owner = ? AND expires < ?",
                       (owner, now))
            cursor = db.execute(
                "INSERT INTO maildrop_locks (owner, holder, expires) VALUES (?, ?, ?) "
                "ON CONFLICT(owner) DO UPDATE SET expires = excluded.expires "
                "WHERE maildrop_locks.holder = excluded.holder",
                (owner, holder, now + lease_seconds))
            return cursor.rowcount > 0

        locked = await self._write_fn(run)
        self._unreleased.difference_update(unreleased)
        return locked

    async def renew_lock(self, owner: str, holder: str, lease_seconds: float) -> bool:
        owner = normalise(owner)

        def run(db: sqlite3.Connection) -> bool:
            cursor = db.execute(
                "UPDATE maildrop_locks SET expires = ? WHERE owner = ? AND holder = ?",
                (time.time() + lease_seconds, owner, holder))
            return cursor.rowcount > 0

        return await self._write_fn(run)

    async def unlock(self, owner: str, holder: str) -> None:
        key = (normalise(owner), holder)
        try:
            await self._write([("DELETE FROM maildrop_locks WHERE owner = ? AND holder = ?",
                               [key])])
        except StoreError:
            # The session has ended: its lock must not hold the maildrop [IN-USE] for the
            # rest of the lease. Removed by the next lock() once writes commit again.
            self._unreleased.add(key)
            raise

    # -- pop3.maildrop.Maildrop: the messages -------------------------------------------------

    async def list_entries(self, owner: str) -> list[Entry]:
        """A mailbox's entries, oldest first, without loading bodies."""
        rows = await self._all(f"{_SELECT_ENTRY} WHERE owner = ? ORDER BY id",
                               (normalise(owner),))
        return [Entry(*row) for row in rows]

    async def fetch(self, owner: str, entry_id: int) -> bytes:
        """The raw message (CRLF line ends); KeyError if it is not in that mailbox."""
        row = await self._one("SELECT raw FROM mailbox WHERE id = ? AND owner = ?",
                              (entry_id, normalise(owner)))
        if row is None:
            raise KeyError(entry_id)
        return bytes(row["raw"])

    async def fetch_many(self, owner: str, entry_ids: Sequence[int]) -> dict[int, bytes]:
        """Several raw messages of one mailbox in one read (those that exist)."""
        ids = [int(i) for i in entry_ids][:500]  # well under SQLite's bound-parameter limit
        marks = ",".join("?" * len(ids))
        # Rows by rowid, one page read per message: the unary + keeps the planner off the
        # (owner, id) index, whose lookups would add an index page per message.
        rows = await self._all(f"SELECT id, raw FROM mailbox WHERE id IN ({marks}) AND +owner = ?",
                               (*ids, normalise(owner)))
        return {row["id"]: bytes(row["raw"]) for row in rows}

    async def delete(self, owner: str, entry_ids: Sequence[int]) -> None:
        """Remove a set of entries from one mailbox in one transaction."""
        owner = normalise(owner)
        if entry_ids:
            await self._write([("DELETE FROM mailbox WHERE owner = ? AND id = ?",
                               [(owner, int(i)) for i in entry_ids])])

    async def purge(self, owner: str) -> int:
        owner = normalise(owner)

        def run(db: sqlite3.Connection) -> int:
            cursor = db.execute("DELETE FROM mailbox WHERE owner = ?", (owner,))
            return cursor.rowcount

        return await self._write_fn(run)

    async def delete_unless_locked(self, owner: str, entry_ids: Sequence[int] | None) -> int:
        """Delete ``entry_ids`` (None: every entry) of one mailbox unless a POP3 session holds
        its maildrop lock (then ``MaildropLocked``); the check and the delete are one
        transaction, so no session can take the lock in between. Returns how many went."""
        owner = normalise(owner)

        def run(db: sqlite3.Connection) -> int | None:
            held = db.execute("SELECT 1 FROM maildrop_locks WHERE owner = ? AND expires >= ?",
                              (owner, time.time())).fetchone()
            if held:
                return None
            if entry_ids is None:
                return db.execute("DELETE FROM mailbox WHERE owner = ?", (owner,)).rowcount
            return sum(db.execute("DELETE FROM mailbox WHERE owner = ? AND id = ?",
                                  (owner, int(i))).rowcount for i in entry_ids)

        deleted = await self._write_fn(run)
        if deleted is None:
            raise MaildropLocked(f"{owner}: a POP3 session holds the maildrop")
        return deleted

    # -- reads for the HTTP API (mta.http) -----------------------------------------------------

    async def mailbox_page(self, owner: str | None, *, before: int | None = None,
                           since: float | None = None, limit: int = 50,
                           head: int = 65536) -> list[tuple[Entry, bytes]]:
        """Entries newest first (ids below ``before``, stored at or after ``since``), of one
        mailbox or (``owner`` None) of all, each with the first ``head`` bytes of its message:
        one indexed query with LIMIT, so a page costs the same in a mailbox of any size."""
        where, values = [], []
        for clause, value in (("owner = ?", None if owner is None else normalise(owner)),
                              ("id < ?", before), ("received >= ?", since)):
            if value is not None:
                where.append(clause)
                values.append(value)
        sql = (f"SELECT id, uid, size, received, owner, sender, txn_id, substr(raw, 1, ?) "
               f"AS head FROM mailbox {'WHERE ' + ' AND '.join(where) if where else ''} "
               "ORDER BY id DESC LIMIT ?")
        rows = await self._all(sql, (max(head, 1), *values, limit))
        return [(Entry(*row[:7]), bytes(row["head"]) if head > 0 else b"") for row in rows]

    async def mailbox_counts(self) -> dict[str, int]:
        """Every account and how many messages its mailbox holds, in one query."""
        rows = await self._all(
            "SELECT a.address, (SELECT COUNT(*) FROM mailbox m WHERE m.owner = a.address) "
            "AS n FROM accounts a ORDER BY a.address")
        return {row["address"]: row["n"] for row in rows}

    async def entry_by_uid(self, uid: str) -> Entry | None:
        row = await self._one(f"{_SELECT_ENTRY} WHERE uid = ?", (uid,))
        return Entry(*row) if row else None

    async def count_entries(self, owner: str | None = None) -> int:
        return await self._count("mailbox", "owner", None if owner is None else normalise(owner))
