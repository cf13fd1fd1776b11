"""The SQLite mail store: the only module that writes SQL (steps 4 and 5).

Step 4 ends here: the MX and submission listeners hand a message to ``deliver`` and answer
``250`` only after the transaction holding it has committed (WAL, ``synchronous=FULL``).
Concurrent deliveries are batched into one transaction (group commit) by a single writer task;
every waiting session is released only after the commit that holds its message.

Step 5 reads from here: the store implements ``pop3.maildrop.Maildrop`` (authenticate, lock,
list entries, fetch, delete a set) without importing it.

The schema lives in versioned ``schema/NNN_*.sql`` files; whichever process opens the database
first applies the missing ones inside ``BEGIN IMMEDIATE``, so two processes never both migrate.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import re
import secrets
import sqlite3
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import aiosqlite

from mta import message

log = logging.getLogger("labmail.store")

BUSY_TIMEOUT_MS = 10_000
# scrypt cost: n=2**14, r=8, p=1 takes ~16 MiB and tens of milliseconds (RFC 7914 suggestion).
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
MIGRATE_ATTEMPTS = 20
# Messages this big are written into SQLite in pieces (no whole copy for the trace headers).
LARGE_MESSAGE = 1024 * 1024
BLOB_CHUNK = 1024 * 1024
# Group commit: at most this many jobs share one transaction.
MAX_BATCH = 512
# has_account remembers existing accounts this long (RCPT checks without a database trip).
ACCOUNT_CACHE_SECONDS = 5.0
ACCOUNT_CACHE_SIZE = 10_000

Statement = tuple[str, Sequence[tuple[Any, ...]]]


class StoreError(Exception):
    """A store operation that failed; callers turn it into a temporary (4xx) reply."""


class MaildropLocked(StoreError):
    """A POP3 session holds the maildrop (RFC 1939 8): an administrator's delete must wait."""


@dataclass(frozen=True)
class Entry:
    """A mailbox entry without its body (what POP3's STAT/LIST/UIDL need)."""

    id: int
    uid: str
    size: int
    received: float
    owner: str
    sender: str
    txn_id: str


@dataclass(frozen=True)
class Delivered:
    """What ``deliver`` committed: one (owner, entry uid) per local recipient, and the
    message's size as stored, envelope sender and Message-ID (for the ``stored`` event)."""

    txn_id: str
    entries: tuple[tuple[str, str], ...]
    size: int = 0
    sender: str = ""
    message_id: str = ""


@dataclass(frozen=True)
class QueueRow:
    """One (message, recipient) pair of the outbound queue."""

    id: int
    message_id: str
    sender: str          # '' for <>
    recipient: str
    domain: str
    state: str           # queued, delivered or failed
    attempts: int
    next_attempt: float
    last_reply: str | None
    created: float       # when the message was queued (its lifetime counts from here)


@dataclass(frozen=True)
class Outcome:
    """The result of one delivery attempt for one queue row."""

    row_id: int
    message_id: str
    state: str
    attempts: int
    next_attempt: float
    last_reply: str


@dataclass(frozen=True)
class Bounce:
    """A delivery status notification to store with the outcomes that caused it."""

    raw: bytes
    local_owner: str | None = None   # deliver into this local mailbox ...
    remote: str | None = None        # ... or queue it for relay to this address


@dataclass
class Stats:
    commits: int = 0
    jobs: int = 0
    messages: int = 0


def normalise(address: str) -> str:
    return address.strip().lower()


def new_uid() -> str:
    """A UIDL value: printable ASCII (RFC 1939 7), unique across databases, never reused."""
    return uuid.uuid4().hex


def hash_password(password: str, salt: bytes | None = None,
                  n: int = SCRYPT_N, r: int = SCRYPT_R, p: int = SCRYPT_P) -> tuple[bytes, bytes]:
    """Salted scrypt; CPU-bound, so callers run it in a thread."""
    salt = salt if salt is not None else secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p,
                            maxmem=128 * 1024 * 1024, dklen=32)
    return salt, digest


def schema_files() -> list[tuple[int, str, str]]:
    """(version, name, sql) for every schema file, in version order."""
    found = []
    for item in resources.files("mta").joinpath("schema").iterdir():
        match = re.fullmatch(r"(\d+)_[\w-]+\.sql", item.name)
        if match:
            found.append((int(match.group(1)), item.name, item.read_text("utf-8")))
    return sorted(found)


def _split_sql(script: str) -> list[str]:
    statements, current = [], ""
    for line in script.splitlines(keepends=True):
        current += line
        if sqlite3.complete_statement(current):
            if current.strip():
                statements.append(current.strip())
            current = ""
    return statements


def migrate(path: Path) -> int:
    """Bring the database at ``path`` to the newest schema version; safe to run concurrently."""
    for attempt in range(MIGRATE_ATTEMPTS):
        try:
            return _migrate_once(path)
        except sqlite3.OperationalError as exc:
            # Switching a new file to WAL needs an exclusive lock, and SQLite answers "locked"
            # at once (no busy wait) when two processes race to do it: try again shortly.
            if "locked" not in str(exc) or attempt == MIGRATE_ATTEMPTS - 1:
                raise
            time.sleep(0.01 * (attempt + 1))
    raise AssertionError("unreachable")


def _migrate_once(path: Path) -> int:
    conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("BEGIN IMMEDIATE")
        try:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            for number, name, sql in schema_files():
                if number <= version:
                    continue
                for statement in _split_sql(sql):
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {number:d}")
                log.info("store %s: applied schema %s", path, name)
                version = number
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return version
    finally:
        conn.close()


async def _connect(path: Path) -> aiosqlite.Connection:
    db = await aiosqlite.connect(path, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000)
    await db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    await db.execute("PRAGMA synchronous = FULL")
    await db.execute("PRAGMA foreign_keys = ON")
    return db


class _Job:
    __slots__ = ("statements", "fn", "future", "messages")

    def __init__(self, statements: list[Statement] | None,
                 fn: Callable[[sqlite3.Connection], Any] | None,
                 future: asyncio.Future, messages: int) -> None:
        self.statements = statements
        self.fn = fn
        self.future = future
        self.messages = messages


class _GroupCommitter:
    """One writer task: jobs queued while a transaction runs share the next transaction."""

    def __init__(self, db: aiosqlite.Connection, stats: Stats) -> None:
        self.db = db
        self.stats = stats
        self.pending: list[_Job] = []
        self.wakeup = asyncio.Event()
        self.closed = False
        self.task = asyncio.get_running_loop().create_task(self._run(), name="store-writer")

    async def submit(self, statements: list[Statement] | None = None,
                     fn: Callable[[sqlite3.Connection], Any] | None = None,
                     messages: int = 0) -> Any:
        if self.closed:
            raise StoreError("store is closed")
        future = asyncio.get_running_loop().create_future()
        self.pending.append(_Job(statements, fn, future, messages))
        self.wakeup.set()
        # shield: a session that disconnects must not cancel a commit other sessions share
        return await asyncio.shield(future)

    async def close(self) -> None:
        self.closed = True
        self.wakeup.set()
        await self.task

    async def _run(self) -> None:
        while True:
            await self.wakeup.wait()
            self.wakeup.clear()
            while self.pending:
                batch, self.pending = self.pending[:MAX_BATCH], self.pending[MAX_BATCH:]
                await self._commit(batch)
            if self.closed and not self.pending:
                return

    async def _commit(self, batch: list[_Job]) -> None:
        try:
            results = await self._transaction(batch)
        except Exception as exc:
            if len(batch) == 1:
                self._fail(batch[0], exc)
                return
            # Isolate the job that failed: each job in a transaction of its own.
            log.warning("group commit of %d jobs failed (%s); retrying one by one",
                        len(batch), exc)
            for job in batch:
                await self._commit([job])
            return
        self.stats.commits += 1
        self.stats.jobs += len(batch)
        self.stats.messages += sum(job.messages for job in batch)
        for job, result in zip(batch, results, strict=True):
            if not job.future.done():
                job.future.set_result(result)

    @staticmethod
    def _fail(job: _Job, exc: Exception) -> None:
        log.error("store write failed: %s", exc)
        if not job.future.done():
            job.future.set_exception(StoreError(str(exc)))

    async def _transaction(self, batch: list[_Job]) -> list[Any]:
        # One trip to the connection's thread for the whole transaction: aiosqlite owns the
        # sqlite3 connection in its thread and ``_execute`` runs a function there (it is how
        # every public aiosqlite call works). Three trips (BEGIN, writes, COMMIT) cost the
        # event loop a wake-up each, which showed in the MX benchmark at concurrency 10.
        return await self.db._execute(_run_batch, self.db._conn, batch)


def _run_batch(conn: sqlite3.Connection, batch: list[_Job]) -> list[Any]:
    """Run a batch of jobs in one transaction (in the writer connection's thread)."""
    results: list[Any] = [None] * len(batch)
    conn.execute("BEGIN IMMEDIATE")
    try:
        i = 0
        while i < len(batch):
            fn = batch[i].fn
            if fn is not None:
                results[i] = fn(conn)
                i += 1
                continue
            # Merge a run of statement jobs: one executemany per distinct statement.
            merged: dict[str, list[tuple[Any, ...]]] = {}
            while i < len(batch) and batch[i].fn is None:
                for sql, rows in batch[i].statements or ():
                    merged.setdefault(sql, []).extend(rows)
                i += 1
            for sql, rows in merged.items():
                conn.executemany(sql, rows)
        conn.execute("COMMIT")
    except BaseException:
        try:
            conn.execute("ROLLBACK")
        except sqlite3.Error:
            pass
        raise
    return results


_INSERT_ENTRY = ("INSERT INTO mailbox (owner, uid, received, size, txn_id, sender, raw) "
                 "VALUES (?, ?, ?, ?, ?, ?, ?)")
_INSERT_QUEUED_MESSAGE = ("INSERT INTO queue_messages (id, sender, raw, size, created) "
                          "VALUES (?, ?, ?, ?, ?)")
_INSERT_QUEUED_RECIPIENT = ("INSERT INTO queue_recipients (message_id, recipient, domain, "
                            "next_attempt, created, updated) VALUES (?, ?, ?, ?, ?, ?)")
_SELECT_QUEUE = ("SELECT r.id, r.message_id, m.sender, r.recipient, r.domain, r.state, "
                 "r.attempts, r.next_attempt, r.last_reply, m.created "
                 "FROM queue_recipients r JOIN queue_messages m ON m.id = r.message_id")


def _call_each(callbacks: list[Callable[[Any], None]], value: Any) -> None:
    for callback in list(callbacks):  # a callback may unsubscribe itself
        try:
            callback(value)
        except Exception:
            log.exception("store listener %r failed", callback)


def _discard(items: list[Any], item: Any) -> None:
    if item in items:
        items.remove(item)


class Store:
    """The mail store over one SQLite file. Open with ``await Store.open(path)``."""

    def __init__(self, path: Path, writer_db: aiosqlite.Connection,
                 reader_db: aiosqlite.Connection) -> None:
        self.path = path
        self._reader = reader_db
        self.stats = Stats()
        self._writer = _GroupCommitter(writer_db, self.stats)
        self._writer_db = writer_db
        self._listeners: list[Callable[[Delivered], None]] = []
        # address -> monotonic expiry: accounts seen lately (RCPT checks skip the database)
        self._known_accounts: dict[str, float] = {}
        self._queue_listeners: list[Callable[[str], None]] = []

    @classmethod
    async def open(cls, path: str | Path) -> Store:
        path = Path(path)
        if path.parent and not path.parent.exists():
            raise StoreError(f"{path}: the folder {path.parent} does not exist")
        try:
            await asyncio.to_thread(migrate, path)
            writer = await _connect(path)
            reader = await _connect(path)
        except sqlite3.Error as exc:
            raise StoreError(f"{path}: cannot open database: {exc}") from None
        reader.row_factory = sqlite3.Row
        return cls(path, writer, reader)

    async def close(self) -> None:
        await self._writer.close()
        await self._writer_db.close()
        await self._reader.close()

    async def __aenter__(self) -> Store:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def on_delivery(self, callback: Callable[[Delivered], None]) -> Callable[[], None]:
        """Call ``callback`` after each committed delivery (waiters in tests and the lab).

        Returns a function that removes the callback again.
        """
        self._listeners.append(callback)
        return lambda: _discard(self._listeners, callback)

    def on_queued(self, callback: Callable[[str], None]) -> Callable[[], None]:
        """Call ``callback(queue_id)`` after outbound mail commits (wakes the relay worker)."""
        self._queue_listeners.append(callback)
        return lambda: _discard(self._queue_listeners, callback)

    # -- writes -------------------------------------------------------------------------------

    async def _write(self, statements: list[Statement], messages: int = 0) -> None:
        """Run ``statements`` in the next group commit; returns once they are durable."""
        await self._writer.submit(statements=statements, messages=messages)

    async def _write_fn(self, fn: Callable[[sqlite3.Connection], Any], messages: int = 0) -> Any:
        """Run ``fn(db)`` inside the next group-commit transaction and return its result."""
        return await self._writer.submit(fn=fn, messages=messages)

    def _delivery_statements(self, owners: Sequence[str], raw: bytes, sender: str,
                            txn_id: str, received: float | None = None
                            ) -> tuple[list[Statement], tuple[tuple[str, str], ...]]:
        """The statements that put ``raw`` into each owner's mailbox, and (owner, uid) pairs."""
        received = time.time() if received is None else received
        rows, entries = [], []
        for owner in owners:
            uid = new_uid()
            owner = normalise(owner)
            rows.append((owner, uid, received, len(raw), txn_id, sender, raw))
            entries.append((owner, uid))
        return [(_INSERT_ENTRY, rows)], tuple(entries)

    async def deliver(self, owners: Sequence[str], raw: bytes, sender: str,
                      txn_id: str | None = None, *, prefix: bytes = b"") -> Delivered:
        """Store ``prefix + raw`` once per local mailbox owner, durably, before returning.

        ``prefix`` (the trace headers) is kept apart so that a large message is never copied
        whole just to put a few header lines in front of it: it is written into SQLite in
        pieces (incremental blob I/O) instead of being bound as one value.
        """
        txn_id = txn_id or new_txn_id()
        if len(raw) < LARGE_MESSAGE:
            statements, entries = self._delivery_statements(owners, prefix + raw, sender,
                                                            txn_id)
            await self._write(statements, messages=1)
        else:
            entries = await self._deliver_large(owners, (prefix, raw), sender, txn_id)
        delivered = Delivered(txn_id, entries, len(prefix) + len(raw), sender,
                              message.message_id(raw) if self._listeners else "")
        self.notify(delivered)
        return delivered

    async def _deliver_large(self, owners: Sequence[str], parts: Sequence[bytes], sender: str,
                             txn_id: str) -> tuple[tuple[str, str], ...]:
        size = sum(len(part) for part in parts)
        received = time.time()
        entries = tuple((normalise(owner), new_uid()) for owner in owners)

        def run(db: sqlite3.Connection) -> None:
            for owner, uid in entries:
                cursor = db.execute(
                    "INSERT INTO mailbox (owner, uid, received, size, txn_id, sender, raw) "
                    "VALUES (?, ?, ?, ?, ?, ?, zeroblob(?))",
                    (owner, uid, received, size, txn_id, sender, size))
                with db.blobopen("mailbox", "raw", cursor.lastrowid) as blob:
                    for part in map(memoryview, parts):
                        for start in range(0, len(part), BLOB_CHUNK):
                            blob.write(part[start:start + BLOB_CHUNK])

        await self._write_fn(run, messages=1)
        return entries

    def notify(self, delivered: Delivered) -> None:
        _call_each(self._listeners, delivered)

    def notify_queued(self, queue_id: str) -> None:
        _call_each(self._queue_listeners, queue_id)

    # -- accounts -----------------------------------------------------------------------------

    async def set_account(self, address: str, password: str, *, apop: bool = False) -> None:
        """Create the account or change its password (hashed off the event loop)."""
        address = normalise(address)
        self._known_accounts.pop(address, None)
        salt, digest = await asyncio.to_thread(hash_password, password)
        await self._write([(
            "INSERT INTO accounts (address, salt, hash, n, r, p, apop_secret, created) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(address) DO UPDATE SET "
            "salt=excluded.salt, hash=excluded.hash, n=excluded.n, r=excluded.r, "
            "p=excluded.p, apop_secret=excluded.apop_secret",
            [(address, salt, digest, SCRYPT_N, SCRYPT_R, SCRYPT_P,
              password if apop else None, time.time())])])

    async def ensure_account(self, address: str, password: str, *, apop: bool = False) -> bool:
        """Set the account unless it exists with this password already; True if written."""
        if await self.check_password(address, password):
            row = await self._one("SELECT apop_secret FROM accounts WHERE address = ?",
                                  (normalise(address),))
            if (row["apop_secret"] is not None) == apop:
                return False
        await self.set_account(address, password, apop=apop)
        return True

    async def delete_account(self, address: str) -> bool:
        """Remove the account and its mailbox; False if there was no such account."""
        address = normalise(address)

        def run(db: sqlite3.Connection) -> bool:
            cursor = db.execute("DELETE FROM accounts WHERE address = ?", (address,))
            db.execute("DELETE FROM mailbox WHERE owner = ?", (address,))
            db.execute("DELETE FROM maildrop_locks WHERE owner = ?", (address,))
            return cursor.rowcount > 0

        deleted = await self._write_fn(run)
        self._known_accounts.pop(address, None)  # after the commit: no lookup re-caches it
        return deleted

    async def accounts(self) -> list[str]:
        rows = await self._all("SELECT address FROM accounts ORDER BY address")
        return [row["address"] for row in rows]

    async def has_account(self, address: str) -> bool:
        """Whether the account exists. Positive answers are remembered for a few seconds
        (changes made through this Store are seen at once; by another process, within
        ``ACCOUNT_CACHE_SECONDS``); unknown addresses always ask the database."""
        address = normalise(address)
        now = time.monotonic()
        if self._known_accounts.get(address, 0.0) > now:
            return True
        row = await self._one("SELECT 1 FROM accounts WHERE address = ?", (address,))
        if row is None:
            return False
        if len(self._known_accounts) >= ACCOUNT_CACHE_SIZE:
            self._known_accounts.clear()
        self._known_accounts[address] = now + ACCOUNT_CACHE_SECONDS
        return True

    async def check_password(self, address: str, password: str) -> bool:
        """Constant-time check of a password against the stored salted scrypt hash."""
        row = await self._one("SELECT salt, hash, n, r, p FROM accounts WHERE address = ?",
                              (normalise(address),))
        if row is None:
            # Spend the same time on unknown users so timing does not reveal which exist.
            await asyncio.to_thread(hash_password, password, b"\0" * 16)
            return False
        _, digest = await asyncio.to_thread(hash_password, password, row["salt"],
                                            row["n"], row["r"], row["p"])
        return hmac.compare_digest(digest, row["hash"])

    # -- pop3.maildrop.Maildrop ---------------------------------------------------------------

    async def authenticate(self, login: str, password: str) -> str | None:
        owner = normalise(login)
        return owner if await self.check_password(owner, password) else None

    async def apop_secret(self, login: str) -> tuple[str, str] | None:
        owner = normalise(login)
        row = await self._one("SELECT apop_secret FROM accounts WHERE address = ?", (owner,))
        if row is None or row["apop_secret"] is None:
            return None
        return owner, row["apop_secret"]

    async def lock(self, owner: str, holder: str, lease_seconds: float) -> bool:
        owner = normalise(owner)

        def run(db: sqlite3.Connection) -> bool:
            now = time.time()
            db.execute("DELETE FROM maildrop_locks WHERE owner = ? AND expires < ?",
                       (owner, now))
            cursor = db.execute(
                "INSERT INTO maildrop_locks (owner, holder, expires) VALUES (?, ?, ?) "
                "ON CONFLICT(owner) DO UPDATE SET expires = excluded.expires "
                "WHERE maildrop_locks.holder = excluded.holder",
                (owner, holder, now + lease_seconds))
            return cursor.rowcount > 0

        return await self._write_fn(run)

    async def renew_lock(self, owner: str, holder: str, lease_seconds: float) -> bool:
        owner = normalise(owner)

        def run(db: sqlite3.Connection) -> bool:
            cursor = db.execute(
                "UPDATE maildrop_locks SET expires = ? WHERE owner = ? AND holder = ?",
                (time.time() + lease_seconds, owner, holder))
            return cursor.rowcount > 0

        return await self._write_fn(run)

    async def unlock(self, owner: str, holder: str) -> None:
        await self._write([("DELETE FROM maildrop_locks WHERE owner = ? AND holder = ?",
                           [(normalise(owner), holder)])])

    async def list_entries(self, owner: str) -> list[Entry]:
        """A mailbox's entries, oldest first, without loading bodies."""
        rows = await self._all(
            "SELECT id, uid, size, received, owner, sender, txn_id FROM mailbox "
            "WHERE owner = ? ORDER BY id", (normalise(owner),))
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
        rows = await self._all(f"SELECT id, raw FROM mailbox WHERE owner = ? AND id IN ({marks})",
                               (normalise(owner), *ids))
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
        sql = ("SELECT id, uid, size, received, owner, sender, txn_id, substr(raw, 1, ?) "
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
        row = await self._one(
            "SELECT id, uid, size, received, owner, sender, txn_id FROM mailbox WHERE uid = ?",
            (uid,))
        return Entry(*row) if row else None

    async def count_entries(self, owner: str | None = None) -> int:
        return await self._count("mailbox", "owner", None if owner is None else normalise(owner))

    # -- outbound queue (step 4, the sending side) ---------------------------------------------
    #
    # A message is stored once in queue_messages, with one queue_recipients row per recipient
    # (state queued / delivered / failed). The relay worker keeps which rows it is delivering in
    # memory only, so rows "in flight" when the process dies are simply queued and due again.

    def _queue_statements(self, queue_id: str, sender: str, raw: bytes,
                          recipients: Sequence[str], now: float) -> list[Statement]:
        rows = [(queue_id, recipient, recipient.rpartition("@")[2].lower(), now, now, now)
                for recipient in dict.fromkeys(recipients)]
        return [(_INSERT_QUEUED_MESSAGE, [(queue_id, sender, raw, len(raw), now)]),
                (_INSERT_QUEUED_RECIPIENT, rows)]

    async def accept(self, txn_id: str, sender: str, *, local_owners: Sequence[str] = (),
                     local_raw: bytes = b"", remote: Sequence[str] = (), queue_raw: bytes = b"",
                     now: float) -> Delivered:
        """Commit local mailbox entries and outbound queue rows of one message together.

        The submission listener answers 250 only after this returns (one transaction, so a
        crash leaves either all of the message or none of it).
        """
        statements: list[Statement] = []
        entries: tuple[tuple[str, str], ...] = ()
        if local_owners:
            statements, entries = self._delivery_statements(local_owners, local_raw, sender,
                                                            txn_id)
        if remote:
            statements += self._queue_statements(txn_id, sender, queue_raw, remote, now)
        if statements:
            await self._write(statements, messages=1)
        delivered = Delivered(txn_id, entries, len(local_raw), sender,
                              message.message_id(local_raw) if entries and self._listeners
                              else "")
        if entries:
            self.notify(delivered)
        if remote:
            self.notify_queued(txn_id)
        return delivered

    async def enqueue(self, sender: str, raw: bytes, recipients: Sequence[str], *,
                      now: float, queue_id: str | None = None) -> str:
        """Queue ``raw`` for relay to ``recipients``; returns the queue id once durable."""
        queue_id = queue_id or new_txn_id()
        await self._write(self._queue_statements(queue_id, sender, raw, recipients, now),
                          messages=1)
        self.notify_queued(queue_id)
        return queue_id

    async def due(self, now: float, exclude: Sequence[int] = (),
                  limit: int = 1000) -> list[QueueRow]:
        """Queued rows whose next attempt is due, oldest first (``exclude``: rows in flight)."""
        rows = await self._all(
            f"{_SELECT_QUEUE} WHERE r.state = 'queued' AND r.next_attempt <= ? "
            f"ORDER BY r.next_attempt, r.id LIMIT ?", (now, limit + len(exclude)))
        skip = set(exclude)
        return [QueueRow(*row) for row in rows if row["id"] not in skip][:limit]

    async def next_due(self, exclude: Sequence[int] = ()) -> float | None:
        """The earliest next attempt time of a queued row not in ``exclude``."""
        marks = ",".join("?" * len(exclude))
        where = f" AND id NOT IN ({marks})" if exclude else ""
        row = await self._one("SELECT MIN(next_attempt) AS t FROM queue_recipients "
                              f"WHERE state = 'queued'{where}", tuple(exclude))
        return None if row is None else row["t"]

    async def queued_message(self, queue_id: str) -> bytes | None:
        row = await self._one("SELECT raw FROM queue_messages WHERE id = ?", (queue_id,))
        return None if row is None or row["raw"] is None else bytes(row["raw"])

    async def queue_rows(self, *, include_final: bool = False) -> list[QueueRow]:
        where = "" if include_final else " WHERE r.state = 'queued'"
        rows = await self._all(f"{_SELECT_QUEUE}{where} ORDER BY r.created, r.id")
        return [QueueRow(*row) for row in rows]

    async def queue_row(self, row_id: int) -> QueueRow | None:
        row = await self._one(f"{_SELECT_QUEUE} WHERE r.id = ?", (row_id,))
        return QueueRow(*row) if row else None

    async def count_queue(self, state: str | None = None) -> int:
        return await self._count("queue_recipients", "state", state)

    async def record_attempts(self, outcomes: Sequence[Outcome], *, now: float,
                              bounce: Bounce | None = None) -> Delivered | None:
        """Record delivery attempts, and the bounce they cause, in one transaction.

        A row deleted meanwhile (``mta queue delete``) stays deleted. A message whose rows are
        all final loses its body (it is no longer needed).
        """
        local: tuple[list[Statement], tuple[tuple[str, str], ...]] | None = None
        bounce_id = new_txn_id() if bounce else None
        if bounce and bounce.local_owner:
            local = self._delivery_statements([bounce.local_owner], bounce.raw, "", bounce_id)

        def run(db: sqlite3.Connection) -> None:
            for o in outcomes:
                db.execute(
                    "UPDATE queue_recipients SET state = ?, attempts = ?, next_attempt = ?, "
                    "last_reply = ?, updated = ? WHERE id = ? AND state = 'queued'",
                    (o.state, o.attempts, o.next_attempt, o.last_reply, now, o.row_id))
            for message_id in {o.message_id for o in outcomes}:
                db.execute(
                    "UPDATE queue_messages SET raw = NULL WHERE id = ? AND NOT EXISTS ("
                    "SELECT 1 FROM queue_recipients WHERE message_id = ? AND state = 'queued')",
                    (message_id, message_id))
            statements: list[Statement] = []
            if local:
                statements = local[0]
            elif bounce and bounce.remote:
                statements = self._queue_statements(bounce_id or "", "", bounce.raw,
                                                    [bounce.remote], now)
            for sql, rows in statements:
                db.executemany(sql, rows)

        await self._write_fn(run)
        delivered = None
        if local:
            delivered = Delivered(bounce_id or "", local[1], len(bounce.raw), "",
                                  message.message_id(bounce.raw))
            self.notify(delivered)
        elif bounce and bounce.remote:
            self.notify_queued(bounce_id or "")
        return delivered

    async def flush_queue(self, now: float) -> int:
        """Make every queued row due at ``now`` (``mta queue flush``); returns how many."""
        def run(db: sqlite3.Connection) -> int:
            cursor = db.execute(
                "UPDATE queue_recipients SET next_attempt = MIN(next_attempt, ?) "
                "WHERE state = 'queued'", (now,))
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

    # -- reads --------------------------------------------------------------------------------

    # One trip to aiosqlite's thread per read (execute + fetch + close would take three).

    async def _one(self, sql: str, params: tuple[Any, ...]) -> sqlite3.Row | None:
        rows = await self._reader.execute_fetchall(sql, params)
        return next(iter(rows), None)

    async def _all(self, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        return list(await self._reader.execute_fetchall(sql, params))

    async def _count(self, table: str, column: str, value: str | None) -> int:
        """Rows of ``table`` (where ``column`` is ``value``, when given); names are constants."""
        where, params = (f" WHERE {column} = ?", (value,)) if value is not None else ("", ())
        row = await self._one(f"SELECT COUNT(*) AS n FROM {table}{where}", params)
        return row["n"]


def new_txn_id() -> str:
    """The id a 250 reply names: short, unique, greppable in logs."""
    return secrets.token_hex(6).upper()
