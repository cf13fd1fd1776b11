"""`workers = N`: several processes serve one domain's MX and POP3 ports over one database."""

from __future__ import annotations

import asyncio
import os
import poplib
import signal
import smtplib
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from serve_helpers import start_serve

from mta.config import load
from mta.events import Bus
from mta.server import start
from mta.workers import WorkerPool

pytestmark = pytest.mark.skipif(not hasattr(__import__("socket"), "SO_REUSEPORT"),
                                reason="workers need SO_REUSEPORT")


def worker_pids(parent: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(parent)], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split()]


def running(pid: int) -> bool:
    """Whether ``pid`` exists and is not a zombie (it may vanish while we look)."""
    try:
        with open(f"/proc/{pid}/status") as status:
            return "zombie" not in status.read()
    except FileNotFoundError:
        return False


@pytest.fixture
def served(tmp_path: Path):
    config = tmp_path / "bob.toml"
    config.write_text('domains = ["bob.lab"]\ndatabase = "bob.db"\nworkers = 3\n'
                      'allow_plaintext_auth = true\n'
                      '[listeners.mx]\nhost = "127.0.0.1"\nport = 0\n'
                      '[listeners.pop3]\nhost = "127.0.0.1"\nport = 0\n'
                      '[limits]\nfailed_auth_delay = 0\n'
                      '[[accounts]]\naddress = "bob@bob.lab"\npassword = "pw"\n')
    proc, ports = start_serve(config, listeners=("mx", "pop3"), workers=True)
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


def wait_replaced(parent: int, killed: int) -> list[int]:
    """Wait (bounded, 30 s) until the pool has two workers again, ``killed`` not among them;
    their pids."""
    deadline = time.monotonic() + 30
    now: list[int] = []
    while time.monotonic() < deadline:  # polling /proc: no event to wait on across processes
        now = worker_pids(parent)
        if len(now) == 2 and killed not in now:
            return now
        time.sleep(0.2)
    raise AssertionError(f"killed worker not replaced: {now}")


def test_a_killed_worker_is_replaced(served) -> None:
    proc, ports = served
    before = worker_pids(proc.pid)
    assert len(before) == 2
    os.kill(before[0], signal.SIGKILL)
    wait_replaced(proc.pid, before[0])
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
        alive = [pid for pid in children if running(pid)]
        time.sleep(0.1)
    assert alive == [], "worker processes outlived the first process"


def test_stopping_the_server_leaves_no_worker_behind(served) -> None:
    proc, ports = served
    before = worker_pids(proc.pid)
    os.kill(before[0], signal.SIGKILL)
    now = wait_replaced(proc.pid, before[0])
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0
    deadline = time.monotonic() + 30
    alive = before + now
    while alive and time.monotonic() < deadline:  # bounded: each worker closes and exits
        alive = [pid for pid in alive if running(pid)]
        time.sleep(0.1)
    assert alive == [], "worker processes outlived the server"


def test_a_worker_whose_parent_is_gone_before_ready_exits(tmp_path: Path) -> None:
    """The first process died while a worker started: its "ready" line meets a closed pipe.
    The worker must still close its store and exit (aiosqlite's threads would keep it alive
    in interpreter shutdown, holding its shared MX socket)."""
    config = tmp_path / "bob.toml"
    config.write_text('domains = ["bob.lab"]\ndatabase = "bob.db"\n'
                      '[listeners.mx]\nhost = "127.0.0.1"\nport = 0\n')
    proc = subprocess.Popen([sys.executable, "-m", "mta", "--config", str(config), "serve",
                             "--worker"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL)
    assert proc.stdout is not None and proc.stdin is not None
    proc.stdout.close()  # nobody will read "ready"
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        pytest.fail("the worker hung after its parent went away")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        proc.stdin.close()


async def test_worker_sessions_reach_the_first_process_bus(tmp_path: Path) -> None:
    """A worker's events come over its pipe: the pool publishes them on the bus it is given
    (here one apart from the first process's own, so only the worker's sessions land there)."""
    path = tmp_path / "bob.toml"
    path.write_text('domains = ["bob.lab"]\ndatabase = "bob.db"\nworkers = 2\n'
                    '[listeners.mx]\nhost = "127.0.0.1"\nport = 0\n'
                    '[[accounts]]\naddress = "bob@bob.lab"\npassword = "pw"\n')
    config = load(path)
    server = await start(config, shared_ports=True)
    forwarded = Bus()
    sub = forwarded.subscribe()
    pool = WorkerPool(path, config, server.ports, 1, bus=forwarded)
    try:
        await pool.start()

        def connect(count: int) -> None:  # SO_REUSEPORT spreads them over both processes
            for _ in range(count):
                with smtplib.SMTP("127.0.0.1", server.ports["mx"], timeout=30) as c:
                    c.noop()

        await asyncio.to_thread(connect, 40)
        event = await sub.get(timeout=30)
        while not (event.kind == "session_closed" and getattr(event, "listener", "") == "mx"):
            event = await sub.get(timeout=30)
        assert event.server == config.hostname and event.session
    finally:
        await pool.close()
        await server.close()
