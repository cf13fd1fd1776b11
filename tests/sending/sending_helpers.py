"""Helpers shared by the sending-side tests (plain functions; fixtures live in conftest)."""

from __future__ import annotations

import asyncio
import email
import smtplib
import ssl
from collections.abc import Sequence
from email import policy
from email.message import EmailMessage
from typing import Any

from mta.store import Store

ALICE = "alice@alice.lab"
BOB = "bob@bob.lab"
ALICE_PW = "alice-lab-password"
TWO = {"alice.lab": ["alice", "ann"], "bob.lab": ["bob"]}


def assert_in_order(text_lines: Sequence[str], needles: Sequence[str]) -> None:
    """Each needle starts a line of ``text_lines``, each on a later line than the one before."""
    position = 0
    for needle in needles:
        found = next((i for i in range(position, len(text_lines))
                      if text_lines[i].startswith(needle)), None)
        assert found is not None, (f"{needle!r} missing from line {position} on:\n"
                                   + "\n".join(text_lines))
        position = found + 1


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
