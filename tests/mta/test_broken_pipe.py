"""``mta ... | head`` and ``mua ... | head``: a reader that goes away ends the command quietly."""

from __future__ import annotations

import asyncio
import mailbox
import subprocess
import sys
from pathlib import Path

from mta.store import Store

ROOT = Path(__file__).resolve().parents[2]
MANY = 3000  # list lines: far more than a pipe buffers (64 KiB), one write each


def read_a_little_then_close(argv: list[str]) -> tuple[int, str]:
    """Run ``argv``, read 10 octets of its output and close the pipe, like ``| head -c 10``."""
    proc = subprocess.Popen([sys.executable, *argv], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, cwd=ROOT)
    assert proc.stdout is not None and proc.stderr is not None
    assert len(proc.stdout.read(10)) == 10
    proc.stdout.close()
    err = proc.stderr.read().decode(errors="replace")
    return proc.wait(30), err


def test_mta_output_into_a_closed_pipe(tmp_path: Path) -> None:
    config = tmp_path / "bob.toml"
    config.write_text('domains = ["bob.lab"]\ndatabase = "bob.db"\n'
                      '[[accounts]]\naddress = "bob@bob.lab"\npassword = "pw"\n')

    async def fill() -> None:
        async with await Store.open(tmp_path / "bob.db") as store:
            await asyncio.gather(*(store.deliver(["bob@bob.lab"], b"Subject: x\r\n\r\nx\r\n",
                                                 "a@alice.lab") for _ in range(MANY)))

    asyncio.run(fill())
    code, err = read_a_little_then_close(
        ["-m", "mta", "--config", str(config), "mailbox", "list", "bob@bob.lab"])
    assert err == "", err
    assert code == 141  # what a program killed by SIGPIPE reports to the shell


def test_mua_output_into_a_closed_pipe(tmp_path: Path) -> None:
    folder = mailbox.Maildir(tmp_path / "Maildir", create=True)
    for _ in range(MANY):
        folder.add(b"From: a@alice.lab\r\nSubject: x\r\n\r\nx\r\n")
    profile = tmp_path / "bob.toml"
    profile.write_text(f'address = "bob@bob.lab"\nmaildir = "{tmp_path / "Maildir"}"\n'
                       '[smtp]\nhost = "127.0.0.1"\nport = 9\n'
                       '[pop3]\nhost = "127.0.0.1"\nport = 9\n')
    code, err = read_a_little_then_close(["-m", "mua", "--profile", str(profile), "list"])
    assert err == "", err
    assert code == 141
