"""The store's database: opening, migrations and the group committer (step 4's durability).

Every write goes through one writer task (``_GroupCommitter``): jobs queued while a transaction
runs share the next transaction, and each waiting caller is released only after the commit
that holds its job (WAL, ``synchronous=FULL``). Reads use a second connection.

The schema lives in versioned ``schema/NNN_*.sql`` files next to this module; whichever process
opens the database first applies the missing ones inside ``BEGIN IMMEDIATE``, so two processes
never both migrate.

``StoreBase`` holds what every part of the store shares (the two connections, ``_write``,
``_write_fn``, ``_one``, ``_all``, the listeners); the accounts, mailboxes and queue mixins
build on it and ``mta.store.Store`` puts them together.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import sqlite3
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

import aiosqlite

if TYPE_CHECKING:
    from mta.store.mailboxes import Delivered

log = logging.getLogger("labmail.store")

BUSY_TIMEOUT_MS = 10_000
MIGRATE_ATTEMPTS = 20
# Group commit: at most this many jobs share one transaction.
MAX_BATCH = 512

Statement = tuple[str, Sequence[tuple[Any, ...]]]


class StoreError(Exception):
    """A store operation that failed; callers turn it into a temporary (4xx) reply."""


@dataclass
class Stats:
    commits: int = 0
    jobs: int = 0
    messages: int = 0


def schema_files() -> list[tuple[int, str, str]]:
    """(version, name, sql) for every schema file, in version order."""
    found = []
    for item in resources.files(__package__).joinpath("schema").iterdir():
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

    def __init__(self, db: aiosqlite.Connection, stats: Stats,
                 reconnect: Callable[[], Awaitable[aiosqlite.Connection]]) -> None:
        self.db = db
        self.stats = stats
        self.reconnect = reconnect
        # the last write found the connection read-only: open a new one before the next
        self.read_only = False
        self.pending: list[_Job] = []
        self.wakeup = asyncio.Event()
        self.closed = False
        self.task = asyncio.get_running_loop().create_task(self._run(), name="store-writer")

    async def submit(self, statements: list[Statement] | None = None,
                     fn: Callable[[sqlite3.Connection], Any] | None = None,
                     messages: int = 0) -> Any:
        if self.closed:
            raise StoreError("store is closed")
        if statements:
            check_text(*(value for _sql, rows in statements for row in rows for value in row))
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
        if self.read_only:
            await self._reopen()
        try:
            results = await self._transaction(batch)
        except Exception as exc:
            if len(batch) == 1:
                if _disk_fault(exc):  # before the caller hears of it: the space is free then
                    await self.checkpoint()
                self.read_only = _read_only(exc)
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

    async def _reopen(self) -> None:
        """A connection SQLite opened read-only stays read-only; a new one sees the file as it
        is now, so the store writes again once it can, without a restart (issue 17 item 12)."""
        try:
            db = await self.reconnect()
        except sqlite3.Error as exc:
            log.warning("store still cannot be opened for writing: %s", exc)
            return
        old, self.db, self.read_only = self.db, db, False
        try:
            await old.close()
        except sqlite3.Error as exc:
            log.warning("closing the read-only writer connection failed: %s", exc)

    async def checkpoint(self) -> None:
        """Copy the WAL into the database and truncate it to zero bytes (issue 17 item 11).

        SQLite checkpoints on its own only every 1,000 pages and truncates the WAL only when
        the last connection closes; after a full disk the space the WAL holds must be usable
        at once, and at shutdown another process (the POP3 container) may keep the file open.
        """
        try:
            busy, frames, copied = await self.db._execute(_truncate_wal, self.db._conn)
        except (sqlite3.Error, ValueError) as exc:  # ValueError: the connection is closed
            log.warning("WAL checkpoint failed: %s", exc)
            return
        if busy:  # a reader in another process holds old frames: they stay for now
            log.info("WAL checkpoint incomplete: %d of %d frames copied", copied, frames)

    async def _transaction(self, batch: list[_Job]) -> list[Any]:
        # One trip to the connection's thread for the whole transaction: aiosqlite owns the
        # sqlite3 connection in its thread and ``_execute`` runs a function there (it is how
        # every public aiosqlite call works). Three trips (BEGIN, writes, COMMIT) cost the
        # event loop a wake-up each, which showed in the MX benchmark at concurrency 10.
        return await self.db._execute(_run_batch, self.db._conn, batch)


def check_text(*values: object) -> None:
    """Refuse (``StoreError``) text SQLite cannot store: it is UTF-8, so no lone surrogates
    (how aiosmtpd keeps octets that are not UTF-8). Called before a job joins a batch, so one
    bad job never fails, and slows down, the commit it would share (issue 17 item 6)."""
    for value in values:
        if type(value) is str and not value.isascii():
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise StoreError("a value is not valid UTF-8 text") from None
def why_not_writable(path: Path) -> str:
    """What the operating system says against writing ``path`` ("" when nothing): SQLite only
    says "unable to open database file" when it cannot create the WAL's index next to it."""
    folder = path.parent
    try:
        if os.statvfs(folder).f_flag & os.ST_RDONLY:
            return "the file system is read-only"
    except OSError:
        return f"the folder {folder} cannot be read"
    if not os.access(folder, os.W_OK):
        return f"the folder {folder} is read-only"
    if path.exists() and not os.access(path, os.W_OK):
        return "the file is read-only"
    return ""


def _with_reason(path: Path, what: str, exc: sqlite3.Error) -> StoreError:
    reason = why_not_writable(path)
    return StoreError(f"{path}: {what}: {exc}" + (f" ({reason})" if reason else ""))


def check_writable(conn: sqlite3.Connection) -> None:
    """Raise ``sqlite3.Error`` unless ``conn`` can write its database (issue 17 item 12).

    A read-only file, folder or mount lets SQLite open the database read-only, and even
    ``BEGIN IMMEDIATE`` succeeds there: only a write says so. This one (the schema version,
    set to itself) is rolled back, so it changes nothing and writes no WAL frame.
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        conn.execute(f"PRAGMA user_version = {version:d}")
    finally:
        conn.execute("ROLLBACK")


def _truncate_wal(conn: sqlite3.Connection) -> tuple[int, int, int]:
    """(busy, WAL frames, frames copied), in the writer connection's thread."""
    return conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()


def _read_only(exc: Exception) -> bool:
    return getattr(exc, "sqlite_errorcode", 0) & 0xFF == sqlite3.SQLITE_READONLY


def _disk_fault(exc: Exception) -> bool:
    """A write that failed for want of space or on an I/O error (not a bad statement)."""
    code = getattr(exc, "sqlite_errorcode", 0) & 0xFF  # the primary code of an extended one
    return code in (sqlite3.SQLITE_FULL, sqlite3.SQLITE_IOERR)


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


def _call_each(callbacks: list[Callable[[Any], None]], value: Any) -> None:
    for callback in list(callbacks):  # a callback may unsubscribe itself
        try:
            callback(value)
        except Exception:
            log.exception("store listener %r failed", callback)


def _discard(items: list[Any], item: Any) -> None:
    if item in items:
        items.remove(item)


class StoreBase:
    """The two connections, the writer task, the listeners and the primitives the parts use."""

    def __init__(self, path: Path, writer_db: aiosqlite.Connection,
                 reader_db: aiosqlite.Connection) -> None:
        self.path = path
        self._reader = reader_db
        self.stats = Stats()
        self._writer = _GroupCommitter(writer_db, self.stats, lambda: _connect(path))
        self._listeners: list[Callable[[Delivered], None]] = []
        self._queue_listeners: list[Callable[[str], None]] = []

    @classmethod
    async def open(cls, path: str | Path) -> Self:
        path = Path(path)
        if path.parent and not path.parent.exists():
            raise StoreError(f"{path}: the folder {path.parent} does not exist")
        try:
            await asyncio.to_thread(migrate, path)
            writer = await _connect(path)
            reader = await _connect(path)
        except sqlite3.Error as exc:
            raise _with_reason(path, "cannot open database", exc) from None
        reader.row_factory = sqlite3.Row
        return cls(path, writer, reader)

    async def check_writable(self) -> None:
        """Raise ``StoreError`` naming the file and the reason unless the store can write."""
        try:
            await self._writer.db._execute(check_writable, self._writer.db._conn)
        except sqlite3.Error as exc:
            raise _with_reason(self.path, "cannot write the database", exc) from None

    async def close(self) -> None:
        """Finish the queued writes, then close both connections, each even if a step before
        it failed: an open aiosqlite connection's thread keeps the process from exiting."""
        try:
            await self._writer.close()
            await self._writer.checkpoint()  # the WAL's space back, whoever else has the file
        finally:
            try:
                await self._writer.db.close()
            finally:
                await self._reader.close()

    async def __aenter__(self) -> Self:
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

    def notify(self, delivered: Delivered) -> None:
        _call_each(self._listeners, delivered)

    def notify_queued(self, queue_id: str) -> None:
        _call_each(self._queue_listeners, queue_id)

    # -- writes -------------------------------------------------------------------------------

    async def _write(self, statements: list[Statement], messages: int = 0) -> None:
        """Run ``statements`` in the next group commit; returns once they are durable."""
        await self._writer.submit(statements=statements, messages=messages)

    async def _write_fn(self, fn: Callable[[sqlite3.Connection], Any], messages: int = 0) -> Any:
        """Run ``fn(db)`` inside the next group-commit transaction and return its result."""
        return await self._writer.submit(fn=fn, messages=messages)

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
