"""Fixtures for the sending side (steps 3 and 4): in-process labs, smtplib submission, TLS."""

from __future__ import annotations

import asyncio
import email
import smtplib
import ssl
from collections.abc import AsyncIterator, Callable, Sequence
from email import policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
import trustme

from mta.clock import FakeClock
from mta.lab import Lab
from mta.store import Store

ALICE = "alice@alice.lab"
BOB = "bob@bob.lab"
ALICE_PW = "alice-lab-password"
TWO = {"alice.lab": ["alice", "ann"], "bob.lab": ["bob"]}


@pytest.fixture
async def lab_factory(tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    """Start labs (closed at teardown); each in its own folder under tmp_path."""
    labs: list[Lab] = []

    async def factory(domains: dict[str, Any] | None = None, **options: Any) -> Lab:
        folder = tmp_path / f"lab{len(labs)}"
        folder.mkdir()
        lab = await Lab.start(domains or TWO, folder=folder, **options)
        labs.append(lab)
        return lab

    yield factory
    for lab in labs:
        await lab.close()


@pytest.fixture
async def lab(lab_factory: Callable[..., Any]) -> Lab:
    """alice.lab (alice, ann) and bob.lab (bob) with running relay workers, real clock."""
    return await lab_factory()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(1_800_000_000.0)


@pytest.fixture
async def manual_lab(lab_factory: Callable[..., Any], clock: FakeClock) -> Lab:
    """The same lab with a fake clock and the relay loops off: tests call run_once."""
    return await lab_factory(clock=clock, relay=False)


@pytest.fixture(scope="session")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="session")
def cert_files(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("certs")
    cert = ca.issue_cert("127.0.0.1", "localhost", "mx.alice.lab")
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert.cert_chain_pems[0].write_to_path(str(cert_path))
    cert.private_key_pem.write_to_path(str(key_path))
    return cert_path, key_path


def message(subject: str = "hello", body: str = "Hello Bob,\r\n.a dot line\r\nbye\r\n",
            sender: str = ALICE, to: str = BOB, headers: dict[str, str] | None = None) -> bytes:
    lines = [f"From: {sender}", f"To: {to}", f"Subject: {subject}"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n" + body).encode()


def submit_blocking(port: int, to: Sequence[str], raw: bytes, *, user: str = ALICE,
                    password: str = ALICE_PW, sender: str | None = None,
                    starttls: ssl.SSLContext | None = None) -> str:
    """Submit with smtplib (AUTH, optionally after STARTTLS); returns the 250 text."""
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.ehlo("client.alice.lab")
        if starttls is not None:
            client.starttls(context=starttls)
            client.ehlo("client.alice.lab")
        client.login(user, password)
        client.mail(sender or user)
        for rcpt in to:
            code, text = client.rcpt(rcpt)
            assert code == 250, (code, text)
        code, text = client.data(raw)
        assert code == 250, (code, text)
        return text.decode()


async def submit(port: int, to: Sequence[str], raw: bytes, **kwargs: Any) -> str:
    return await asyncio.to_thread(submit_blocking, port, to, raw, **kwargs)


def queue_id(reply: str) -> str:
    return reply.rsplit(" ", 1)[1]


async def mailbox(store: Store, owner: str) -> list[bytes]:
    return [await store.fetch(owner, e.id) for e in await store.list_entries(owner)]


def parse(raw: bytes) -> EmailMessage:
    return email.message_from_bytes(raw, policy=policy.default)  # type: ignore[return-value]


def body_of(raw: bytes) -> bytes:
    return raw.split(b"\r\n\r\n", 1)[1]


def headers_named(raw: bytes, name: str) -> list[str]:
    return parse(raw).get_all(name) or []
