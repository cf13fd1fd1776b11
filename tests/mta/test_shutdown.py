"""Shutdown tells every listener at once (issue 17 item 15)."""

from __future__ import annotations

import asyncio


async def test_idle_pop3_clients_do_not_wait_for_the_smtp_grace_period(server_factory) -> None:
    server = await server_factory(listeners={"pop3": {"host": "127.0.0.1", "port": 0}},
                                  allow_plaintext_auth=True)
    smtp_reader, smtp_writer = await asyncio.open_connection("127.0.0.1", server.ports["mx"])
    await smtp_reader.readline()
    # an SMTP session inside a transaction: its listener waits up to the grace period
    smtp_writer.write(b"HELO client.example\r\nMAIL FROM:<a@alice.lab>\r\n")
    assert (await smtp_reader.readline()).startswith(b"250")
    assert (await smtp_reader.readline()).startswith(b"250")
    pop3_reader, pop3_writer = await asyncio.open_connection("127.0.0.1", server.ports["pop3"])
    assert (await pop3_reader.readline()).startswith(b"+OK")

    closing = asyncio.create_task(server.close(grace=30))
    notice = await asyncio.wait_for(pop3_reader.readline(), 10)
    assert notice.startswith(b"-ERR [SYS/TEMP] server shutting down")
    assert not closing.done()  # the SMTP transaction still has its grace period
    smtp_writer.write(b"RSET\r\n")  # out of the transaction: the listener closes it at once
    assert (await smtp_reader.readline()).startswith(b"250")
    assert (await smtp_reader.readline()).startswith(b"421")
    await asyncio.wait_for(closing, 10)
    for writer in (smtp_writer, pop3_writer):
        writer.close()
