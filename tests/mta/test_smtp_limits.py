"""Limits against slow clients and idlers (issue 17 item 9): connections per client address
and junk commands per session."""

from __future__ import annotations

import asyncio
import smtplib
import socket

from mta import replies
from mta.server import Server


def greetings(server: Server, count: int) -> tuple[list[bytes], list[socket.socket]]:
    socks, answers = [], []
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", server.ports["mx"]), timeout=10)
        socks.append(sock)
        answers.append(sock.makefile("rb").readline())
    return answers, socks


async def test_connections_per_client_address_are_limited(server_factory) -> None:
    mx = await server_factory(limits={"max_connections_per_client": 3})
    answers, socks = await asyncio.to_thread(greetings, mx, 4)
    try:
        assert all(a.startswith(b"220 ") for a in answers[:3])
        expected = replies.TOO_MANY_FROM_CLIENT.format(hostname="mx.bob.lab")
        assert answers[3].decode().rstrip("\r\n") == expected
        assert socks[3].recv(10) == b""  # and closed
    finally:
        for sock in socks:
            sock.close()


async def test_the_default_lets_50_connections_in(mx: Server) -> None:
    answers, socks = await asyncio.to_thread(greetings, mx, 50)
    for sock in socks:
        sock.close()
    assert all(a.startswith(b"220 ") for a in answers)


async def test_junk_commands_are_limited_between_messages(server_factory) -> None:
    mx = await server_factory(limits={"max_junk_commands": 5})

    def run() -> tuple[int, int, int]:
        with smtplib.SMTP("127.0.0.1", mx.ports["mx"], timeout=10) as c:
            c.ehlo("c.example")  # 1
            for _ in range(4):  # 2-5
                assert c.noop()[0] == 250
            c.sendmail("a@alice.lab", ["bob@bob.lab"], b"Subject: x\r\n\r\nhi\r\n")
            for _ in range(3):
                assert c.rset()[0] == 250
            assert c.verify("bob@bob.lab")[0] == 252
            assert c.help()  # 5 since the message
            code, text = c.noop()
            try:
                c.noop()
            except smtplib.SMTPServerDisconnected:
                return code, text.startswith(b"4.7.0"), 1
            return code, False, 0

    code, enhanced, closed = await asyncio.to_thread(run)
    assert (code, enhanced, closed) == (421, True, 1)
    assert await mx.store.count_entries() == 1
