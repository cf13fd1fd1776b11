"""Storage faults (issue 17 items 11, 12): a full disk, a database that cannot be written."""

from __future__ import annotations

import asyncio
import os
import poplib
import subprocess
import sys
from pathlib import Path

import pytest

from mta.server import Server
from mta.store import Store, StoreError

ROOT = Path(__file__).resolve().parents[2]
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
        pages = (await store._writer.db.execute_fetchall("PRAGMA page_count"))[0][0]
        await store._writer.db.execute_fetchall(f"PRAGMA max_page_count = {pages}")
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


@pytest.fixture
def read_only_folder(tmp_path: Path, need_tool):
    """(folder, make it read-only, make it writable again). Root ignores file modes, so as
    root the folder is a small tmpfs remounted read-only (unmounted at the end); otherwise
    the modes of the folder and its files."""
    folder = tmp_path / "disk"
    folder.mkdir()
    if os.geteuid() != 0:
        def set_writable(writable: bool) -> None:
            for path in [folder, *folder.iterdir()]:
                path.chmod((0o755 if path.is_dir() else 0o644) if writable else
                           (0o555 if path.is_dir() else 0o444))

        yield folder, lambda: set_writable(False), lambda: set_writable(True)
        set_writable(True)
        return
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(folder)],
                             capture_output=True, text=True, timeout=30)
    need_tool(mounted.returncode == 0, f"cannot mount a tmpfs: {mounted.stderr.strip()}")

    def remount(mode: str) -> None:
        subprocess.run(["mount", "-o", f"remount,{mode}", str(folder)], check=True, timeout=30)

    try:
        yield folder, lambda: remount("ro"), lambda: remount("rw")
    finally:
        subprocess.run(["umount", "-l", str(folder)], timeout=30)


def mta(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mta", "--config", str(config), *args],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)


async def test_serve_refuses_a_database_it_cannot_write(tmp_path: Path,
                                                       read_only_folder) -> None:
    folder, make_read_only, make_writable = read_only_folder
    database = folder / "bob.db"
    await (await Store.open(database)).close()
    config = tmp_path / "bob.toml"
    config.write_text(f'domains = ["bob.lab"]\ndatabase = "{database}"\n'
                      '[listeners.mx]\nhost = "127.0.0.1"\nport = 0\n')
    make_read_only()
    result = await asyncio.to_thread(mta, config, "serve")
    assert result.returncode == 2
    line = result.stderr.strip()
    assert "\n" not in line and "Traceback" not in line
    assert line.startswith(f"mta: {database}: ") and "read-only" in line
    make_writable()


async def test_check_says_a_store_that_cannot_write_is_unhealthy(
        tmp_path: Path, server_factory, read_only_folder) -> None:
    folder, make_read_only, make_writable = read_only_folder
    server: Server = await server_factory(database=str(folder / "bob.db"))
    config = tmp_path / "check.toml"
    config.write_text(f'domains = ["bob.lab"]\ndatabase = "{server.config.database}"\n'
                      f'[listeners.mx]\nhost = "127.0.0.1"\nport = {server.ports["mx"]}\n')
    healthy = await asyncio.to_thread(mta, config, "check")
    assert healthy.returncode == 0, healthy.stdout
    assert "store" in healthy.stdout and "writable" in healthy.stdout
    await server.close()  # a read-only remount waits for files open for writing
    make_read_only()
    sick = await asyncio.to_thread(mta, config, "check")
    assert sick.returncode == 1
    (line,) = [line for line in sick.stdout.splitlines() if line.startswith("store")]
    assert "FAIL" in line and "read-only" in line
    make_writable()


async def test_the_store_writes_again_once_it_can_without_a_restart(tmp_path: Path) -> None:
    async with await Store.open(tmp_path / "bob.db") as store:
        # What a connection SQLite opened read-only does (it stays so, whatever the file
        # does later): every write fails with SQLITE_READONLY.
        await store._writer.db.execute_fetchall("PRAGMA query_only = 1")
        with pytest.raises(StoreError, match="readonly"):
            await store.deliver(["bob@bob.lab"], MSG, "a@alice.lab")
        await store.deliver(["bob@bob.lab"], MSG, "a@alice.lab")  # a new connection: it can
        assert await store.count_entries("bob@bob.lab") == 1
