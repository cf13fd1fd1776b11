"""Relay correctness for 8-bit and UTF-8 mail (issue 17 items 1-3, RFC 6531, 6152, 6533):
against labmail's own MX (which offers SMTPUTF8 and 8BITMIME) and Postfix's smtp-sink with
8BITMIME hidden (it never offers SMTPUTF8)."""

from __future__ import annotations

import asyncio
import os
import smtplib
import sqlite3
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest
from sending_helpers import ALICE, BOB, headers_named, mailbox, parse

from mta.lab import Lab
from mta.store import Store
from mta.store.connection import schema_files
from tests.postfix_sink import SINK, smtp_sink

TEXT = "Grüße aus Köln, ½ € mehr\r\n.a dot line\r\n"
EIGHT_BIT_BODY = ("From: alice@alice.lab\r\nTo: someone@sink.example\r\nSubject: 8bit\r\n"
                  "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
                  "Content-Transfer-Encoding: 8bit\r\n\r\n" + TEXT).encode()
UTF8_HEADERS = ("From: alice@alice.lab\r\nTo: someone@sink.example\r\nSubject: Grüße\r\n"
                "\r\nhello\r\n").encode()


def submit_blocking(lab: Lab, to: Sequence[str], raw: bytes, *, smtputf8: bool) -> str:
    alice = lab["alice.lab"]
    with smtplib.SMTP("127.0.0.1", alice.ports["submission"], timeout=10) as client:
        client.login(ALICE, alice.password(ALICE))
        client.mail(ALICE, ["SMTPUTF8"] if smtputf8 else [])
        for rcpt in to:
            code, text = client.rcpt(rcpt)
            assert code == 250, (code, text)
        code, text = client.data(raw)
        assert code == 250, (code, text)
        return text.decode()


async def submit(lab: Lab, to: Sequence[str], raw: bytes, *, smtputf8: bool = False) -> str:
    return await asyncio.to_thread(submit_blocking, lab, to, raw, smtputf8=smtputf8)


@pytest.fixture
async def sink(need_tool) -> AsyncIterator[tuple[int, Path]]:
    """smtp-sink without 8BITMIME (-8) and so without SMTPUTF8: (port, dump folder)."""
    need_tool(os.access(SINK, os.X_OK), "Postfix's smtp-sink is not installed (Debian postfix)")
    async with smtp_sink("-8") as found:
        yield found


async def relay_to_sink(tmp_path: Path, port: int, raw: bytes, *, smtputf8: bool = False
                        ) -> tuple[str, str, list[bytes]]:
    """Submit ``raw`` to someone@sink.example; (state, last reply, alice's mailbox)."""
    async with Lab.start({"alice.lab": ["alice"]}, folder=tmp_path,
                         routes={"sink.example": ("127.0.0.1", port)}) as lab:
        await submit(lab, ["someone@sink.example"], raw, smtputf8=smtputf8)
        await lab.wait_for_queue_empty("alice.lab", timeout=20)
        (row,) = [r for r in await lab["alice.lab"].store.queue_rows(include_final=True)
                  if r.recipient == "someone@sink.example"]
        return row.state, row.last_reply or "", await mailbox(lab["alice.lab"].store, ALICE)


def dumped(dump: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(dump.iterdir()))


# -- item 2: 8BITMIME ----------------------------------------------------------------------------

async def test_8bit_body_is_converted_for_a_hop_without_8bitmime(sink, tmp_path) -> None:
    port, dump = sink
    state, reply, _ = await relay_to_sink(tmp_path, port, EIGHT_BIT_BODY)
    assert state == "delivered", reply
    data = dumped(dump)
    assert data.isascii()
    assert b"Content-Transfer-Encoding: quoted-printable" in data
    start = data.index(b"From: alice@alice.lab")
    content = parse(data[start:]).get_content().replace("\r\n", "\n")
    assert content.startswith(TEXT.replace("\r\n", "\n"))  # the same text, decoded


async def test_8bit_header_text_without_smtputf8_bounces_5_6_3(sink, tmp_path) -> None:
    port, dump = sink
    state, reply, bounces = await relay_to_sink(tmp_path, port, UTF8_HEADERS)
    assert state == "failed" and "8BITMIME" in reply
    assert not list(dump.iterdir())  # nothing half-sent
    (dsn,) = bounces
    assert b"Status: 5.6.3" in dsn


# -- item 1: SMTPUTF8 needed by the headers alone -----------------------------------------------

async def test_smtputf8_needed_by_headers_bounces_5_6_7_at_a_hop_without_it(sink,
                                                                           tmp_path) -> None:
    port, dump = sink
    state, reply, bounces = await relay_to_sink(tmp_path, port, UTF8_HEADERS, smtputf8=True)
    assert state == "failed" and "SMTPUTF8" in reply
    assert not list(dump.iterdir())
    (dsn,) = bounces
    assert b"Status: 5.6.7" in dsn


async def test_smtputf8_is_carried_through_the_queue_to_the_next_hop(lab: Lab) -> None:
    raw = "From: alice@alice.lab\r\nTo: bob@bob.lab\r\nSubject: Grüße\r\n\r\nhi\r\n".encode()
    await submit(lab, [BOB], raw, smtputf8=True)
    entries = await lab.wait_for_delivery(BOB, 1, timeout=10)
    stored = await lab["bob.lab"].store.fetch(BOB, entries[0].id)
    received = headers_named(stored, "Received")
    assert "with UTF8SMTP" in " ".join(received[0].split())  # bob's MX saw MAIL ... SMTPUTF8
    (row,) = await lab["alice.lab"].store.queue_rows(include_final=True)
    assert row.smtputf8


async def test_ascii_message_with_smtputf8_keyword_does_not_need_it(lab: Lab) -> None:
    raw = b"From: alice@alice.lab\r\nTo: bob@bob.lab\r\nSubject: plain\r\n\r\nhi\r\n"
    await submit(lab, [BOB], raw, smtputf8=True)
    await lab.wait_for_delivery(BOB, 1, timeout=10)
    (row,) = await lab["alice.lab"].store.queue_rows(include_final=True)
    assert not row.smtputf8


# -- item 3: DSNs for non-ASCII recipients (RFC 6533) -----------------------------------------

async def test_dsn_for_a_non_ascii_recipient_is_global(lab: Lab) -> None:
    raw = "From: alice@alice.lab\r\nTo: jörg@bob.lab\r\nSubject: hi\r\n\r\nhi\r\n".encode()
    await submit(lab, ["jörg@bob.lab"], raw, smtputf8=True)
    await lab.wait_for_queue_empty("alice.lab", timeout=20)
    (dsn,) = await mailbox(lab["alice.lab"].store, ALICE)
    report = parse(dsn)
    assert report.get_content_type() == "multipart/report"
    assert report.get_param("report-type") == "global-delivery-status"
    types = [part.get_content_type() for part in report.iter_parts()]
    assert types == ["text/plain", "message/global-delivery-status", "message/global-headers"]
    assert "Final-Recipient: utf-8; jörg@bob.lab".encode() in dsn
    assert b"Status: 5.1.1" in dsn


async def test_dsn_for_ascii_recipients_keeps_the_rfc_3464_form(lab: Lab) -> None:
    await submit(lab, ["nobody@bob.lab"], b"Subject: hi\r\n\r\nhi\r\n")
    await lab.wait_for_queue_empty("alice.lab", timeout=20)
    (dsn,) = await mailbox(lab["alice.lab"].store, ALICE)
    assert b"report-type=delivery-status" in dsn
    assert b"Final-Recipient: rfc822; nobody@bob.lab" in dsn


async def test_a_queue_from_schema_2_migrates_and_reads_as_not_needing_smtputf8(tmp_path) -> None:
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    for number, _name, sql in schema_files():
        if number <= 2:
            conn.executescript(sql)
    conn.execute("PRAGMA user_version = 2")
    conn.execute("INSERT INTO queue_messages (id, sender, raw, size, created) "
                 "VALUES ('Q1', 'a@alice.lab', x'6869', 2, 1.0)")
    conn.execute("INSERT INTO queue_recipients (message_id, recipient, domain, next_attempt, "
                 "created, updated) VALUES ('Q1', 'b@bob.lab', 'bob.lab', 1.0, 1.0, 1.0)")
    conn.commit()
    conn.close()
    async with await Store.open(path) as store:
        (row,) = await store.due(2.0)
        assert row.queue_id == "Q1" and row.smtputf8 is False
        await store.enqueue("a@alice.lab", b"x\r\n", ["jörg@bob.lab"], now=2.0, smtputf8=True)
        assert [r.smtputf8 for r in await store.due(3.0)] == [False, True]
