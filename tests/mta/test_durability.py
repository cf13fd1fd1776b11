"""Durability under load: group commit is real, and a 250 survives SIGKILL."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import smtplib
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from serve_helpers import start_serve

from mta.server import Server
from mta.store import Store


def body(sender: int, n: int) -> bytes:
    return (f"From: s{sender}@alice.lab\r\nTo: bob@bob.lab\r\nSubject: {sender}-{n}\r\n\r\n"
            + ("x" * 74 + "\r\n") * 20).encode()


async def test_fifty_concurrent_senders_all_stored_once_with_group_commit(mx: Server) -> None:
    port = mx.ports["mx"]

    def sender(i: int) -> list[str]:
        ids = []
        for n in range(20):
            with smtplib.SMTP("127.0.0.1", port, timeout=30) as c:
                c.ehlo("client.example")
                c.mail(f"s{i}@alice.lab")
                c.rcpt("bob@bob.lab")
                code, text = c.data(body(i, n))
                assert code == 250, text
                ids.append(re.search(rb"queued as (\w+)", text).group(1).decode())
        return ids

    def run_all() -> list[str]:
        with ThreadPoolExecutor(50) as pool:
            return [i for ids in pool.map(sender, range(50)) for i in ids]

    ids = await asyncio.to_thread(run_all)
    assert len(ids) == len(set(ids)) == 1000
    entries = await mx.store.list_entries("bob@bob.lab")
    assert sorted(e.queue_id for e in entries) == sorted(ids)  # each exactly once
    subjects = set()
    for entry in entries[:: 50]:
        raw = await mx.store.fetch("bob@bob.lab", entry.id)
        subjects.add(re.search(rb"Subject: (\S+)", raw).group(1))
    assert len(subjects) == 20
    print(f"1000 messages in {mx.store.stats.commits} commits")
    assert mx.store.stats.messages == 1000
    assert mx.store.stats.commits < 1000


def test_sigkill_loses_no_acknowledged_message(tmp_path: Path) -> None:
    config = tmp_path / "bob.toml"
    config.write_text('domains = ["bob.lab"]\ndatabase = "bob.db"\n'
                      '[listeners.mx]\nhost = "127.0.0.1"\nport = 0\n'
                      '[[accounts]]\naddress = "bob@bob.lab"\npassword = "pw"\n')
    proc, ports = start_serve(config)
    port = ports["mx"]
    acked: list[str] = []
    lock = threading.Lock()
    enough = threading.Event()

    def sender(i: int) -> None:
        for n in range(200):  # bounded; the kill ends it sooner
            try:
                with smtplib.SMTP("127.0.0.1", port, timeout=10) as c:
                    c.ehlo("client.example")
                    c.mail(f"s{i}@alice.lab")
                    c.rcpt("bob@bob.lab")
                    code, text = c.data(body(i, n))
            except (OSError, smtplib.SMTPException):
                return
            if code == 250:
                with lock:
                    acked.append(re.search(rb"queued as (\w+)", text).group(1).decode())
                    if len(acked) >= 300:
                        enough.set()

    threads = [threading.Thread(target=sender, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    try:
        assert enough.wait(60), "senders made too little progress"
        os.kill(proc.pid, signal.SIGKILL)  # mid-stream, transactions in flight
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
        for t in threads:
            t.join(30)
    with lock:
        acknowledged = set(acked)

    async def stored() -> set[str]:
        store = await Store.open(tmp_path / "bob.db")  # recovers the WAL like a restart
        try:
            return {e.queue_id for e in await store.list_entries("bob@bob.lab")}
        finally:
            await store.close()

    in_store = asyncio.run(stored())
    assert len(acknowledged) >= 300
    assert acknowledged <= in_store, f"lost: {sorted(acknowledged - in_store)[:5]}"
    # and the restarted server serves on
    proc, ports = start_serve(config)
    port = ports["mx"]
    try:
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as c:
            assert c.sendmail("a@alice.lab", ["bob@bob.lab"], body(0, 0)) == {}
    finally:
        proc.terminate()
        proc.wait(10)
