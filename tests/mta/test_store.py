"""The SQLite store: migrations, accounts, mailbox entries, group commit, the maildrop lock."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path

import pytest

import mta.store.accounts
from mta.store import (
    Outcome,
    QueueState,
    Store,
    StoreError,
    format_row,
    format_rows,
    migrate,
    schema_files,
)


@pytest.fixture
async def store(tmp_path: Path) -> Store:
    s = await Store.open(tmp_path / "mail.db")
    yield s
    await s.close()


def test_migration_is_idempotent_and_versioned(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    newest = schema_files()[-1][0]
    assert migrate(path) == newest
    assert migrate(path) == newest
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == newest
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()


async def test_two_processes_opening_first_migrate_once(tmp_path: Path) -> None:
    path = tmp_path / "race.db"
    results = await asyncio.gather(*(asyncio.to_thread(migrate, path) for _ in range(8)))
    assert results == [schema_files()[-1][0]] * 8


async def test_passwords_are_salted_scrypt(store: Store, tmp_path: Path) -> None:
    await store.set_account("Bob@Bob.Lab", "secret")
    await store.set_account("carol@bob.lab", "secret")
    assert await store.check_password("bob@bob.lab", "secret")
    assert await store.check_password("BOB@BOB.LAB", "secret")
    assert not await store.check_password("bob@bob.lab", "Secret")
    assert not await store.check_password("nobody@bob.lab", "secret")
    conn = sqlite3.connect(tmp_path / "mail.db")
    rows = conn.execute("SELECT salt, hash, n FROM accounts ORDER BY address").fetchall()
    conn.close()
    assert rows[0][0] != rows[1][0] and rows[0][1] != rows[1][1]  # salts differ
    assert all(b"secret" not in bytes(r[1]) for r in rows) and rows[0][2] >= 2**14
    assert await store.accounts() == ["bob@bob.lab", "carol@bob.lab"]


async def test_hashing_runs_off_the_event_loop_thread(store: Store, monkeypatch) -> None:
    on_main_thread: list[bool] = []
    real = mta.store.accounts.hash_password

    def spy(*args, **kwargs):
        on_main_thread.append(threading.current_thread() is threading.main_thread())
        return real(*args, **kwargs)

    assert threading.current_thread() is threading.main_thread()  # the loop's thread
    monkeypatch.setattr(mta.store.accounts, "hash_password", spy)
    await store.set_account("bob@bob.lab", "pw")
    await store.check_password("bob@bob.lab", "pw")
    # scrypt ran once for each call, and never on the thread that runs the event loop
    assert on_main_thread == [False, False]


async def test_deliver_list_fetch_delete(store: Store) -> None:
    raw = b"Subject: x\r\n\r\nbody\r\n"
    delivered = await store.deliver(["bob@bob.lab", "carol@bob.lab"], raw, "a@alice.lab")
    assert len(delivered.entries) == 2
    (entry,) = await store.list_entries("BOB@bob.lab")
    assert entry.size == len(raw) and entry.sender == "a@alice.lab"
    assert await store.fetch("bob@bob.lab", entry.id) == raw
    with pytest.raises(KeyError):
        await store.fetch("carol@bob.lab", entry.id)  # not carol's entry
    await store.deliver(["bob@bob.lab"], raw, "")
    ids = [e.id for e in await store.list_entries("bob@bob.lab")]
    await store.delete("bob@bob.lab", ids)
    assert await store.list_entries("bob@bob.lab") == []
    assert await store.count_entries("carol@bob.lab") == 1


async def test_group_commit_batches_concurrent_deliveries(store: Store) -> None:
    raw = b"Subject: x\r\n\r\nbody\r\n"
    results = await asyncio.gather(*(store.deliver(["bob@bob.lab"], raw, f"s{i}@a.lab")
                                     for i in range(200)))
    assert len({r.entries[0][1] for r in results}) == 200
    assert await store.count_entries("bob@bob.lab") == 200
    assert store.stats.messages == 200
    assert store.stats.commits < 200 / 4


async def test_a_failing_job_does_not_fail_its_batch(store: Store) -> None:
    def bad(db):
        db.execute("INSERT INTO no_such_table VALUES (1)")

    raw = b"Subject: x\r\n\r\n"
    results = await asyncio.gather(store.deliver(["bob@bob.lab"], raw, ""),
                                   store._write_fn(bad),
                                   store.deliver(["bob@bob.lab"], raw, ""),
                                   return_exceptions=True)
    assert isinstance(results[1], StoreError)
    assert not isinstance(results[0], Exception) and not isinstance(results[2], Exception)
    assert await store.count_entries("bob@bob.lab") == 2


async def test_maildrop_lock_is_exclusive_and_leased(store: Store) -> None:
    assert await store.lock("bob@bob.lab", "session-1", 60)
    assert not await store.lock("BOB@bob.lab", "session-2", 60)
    assert await store.renew_lock("bob@bob.lab", "session-1", 60)
    assert not await store.renew_lock("bob@bob.lab", "session-2", 60)
    await store.unlock("bob@bob.lab", "session-2")  # not the holder: no effect
    assert not await store.lock("bob@bob.lab", "session-2", 60)
    await store.unlock("bob@bob.lab", "session-1")
    assert await store.lock("bob@bob.lab", "session-2", -1)  # an expired lease
    assert await store.lock("bob@bob.lab", "session-3", 60)


async def test_lock_holds_across_connections(tmp_path: Path) -> None:
    first = await Store.open(tmp_path / "shared.db")
    second = await Store.open(tmp_path / "shared.db")
    try:
        assert await first.lock("bob@bob.lab", "a", 60)
        assert not await second.lock("bob@bob.lab", "b", 60)
    finally:
        await first.close()
        await second.close()


async def test_apop_secret_only_when_enabled(store: Store) -> None:
    await store.set_account("bob@bob.lab", "pw")
    await store.set_account("carol@bob.lab", "cpw", apop=True)
    assert await store.apop_secret("bob@bob.lab") is None
    assert await store.apop_secret("Carol@bob.lab") == ("carol@bob.lab", "cpw")
    assert await store.authenticate("CAROL@bob.lab", "cpw") == "carol@bob.lab"
    assert await store.authenticate("carol@bob.lab", "nope") is None


async def test_delete_account_removes_its_mail(store: Store) -> None:
    await store.set_account("bob@bob.lab", "pw")
    await store.deliver(["bob@bob.lab"], b"x\r\n", "")
    assert await store.delete_account("bob@bob.lab")
    assert not await store.delete_account("bob@bob.lab")
    assert await store.count_entries("bob@bob.lab") == 0


async def test_open_in_missing_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="does not exist"):
        await Store.open(tmp_path / "no" / "such" / "x.db")


async def test_fetch_many_reads_one_mailbox(store: Store) -> None:
    for n in range(5):
        await store.deliver(["bob@bob.lab"], b"Subject: %d\r\n\r\n" % n, "")
    await store.deliver(["carol@bob.lab"], b"Subject: carol\r\n\r\n", "")
    entries = await store.list_entries("bob@bob.lab")
    (carol,) = await store.list_entries("carol@bob.lab")
    found = await store.fetch_many("bob@bob.lab", [e.id for e in entries] + [carol.id, 999])
    assert sorted(found) == [e.id for e in entries]  # not carol's, not a missing one
    for e in entries:
        assert found[e.id] == await store.fetch("bob@bob.lab", e.id)


async def test_queue_states_are_the_values_stored(store: Store, tmp_path: Path) -> None:
    def stored() -> dict[str, str]:
        conn = sqlite3.connect(tmp_path / "mail.db")
        try:
            return dict(conn.execute("SELECT recipient, state FROM queue_recipients"))
        finally:
            conn.close()

    assert [s.value for s in QueueState] == ["queued", "delivered", "failed"]
    queue_id = await store.enqueue("a@alice.lab", b"x\r\n", ["bob@bob.lab", "carol@bob.lab"],
                                   now=1000.0)
    assert stored() == {"bob@bob.lab": QueueState.QUEUED, "carol@bob.lab": QueueState.QUEUED}
    bob, carol = await store.due(1000.0)
    assert bob.state is QueueState.QUEUED and bob.queue_id == queue_id
    assert await store.count_queue(QueueState.QUEUED) == 2
    await store.record_attempts([
        Outcome(bob.id, queue_id, QueueState.DELIVERED, 1, 1001.0, "250 2.0.0 OK"),
        Outcome(carol.id, queue_id, QueueState.FAILED, 1, 1001.0, "550 5.1.1 no such user"),
    ], now=1001.0)
    assert stored() == {"bob@bob.lab": "delivered", "carol@bob.lab": "failed"}
    rows = await store.queue_rows(include_final=True)
    assert [r.state for r in rows] == [QueueState.DELIVERED, QueueState.FAILED]
    assert all(type(r.state) is QueueState for r in rows)
    assert await store.count_queue(QueueState.QUEUED) == 0
    assert await store.queued_message(queue_id) is None  # every row final: body dropped


async def test_a_queue_row_reads_the_same_everywhere(store: Store) -> None:
    queue_id = await store.enqueue("a@alice.lab", b"x\r\n", ["bob@bob.lab"], now=1000.0)
    (row,) = await store.queue_rows()
    header, line = format_rows([row], now=940.0)
    assert header.split()[:5] == ["#", "queue", "id", "state", "tries"]
    assert line == format_row(row, 940.0)
    assert f"{row.id:>5}  {queue_id}  queued" in line and "(in 60s)" in line
    assert line.endswith("<a@alice.lab> -> <bob@bob.lab>")
    assert "(due)" in format_row(row, 1000.0)
