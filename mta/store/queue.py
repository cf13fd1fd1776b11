"""The outbound queue (step 4, the sending side): its rows, their states, and how a row reads.

A message is stored once in ``queue_messages``, with one ``queue_recipients`` row per recipient
(per-recipient status, RFC 3464 2.3) in one of the ``QueueState`` states. The relay worker keeps
which rows it is delivering in memory only, so rows "in flight" when the process dies are simply
queued and due again. When to retry is ``mta.retry_policy``'s business, not the store's.

Python names a queued message's id ``queue_id``; the ``queue_recipients`` column holding it is
still called ``message_id`` (schema 002), mapped in ``_SELECT_QUEUE``.
"""

from __future__ import annotations

import math
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from mta.store.connection import Statement, check_text
from mta.store.mailboxes import Delivered, EntryRow, Mailboxes, insert_entries, new_queue_id


class QueueState(StrEnum):
    """A queue row's state; the values are what the ``state`` column stores."""

    QUEUED = "queued"
    DELIVERED = "delivered"
    FAILED = "failed"


@dataclass(frozen=True)
class QueueRow:
    """One (message, recipient) pair of the outbound queue."""

    id: int
    queue_id: str
    sender: str          # '' for <>
    recipient: str
    domain: str
    state: QueueState
    attempts: int
    next_attempt: float
    last_reply: str | None
    created: float       # when the message was queued (its lifetime counts from here)
    smtputf8: bool = False  # the message needs SMTPUTF8 (RFC 6531; schema 003)


@dataclass(frozen=True)
class Outcome:
    """The result of one delivery attempt for one queue row."""

    row_id: int
    queue_id: str
    state: QueueState
    attempts: int
    next_attempt: float
    last_reply: str


@dataclass(frozen=True)
class Bounce:
    """A delivery status notification to store with the outcomes that caused it."""

    raw: bytes
    local_owner: str | None = None   # deliver into this local mailbox ...
    remote: str | None = None        # ... or queue it for relay to this address
    smtputf8: bool = False           # a queued DSN needs SMTPUTF8 (RFC 6533)
    queue_id: str = field(default_factory=new_queue_id)  # the DSN's own


_INSERT_QUEUED_MESSAGE = ("INSERT INTO queue_messages (id, sender, raw, size, created, smtputf8) "
                          "VALUES (?, ?, ?, ?, ?, ?)")
_INSERT_QUEUED_RECIPIENT = ("INSERT INTO queue_recipients (message_id, recipient, domain, "
                            "state, next_attempt, created, updated) VALUES (?, ?, ?, ?, ?, ?, ?)")
# column message_id is QueueRow.queue_id
_SELECT_QUEUE = ("SELECT r.id, r.message_id, m.sender, r.recipient, r.domain, r.state, "
                 "r.attempts, r.next_attempt, r.last_reply, m.created, m.smtputf8 "
                 "FROM queue_recipients r JOIN queue_messages m ON m.id = r.message_id")
_DROP_FINAL_BODY = ("UPDATE queue_messages SET raw = NULL WHERE id = ? AND NOT EXISTS ("
                    "SELECT 1 FROM queue_recipients WHERE message_id = ? AND state = ?)")


def _queue_row(row: sqlite3.Row) -> QueueRow:
    return QueueRow(*row[:5], QueueState(row[5]), *row[6:10], bool(row[10]))


class Outbound(Mailboxes):
    """The ``queue_messages`` and ``queue_recipients`` tables (bounces may go to a mailbox)."""

    def _queue_statements(self, queue_id: str, sender: str, raw: bytes,
                          recipients: Sequence[str], now: float,
                          smtputf8: bool = False) -> list[Statement]:
        rows = [(queue_id, recipient, recipient.rpartition("@")[2].lower(), QueueState.QUEUED,
                 now, now, now)
                for recipient in dict.fromkeys(recipients)]
        return [(_INSERT_QUEUED_MESSAGE, [(queue_id, sender, raw, len(raw), now, int(smtputf8))]),
                (_INSERT_QUEUED_RECIPIENT, rows)]

    async def accept(self, queue_id: str, sender: str, *, local_owners: Sequence[str] = (),
                     local_raw: bytes = b"", remote: Sequence[str] = (), queue_raw: bytes = b"",
                     now: float, message_id: str = "", smtputf8: bool = False) -> Delivered:
        """Commit local mailbox entries and outbound queue rows of one message together.

        The submission listener answers 250 only after this returns (one transaction, so a
        crash leaves either all of the message or none of it).
        """
        check_text(sender, message_id, *local_owners, *remote)
        rows, entries = self._delivery_rows(local_owners, local_raw, sender, queue_id)
        statements = self._queue_statements(queue_id, sender, queue_raw, remote, now,
                                             smtputf8) if remote else []

        def run(db: sqlite3.Connection) -> tuple[int, ...]:
            for sql, values in statements:
                db.executemany(sql, values)
            return insert_entries(db, rows)

        ids = await self._write_fn(run, messages=1) if rows or statements else ()
        delivered = Delivered(queue_id, entries, ids, message_id, sender, len(local_raw))
        if entries:
            self.notify(delivered)
        if remote:
            self.notify_queued(queue_id)
        return delivered

    async def enqueue(self, sender: str, raw: bytes, recipients: Sequence[str], *,
                      now: float, queue_id: str | None = None, smtputf8: bool = False) -> str:
        """Queue ``raw`` for relay to ``recipients``; returns the queue id once durable."""
        queue_id = queue_id or new_queue_id()
        await self._write(self._queue_statements(queue_id, sender, raw, recipients, now,
                                                 smtputf8), messages=1)
        self.notify_queued(queue_id)
        return queue_id

    async def due(self, now: float, exclude: Sequence[int] = (),
                  limit: int = 1000) -> list[QueueRow]:
        """Queued rows whose next attempt is due, oldest first (``exclude``: rows in flight)."""
        rows = await self._all(
            f"{_SELECT_QUEUE} WHERE r.state = ? AND r.next_attempt <= ? "
            f"ORDER BY r.next_attempt, r.id LIMIT ?",
            (QueueState.QUEUED, now, limit + len(exclude)))
        skip = set(exclude)
        return [_queue_row(row) for row in rows if row["id"] not in skip][:limit]

    async def next_due(self, exclude: Sequence[int] = ()) -> float | None:
        """The earliest next attempt time of a queued row not in ``exclude``."""
        marks = ",".join("?" * len(exclude))
        where = f" AND id NOT IN ({marks})" if exclude else ""
        row = await self._one("SELECT MIN(next_attempt) AS t FROM queue_recipients "
                              f"WHERE state = ?{where}", (QueueState.QUEUED, *exclude))
        return None if row is None else row["t"]

    async def queued_message(self, queue_id: str) -> bytes | None:
        row = await self._one("SELECT raw FROM queue_messages WHERE id = ?", (queue_id,))
        return None if row is None or row["raw"] is None else bytes(row["raw"])

    async def queue_rows(self, *, include_final: bool = False) -> list[QueueRow]:
        where, params = ("", ()) if include_final else (" WHERE r.state = ?", (QueueState.QUEUED,))
        rows = await self._all(f"{_SELECT_QUEUE}{where} ORDER BY r.created, r.id", params)
        return [_queue_row(row) for row in rows]

    async def count_queue(self, state: QueueState | None = None) -> int:
        return await self._count("queue_recipients", "state", state)

    async def record_attempts(self, outcomes: Sequence[Outcome], *, now: float,
                              bounce: Bounce | None = None) -> Delivered | None:
        """Record delivery attempts, and the bounce they cause, in one transaction.

        A row deleted meanwhile (``mta queue delete``) stays deleted. A message whose rows are
        all final loses its body (it is no longer needed).
        """
        bounce_id = bounce.queue_id if bounce else ""
        statements: list[Statement] = []
        rows: list[EntryRow] = []
        entries: tuple[tuple[str, str], ...] = ()
        if bounce and bounce.local_owner:
            rows, entries = self._delivery_rows([bounce.local_owner], bounce.raw, "", bounce_id)
        elif bounce and bounce.remote:
            statements = self._queue_statements(bounce_id, "", bounce.raw, [bounce.remote], now,
                                                bounce.smtputf8)

        def run(db: sqlite3.Connection) -> tuple[int, ...]:
            for o in outcomes:
                db.execute(
                    "UPDATE queue_recipients SET state = ?, attempts = ?, next_attempt = ?, "
                    "last_reply = ?, updated = ? WHERE id = ? AND state = ?",
                    (o.state, o.attempts, o.next_attempt, o.last_reply, now, o.row_id,
                     QueueState.QUEUED))
            for queue_id in {o.queue_id for o in outcomes}:
                db.execute(_DROP_FINAL_BODY, (queue_id, queue_id, QueueState.QUEUED))
            for sql, values in statements:
                db.executemany(sql, values)
            return insert_entries(db, rows)

        ids = await self._write_fn(run)
        if entries:
            delivered = Delivered(bounce_id, entries, ids, "", "", len(bounce.raw) if bounce
                                  else 0)
            self.notify(delivered)
            return delivered
        if bounce and bounce.remote:
            self.notify_queued(bounce_id)
        return None

    async def flush_queue(self, now: float) -> int:
        """Make every queued row due at ``now`` (``mta queue flush``); returns how many."""
        def run(db: sqlite3.Connection) -> int:
            cursor = db.execute(
                "UPDATE queue_recipients SET next_attempt = MIN(next_attempt, ?) "
                "WHERE state = ?", (now, QueueState.QUEUED))
            return cursor.rowcount

        count = await self._write_fn(run)
        self.notify_queued("")
        return count

    async def delete_queued(self, ident: str) -> int:
        """Delete one queue row (by its number) or every row of a message (by its queue id)."""
        def run(db: sqlite3.Connection) -> int:
            if ident.isdigit():
                cursor = db.execute("DELETE FROM queue_recipients WHERE id = ?",
                                    (int(ident),))
            else:
                cursor = db.execute("DELETE FROM queue_recipients WHERE message_id = ?",
                                    (ident.upper(),))
            db.execute("DELETE FROM queue_messages WHERE NOT EXISTS ("
                       "SELECT 1 FROM queue_recipients r WHERE r.message_id = "
                       "queue_messages.id)")
            return cursor.rowcount

        return await self._write_fn(run)


# -- how a row reads (``mta queue list``, the demo, the pytest plugin's failure text) ----------

QUEUE_HEADER = (f"{'#':>5}  {'queue id':<12}  {'state':<9}  {'tries':>5}  "
                f"{'next attempt':<30}  sender -> recipient  [last reply]")


def _when(row: QueueRow, now: float) -> str:
    if row.state != QueueState.QUEUED:
        return "-"
    text = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(row.next_attempt))
    wait = row.next_attempt - now
    return text + (" (due)" if wait <= 0 else f" (in {math.ceil(wait)}s)")


def format_row(row: QueueRow, now: float) -> str:
    """One queue row as one line: id, queue id, state, attempts, next attempt, sender ->
    recipient, last reply (columns as in ``QUEUE_HEADER``)."""
    reply = f"  [{row.last_reply}]" if row.last_reply else ""
    return (f"{row.id:>5}  {row.queue_id:<12}  {row.state:<9}  {row.attempts:>5}  "
            f"{_when(row, now):<30}  <{row.sender}> -> <{row.recipient}>{reply}")


def format_rows(rows: Sequence[QueueRow], now: float | None = None) -> list[str]:
    """``mta queue list``: a header line, then one line per row."""
    now = time.time() if now is None else now
    return [QUEUE_HEADER, *(format_row(row, now) for row in rows)]
