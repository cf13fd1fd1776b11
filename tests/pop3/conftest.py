"""Fixtures for the POP3 tests: an in-memory maildrop and servers on ephemeral ports."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace

import pytest
import trustme

from pop3.memory import MemoryMaildrop
from pop3.server import POP3Options, start_server

BOB = "bob@bob.lab"
BOB_PASSWORD = "bob secret"  # a space, to show PASS takes the rest of the line
CAROL = "carol@bob.lab"
CAROL_PASSWORD = "carol-pw"
CAROL_APOP = "tanstaaf"

MESSAGES = [
    b"From: alice@alice.lab\r\nTo: bob@bob.lab\r\nSubject: one\r\n\r\nHello Bob.\r\n",
    b"From: alice@alice.lab\r\nSubject: dots\r\n\r\n.starts with a dot\r\n.\r\n..two\r\nend\r\n",
    b"Subject: three\r\n\r\nline 1\r\nline 2\r\nline 3\r\n",
]

BASE_OPTIONS = POP3Options(
    hostname="pop.bob.lab", allow_plaintext_auth=True, failed_auth_delay=0, idle_timeout=30
)


@dataclass
class Running:
    host: str
    port: int
    server: asyncio.Server
    options: POP3Options


StartFn = Callable[..., Awaitable[Running]]


@pytest.fixture
def maildrop() -> MemoryMaildrop:
    md = MemoryMaildrop()
    md.add_account(BOB, BOB_PASSWORD)
    md.add_account(CAROL, CAROL_PASSWORD, apop_secret=CAROL_APOP)
    for raw in MESSAGES:
        md.deliver(BOB, raw)
    return md


class Recorder:
    """A ``pop3.observer.Observer`` keeping every call as (name, args)."""

    active = True

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[object, ...]]] = []

    def lines(self) -> list[tuple[str, str, str]]:
        """(peer, direction, text) of each protocol line."""
        return [(str(a[1]), str(a[2]), str(a[3])) for name, a in self.calls if name == "line"]

    def __getattr__(self, name: str) -> Callable[..., None]:
        return lambda *args: self.calls.append((name, args))


@pytest.fixture
def observed() -> Recorder:
    return Recorder()


@pytest.fixture
async def start_pop3(maildrop: MemoryMaildrop, observed: Recorder) -> AsyncIterator[StartFn]:
    """start_pop3(ssl_context=None, **option_overrides) -> Running, on 127.0.0.1 port 0;
    the sessions report to ``observed``."""
    servers: list[asyncio.Server] = []

    async def start(ssl_context: ssl.SSLContext | None = None, **overrides: object) -> Running:
        options = replace(BASE_OPTIONS, **overrides)  # type: ignore[arg-type]
        server = await start_server(maildrop, "127.0.0.1", 0, options, ssl_context,
                                    observer=observed)
        servers.append(server)
        host, port = server.sockets[0].getsockname()[:2]
        return Running(host, port, server, options)

    yield start
    for server in servers:
        server.close()
        await server.wait_closed()


@pytest.fixture(scope="session")
def server_tls(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    return context


@pytest.fixture(scope="session")
def client_tls(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


class RawClient:
    """A line-level POP3 client over asyncio streams, for what poplib cannot send."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.greeting = b""

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def line(self) -> bytes:
        return await asyncio.wait_for(self.reader.readline(), 10)

    async def cmd(self, text: str | bytes) -> bytes:
        await self.send((text.encode() if isinstance(text, str) else text) + b"\r\n")
        return await self.line()

    async def rest_of_multiline(self) -> list[bytes]:
        lines = []
        for _ in range(10_000):
            got = await self.line()
            if got == b".\r\n":
                return lines
            lines.append(got)
        raise AssertionError("no end of multi-line reply")

    async def eof(self) -> bool:
        """True once the server has closed the connection (waits for it)."""
        return await asyncio.wait_for(self.reader.read(), 10) == b""

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(Exception):
            await self.writer.wait_closed()


@pytest.fixture
async def raw_client() -> AsyncIterator[Callable[[Running], Awaitable[RawClient]]]:
    clients: list[RawClient] = []

    async def connect(running: Running) -> RawClient:
        reader, writer = await asyncio.open_connection(running.host, running.port)
        client = RawClient(reader, writer)
        clients.append(client)
        client.greeting = await client.line()
        return client

    yield connect
    for client in clients:
        await client.close()
