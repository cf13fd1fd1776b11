"""Hostile SMTP input (issue 17 items 4-8): every bad line gets a permanent reply at its
command, no traceback, nothing echoed raw, nothing stored."""

from __future__ import annotations

import asyncio
import logging
import socket

import pytest

from mta import replies
from mta.server import Server
from mta.store import Store, StoreError

GOOD = b"Subject: hi\r\n\r\nhello\r\n"


class Raw:
    """A line-level SMTP client on the MX port, for what smtplib will not send."""

    def __init__(self, server: Server, listener: str = "mx") -> None:
        self.sock = socket.create_connection(("127.0.0.1", server.ports[listener]), timeout=10)
        self.file = self.sock.makefile("rb")
        self.greeting = self.reply()

    def reply(self) -> bytes:
        lines = []
        while True:
            line = self.file.readline()
            assert line, "connection closed"
            lines.append(line)
            if line[3:4] != b"-":
                return b"".join(lines)

    def cmd(self, line: bytes) -> str:
        self.sock.sendall(line + b"\r\n")
        return self.reply().decode("utf-8", "replace").rstrip("\r\n")

    def close(self) -> None:
        self.file.close()
        self.sock.close()


def dialogue(server: Server, *lines: bytes) -> list[str]:
    c = Raw(server)
    try:
        return [c.cmd(line) for line in lines]
    finally:
        c.close()


async def talk(server: Server, *lines: bytes) -> list[str]:
    return await asyncio.to_thread(dialogue, server, *lines)


# -- item 4: an unclosed < ----------------------------------------------------------------------

async def test_unclosed_angle_bracket_is_refused(mx: Server) -> None:
    ehlo, mail, ok_mail, rcpt, rset = await talk(
        mx, b"EHLO c.example", b"MAIL FROM:<a@b.example", b"MAIL FROM:<a@b.example>",
        b"RCPT TO:<bob@bob.lab", b"RSET")
    assert mail == replies.BAD_SENDER_SYNTAX and mail.startswith("501 5.1.7")
    assert ok_mail.startswith("250")
    assert rcpt == replies.BAD_RECIPIENT_SYNTAX and rcpt.startswith("501 5.1.3")
    assert await mx.store.count_entries() == 0


# -- item 5: <@ and bytes that are not UTF-8 -----------------------------------------------------

@pytest.mark.parametrize(("line", "code"), [
    (b"MAIL FROM:<@>", "501 5.1.7"), (b"MAIL FROM:<@", "501 5.1.7"),
    (b"MAIL FROM:<\xff\xfe@b.example>", "553 5.6.7"), (b"VRFY <@", "501 5.1.3"),
    (b"VRFY <\xff@bob.lab>", "553 5.6.7"),
])
async def test_bad_path_is_refused_at_once(mx: Server, line: bytes, code: str) -> None:
    _, reply, after = await talk(mx, b"EHLO c.example", line, b"NOOP")
    assert reply.startswith(code), reply
    assert after.startswith("250")
    assert await mx.store.count_entries() == 0


@pytest.mark.parametrize("line", [b"RCPT TO:<@", b"RCPT TO:<@>",
                                  b"RCPT TO:<b\xffob@bob.lab>"])
async def test_bad_recipient_path_is_refused(mx: Server, line: bytes) -> None:
    _, _, reply, data = await talk(mx, b"EHLO c.example", b"MAIL FROM:<a@alice.lab>", line,
                                   b"DATA")
    assert reply.startswith(("501 5.1.3", "553 5.6.7")), reply
    assert data.startswith("503")  # no recipient was taken
    assert await mx.store.count_entries() == 0


async def test_a_thousand_bad_lines_log_little(server_factory, caplog) -> None:
    mx = await server_factory(limits={"max_junk_commands": 5000})
    caplog.set_level(logging.INFO, logger="labmail")

    def run() -> list[bytes]:
        c = Raw(mx)
        try:
            c.sock.sendall(b"EHLO c.example\r\n" + b"VRFY <@\r\n" * 1000
                           + b"MAIL FROM:<\xff@x.example> SMTPUTF8\r\n" * 10 + b"QUIT\r\n")
            return [c.reply() for _ in range(1 + 1000 + 10 + 1)]
        finally:
            c.close()

    answers = await asyncio.to_thread(run)
    assert all(a.startswith(b"501 5.1.3") for a in answers[1:1001])
    assert all(a.startswith(b"553 5.6.7") for a in answers[1001:1011])
    records = [r for r in caplog.records if r.name.startswith("labmail")]
    assert not any(r.exc_info for r in records)
    assert len(records) <= 1011
    assert sum(len(r.getMessage()) for r in records) < 1011 * 200
    assert await mx.store.count_entries() == 0


# -- item 6: SMTPUTF8 and octets that are not UTF-8 ---------------------------------------------

async def test_smtputf8_address_that_is_not_utf8_is_refused_at_mail_and_rcpt(mx: Server) -> None:
    _, mail, good_mail, rcpt, good_rcpt = await talk(
        mx, b"EHLO c.example", b"MAIL FROM:<j\xf6rg@alice.lab> SMTPUTF8",
        "MAIL FROM:<jörg@alice.lab> SMTPUTF8".encode(), b"RCPT TO:<b\xc3ob@bob.lab>",
        b"RCPT TO:<bob@bob.lab>")
    assert mail == replies.NOT_UTF8_ADDRESS
    assert good_mail.startswith("250")
    assert rcpt == replies.NOT_UTF8_ADDRESS
    assert good_rcpt.startswith("250")


async def test_one_unstorable_job_does_not_fail_the_group_commit(tmp_path, caplog) -> None:
    async with await Store.open(tmp_path / "s.db") as store:
        good = [store.deliver(["bob@bob.lab"], GOOD, f"a{i}@alice.lab") for i in range(20)]
        bad = store.deliver(["bob@bob.lab"], GOOD, "j\udcf6rg@alice.lab")
        results = await asyncio.gather(bad, *good, return_exceptions=True)
        assert isinstance(results[0], StoreError)
        assert not any(isinstance(r, BaseException) for r in results[1:])
        assert await store.count_entries() == 20
        assert store.stats.commits <= 2  # the 20 good ones still share their commit
        assert "retrying one by one" not in caplog.text


# -- item 7: bare LF ----------------------------------------------------------------------------

def send_data(server: Server, body: bytes) -> str:
    c = Raw(server)
    try:
        for line in (b"EHLO c.example", b"MAIL FROM:<a@alice.lab>", b"RCPT TO:<bob@bob.lab>"):
            assert c.cmd(line)[:1] == "2"
        assert c.cmd(b"DATA").startswith("354")
        c.sock.sendall(body + b".\r\n")
        return c.reply().decode()
    finally:
        c.close()


async def test_lf_message_over_1000_octets_is_accepted_and_normalised(mx: Server) -> None:
    lines = [b"Subject: lf", b""] + [b"line %03d " % i + b"x" * 60 for i in range(100)]
    body = b"\n".join(lines) + b"\n.\nnot the end\n\r\n"  # "\n.\n" is not an end of data
    reply = await asyncio.to_thread(send_data, mx, body)
    assert reply.startswith("250"), reply
    (entry,) = await mx.store.list_entries("bob@bob.lab")
    raw = await mx.store.fetch("bob@bob.lab", entry.id)
    assert raw.endswith(b"\r\n".join(lines[2:]) + b"\r\n.\r\nnot the end\r\n\r\n")
    assert raw.count(b"\n") == raw.count(b"\r\n")


@pytest.mark.parametrize(("body", "ok"), [
    (b"Subject: x\r\n\r\n" + b"y" * 998 + b"\r\n", True),
    (b"Subject: x\r\n\r\n." + b"y" * 998 + b"\r\n", True),  # the transparent dot is free
    (b"Subject: x\r\n\r\n" + b"y" * 999 + b"\r\n", False),
    (b"Subject: x\n\n" + b"y" * 998 + b"\n", True),
    (b"Subject: x\n\n" + b"y" * 999 + b"\nz\n", False),
    (b"Subject: x\n\n" + (b"y" * 500 + b"\n") * 300, True),
    (b"Subject: x\n\n" + b"y" * 5000 + b"\n" + b"z\n" * 10, False),
])
async def test_line_limit_is_998_octets_and_crlf(mx: Server, body: bytes, ok: bool) -> None:
    reply = await asyncio.to_thread(send_data, mx, body + (b"" if body.endswith(b"\r\n")
                                                           else b"\r\n"))
    if ok:
        assert reply.startswith("250"), reply
        assert await mx.store.count_entries() == 1
    else:
        assert reply.startswith("500 5.5.2"), reply
        assert await mx.store.count_entries() == 0


# -- item 8: no control bytes in replies ---------------------------------------------------------

async def test_replies_never_echo_control_bytes(mx: Server) -> None:
    def run() -> list[bytes]:
        c = Raw(mx)
        try:
            out = []
            for line in (b"EHLO c.example", b"FOO\x00BAR x", b"VRFY a\x00b\x1b[2J@bob.lab",
                         b"MAIL FROM:<a\x07@alice.lab>", b"MAIL FROM:<a@alice.lab>",
                         b"RCPT TO:<bo\x00b@bob.lab>", b"RCPT TO:<x\ry@bob.lab>"):
                c.sock.sendall(line + b"\r\n")
                out.append(c.reply())
            return out
        finally:
            c.close()

    answers = await asyncio.to_thread(run)
    for answer in answers:
        body = answer.replace(b"\r\n", b"")
        assert not any(b < 32 or b == 127 for b in body), answer
    assert answers[1].startswith(b"500")
    assert await mx.store.count_entries() == 0
