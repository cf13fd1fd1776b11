"""Step 3: authenticated submission (RFC 6409) against a real in-process lab."""

from __future__ import annotations

import asyncio
import base64
import smtplib
import socket
import ssl
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import trustme
from sending_helpers import (
    ALICE,
    ALICE_PW,
    BOB,
    body_of,
    headers_named,
    mailbox,
    message,
    parse,
    queue_id,
    submit,
)

from mta.config import TLS, Limits
from mta.lab import Lab
from mta.smtp.submission import complete_message


def unverified() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


async def assert_delivered_to_bob(lab: Lab, raw: bytes, protocol: str) -> bytes:
    entries = await lab.wait_for_delivery(BOB, 1, timeout=10)
    stored = await lab["bob.lab"].store.fetch(BOB, entries[0].id)
    received = headers_named(stored, "Received")
    assert len(received) == 2
    assert f"by mx.alice.lab (labmail) with {protocol} " in " ".join(received[1].split())
    assert "by mx.bob.lab" in received[0]
    assert body_of(stored) == body_of(raw)  # byte-identical, dot line included
    assert stored.startswith(b"Return-Path: <alice@alice.lab>\r\n")
    return stored


async def test_plain_text_auth_submission_reaches_bob(lab: Lab) -> None:
    raw = message()
    reply = await submit(lab["alice.lab"].ports["submission"], [BOB], raw)
    assert reply.startswith("2.0.0 OK: queued as ")
    stored = await assert_delivered_to_bob(lab, raw, "ESMTPA")
    assert queue_id(reply) in stored.decode()
    await lab.wait_for_queue_empty("alice.lab")
    assert (await lab["alice.lab"].store.queue_rows(include_final=True))[0].state == "delivered"


async def test_starttls_with_certificate_files_then_auth(lab_factory: Any, ca: trustme.CA,
                                                         cert_files: tuple[Path, Path]) -> None:
    cert, key = cert_files

    def with_files(config: Any) -> Any:
        return replace(config, tls=TLS("files", cert, key), allow_plaintext_auth=False)

    lab = await lab_factory(configure=with_files)
    context = ssl.create_default_context()
    ca.configure_trust(context)  # verified: the lab's certificate is issued by this CA
    raw = message()
    await submit(lab["alice.lab"].ports["submission"], [BOB], raw, starttls=context)
    await assert_delivered_to_bob(lab, raw, "ESMTPSA")


async def test_starttls_self_signed_unverified_then_auth_login(lab: Lab) -> None:
    port = lab["alice.lab"].ports["submission"]

    def run() -> None:
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
            client.starttls(context=unverified())
            client.ehlo("client")
            client.user, client.password = ALICE, ALICE_PW
            code, _ = client.auth("LOGIN", client.auth_login, initial_response_ok=False)
            assert code == 235
            client.sendmail(ALICE, [BOB], message())

    await asyncio.to_thread(run)
    await assert_delivered_to_bob(lab, message(), "ESMTPSA")


async def test_no_plain_text_auth_unless_allowed(lab_factory: Any) -> None:
    lab = await lab_factory(configure=lambda c: replace(c, allow_plaintext_auth=False))
    port = lab["alice.lab"].ports["submission"]

    def run() -> None:
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
            client.ehlo("client")
            assert not client.has_extn("auth")  # not advertised before TLS
            assert client.has_extn("starttls")
            token = base64.b64encode(f"\0{ALICE}\0{ALICE_PW}".encode()).decode()
            code, text = client.docmd("AUTH", f"PLAIN {token}")
            assert (code, text[:6]) == (538, b"5.7.11")
            client.starttls(context=unverified())
            client.ehlo("client")
            # exactly the mechanisms labmail implements (aiosmtpd would offer any auth_*
            # attribute of the session as one)
            assert client.esmtp_features["auth"].split() == ["LOGIN", "PLAIN"]
            client.login(ALICE, ALICE_PW)

    await asyncio.to_thread(run)


def smtp_lines(sock_file: Any, n: int) -> list[str]:
    """Read ``n`` complete replies (multi-line replies joined)."""
    replies = []
    for _ in range(n):
        lines = []
        while True:
            line = sock_file.readline().decode()
            assert line, "connection closed"
            lines.append(line.rstrip("\r\n"))
            if line[3:4] != "-":
                break
        replies.append("\n".join(lines))
    return replies


async def test_mail_before_auth_and_relay_attempts_are_refused(lab: Lab) -> None:
    port = lab["alice.lab"].ports["submission"]

    def run() -> list[tuple[int, bytes]]:
        out = []
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
            client.ehlo("client")
            out.append(client.mail(ALICE))  # no AUTH yet
            out.append(client.rcpt(BOB))
            client.login(ALICE, ALICE_PW)
            for sender in ("ann@alice.lab", "bob@bob.lab", ""):
                out.append(client.mail(sender))
            assert client.mail("ALICE@Alice.LAB")[0] == 250  # case-insensitive
            for rcpt in ("bob%bob.lab@alice.lab", '"bob@bob.lab"@alice.lab',
                         "bob.lab!bob@alice.lab", "nobody@alice.lab"):
                out.append(client.rcpt(rcpt))
            client.rset()
        return out

    out = await asyncio.to_thread(run)
    assert out[0][0] == 530 and out[0][1].startswith(b"5.7.0")
    assert out[1][0] == 503  # RCPT without MAIL
    for code, text in out[2:5]:
        assert (code, text[:5]) == (553, b"5.7.1"), text
    for code, text in out[5:8]:
        assert (code, text[:5]) == (550, b"5.7.1"), text
    assert out[8][0] == 550 and out[8][1].startswith(b"5.1.1")
    store = lab["alice.lab"].store
    assert await store.count_queue() == 0  # nothing queued
    assert await store.count_entries() == 0


async def test_failed_auth_is_535_then_421_after_the_limit(lab: Lab) -> None:
    port = lab["alice.lab"].ports["submission"]

    bad = base64.b64encode(f"\0{ALICE}\0wrong".encode()).decode()

    def run() -> list[Any]:
        out: list[Any] = []
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
            client.ehlo("client")
            for _ in range(3):  # one AUTH attempt each (smtplib's login() tries several)
                code, text = client.docmd("AUTH", f"PLAIN {bad}")
                out.append((code, text[:5]))
            try:
                client.noop()
            except smtplib.SMTPServerDisconnected:
                out.append("closed")
        return out

    out = await asyncio.to_thread(run)
    assert out[:2] == [(535, b"5.7.8"), (535, b"5.7.8")]
    assert out[2] == (421, b"4.7.0")
    assert out[3] == "closed"


async def test_local_and_remote_recipients_commit_together(lab: Lab) -> None:
    raw = message(to="bob@bob.lab, ann@alice.lab")
    reply = await submit(lab["alice.lab"].ports["submission"], ["ann@alice.lab", BOB], raw)
    txn = queue_id(reply)
    alice = lab["alice.lab"].store
    [entry] = await alice.list_entries("ann@alice.lab")  # delivered straight to the mailbox
    assert entry.queue_id == txn
    stored = await alice.fetch("ann@alice.lab", entry.id)
    assert stored.startswith(b"Return-Path: <alice@alice.lab>\r\nReceived: ")
    assert len(headers_named(stored, "Received")) == 1
    await lab.wait_for_delivery(BOB, 1)
    rows = await alice.queue_rows(include_final=True)
    assert [(r.queue_id, r.recipient) for r in rows] == [(txn, BOB)]


async def test_message_id_and_date_added_only_when_missing(lab: Lab) -> None:
    port = lab["alice.lab"].ports["submission"]
    await submit(port, ["ann@alice.lab"], message(subject="bare"))
    kept = {"Message-ID": "<kept@client>", "Date": "Mon, 1 Jan 2024 00:00:00 +0000"}
    await submit(port, ["ann@alice.lab"], message(subject="full", headers=kept))
    first, second = await mailbox(lab["alice.lab"].store, "ann@alice.lab")
    assert parse(first)["Message-ID"].endswith("@mx.alice.lab>")
    assert parse(first)["Date"]
    assert headers_named(second, "Message-ID") == ["<kept@client>"]
    assert second.count(b"\r\nDate: ") == 1
    assert b"\r\nDate: Mon, 1 Jan 2024 00:00:00 +0000\r\n" in second


def test_complete_message_keeps_the_body() -> None:
    raw = b"Subject: x\r\n\r\nbody\r\n\r\nmore\r\n"
    done = complete_message(raw, "mx.alice.lab")
    assert body_of(done) == body_of(raw)
    assert done.startswith(b"Subject: x\r\nDate: ")
    headers_only = complete_message(b"Subject: y\r\n", "h")
    assert headers_only.endswith(b"Subject: y\r\n") and b"Message-ID: <" in headers_only


async def test_pipelining_is_advertised_and_works(lab: Lab) -> None:
    port = lab["alice.lab"].ports["submission"]
    token = base64.b64encode(f"\0{ALICE}\0{ALICE_PW}".encode()).decode()

    def run() -> list[str]:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            f = sock.makefile("rb")
            smtp_lines(f, 1)
            sock.sendall(b"EHLO client\r\n")
            [ehlo] = smtp_lines(f, 1)
            assert "PIPELINING" in ehlo
            # RFC 2920: the whole transaction in one write, the replies in order
            sock.sendall(f"AUTH PLAIN {token}\r\nMAIL FROM:<{ALICE}>\r\nRCPT TO:<{BOB}>\r\n"
                         "RCPT TO:<ann@alice.lab>\r\nRCPT TO:<nobody@alice.lab>\r\nDATA\r\n"
                         .encode())
            replies = smtp_lines(f, 6)
            sock.sendall(message() + b".\r\nQUIT\r\n")
            replies += smtp_lines(f, 2)
            return replies

    replies = await asyncio.to_thread(run)
    assert [r[:3] for r in replies] == ["235", "250", "250", "250", "550", "354", "250", "221"]
    await lab.wait_for_delivery("ann@alice.lab", 1)
    await lab.wait_for_delivery(BOB, 1)


async def test_commands_pipelined_after_starttls_are_discarded(lab: Lab) -> None:
    port = lab["alice.lab"].ports["submission"]

    def run() -> list[str]:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw_sock:
            f = raw_sock.makefile("rb")
            smtp_lines(f, 1)
            raw_sock.sendall(b"EHLO client\r\n")
            smtp_lines(f, 1)
            # RFC 3207 4.2: an attacker's plain-text command smuggled behind STARTTLS
            raw_sock.sendall(b"STARTTLS\r\nRSET\r\nHELO injected\r\n")
            [ready] = smtp_lines(f, 1)
            assert ready.startswith("220")
            with unverified().wrap_socket(raw_sock, server_hostname="mx.alice.lab") as tls:
                tf = tls.makefile("rb")
                tls.sendall(b"NOOP\r\n")
                replies = smtp_lines(tf, 1)
                tls.sendall(b"MAIL FROM:<alice@alice.lab>\r\n")
                replies += smtp_lines(tf, 1)
                return [ready] + replies

    ready, noop, mail = await asyncio.to_thread(run)
    assert noop.startswith("250 ")  # the first reply after TLS answers our NOOP
    # the HELO did not survive either: the TLS session starts without a greeting
    assert mail.startswith("503")


async def test_received_header_over_tls_says_esmtpsa(lab: Lab) -> None:
    await submit(lab["alice.lab"].ports["submission"], ["ann@alice.lab"], message(),
                 starttls=unverified())
    [stored] = await mailbox(lab["alice.lab"].store, "ann@alice.lab")
    assert "with ESMTPSA" in headers_named(stored, "Received")[0]


@pytest.mark.parametrize("local", ["ann", "postmaster"])
async def test_local_recipients_go_straight_to_the_mailbox(lab: Lab, local: str) -> None:
    await submit(lab["alice.lab"].ports["submission"], [f"{local}@alice.lab"], message())
    owner = "ann@alice.lab" if local == "ann" else lab["alice.lab"].config.postmaster_address
    assert await lab["alice.lab"].store.count_entries(owner) == 1
    assert await lab["alice.lab"].store.count_queue() == 0


async def test_mail_auth_parameter_is_accepted_on_submission_only(lab: Lab) -> None:
    """RFC 4954 5: a server offering AUTH accepts MAIL FROM's AUTH= parameter."""

    def run() -> tuple[tuple[int, bytes], tuple[int, bytes]]:
        with smtplib.SMTP("127.0.0.1", lab["alice.lab"].ports["submission"]) as c:
            c.ehlo("client.example")
            c.login(ALICE, ALICE_PW)
            submission = c.docmd("MAIL", f"FROM:<{ALICE}> AUTH=<> BODY=8BITMIME")
        with smtplib.SMTP("127.0.0.1", lab["bob.lab"].ports["mx"]) as c:
            c.ehlo("client.example")
            mx = c.docmd("MAIL", f"FROM:<{ALICE}> AUTH=<>")
        return submission, mx

    submission, mx = await asyncio.to_thread(run)
    assert submission[0] == 250
    assert mx[0] == 555  # the MX offers no AUTH, so the parameter is unknown there


async def test_failed_auth_delay_grows_per_address_across_connections(lab_factory: Any) -> None:
    base = 0.05
    lab = await lab_factory(limits=Limits(failed_auth_delay=base, command_timeout=60.0))
    port = lab["alice.lab"].ports["submission"]
    ann_pw = lab["alice.lab"].password("ann@alice.lab")

    def auth_once(user: str, password: str) -> tuple[int, float]:
        blob = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
            client.ehlo("client")
            started = time.monotonic()
            code, _ = client.docmd("AUTH", f"PLAIN {blob}")
            return code, time.monotonic() - started

    def run() -> list[tuple[int, float]]:
        # a new connection each time: the client's address is what counts; ann's good login
        # forgets ann's failures only, not alice's
        return [auth_once(ALICE, "wrong"), auth_once(ALICE, "wrong"),
                auth_once("ann@alice.lab", ann_pw), auth_once(ALICE, "wrong")]

    first, second, good, third = await asyncio.to_thread(run)
    assert first[0] == second[0] == third[0] == 535 and good[0] == 235
    assert second[1] >= 2 * base * 0.99
    assert third[1] >= 4 * base * 0.99
