"""Fixtures for the user agent's tests: TLS material, real servers on loopback, profiles."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme
from mua_servers import LoopThread, POP3Fixture, SMTPFixture

from mua.profile import Profile, profile_from_dict

ALICE = "alice@alice.lab"
BOB = "bob@bob.lab"
USERS = {ALICE: "alice-lab-password", BOB: "bob-lab-password"}


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


def make_profile(
    tmp_path: Path,
    *,
    address: str = ALICE,
    name: str = "Alice Liddell",
    smtp_port: int = 9,
    pop3_port: int = 9,
    ca_file: Path | None = None,
    smtp_security: str = "none",
    pop3_security: str = "none",
) -> Profile:
    server = {"host": "127.0.0.1", "timeout": 10}
    if ca_file:
        server["ca_file"] = str(ca_file)
    return profile_from_dict(
        {
            "address": address,
            "name": name,
            "maildir": str(tmp_path / "Maildir"),
            "smtp": {**server, "port": smtp_port, "security": smtp_security},
            "pop3": {**server, "port": pop3_port, "security": pop3_security},
        },
        env={},
    )


def write_profile(path: Path, profile: Profile) -> Path:
    """A TOML profile file equivalent to ``profile`` (for CLI tests)."""

    def server(section: str, s) -> str:
        lines = [f"[{section}]", f'host = "{s.host}"', f"port = {s.port}",
                 f'security = "{s.security}"', f"timeout = {s.timeout}"]
        if s.ca_file:
            lines.append(f'ca_file = "{s.ca_file}"')
        if not s.verify:
            lines.append("verify = false")
        return "\n".join(lines) + "\n"

    path.write_text(
        f'address = "{profile.address}"\nname = "{profile.name}"\n'
        f'maildir = "{profile.maildir}"\n\n'
        + server("smtp", profile.smtp) + "\n" + server("pop3", profile.pop3),
        encoding="utf-8",
    )
    return path
