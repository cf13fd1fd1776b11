"""labmail against other people's mail code: Postfix's smtp-source as a client of the MX
listener and smtp-sink as the next hop of the relay, fetchmail as a POP3 client (Debian
packages postfix and fetchmail; .ci/run installs them)."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from mta.lab import Lab
from mta.server import Server
from tests.postfix_sink import FETCHMAIL, SINK, run_fetchmail, smtp_sink

SOURCE = shutil.which("smtp-source") or "/usr/sbin/smtp-source"


@pytest.fixture
def postfix_tools(need_tool) -> None:
    need_tool(os.access(SOURCE, os.X_OK) and os.access(SINK, os.X_OK),
              "Postfix's smtp-source/smtp-sink are not installed (Debian package postfix)")


@pytest.mark.usefixtures("postfix_tools")
async def test_smtp_source_delivers_to_the_mx(mx: Server) -> None:
    # -d: several transactions per connection; 3 sessions; 1,000-octet bodies
    result = await asyncio.to_thread(subprocess.run, [
        SOURCE, "-d", "-s", "3", "-m", "30", "-l", "1000", "-f", "alice@alice.lab",
        "-t", "bob@bob.lab", "-M", "client.alice.lab", "-S", "from smtp-source",
        f"127.0.0.1:{mx.ports['mx']}"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    entries = await mx.store.list_entries("bob@bob.lab")
    assert len(entries) == 30
    raw = await mx.store.fetch("bob@bob.lab", entries[0].id)
    assert b"Subject: from smtp-source" in raw
    assert b"by mx.bob.lab (labmail) with " in raw


@pytest.mark.usefixtures("postfix_tools")
async def test_the_relay_delivers_to_smtp_sink() -> None:
    async with smtp_sink() as (port, dump):
        async with Lab.start({"alice.lab": ["alice"]},
                             routes={"sink.example": ("127.0.0.1", port)}) as lab:
            alice = lab["alice.lab"]

            def submit() -> None:
                import smtplib

                with smtplib.SMTP("127.0.0.1", alice.ports["submission"], timeout=10) as c:
                    c.login("alice@alice.lab", alice.password("alice@alice.lab"))
                    c.sendmail("alice@alice.lab", ["someone@sink.example"],
                               b"Subject: to postfix\r\n\r\nhello sink\r\n")

            await asyncio.to_thread(submit)
            await lab.wait_for_queue_empty("alice.lab", timeout=20)
            (row,) = await alice.store.queue_rows(include_final=True)
            assert row.state == "delivered", row.last_reply
            assert row.last_reply.startswith("250")
        dumped = b"".join(p.read_bytes() for p in dump.iterdir())
    assert b"Subject: to postfix" in dumped
    assert b"hello sink" in dumped


async def test_fetchmail_retrieves_over_stls(server_factory, tmp_path: Path, need_tool) -> None:
    need_tool(FETCHMAIL is not None, "fetchmail is not installed (Debian package fetchmail)")
    server = await server_factory(
        tls="self-signed", allow_plaintext_auth=False,
        listeners={"mx": {"host": "127.0.0.1", "port": 0},
                   "pop3": {"host": "127.0.0.1", "port": 0}})
    for n in range(3):
        await server.store.deliver(["bob@bob.lab"],
                                   b"Subject: fetch %d\r\n\r\n.dot line %d\r\n" % (n, n), "")
    result, mbox = await run_fetchmail(tmp_path, server.ports["pop3"],
                                       'sslproto "tls1.2+" no sslcertck')
    assert result.returncode == 0, result.stdout + result.stderr
    assert "STLS" in result.stdout + result.stderr
    for n in range(3):
        assert b"Subject: fetch %d" % n in mbox and b".dot line %d" % n in mbox
    assert await server.store.count_entries("bob@bob.lab") == 0  # fetched and deleted
