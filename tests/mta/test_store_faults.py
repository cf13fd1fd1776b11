"""Storage faults (issue 17 items 11, 12): a full disk, a database that cannot be written."""

from __future__ import annotations

import asyncio
import poplib
from pathlib import Path

import pytest

from mta.server import Server
from mta.store import Store, StoreError

MSG = b"Subject: x\r\n\r\n" + b"y" * 4000 + b"\r\n"


def wal_size(path: Path) -> int:
    wal = path.with_name(path.name + "-wal")
    return wal.stat().st_size if wal.exists() else 0


async def test_a_failed_write_checkpoints_and_truncates_the_wal(tmp_path: Path) -> None:
    path = tmp_path / "full.db"
    async with await Store.open(path) as store:
        for _ in range(5):
            await store.deliver(["bob@bob.lab"], MSG, "a@alice.lab")
        assert wal_size(path) > 0
        # A full disk, as SQLite sees it: the database may not grow by one more page.
        pages = (await store._writer_db.execute_fetchall("PRAGMA page_count"))[0][0]
        await store._writer_db.execute_fetchall(f"PRAGMA max_page_count = {pages}")
        with pytest.raises(StoreError, match="full"):
            await store.deliver(["bob@bob.lab"], MSG * 4, "a@alice.lab")
        # what the WAL held is in the database now, and the WAL gave its space back
        assert wal_size(path) == 0
        assert await store.count_entries("bob@bob.lab") == 5


async def test_closing_checkpoints_the_wal_while_another_process_has_it_open(
        tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    other = await Store.open(path)  # e.g. the POP3 container over the same file
    try:
        store = await Store.open(path)
        for _ in range(5):
            await store.deliver(["bob@bob.lab"], MSG, "a@alice.lab")
        assert wal_size(path) > 0
        await store.close()
        # SQLite checkpoints by itself only when the last connection closes
        assert wal_size(path) == 0
        assert await other.count_entries("bob@bob.lab") == 5
    finally:
        await other.close()


async def test_a_failed_unlock_does_not_hold_the_maildrop_for_the_lease(
        server_factory, monkeypatch) -> None:
    server: Server = await server_factory(
        allow_plaintext_auth=True, listeners={"pop3": {"host": "127.0.0.1", "port": 0}},
        limits={"pop3_lock_lease": 3600})
    write = server.store._write
    failed = asyncio.Event()

    async def full_disk_for_unlocks(statements, messages=0):
        if any("DELETE FROM maildrop_locks" in sql for sql, _ in statements):
            failed.set()
            raise StoreError("database or disk is full")
        return await write(statements, messages)

    monkeypatch.setattr(server.store, "_write", full_disk_for_unlocks)

    def login_and_quit() -> None:
        client = poplib.POP3("127.0.0.1", server.ports["pop3"], timeout=10)
        client.user("bob@bob.lab")
        client.pass_("bob-pw")
        client.quit()

    await asyncio.to_thread(login_and_quit)
    await asyncio.wait_for(failed.wait(), 10)  # the session ended; its unlock did not commit
    monkeypatch.setattr(server.store, "_write", write)  # space again
    await asyncio.to_thread(login_and_quit)  # not [IN-USE] for the rest of the hour
