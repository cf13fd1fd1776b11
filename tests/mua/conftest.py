"""Fixtures for the user agent's tests: TLS material, real servers on loopback, profiles."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme
from mua_helpers import USERS
from mua_servers import LoopThread, POP3Fixture, SMTPFixture


@pytest.fixture(scope="session")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="session")
def server_tls(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    return context


@pytest.fixture(scope="session")
def ca_file(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ca") / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return path


@pytest.fixture
def loop_thread() -> Iterator[LoopThread]:
    thread = LoopThread()
    yield thread
    thread.stop()


@pytest.fixture
def start_smtp(loop_thread: LoopThread, server_tls: ssl.SSLContext):
    started: list[SMTPFixture] = []

    def start(*, tls: bool = True, **kwargs) -> SMTPFixture:
        server = SMTPFixture(
            loop_thread, users=USERS, tls_context=server_tls if tls else None, **kwargs
        )
        started.append(server)
        return server

    yield start
    for server in started:
        server.close()


@pytest.fixture
def start_pop3(loop_thread: LoopThread, server_tls: ssl.SSLContext):
    started: list[POP3Fixture] = []

    def start(*, tls: bool = True, **kwargs) -> POP3Fixture:
        server = POP3Fixture(
            loop_thread, users=USERS, tls_context=server_tls if tls else None, **kwargs
        )
        started.append(server)
        return server

    yield start
    for server in started:
        server.close()
