"""Shared fixtures: real servers on ephemeral loopback ports, fresh databases per test."""

from __future__ import annotations

import contextlib
import os
import signal
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import trustme

from mta.config import Config, from_dict
from mta.events import Bus, Event, ProtocolLine
from mta.server import Server, start


def need_tool(condition: bool, reason: str) -> None:
    """Skip the test unless ``condition`` holds (an external tool, or root, is available).

    With TESTS_REQUIRE_TOOLS=1 in the environment (.ci/run sets it) a missing tool fails the
    test instead, so a broken install cannot hide behind a skip. Tests and fixtures reach this
    through the ``need_tool`` fixture (conftest modules are not importable by name).
    """
    if condition:
        return
    if os.environ.get("TESTS_REQUIRE_TOOLS") == "1":
        pytest.fail(f"{reason} (TESTS_REQUIRE_TOOLS=1)", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(name="need_tool", scope="session")
def need_tool_fixture() -> Callable[[bool, str], None]:
    """``need_tool(condition, reason)``: skip, or under TESTS_REQUIRE_TOOLS=1 fail."""
    return need_tool


# Every process a test starts inherits this variable, so the session can find them at the end
# even after they were orphaned (a worker whose first process was killed). Not LABMAIL_*: the
# config refuses unknown LABMAIL_ overrides.
RUN_MARK = "TESTS_RUN_LABMAIL"
LEFTOVER_WAIT = 15.0


def _environ_has(pid: int, entry: bytes) -> bool:
    try:
        with open(f"/proc/{pid}/environ", "rb") as fh:
            return entry in fh.read().split(b"\0")
    except OSError:  # gone, or not ours to read
        return False


def _parent_and_state(pid: int) -> tuple[int, str]:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            # the command name (2nd field) is in parentheses and may hold spaces
            fields = fh.read().rpartition(")")[2].split()
    except OSError:
        return 0, "X"
    return int(fields[1]), fields[0]


def leftover_processes(entry: bytes) -> list[int]:
    """Live processes (not zombies) started by this run: children of this process, and any
    process whose environment holds ``entry``."""
    me = os.getpid()
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == me:
            continue
        pid = int(name)
        parent, state = _parent_and_state(pid)
        if state in ("Z", "X"):
            continue
        if parent == me or _environ_has(pid, entry):
            found.append(pid)
    return found


@pytest.fixture(scope="session", autouse=True)
def no_process_left_behind() -> Any:
    """The suite as a whole leaves no process behind (issue 17 item 16): at the end of the
    session every process the tests started must have exited (bounded wait)."""
    if not os.path.isdir("/proc/self"):
        yield
        return
    value = uuid.uuid4().hex
    os.environ[RUN_MARK] = value
    yield
    entry = f"{RUN_MARK}={value}".encode()
    deadline = time.monotonic() + LEFTOVER_WAIT
    left = leftover_processes(entry)
    while left and time.monotonic() < deadline:  # bounded: processes still shutting down
        time.sleep(0.2)
        left = leftover_processes(entry)
    described = [f"{pid} {_cmdline(pid)}" for pid in left]
    for pid in left:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    assert not left, "processes left behind by the test run: " + "; ".join(described)


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return "?"


def make_config(tmp_path: Path, **overrides: Any) -> Config:
    """A bob.lab server config on 127.0.0.1 with ephemeral ports; ``overrides`` are TOML keys."""
    data: dict[str, Any] = {
        "hostname": "mx.bob.lab",
        "domains": ["bob.lab"],
        "database": "bob.db",
        "listeners": {"mx": {"host": "127.0.0.1", "port": 0}},
        "accounts": [
            {"address": "bob@bob.lab", "password": "bob-pw"},
            {"address": "carol@bob.lab", "password": "carol-pw"},
        ],
        "postmaster": "bob@bob.lab",
        "limits": {"failed_auth_delay": 0.0},
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    return from_dict(data, "test.toml", tmp_path)


@pytest.fixture(scope="session")
def ca() -> trustme.CA:
    """One test certificate authority for the session (tests/mua has its own)."""
    return trustme.CA()


@pytest.fixture
def config_factory(tmp_path: Path) -> Callable[..., Config]:
    return lambda **overrides: make_config(tmp_path, **overrides)


@pytest.fixture
async def server_factory(tmp_path: Path, bus: Bus) -> AsyncIterator[Callable[..., Any]]:
    started: list[Server] = []

    async def factory(*, bus: Bus = bus, **overrides: Any) -> Server:
        server = await start(make_config(tmp_path, **overrides), bus=bus)
        started.append(server)
        return server

    yield factory
    for server in started:
        await server.close(grace=1)


@pytest.fixture
async def mx(server_factory: Callable[..., Any]) -> Server:
    """bob.lab's MX listener on an ephemeral port, with bob and carol as users."""
    return await server_factory()


class TraceLines(list[ProtocolLine]):
    """The protocol lines published on every bus it follows, in publishing order."""

    def follow(self, bus: Bus) -> None:
        bus.subscribe(maxsize=0, predicate=self._keep)  # kept as published, never queued

    def _keep(self, event: Event) -> bool:
        if isinstance(event, ProtocolLine):
            self.append(event)
        return False


@pytest.fixture
def bus() -> Bus:
    """The event bus the test's servers publish on (``server_factory``)."""
    return Bus()


@pytest.fixture
def trace_lines(bus: Bus) -> TraceLines:
    """The protocol lines of the test's servers (labs from ``lab_factory`` too)."""
    lines = TraceLines()
    lines.follow(bus)
    return lines
