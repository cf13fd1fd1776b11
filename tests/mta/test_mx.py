"""The MX listener (step 4's far end) against real clients on an ephemeral loopback port."""

from __future__ import annotations

import asyncio
import re
import smtplib
import socket
import ssl

import pytest
import trustme

from mta import replies
from mta.events import Bus
from mta.server import Server
from mta.smtp.data import DataBuffer, DataState
from mta.store import Store

MSG = (b"From: Alice <alice@alice.lab>\r\nTo: Bob <bob@bob.lab>\r\nSubject: hello\r\n"
       b"Message-ID: <1@alice.lab>\r\n\r\nHi Bob,\r\nthis is the body.\r\n")


def port(server: Server) -> int:
    return server.ports["mx"]


def send(server: Server, sender: str, rcpts: list[str], data: bytes) -> dict:
    with smtplib.SMTP("127.0.0.1", port(server), timeout=10) as client:
        return client.sendmail(sender, rcpts, data)


def strip_trace(raw: bytes) -> bytes:
    """The message as sent: drop the Return-Path and Received headers labmail prepended."""
    assert raw.startswith(b"Return-Path: <")
    rest = raw.split(b"\r\n", 1)[1]
    assert rest.startswith(b"Received: ")
    match = re.match(rb"Received: .*?\r\n(?![ \t])", rest, re.S)
    assert match
    return rest[match.end():]


class Raw:
    """A line-level SMTP client, for what smtplib will not send."""

    def __init__(self, server: Server) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port(server)), timeout=10)
        self.file = self.sock.makefile("rb")
        self.greeting = self.reply()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def reply(self) -> str:
        lines = []
        while True:
            line = self.file.readline().decode()
            assert line, "connection closed"
            lines.append(line.rstrip("\r\n"))
            if line[3:4] != "-":
                return "\n".join(lines)

    def cmd(self, line: str | bytes) -> str:
        self.send((line.encode() if isinstance(line, str) else line) + b"\r\n")
        return self.reply()

    def close(self) -> None:
        self.file.close()
        self.sock.close()


async def test_delivers_and_stores_exact_bytes(mx: Server) -> None:
    refused = await asyncio.to_thread(send, mx, "alice@alice.lab", ["bob@bob.lab"], MSG)
    assert refused == {}
    entries = await mx.store.list_entries("bob@bob.lab")
    assert len(entries) == 1
    raw = await mx.store.fetch("bob@bob.lab", entries[0].id)
    assert strip_trace(raw) == MSG
    assert entries[0].size == len(raw)
    assert raw.startswith(b"Return-Path: <alice@alice.lab>\r\nReceived: from ")
    assert b"by mx.bob.lab (labmail) with ESMTP id " + entries[0].queue_id.encode() in raw
    assert b"for <bob@bob.lab>;" in raw


async def test_dot_lines_are_stored_unstuffed(mx: Server) -> None:
    body = b"Subject: dots\r\n\r\n.leading dot\r\n..two dots\r\n.\r\nend\r\n"
    await asyncio.to_thread(send, mx, "alice@alice.lab", ["bob@bob.lab"], body)
    (entry,) = await mx.store.list_entries("bob@bob.lab")
    assert strip_trace(await mx.store.fetch("bob@bob.lab", entry.id)) == body


async def test_two_local_users_get_two_entries_with_distinct_uidls(mx: Server) -> None:
    await asyncio.to_thread(send, mx, "alice@alice.lab", ["bob@bob.lab", "Carol@BOB.lab"], MSG)
    (bob,) = await mx.store.list_entries("bob@bob.lab")
    (carol,) = await mx.store.list_entries("carol@bob.lab")
    assert bob.uid != carol.uid
    assert bob.queue_id == carol.queue_id
    assert await mx.store.fetch("bob@bob.lab", bob.id) == await mx.store.fetch(
        "carol@bob.lab", carol.id)


async def test_uidls_never_reused_after_delete(mx: Server) -> None:
    await asyncio.to_thread(send, mx, "a@alice.lab", ["bob@bob.lab"], MSG)
    (first,) = await mx.store.list_entries("bob@bob.lab")
    await mx.store.delete("bob@bob.lab", [first.id])
    await asyncio.to_thread(send, mx, "a@alice.lab", ["bob@bob.lab"], MSG)
    (second,) = await mx.store.list_entries("bob@bob.lab")
    assert second.id > first.id and second.uid != first.uid


async def test_null_sender_and_postmaster_are_accepted(mx: Server) -> None:
    def run() -> tuple:
        with smtplib.SMTP("127.0.0.1", port(mx)) as c:
            c.ehlo("client.example")
            return (c.docmd("MAIL", "FROM:<>"), c.docmd("RCPT", "TO:<postmaster>"),
                    c.docmd("RCPT", "TO:<PostMaster@bob.lab>"), c.data(MSG))

    mail, rcpt1, rcpt2, data = await asyncio.to_thread(run)
    assert mail[0] == 250 and rcpt1[0] == 250 and rcpt2[0] == 250 and data[0] == 250
    # postmaster is an alias of bob (the config's postmaster): one entry, not two
    (entry,) = await mx.store.list_entries("bob@bob.lab")
    assert entry.sender == ""
    assert (await mx.store.fetch("bob@bob.lab", entry.id)).startswith(b"Return-Path: <>\r\n")


REFUSED_RCPTS = [
    ("nobody@bob.lab", 550, "5.1.1"),
    ("bob@alice.lab", 550, "5.7.1"),
    ("bob@bob.lab.evil.example", 550, "5.7.1"),
    ("bob%alice.lab@bob.lab", 550, "5.7.1"),
    ('"bob@alice.lab"@bob.lab', 550, "5.7.1"),
    ("@bob.lab:bob@alice.lab", 550, "5.7.1"),
    ("alice.lab!bob@bob.lab", 550, "5.7.1"),
    ("x" * 65 + "@bob.lab", 553, "5.1.3"),
    ("bob@" + "a" * 260 + ".lab", 501, "5.1.3"),
    ("bob", 501, "5.1.3"),
]


@pytest.mark.parametrize(("rcpt", "code", "enhanced"), REFUSED_RCPTS)
async def test_refused_recipients_store_nothing(mx: Server, rcpt: str, code: int,
                                                enhanced: str) -> None:
    def run() -> tuple:
        with smtplib.SMTP("127.0.0.1", port(mx)) as c:
            c.ehlo("client.example")
            c.mail("alice@alice.lab")
            reply = c.docmd("RCPT", f"TO:<{rcpt}>")
            data = c.docmd("DATA")
            return reply, data

    (got, text), data = await asyncio.to_thread(run)
    assert got == code, text
    assert text.decode().startswith(enhanced)
    assert data[0] == 503  # no valid recipient, so no DATA
    assert await mx.store.count_entries() == 0


async def test_too_many_recipients(mx: Server) -> None:
    def run() -> tuple:
        with smtplib.SMTP("127.0.0.1", port(mx)) as c:
            c.ehlo("client.example")
            c.mail("alice@alice.lab")
            codes = [c.docmd("RCPT", "TO:<bob@bob.lab>")[0] for _ in range(100)]
            over = c.docmd("RCPT", "TO:<carol@bob.lab>")
            return codes, over, c.data(MSG)

    codes, over, data = await asyncio.to_thread(run)
    assert set(codes) == {250}
    assert over[0] == 452 and over[1].startswith(b"4.5.3")
    assert data[0] == 250
    assert await mx.store.count_entries() == 1  # the same mailbox 100 times: one entry


async def test_size_is_advertised_and_enforced(server_factory) -> None:
    server = await server_factory(limits={"max_message_size": 2000})

    def run() -> tuple:
        with smtplib.SMTP("127.0.0.1", port(server)) as c:
            c.ehlo("client.example")
            size = c.esmtp_features["size"]
            declared = c.docmd("MAIL", "FROM:<a@alice.lab> SIZE=5000")
            c.rset()
            c.mail("a@alice.lab")
            c.rcpt("bob@bob.lab")
            too_big = c.data(b"Subject: big\r\n\r\n" + (b"y" * 70 + b"\r\n") * 40)
            return size, declared, too_big

    size, declared, too_big = await asyncio.to_thread(run)
    assert size == "2000"
    assert declared[0] == 552 and declared[1].startswith(b"5.3.4")
    assert too_big[0] == 552 and too_big[1].startswith(b"5.3.4")
    assert await server.store.count_entries() == 0


async def test_ehlo_features(mx: Server) -> None:
    def run() -> dict:
        with smtplib.SMTP("127.0.0.1", port(mx)) as c:
            c.ehlo("client.example")
            return c.esmtp_features

    features = await asyncio.to_thread(run)
    for keyword in ("size", "8bitmime", "smtputf8", "pipelining", "enhancedstatuscodes"):
        assert keyword in features
    assert "auth" not in features  # the MX takes no logins


async def test_every_reply_carries_an_enhanced_code(mx: Server) -> None:
    def run() -> list[str]:
        c = Raw(mx)
        try:
            replies = [c.cmd("MAIL FROM:<a@alice.lab>"),  # before EHLO
                       c.cmd("NOOP"), c.cmd("HELP"), c.cmd("VRFY bob@bob.lab"),
                       c.cmd("EXPN staff"), c.cmd("BOGUS"), c.cmd("RCPT TO:<bob@bob.lab>")]
            c.cmd("EHLO client.example")
            replies += [c.cmd("DATA"), c.cmd("MAIL FROM:bad address"),
                        c.cmd("MAIL FROM:<a@alice.lab> FOO=BAR"),
                        c.cmd("MAIL FROM:<a@alice.lab>"), c.cmd("MAIL FROM:<a@alice.lab>"),
                        c.cmd("RCPT TO:<bob@bob.lab> NOTIFY=NEVER"),
                        c.cmd("X" * 600), c.cmd("RSET"), c.cmd("AUTH PLAIN AGJvYgBib2ItcHc="),
                        c.cmd("STARTTLS"), c.cmd("QUIT")]
            return replies
        finally:
            c.close()

    for reply in await asyncio.to_thread(run):
        for line in reply.split("\n"):
            assert re.match(r"^[245]\d\d[ -][245]\.\d{1,3}\.\d{1,3}( |$)", line), reply


async def test_command_line_limit(mx: Server) -> None:
    def run() -> tuple[str, str, str]:
        c = Raw(mx)
        try:
            c.cmd("EHLO client.example")
            ok = c.cmd("NOOP " + "x" * 500)  # 505 octets + CRLF
            long = c.cmd("NOOP " + "x" * 600)
            huge = c.cmd("NOOP " + "x" * 5000)
            return ok, long, huge
        finally:
            c.close()

    ok, long, huge = await asyncio.to_thread(run)
    assert ok.startswith("250 ")
    assert long.startswith("500 5.5.2")
    assert huge.startswith("500 5.5.2")


async def test_text_line_over_1000_octets_is_refused(mx: Server) -> None:
    def run() -> tuple:
        with smtplib.SMTP("127.0.0.1", port(mx)) as c:
            c.ehlo("client.example")
            c.mail("a@alice.lab")
            c.rcpt("bob@bob.lab")
            too_long = c.data(b"Subject: long\r\n\r\n" + b"x" * 1001 + b"\r\n")
            c.mail("a@alice.lab")
            c.rcpt("bob@bob.lab")
            just_fits = c.data(b"Subject: long\r\n\r\n" + b"x" * 998 + b"\r\n")
            return too_long, just_fits

    too_long, just_fits = await asyncio.to_thread(run)
    assert too_long[0] == 500 and too_long[1].startswith(b"5.")
    assert just_fits[0] == 250
    assert await mx.store.count_entries() == 1


async def test_end_of_data_only_at_crlf_dot_crlf(mx: Server) -> None:
    """SMTP smuggling: a bare-LF dot line must not end the message (RFC 5321 4.1.1.4)."""

    def run() -> tuple[str, str]:
        c = Raw(mx)
        try:
            c.cmd("EHLO client.example")
            c.cmd("MAIL FROM:<a@alice.lab>")
            c.cmd("RCPT TO:<bob@bob.lab>")
            assert c.cmd("DATA").startswith("354")
            c.send(b"Subject: one\r\n\r\nbody\n.\nMAIL FROM:<evil@alice.lab>\r\n"
                   b"still one\r\r\n.\r\n")
            return c.reply(), c.cmd("QUIT")
        finally:
            c.close()

    data, _ = await asyncio.to_thread(run)
    assert data.startswith("250 2.0.0")
    (entry,) = await mx.store.list_entries("bob@bob.lab")
    raw = await mx.store.fetch("bob@bob.lab", entry.id)
    # bare LF and bare CR are normalised to CRLF (the documented rule); one message, not two
    assert strip_trace(raw) == (b"Subject: one\r\n\r\nbody\r\n.\r\nMAIL FROM:<evil@alice.lab>"
                                b"\r\nstill one\r\n\r\n")
    assert b"\n" not in raw.replace(b"\r\n", b"")


async def test_mail_loop_is_refused(mx: Server) -> None:
    hops = b"".join(b"Received: from hop%d by hop%d; Thu, 1 Jan 2026 00:00:00 +0000\r\n" % (i, i)
                    for i in range(30))
    refused = await asyncio.to_thread(lambda: _data_reply(mx, hops + MSG))
    assert refused[0] == 554 and refused[1].startswith(b"5.4.6")
    accepted = await asyncio.to_thread(lambda: _data_reply(mx, hops[:-60] + MSG))
    assert accepted[0] == 250
    assert await mx.store.count_entries() == 1


def _data_reply(server: Server, data: bytes) -> tuple[int, bytes]:
    with smtplib.SMTP("127.0.0.1", port(server)) as c:
        c.ehlo("client.example")
        c.mail("a@alice.lab")
        c.rcpt("bob@bob.lab")
        return c.data(data)


async def test_reply_names_the_committed_transaction(mx: Server) -> None:
    code, text = await asyncio.to_thread(lambda: _data_reply(mx, MSG))
    assert code == 250
    txn = re.search(rb"queued as (\w+)", text).group(1).decode()
    # a second connection to the database sees it: the 250 came after the commit
    other = await Store.open(mx.config.database)
    try:
        (entry,) = await other.list_entries("bob@bob.lab")
        assert entry.queue_id == txn
    finally:
        await other.close()


async def test_unexpected_error_is_451_without_detail(mx: Server, monkeypatch) -> None:
    async def broken(address: str) -> bool:
        raise RuntimeError("secret internal detail")

    monkeypatch.setattr(mx.store, "has_account", broken)

    def run() -> tuple:
        with smtplib.SMTP("127.0.0.1", port(mx)) as c:
            c.ehlo("client.example")
            c.mail("a@alice.lab")
            return c.docmd("RCPT", "TO:<bob@bob.lab>"), c.noop()

    (code, text), after = await asyncio.to_thread(run)
    assert code == 451 and text.startswith(b"4.3.0")
    assert b"secret" not in text and b"RuntimeError" not in text
    assert after[0] == 250  # the session goes on


async def test_store_failure_is_temporary(mx: Server, monkeypatch) -> None:
    from mta.store import StoreError

    async def failing(*args, **kwargs):
        raise StoreError("disk full")

    monkeypatch.setattr(mx.store, "deliver", failing)
    code, text = await asyncio.to_thread(lambda: _data_reply(mx, MSG))
    assert code == 451 and text.startswith(b"4.3.0") and b"disk" not in text


async def test_catch_all(server_factory) -> None:
    server = await server_factory(catch_all={"bob.lab": "carol@bob.lab"})
    await asyncio.to_thread(send, server, "a@alice.lab", ["anyone@bob.lab"], MSG)
    assert len(await server.store.list_entries("carol@bob.lab")) == 1
    with pytest.raises(smtplib.SMTPRecipientsRefused):
        await asyncio.to_thread(send, server, "a@alice.lab", ["x@alice.lab"], MSG)


async def test_smtputf8_address_needs_the_parameter(mx: Server) -> None:
    await mx.store.set_account("bøb@bob.lab", "pw")

    def run() -> tuple:
        c = Raw(mx)
        try:
            c.cmd("EHLO client.example")
            c.cmd("MAIL FROM:<a@alice.lab>")
            without = c.cmd("RCPT TO:<bøb@bob.lab>".encode())
            c.cmd("RSET")
            c.cmd("MAIL FROM:<a@alice.lab> SMTPUTF8")
            with_ = c.cmd("RCPT TO:<bøb@bob.lab>".encode())
            return without, with_
        finally:
            c.close()

    without, with_ = await asyncio.to_thread(run)
    assert without.startswith("553 5.6.7")
    assert with_.startswith("250 2.1.5")


async def test_starttls_discards_pipelined_commands(server_factory, tmp_path) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("mx.bob.lab")
    cert.private_key_and_cert_chain_pem.write_to_path(tmp_path / "server.pem")
    server = await server_factory(tls={"cert": "server.pem", "key": "server.pem"})
    context = ssl.create_default_context()
    ca.configure_trust(context)

    def run() -> tuple[str, str, str]:
        c = Raw(server)
        try:
            c.cmd("EHLO client.example")
            # STARTTLS and a MAIL in one packet: the MAIL must not survive the handshake
            c.send(b"STARTTLS\r\nMAIL FROM:<smuggled@alice.lab>\r\n")
            ready = c.reply()
            tls = context.wrap_socket(c.sock, server_hostname="mx.bob.lab")
            c.file = tls.makefile("rb")
            c.sock = tls
            ehlo = c.cmd("EHLO client.example")
            rcpt = c.cmd("RCPT TO:<bob@bob.lab>")  # 503: no MAIL survived
            return ready, ehlo, rcpt
        finally:
            c.close()

    ready, ehlo, rcpt = await asyncio.to_thread(run)
    assert ready.startswith("220")
    assert "STARTTLS" not in ehlo
    assert rcpt.startswith("503 5.5.1")


async def test_starttls_received_header_says_esmtps(server_factory, tmp_path) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("mx.bob.lab", "127.0.0.1")
    cert.private_key_and_cert_chain_pem.write_to_path(tmp_path / "s.pem")
    server = await server_factory(tls={"cert": "s.pem", "key": "s.pem"})
    context = ssl.create_default_context()
    ca.configure_trust(context)

    def run() -> None:
        with smtplib.SMTP("127.0.0.1", port(server)) as c:
            c.starttls(context=context)
            c.sendmail("a@alice.lab", ["bob@bob.lab"], MSG)

    await asyncio.to_thread(run)
    (entry,) = await server.store.list_entries("bob@bob.lab")
    assert b"with ESMTPS id" in await server.store.fetch("bob@bob.lab", entry.id)


async def test_connection_limit(server_factory) -> None:
    server = await server_factory(limits={"max_connections": 2})

    def run() -> str:
        first, second = Raw(server), Raw(server)
        try:
            third = socket.create_connection(("127.0.0.1", port(server)), timeout=10)
            reply = third.makefile("rb").readline().decode()
            third.close()
            return reply
        finally:
            first.close()
            second.close()

    reply = await asyncio.to_thread(run)
    assert reply.startswith("421 4.7.0")


async def test_shutdown_says_421_to_idle_sessions(server_factory) -> None:
    server = await server_factory()
    client = await asyncio.to_thread(Raw, server)
    await asyncio.to_thread(client.cmd, "EHLO client.example")
    await server.close(grace=2)
    line = await asyncio.to_thread(client.file.readline)
    client.close()
    assert line.startswith(b"421 4.3.2")


async def test_shutdown_lets_a_transaction_finish(server_factory) -> None:
    server = await server_factory()
    client = await asyncio.to_thread(Raw, server)
    for line in ("EHLO client.example", "MAIL FROM:<a@alice.lab>", "RCPT TO:<bob@bob.lab>"):
        await asyncio.to_thread(client.cmd, line)
    closing = asyncio.create_task(server.close(grace=10))
    await asyncio.sleep(0)  # let close() begin; the session is inside a transaction
    assert server.listeners["mx"].state.closing  # close() is under way: the in-flight case
    assert (await asyncio.to_thread(client.cmd, "DATA")).startswith("354")
    reply = await asyncio.to_thread(client.cmd, MSG + b".")
    after = await asyncio.to_thread(client.reply)
    client.close()
    await closing
    assert reply.startswith("250 2.0.0")
    assert after.startswith("421 4.3.2")
    store = await Store.open(server.config.database)
    try:
        assert await store.count_entries("bob@bob.lab") == 1
    finally:
        await store.close()


async def test_trace_shows_both_directions(mx: Server, trace_lines) -> None:
    await asyncio.to_thread(send, mx, "alice@alice.lab", ["bob@bob.lab"], MSG)
    lines = [(r.direction, r.line) for r in trace_lines if r.listener == "mx"]
    texts = [text for _, text in lines]
    assert any(d == "C" and t.startswith("MAIL FROM:<alice@alice.lab>") for d, t in lines)
    assert ("C", ".") in lines
    assert any(d == "S" and t.startswith("250 2.0.0 OK: queued as") for d, t in lines)
    assert texts.index("DATA") < texts.index(".")
    assert all(r.step == 4 for r in trace_lines if r.listener == "mx")


async def test_idle_timeout_says_421(server_factory) -> None:
    server = await server_factory(limits={"command_timeout": 0.3})

    def run() -> tuple[str, bytes]:
        c = Raw(server)
        try:
            ehlo = c.cmd("EHLO client.example")
            return ehlo, c.file.readline()  # blocks until the server gives up on us
        finally:
            c.close()

    ehlo, line = await asyncio.to_thread(run)
    assert ehlo.startswith("250")
    assert line.startswith(b"421 4.4.2")
    assert await server.store.count_entries() == 0


async def test_mx_offers_no_auth(mx: Server) -> None:
    def run() -> str:
        c = Raw(mx)
        try:
            c.cmd("EHLO client.example")
            return c.cmd("AUTH PLAIN AGJvYgBib2ItcHc=")
        finally:
            c.close()

    assert (await asyncio.to_thread(run)).startswith("502 5.5.1")


async def test_second_starttls_and_failed_handshake(server_factory) -> None:
    server = await server_factory(tls="self-signed")
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE

    def run() -> tuple[str, str, bytes]:
        c = Raw(server)
        try:
            c.cmd("EHLO client.example")
            assert c.cmd("STARTTLS").startswith("220")
            c.sock = context.wrap_socket(c.sock)
            c.file = c.sock.makefile("rb")
            second = c.cmd("STARTTLS")
            noop = c.cmd("NOOP")
        finally:
            c.close()
        bad = Raw(server)  # a client that answers 220 with garbage instead of a handshake
        try:
            bad.cmd("EHLO client.example")
            assert bad.cmd("STARTTLS").startswith("220")
            bad.send(b"this is not TLS\r\n" * 4)
            closed = bad.file.readline()
        finally:
            bad.close()
        return second, noop, closed

    second, noop, closed = await asyncio.to_thread(run)
    assert second.startswith("503 5.5.1") and noop.startswith("250")
    assert closed == b""  # the failed handshake drops the connection, with no reply
    code, _ = await asyncio.to_thread(lambda: _data_reply(server, MSG))
    assert code == 250  # the server serves on


async def test_large_message_is_stored_exactly(server_factory) -> None:
    server = await server_factory(limits={"max_message_size": 8 * 1024 * 1024})
    line = b"a line of a large message, some of them start with a dot\r\n"
    body = b"".join((b"." if i % 7 == 0 else b"") + line for i in range(60_000))
    data = b"Subject: big\r\n\r\n" + body
    assert len(data) > 3 * 1024 * 1024
    await asyncio.to_thread(send, server, "a@alice.lab", ["bob@bob.lab", "carol@bob.lab"], data)
    for owner in ("bob@bob.lab", "carol@bob.lab"):
        (entry,) = await server.store.list_entries(owner)
        raw = await server.store.fetch(owner, entry.id)
        assert strip_trace(raw) == data
        assert entry.size == len(raw)


def data_lines(buffer: DataBuffer, *lines: bytes) -> DataBuffer:
    for line in lines:
        buffer.line(line)
    return buffer


def test_data_buffer_reads_to_the_end_and_unstuffs() -> None:
    buffer = data_lines(DataBuffer(0, 1000), b"a\r\n", b"..b\r\n", b".\r\n")
    assert buffer.state is DataState.DONE and buffer.refusal is None
    assert buffer.take() == b"a\r\n.b\r\n"


def test_data_buffer_refuses_too_much_and_keeps_nothing() -> None:
    buffer = data_lines(DataBuffer(5, 1000), b"abc\r\n", b"def\r\n")
    assert buffer.state is DataState.TOO_MUCH and not buffer.data
    data_lines(buffer, b"x" * 2000 + b"\r\n", b".\r\n")  # the first reason is the one given
    assert buffer.state is DataState.DONE and buffer.refusal == replies.DATA_TOO_MUCH


def test_data_buffer_never_ends_inside_an_over_long_line() -> None:
    buffer = DataBuffer(0, 1000)
    buffer.overrun(b"x" * 70_000)  # the stream limit cut the line: what follows is its tail
    data_lines(buffer, b".\r\n")
    assert buffer.state is DataState.LINE_TOO_LONG
    data_lines(buffer, b".\r\n")
    assert buffer.state is DataState.DONE and buffer.refusal == replies.DATA_LINE_TOO_LONG


async def test_help_is_the_same_with_the_trace_on(server_factory, trace_lines) -> None:
    def run(server: Server) -> tuple[str, str]:
        c = Raw(server)
        try:
            c.cmd("EHLO client.example")
            return c.cmd("HELP"), c.cmd("HELP RCPT")
        finally:
            c.close()

    traced = await asyncio.to_thread(run, await server_factory())
    assert any(r.line == "HELP RCPT" for r in trace_lines)  # the traced methods answered
    plain = await asyncio.to_thread(run, await server_factory(bus=Bus()))  # nobody listens
    assert traced == plain and plain[1].startswith("250 2.0.0 Syntax: RCPT TO:")
