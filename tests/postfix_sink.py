"""Other people's mail programs the tests talk to (Debian packages; .ci/run installs them).

Postfix's smtp-sink as a next hop for the relay (the interop and 8BITMIME/SMTPUTF8 relay tests:
one bounded start-up wait, one clean-up, an ephemeral loopback port) and fetchmail as a POP3
client (the STLS and POP3S tests).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

SINK = shutil.which("smtp-sink") or "/usr/sbin/smtp-sink"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@asynccontextmanager
async def smtp_sink(*options: str) -> AsyncIterator[tuple[int, Path]]:
    """Run smtp-sink (``options`` e.g. ``-8``: no 8BITMIME) for ``sink.example``; yields
    (port, the folder it dumps each message into)."""
    # it drops to an unprivileged user when started as root: the folder must be reachable
    # for that user (pytest's tmp_path is not)
    dump = Path(tempfile.mkdtemp(prefix="labmail-sink-"))
    dump.chmod(0o777)
    port = free_port()
    user = ["-u", "nobody"] if os.geteuid() == 0 else []
    process = subprocess.Popen([SINK, *user, *options, "-d", f"{dump}/%M.", "-h",
                                "sink.example", f"127.0.0.1:{port}", "16"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        for _ in range(100):  # bounded: wait until smtp-sink listens
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                await asyncio.sleep(0.05)
        else:
            pytest.fail(f"smtp-sink is not listening on 127.0.0.1:{port}")
        yield port, dump
    finally:
        process.terminate()
        process.wait(10)
        shutil.rmtree(dump, ignore_errors=True)


FETCHMAIL = shutil.which("fetchmail")


async def run_fetchmail(folder: Path, port: int, tls_options: str
                        ) -> tuple[subprocess.CompletedProcess[str], bytes]:
    """fetchmail (Debian package fetchmail) as bob@bob.lab (password ``bob-pw``) from the POP3
    listener on ``port``, deleting what it fetched; (the run, the mbox it delivered to)."""
    assert FETCHMAIL is not None
    rc, out = folder / "fetchmailrc", folder / "mbox"
    rc.write_text(f'poll 127.0.0.1 service {port} protocol pop3 user "bob@bob.lab" '
                  f'password "bob-pw" {tls_options} mda "/bin/sh -c \'cat >> {out}\'"\n')
    rc.chmod(0o600)
    result = await asyncio.to_thread(
        subprocess.run, [FETCHMAIL, "-f", str(rc), "--nokeep", "--nosyslog", "-v"],
        capture_output=True, text=True, timeout=60, env={**os.environ, "HOME": str(folder)})
    return result, out.read_bytes() if out.exists() else b""
