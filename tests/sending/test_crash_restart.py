"""A 250 from submission survives SIGKILL: ``mta serve`` killed with mail queued, then restarted.

alice.lab runs as a real ``python -m mta serve`` subprocess; bob.lab's MX is unreachable while
the mail is queued, alice is killed with SIGKILL, ``mta queue list`` and ``mta queue flush`` look
at and release the queue, and alice restarted with a route to bob's (now running) MX delivers
everything exactly once.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import sys
from pathlib import Path
from typing import Any

from sending_helpers import ALICE, BOB, body_of, mailbox, message, parse, submit

from mta.store import Store

CONFIG = """\
hostname = "mx.alice.lab"
domains = ["alice.lab"]
database = "alice.db"
allow_plaintext_auth = true

[listeners.submission]
host = "127.0.0.1"
port = 0

[[accounts]]
address = "alice@alice.lab"
password = "alice-lab-password"

[routes]
"bob.lab" = "127.0.0.1:{port}"

[queue]
retry_initial = 3600
lifetime = 86400

[limits]
failed_auth_delay = 0
"""


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def environment(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LABMAIL_")}
    return env | extra


async def serve(config: Path, log: Path, **env: str) -> tuple[Any, int]:
    """Start ``mta serve``; returns (process, submission port) once it listens."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "mta", "--config", str(config), "serve",
        stdout=asyncio.subprocess.PIPE, stderr=log.open("ab"), env=environment(**env))
    assert process.stdout is not None
    async with asyncio.timeout(20):
        while True:
            line = (await process.stdout.readline()).decode()
            assert line, f"mta serve exited: {log.read_text()[-2000:]}"
            match = re.search(r"submission listening on [\d.]+:(\d+)", line)
            if match:
                return process, int(match.group(1))


async def mta(config: Path, *args: str) -> str:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "mta", "--config", str(config), *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, env=environment())
    out, _ = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0, out.decode()
    return out.decode()


async def test_sigkill_with_mail_queued_then_restart_delivers_everything(
        tmp_path: Path, lab_factory: Any) -> None:
    config = tmp_path / "alice.toml"
    config.write_text(CONFIG.format(port=closed_port()))
    log = tmp_path / "alice.log"

    process, port = await serve(config, log)
    try:
        raws = [message(subject=f"crash-{n}") for n in range(3)]
        for raw in raws:
            reply = await submit(port, [BOB], raw)
            assert "queued as" in reply
    finally:
        process.send_signal(signal.SIGKILL)
        await process.wait()
    assert process.returncode == -signal.SIGKILL

    listing = await mta(config, "queue", "list")
    assert listing.count("<alice@alice.lab> -> <bob@bob.lab>") == 3, listing
    assert "3 row(s) queued" in listing
    assert "3 queued row(s) made due now" in await mta(config, "queue", "flush")

    bob_lab = await lab_factory({"bob.lab": ["bob"]})
    bob = bob_lab["bob.lab"]
    process, _ = await serve(config, log,
                             LABMAIL_ROUTES=f"bob.lab=127.0.0.1:{bob.ports['mx']}")
    try:
        await bob_lab.wait_for_delivery(BOB, 3, timeout=20)
    finally:
        process.send_signal(signal.SIGTERM)  # graceful: the relay records what it did
        await asyncio.wait_for(process.wait(), 20)

    stored = await mailbox(bob.store, BOB)
    assert sorted(parse(m)["Subject"] for m in stored) == ["crash-0", "crash-1", "crash-2"]
    assert sorted(body_of(m) for m in stored) == sorted(body_of(r) for r in raws)
    async with await Store.open(tmp_path / "alice.db") as store:
        rows = await store.queue_rows(include_final=True)
        assert [r.state for r in rows] == ["delivered"] * 3
        assert all(r.sender == ALICE for r in rows)
    assert "0 row(s) queued" in await mta(config, "queue", "list")
