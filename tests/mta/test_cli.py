"""The mta command: accounts, mailbox inspection, health check."""

from __future__ import annotations

import asyncio
import smtplib
import subprocess
import sys
from pathlib import Path

import pytest

from mta.server import Server

ROOT = Path(__file__).resolve().parents[2]


def mta(config: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mta", "--config", str(config), *args],
                          input=stdin, capture_output=True, text=True, timeout=60, cwd=ROOT)


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "bob.toml"
    path.write_text('domains = ["bob.lab"]\ndatabase = "bob.db"\n'
                    '[listeners.mx]\nhost = "127.0.0.1"\nport = 0\n')
    return path


def test_account_commands(config_file: Path) -> None:
    added = mta(config_file, "adduser", "Dave@bob.lab", stdin="dave-pw\n")
    assert added.returncode == 0, added.stderr
    again = mta(config_file, "adduser", "dave@bob.lab", stdin="x\n")
    assert again.returncode == 1 and "exists already" in again.stderr
    foreign = mta(config_file, "adduser", "eve@evil.lab", stdin="x\n")
    assert foreign.returncode == 1 and "not an address in bob.lab" in foreign.stderr
    assert "dave@bob.lab  0 messages" in mta(config_file, "users").stdout
    assert mta(config_file, "passwd", "dave@bob.lab", stdin="new\n").returncode == 0
    assert mta(config_file, "deluser", "dave@bob.lab").returncode == 0
    gone = mta(config_file, "deluser", "dave@bob.lab")
    assert gone.returncode == 1 and "no account" in gone.stderr
    assert "Traceback" not in gone.stderr


async def test_mailbox_commands(server_factory, tmp_path: Path) -> None:
    server: Server = await server_factory()
    msg = b"From: a@alice.lab\r\nSubject: inspect me\r\n\r\nthe body\r\n"

    def send() -> None:
        with smtplib.SMTP("127.0.0.1", server.ports["mx"]) as c:
            c.sendmail("a@alice.lab", ["bob@bob.lab"], msg)

    await asyncio.to_thread(send)
    config = tmp_path / "same.toml"
    config.write_text(f'domains = ["bob.lab"]\ndatabase = "{server.config.database}"\n')
    listing = await asyncio.to_thread(mta, config, "mailbox", "list", "bob@bob.lab")
    entry = (await server.store.list_entries("bob@bob.lab"))[0]
    assert entry.uid in listing.stdout and "1 message(s)" in listing.stdout
    shown = await asyncio.to_thread(mta, config, "mailbox", "show", "bob@bob.lab", "1")
    assert "Subject: inspect me" in shown.stdout and "the body" in shown.stdout
    raw = await asyncio.to_thread(mta, config, "mailbox", "show", "bob@bob.lab", "1", "--raw")
    assert raw.stdout.replace("\n", "\r\n").endswith(msg.decode())
    missing = await asyncio.to_thread(mta, config, "mailbox", "show", "bob@bob.lab", "7")
    assert missing.returncode == 1 and "has no message 7" in missing.stderr
    purged = await asyncio.to_thread(mta, config, "mailbox", "purge", "bob@bob.lab")
    assert "deleted 1 message(s)" in purged.stdout
    assert await server.store.count_entries() == 0


async def test_check_expects_greetings(server_factory, tmp_path: Path) -> None:
    server: Server = await server_factory()
    config = tmp_path / "check.toml"
    config.write_text('domains = ["bob.lab"]\ndatabase = "c.db"\n'
                      f'[listeners.mx]\nhost = "127.0.0.1"\nport = {server.ports["mx"]}\n')
    ok = await asyncio.to_thread(mta, config, "check")
    assert ok.returncode == 0 and "ok" in ok.stdout
    await server.close()
    down = await asyncio.to_thread(mta, config, "check")
    assert down.returncode == 1 and "FAIL" in down.stdout


def test_missing_config_is_usage_error() -> None:
    result = subprocess.run([sys.executable, "-m", "mta", "users"], capture_output=True,
                            text=True, timeout=60, cwd=ROOT,
                            env={k: v for k, v in __import__("os").environ.items()
                                 if not k.startswith("LABMAIL_")})
    assert result.returncode == 2 and "no config" in result.stderr
