"""The POP3 server over labmail's SQLite store (mta.store.Store implements pop3's Maildrop).

Two ``Store`` objects on one file stand for two processes: the maildrop lock lives in the
database, so it holds across them.
"""

from __future__ import annotations

import asyncio
import poplib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from mta.store import Store
from pop3.maildrop import Maildrop
from pop3.server import POP3Options, start_server

BOB = "bob@bob.lab"
BOB_PASSWORD = "bob-pw"
CAROL = "carol@bob.lab"
CAROL_PASSWORD = "carol-pw"
OPTIONS = POP3Options("pop.bob.lab", allow_plaintext_auth=True, failed_auth_delay=0, apop=True)
MESSAGES = [
    b"Subject: one\r\n\r\nfirst\r\n",
    b"Subject: two\r\n\r\n.dotted\r\n.\r\nlast\r\n",
    b"Subject: three\r\n\r\nthird\r\n",
]


@pytest.fixture
async def stores(tmp_path: Path) -> AsyncIterator[list]:
    """Two Store objects over one database file, with bob's mailbox filled."""
    first = await Store.open(tmp_path / "bob.db")
    second = await Store.open(tmp_path / "bob.db")
    await first.set_account(BOB, BOB_PASSWORD)
    await first.set_account(CAROL, CAROL_PASSWORD, apop=True)
    for raw in MESSAGES:
        await first.deliver([BOB], raw, "alice@alice.lab")
    yield [first, second]
    await first.close()
    await second.close()


async def serve(store: Maildrop) -> tuple[asyncio.Server, int]:
    server = await start_server(store, "127.0.0.1", 0, OPTIONS)
    return server, server.sockets[0].getsockname()[1]


def login(port: int, user: str = BOB, password: str = BOB_PASSWORD) -> poplib.POP3:
    client = poplib.POP3("127.0.0.1", port, timeout=10)
    client.user(user)
    client.pass_(password)
    return client


def test_store_is_a_maildrop() -> None:
    assert issubclass(Store, Maildrop)


async def test_retrieve_and_delete_over_the_store(stores) -> None:
    store = stores[0]
    server, port = await serve(store)
    try:

        def session() -> list[bytes]:
            client = login(port, "BOB@Bob.Lab")
            assert client.stat() == (3, sum(map(len, MESSAGES)))
            assert client.list()[1] == [f"{i} {len(m)}".encode() for i, m in enumerate(MESSAGES, 1)]
            got = [b"\r\n".join(client.retr(n)[1]) + b"\r\n" for n in (1, 2, 3)]
            uids = client.uidl()[1]
            client.dele(2)
            assert client.stat()[0] == 2
            client.quit()
            return got + uids

        result = await asyncio.to_thread(session)
        assert result[:3] == MESSAGES
        uids = [u.split()[1].decode() for u in result[3:]]
        remaining = await store.list_entries(BOB)
        assert [e.uid for e in remaining] == [uids[0], uids[2]]  # UIDL values never change
    finally:
        server.close()
        await server.wait_closed()


class UnlockSpy:
    """The store, plus an event set once the server has released a lock."""

    def __init__(self, store) -> None:
        self.store = store
        self.unlocked = asyncio.Event()

    def __getattr__(self, name: str):
        return getattr(self.store, name)

    async def unlock(self, owner: str, holder: str) -> None:
        await self.store.unlock(owner, holder)
        self.unlocked.set()


async def test_drop_removes_nothing_and_releases_the_lock(stores) -> None:
    store, other = stores
    spy = UnlockSpy(store)
    server, port = await serve(spy)  # type: ignore[arg-type]
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        await reader.readline()
        for line in (f"USER {BOB}", f"PASS {BOB_PASSWORD}", "DELE 1"):
            writer.write(line.encode() + b"\r\n")
            assert (await reader.readline()).startswith(b"+OK")
        assert not await other.lock(BOB, "someone-else", 60)  # held in the database
        writer.close()
        await writer.wait_closed()
        await asyncio.wait_for(spy.unlocked.wait(), 10)
        assert await other.lock(BOB, "someone-else", 60)
        assert len(await store.list_entries(BOB)) == 3
    finally:
        server.close()
        await server.wait_closed()


async def test_second_session_in_another_process_is_in_use(stores) -> None:
    first_store, second_store = stores
    first, first_port = await serve(first_store)
    second, second_port = await serve(second_store)
    try:

        def sessions() -> None:
            holder = login(first_port)
            with pytest.raises(poplib.error_proto, match=r"\[IN-USE\]"):
                login(second_port)
            holder.quit()
            login(second_port).quit()

        await asyncio.to_thread(sessions)
    finally:
        for server in (first, second):
            server.close()
            await server.wait_closed()


async def test_lock_left_by_a_dead_process_expires(stores) -> None:
    store, other = stores
    server, port = await serve(store)
    try:
        assert await other.lock(BOB, "killed-process", 60)
        with pytest.raises(poplib.error_proto, match=r"\[IN-USE\]"):
            await asyncio.to_thread(login, port)
        assert await other.lock(BOB, "killed-process", -1)  # as if its lease had run out
        client = await asyncio.to_thread(login, port)
        assert (await asyncio.to_thread(client.stat))[0] == 3
        await asyncio.to_thread(client.quit)
    finally:
        server.close()
        await server.wait_closed()


async def test_apop_over_the_store(stores) -> None:
    store = stores[0]
    await store.deliver([CAROL], b"Subject: c\r\n\r\nc\r\n", "alice@alice.lab")
    server, port = await serve(store)
    try:

        def session() -> None:
            client = poplib.POP3("127.0.0.1", port, timeout=10)
            client.apop(CAROL, CAROL_PASSWORD)
            assert client.stat()[0] == 1
            client.quit()
            client = poplib.POP3("127.0.0.1", port, timeout=10)
            with pytest.raises(poplib.error_proto, match=r"\[AUTH\]"):
                client.apop(BOB, BOB_PASSWORD)  # APOP not enabled for bob
            client.quit()

        await asyncio.to_thread(session)
    finally:
        server.close()
        await server.wait_closed()


async def test_retr_in_any_order_with_batched_loading(tmp_path: Path) -> None:
    """RETR loads the following messages along (Store.fetch_many); any order still works."""
    from mta.store import Store

    store = await Store.open(tmp_path / "batch.db")
    await store.set_account("bob@bob.lab", "pw")
    sent = [b"Subject: %d\r\n\r\n.line %d\r\n" % (n, n) for n in range(1, 101)]
    for raw in sent:
        await store.deliver(["bob@bob.lab"], raw, "")
    server = await start_server(store, "127.0.0.1", 0,
                                POP3Options("pop.bob.lab", allow_plaintext_auth=True,
                                            failed_auth_delay=0))
    port = server.sockets[0].getsockname()[1]

    def run() -> list[bytes]:
        client = poplib.POP3("127.0.0.1", port, timeout=10)
        client.user("bob@bob.lab")
        client.pass_("pw")
        got = []
        for n in [1, 2, 3, 50, 4, 100, 99, 5] + list(range(6, 49)):
            if n == 7:
                client.dele(8)
            if n == 8:
                try:
                    client.retr(8)
                except poplib.error_proto:
                    got.append(b"deleted")
                continue
            got.append(b"\r\n".join(client.retr(n)[1]) + b"\r\n")
        client.rset()
        client.quit()
        return got

    try:
        got = await asyncio.to_thread(run)
    finally:
        server.close()
        await server.wait_closed()
        await store.close()
    order = [1, 2, 3, 50, 4, 100, 99, 5] + [n for n in range(6, 49) if n != 8]
    assert [g for g in got if g != b"deleted"] == [sent[n - 1] for n in order]
    assert got.count(b"deleted") == 1


async def test_shutdown_ends_sessions_and_releases_their_locks(tmp_path: Path) -> None:
    from mta.store import Store

    store = await Store.open(tmp_path / "shutdown.db")
    await store.set_account("bob@bob.lab", "pw")
    await store.deliver(["bob@bob.lab"], b"Subject: keep me\r\n\r\nx\r\n", "")
    listener = await start_server(store, "127.0.0.1", 0,
                                  POP3Options("pop.bob.lab", allow_plaintext_auth=True,
                                              failed_auth_delay=0))
    port = listener.sockets[0].getsockname()[1]
    client = await asyncio.to_thread(poplib.POP3, "127.0.0.1", port, timeout=10)
    await asyncio.to_thread(client.user, "bob@bob.lab")
    await asyncio.to_thread(client.pass_, "pw")
    await asyncio.to_thread(client.dele, 1)
    try:
        listener.close()
        await listener.wait_closed()
        with pytest.raises(poplib.error_proto, match=r"\[SYS/TEMP\] server shutting down"):
            await asyncio.to_thread(client.noop)
        assert await store.lock("bob@bob.lab", "next-session", 60)  # the lock was released
        assert await store.count_entries("bob@bob.lab") == 1  # DELE without QUIT: kept
    finally:
        client.close()
        await store.close()
