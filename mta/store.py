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
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import aiosqlite

log = logging.getLogger("labmail.store")

BUSY_TIMEOUT_MS = 10_000
# scrypt cost: n=2**14, r=8, p=1 takes ~16 MiB and tens of milliseconds (RFC 7914 suggestion).
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
# Group commit: at most this many jobs share one transaction.
MAX_BATCH = 512

Statement = tuple[str, Sequence[tuple[Any, ...]]]


class StoreError(Exception):
    """A store operation that failed; callers turn it into a temporary (4xx) reply."""


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
    """What ``deliver`` committed: one (owner, entry uid) per local recipient."""

    txn_id: str
    entries: tuple[tuple[str, str], ...]


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
                 fn: Callable[[aiosqlite.Connection], Awaitable[Any]] | None,
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
                     fn: Callable[[aiosqlite.Connection], Awaitable[Any]] | None = None,
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
        db = self.db
        results: list[Any] = [None] * len(batch)
        await db.execute("BEGIN IMMEDIATE")
        try:
            i = 0
            while i < len(batch):
                if batch[i].fn is not None:
                    results[i] = await batch[i].fn(db)
                    i += 1
                    continue
                # Merge a run of statement jobs: one executemany per distinct statement.
                merged: dict[str, list[tuple[Any, ...]]] = {}
                while i < len(batch) and batch[i].fn is None:
                    for sql, rows in batch[i].statements or ():
                        merged.setdefault(sql, []).extend(rows)
                    i += 1
                for sql, rows in merged.items():
                    await db.executemany(sql, rows)
            await db.execute("COMMIT")
        except BaseException:
            try:
                await db.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            raise
        return results


_INSERT_ENTRY = ("INSERT INTO mailbox (owner, uid, received, size, txn_id, sender, raw) "
                 "VALUES (?, ?, ?, ?, ?, ?, ?)")


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

    def on_delivery(self, callback: Callable[[Delivered], None]) -> None:
        """Call ``callback`` after each committed delivery (waiters in tests and the lab)."""
        self._listeners.append(callback)

    # -- writes -------------------------------------------------------------------------------

    async def _write(self, statements: list[Statement], messages: int = 0) -> None:
        """Run ``statements`` in the next group commit; returns once they are durable."""
        await self._writer.submit(statements=statements, messages=messages)

    async def _write_fn(self, fn: Callable[[aiosqlite.Connection], Awaitable[Any]]) -> Any:
        """Run ``fn(db)`` inside the next group-commit transaction and return its result."""
        return await self._writer.submit(fn=fn)

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
                      txn_id: str | None = None) -> Delivered:
        """Store ``raw`` once per local mailbox owner, durably, before returning."""
        txn_id = txn_id or new_txn_id()
        statements, entries = self._delivery_statements(owners, raw, sender, txn_id)
        await self._write(statements, messages=1)
        delivered = Delivered(txn_id, entries)
        self.notify(delivered)
        return delivered

    def notify(self, delivered: Delivered) -> None:
        for callback in self._listeners:
            try:
                callback(delivered)
            except Exception:
                log.exception("delivery listener failed")

    # -- accounts -----------------------------------------------------------------------------

    async def set_account(self, address: str, password: str, *, apop: bool = False) -> None:
        """Create the account or change its password (hashed off the event loop)."""
        address = normalise(address)
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

        async def run(db: aiosqlite.Connection) -> bool:
            cursor = await db.execute("DELETE FROM accounts WHERE address = ?", (address,))
            await db.execute("DELETE FROM mailbox WHERE owner = ?", (address,))
            await db.execute("DELETE FROM maildrop_locks WHERE owner = ?", (address,))
            return cursor.rowcount > 0

        return await self._write_fn(run)

    async def accounts(self) -> list[str]:
        rows = await self._all("SELECT address FROM accounts ORDER BY address")
        return [row["address"] for row in rows]

    async def has_account(self, address: str) -> bool:
        row = await self._one("SELECT 1 FROM accounts WHERE address = ?", (normalise(address),))
        return row is not None

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

        async def run(db: aiosqlite.Connection) -> bool:
            now = time.time()
            await db.execute("DELETE FROM maildrop_locks WHERE owner = ? AND expires < ?",
                             (owner, now))
            cursor = await db.execute(
                "INSERT INTO maildrop_locks (owner, holder, expires) VALUES (?, ?, ?) "
                "ON CONFLICT(owner) DO UPDATE SET expires = excluded.expires "
                "WHERE maildrop_locks.holder = excluded.holder",
                (owner, holder, now + lease_seconds))
            return cursor.rowcount > 0

        return await self._write_fn(run)

    async def renew_lock(self, owner: str, holder: str, lease_seconds: float) -> bool:
        owner = normalise(owner)

        async def run(db: aiosqlite.Connection) -> bool:
            cursor = await db.execute(
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

    async def delete(self, owner: str, entry_ids: Sequence[int]) -> None:
        """Remove a set of entries from one mailbox in one transaction."""
        owner = normalise(owner)
        if entry_ids:
            await self._write([("DELETE FROM mailbox WHERE owner = ? AND id = ?",
                               [(owner, int(i)) for i in entry_ids])])

    async def purge(self, owner: str) -> int:
        owner = normalise(owner)

        async def run(db: aiosqlite.Connection) -> int:
            cursor = await db.execute("DELETE FROM mailbox WHERE owner = ?", (owner,))
            return cursor.rowcount

        return await self._write_fn(run)

    async def entry_by_uid(self, uid: str) -> Entry | None:
        row = await self._one(
            "SELECT id, uid, size, received, owner, sender, txn_id FROM mailbox WHERE uid = ?",
            (uid,))
        return Entry(*row) if row else None

    async def count_entries(self, owner: str | None = None) -> int:
        if owner is None:
            row = await self._one("SELECT COUNT(*) AS n FROM mailbox", ())
        else:
            row = await self._one("SELECT COUNT(*) AS n FROM mailbox WHERE owner = ?",
                                  (normalise(owner),))
        return row["n"]

    # -- reads --------------------------------------------------------------------------------

    async def _one(self, sql: str, params: tuple[Any, ...]) -> sqlite3.Row | None:
        async with self._reader.execute(sql, params) as cursor:
            return await cursor.fetchone()

    async def _all(self, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        async with self._reader.execute(sql, params) as cursor:
            return list(await cursor.fetchall())


def new_txn_id() -> str:
    """The id a 250 reply names: short, unique, greppable in logs."""
    return secrets.token_hex(6).upper()
