"""`workers = N`: several processes serve one domain's MX and POP3 ports over one database."""

from __future__ import annotations

import os
import poplib
import re
import signal
import smtplib
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(not hasattr(__import__("socket"), "SO_REUSEPORT"),
                                reason="workers need SO_REUSEPORT")


def worker_pids(parent: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(parent)], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split()]


@pytest.fixture
def served(tmp_path: Path):
    config = tmp_path / "bob.toml"
    config.write_text('domains = ["bob.lab"]\ndatabase = "bob.db"\nworkers = 3\n'
                      'allow_plaintext_auth = true\n'
                      '[listeners.mx]\nhost = "127.0.0.1"\nport = 0\n'
                      '[listeners.pop3]\nhost = "127.0.0.1"\nport = 0\n'
                      '[limits]\nfailed_auth_delay = 0\n'
                      '[[accounts]]\naddress = "bob@bob.lab"\npassword = "pw"\n')
    proc = subprocess.Popen([sys.executable, "-m", "mta", "--config", str(config), "serve"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            cwd=ROOT)
    ports = {}
    assert proc.stdout is not None
    for _ in range(10):  # bounded: one line per listener, then one for the workers
        line = proc.stdout.readline()
        match = re.search(r"(mx|pop3) listening on [\d.]+:(\d+)", line)
        if match:
            ports[match.group(1)] = int(match.group(2))
        if "more worker process(es)" in line:
            break
    assert len(ports) == 2, "server did not start"
    yield proc, ports
    if proc.poll() is None:
        proc.kill()
        proc.wait(10)


def test_workers_share_the_ports_and_the_database(served) -> None:
    proc, ports = served
    assert len(worker_pids(proc.pid)) == 2  # workers = 3: the first process and two more

    def send(i: int) -> int:
        with smtplib.SMTP("127.0.0.1", ports["mx"], timeout=30) as c:
            c.sendmail("a@alice.lab", ["bob@bob.lab"], f"Subject: {i}\r\n\r\nbody\r\n")
        return i

    with ThreadPoolExecutor(20) as pool:
        assert len(list(pool.map(send, range(200)))) == 200

    first = poplib.POP3("127.0.0.1", ports["pop3"], timeout=30)
    first.user("bob@bob.lab")
    first.pass_("pw")
    assert first.stat()[0] == 200
    # the maildrop lock holds whichever process a second session lands on
    for _ in range(6):
        second = poplib.POP3("127.0.0.1", ports["pop3"], timeout=30)
        second.user("bob@bob.lab")
        with pytest.raises(poplib.error_proto, match=r"\[IN-USE\]"):
            second.pass_("pw")
        second.close()
    first.quit()

    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0
    assert worker_pids(proc.pid) == []


def test_a_killed_worker_is_replaced(served) -> None:
    proc, ports = served
    before = worker_pids(proc.pid)
    os.kill(before[0], signal.SIGKILL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # bounded: the pool starts a new worker
        now = worker_pids(proc.pid)
        if len(now) == 2 and before[0] not in now:
            break
        time.sleep(0.2)
    assert len(worker_pids(proc.pid)) == 2
    with smtplib.SMTP("127.0.0.1", ports["mx"], timeout=30) as c:
        assert c.sendmail("a@alice.lab", ["bob@bob.lab"], "Subject: x\r\n\r\nx\r\n") == {}


def test_workers_stop_when_the_first_process_is_killed(served) -> None:
    proc, ports = served
    children = worker_pids(proc.pid)
    assert len(children) == 2
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    deadline = time.monotonic() + 30
    alive = children
    while alive and time.monotonic() < deadline:  # bounded: orphans notice the closed pipe
        alive = [pid for pid in children if os.path.exists(f"/proc/{pid}")
                 and "zombie" not in open(f"/proc/{pid}/status").read()]
        time.sleep(0.1)
    assert alive == [], "worker processes outlived the first process"
