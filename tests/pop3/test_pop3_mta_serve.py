"""The maildrop lock across processes: two ``mta serve`` processes over one database file."""

from __future__ import annotations

import asyncio
import os
import poplib
import re
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from mta.store import Store

BOB = "bob@bob.lab"
BOB_PASSWORD = "bob-pw"


def write_config(tmp_path: Path, name: str, lease: float | None = None) -> Path:
    limits = "failed_auth_delay = 0.0\n"
    if lease is not None:
        limits += f"pop3_lock_lease = {lease}\n"  # how long a lock outlives its holder
    path = tmp_path / f"{name}.toml"
    path.write_text(
        'hostname = "pop.bob.lab"\n'
        'domains = ["bob.lab"]\n'
        'database = "bob.db"\n'
        'postmaster = "bob@bob.lab"\n'
        "allow_plaintext_auth = true\n"
        '[listeners.pop3]\nhost = "127.0.0.1"\nport = 0\n'
        f'[[accounts]]\naddress = "{BOB}"\npassword = "{BOB_PASSWORD}"\n'
        f"[limits]\n{limits}"
    )
    return path


Started = tuple[asyncio.subprocess.Process, int]
Serve = Callable[..., Awaitable[Started]]


@pytest.fixture
async def serve(tmp_path: Path) -> AsyncIterator[Serve]:
    processes: list[asyncio.subprocess.Process] = []

    async def start(name: str, lease: float | None = None) -> Started:
        config = write_config(tmp_path, name, lease)
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "mta", "--config", str(config), "serve",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        processes.append(process)
        assert process.stdout is not None
        for _ in range(50):
            text = (await asyncio.wait_for(process.stdout.readline(), 30)).decode()
            if not text:
                break
            found = re.search(r"pop3 listening on [\d.]+:(\d+)", text)
            if found:
                return process, int(found.group(1))
        pytest.fail("mta serve did not report a POP3 listener")

    yield start
    for process in processes:
        if process.returncode is None:
            process.kill()
        await process.wait()


async def fill_mailbox(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "bob.db")
    try:
        for n in range(3):
            await store.deliver([BOB], f"Subject: {n}\r\n\r\nbody {n}\r\n".encode(), "")
    finally:
        await store.close()


def login(port: int) -> poplib.POP3:
    client = poplib.POP3("127.0.0.1", port, timeout=20)
    client.user(BOB)
    client.pass_(BOB_PASSWORD)
    return client


async def test_second_process_gets_in_use(serve, tmp_path: Path) -> None:
    _, first = await serve("first")
    _, second = await serve("second")
    await fill_mailbox(tmp_path)

    def sessions() -> None:
        holder = login(first)
        holder.dele(1)
        with pytest.raises(poplib.error_proto, match=r"\[IN-USE\]"):
            login(second)
        holder.quit()
        client = login(second)
        assert client.stat()[0] == 2
        client.quit()

    await asyncio.to_thread(sessions)


async def test_lock_of_a_killed_process_frees_itself(serve, tmp_path: Path) -> None:
    killed, first = await serve("first", lease=1.0)
    _, second = await serve("second", lease=1.0)
    await fill_mailbox(tmp_path)
    holder = await asyncio.to_thread(login, first)
    await asyncio.to_thread(holder.dele, 1)
    killed.send_signal(signal.SIGKILL)
    await killed.wait()
    with pytest.raises(poplib.error_proto, match=r"\[IN-USE\]"):
        await asyncio.to_thread(login, second)
    # each attempt is a real login round trip (scrypt included); the lease runs out meanwhile
    deadline = time.monotonic() + 30  # bounded: the lease is 1 s
    while True:
        try:
            client = await asyncio.to_thread(login, second)
            break
        except poplib.error_proto as exc:
            assert b"[IN-USE]" in exc.args[0]
        if time.monotonic() > deadline:
            pytest.fail("the dead process's lock never expired")
        await asyncio.sleep(0.05)
    assert (await asyncio.to_thread(client.stat))[0] == 3  # the killed session removed nothing
    await asyncio.to_thread(client.quit)
