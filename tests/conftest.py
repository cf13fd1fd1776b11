"""Shared fixtures: real servers on ephemeral loopback ports, fresh databases per test."""

from __future__ import annotations

import os
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
