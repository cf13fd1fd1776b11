"""The POP3 server on an ephemeral 127.0.0.1 port, driven by poplib and raw sockets."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import poplib
import re
import ssl

import pytest

from pop3.failures import FailedLogins, failed_auth_delay
from pop3.memory import MemoryMaildrop
from pop3.protocol import POP3Protocol
from pop3.server import discard_buffered

BOB = "bob@bob.lab"
BOB_PASSWORD = "bob secret"
CAROL = "carol@bob.lab"
CAROL_PASSWORD = "carol-pw"
CAROL_APOP = "tanstaaf"


def connect(running) -> poplib.POP3:
    return poplib.POP3(running.host, running.port, timeout=10)


def login(running, user: str = BOB, password: str = BOB_PASSWORD) -> poplib.POP3:
    client = connect(running)
    client.user(user)
    client.pass_(password)
    return client


def plain(user: str, password: str) -> str:
    return base64.b64encode(f"\0{user}\0{password}".encode()).decode()


async def test_login_stat_list_uidl_top_retr(start_pop3, maildrop: MemoryMaildrop) -> None:
    running = await start_pop3()
    stored = maildrop.messages(BOB)

    def session() -> None:
        client = login(running, "Bob@BOB.lab")
        assert client.stat() == (3, sum(map(len, stored)))
        _, scan, _ = client.list()
        assert scan == [f"{i} {len(raw)}".encode() for i, raw in enumerate(stored, 1)]
        assert client.list(2) == f"+OK 2 {len(stored[1])}".encode()
        _, uids, _ = client.uidl()
        assert [u.split()[0] for u in uids] == [b"1", b"2", b"3"]
        assert len(set(u.split()[1] for u in uids)) == 3
        for number, raw in enumerate(stored, 1):
            _, lines, octets = client.retr(number)
            # poplib removes CRLFs and un-stuffs dots; octets counts what it read (stuffed)
            assert b"\r\n".join(lines) + b"\r\n" == raw
        _, top, _ = client.top(3, 1)
        assert top == [b"Subject: three", b"", b"line 1"]
        assert client.quit().startswith(b"+OK")

    await asyncio.to_thread(session)
    assert maildrop.messages(BOB) == stored


async def test_retr_is_byte_for_byte_on_the_wire(start_pop3, raw_client, maildrop) -> None:
    big = b"Subject: big\r\n\r\n" + b"".join(
        (b"." if i % 3 == 0 else b"") + b"line %d\r\n" % i for i in range(50_000)
    ) + b".\r\n"
    entry = maildrop.deliver(BOB, big)
    running = await start_pop3()
    client = await raw_client(running)
    await client.cmd(f"USER {BOB}")
    assert (await client.cmd(f"PASS {BOB_PASSWORD}")).startswith(b"+OK")
    assert await client.cmd("LIST 4") == f"+OK 4 {entry.size}\r\n".encode()
    assert entry.size == len(big)
    assert await client.cmd("RETR 4") == f"+OK {len(big)} octets\r\n".encode()
    expected = b"Subject: big\r\n\r\n" + b"".join(
        (b".." if i % 3 == 0 else b"") + b"line %d\r\n" % i for i in range(50_000)
    ) + b"..\r\n.\r\n"
    wire = await asyncio.wait_for(client.reader.readexactly(len(expected)), 10)
    assert wire == expected
    assert await client.cmd("NOOP") == b"+OK\r\n"  # nothing more came after the terminator


async def test_dele_then_quit_removes(start_pop3, maildrop: MemoryMaildrop) -> None:
    running = await start_pop3()
    stored = maildrop.messages(BOB)

    def session() -> None:
        client = login(running)
        client.dele(1)
        client.dele(3)
        assert client.stat() == (1, len(stored[1]))
        with pytest.raises(poplib.error_proto, match="already deleted"):
            client.retr(1)
        assert client.quit().startswith(b"+OK")

    await asyncio.to_thread(session)
    assert maildrop.messages(BOB) == [stored[1]]
    await maildrop.wait_unlocked(BOB)


async def test_dele_then_drop_removes_nothing(start_pop3, raw_client, maildrop) -> None:
    running = await start_pop3()
    stored = maildrop.messages(BOB)
    client = await raw_client(running)
    await client.cmd(f"USER {BOB}")
    await client.cmd(f"PASS {BOB_PASSWORD}")
    assert await client.cmd("DELE 1") == b"+OK message 1 deleted\r\n"
    assert maildrop.holder(BOB) is not None
    await client.close()
    await maildrop.wait_unlocked(BOB)
    assert maildrop.messages(BOB) == stored
    assert ("delete", BOB) not in maildrop.calls


async def test_dele_then_rset_restores(start_pop3, maildrop: MemoryMaildrop) -> None:
    running = await start_pop3()
    stored = maildrop.messages(BOB)

    def session() -> None:
        client = login(running)
        client.dele(2)
        assert client.stat()[0] == 2
        client.rset()
        assert client.stat() == (3, sum(map(len, stored)))
        assert client.retr(2)[1][3] == b".starts with a dot"
        client.quit()

    await asyncio.to_thread(session)
    assert maildrop.messages(BOB) == stored


async def test_mail_arriving_during_a_session_is_not_shown(start_pop3, maildrop) -> None:
    running = await start_pop3()
    client = await asyncio.to_thread(login, running)
    maildrop.deliver(BOB, b"Subject: late\r\n\r\nlate\r\n")
    assert (await asyncio.to_thread(client.stat))[0] == 3
    await asyncio.to_thread(client.quit)
    client = await asyncio.to_thread(login, running)
    assert (await asyncio.to_thread(client.stat))[0] == 4
    await asyncio.to_thread(client.quit)


def apop_digest(greeting: bytes, secret: str) -> str:
    match = re.search(rb"<[^>]*>", greeting)
    assert match, greeting
    return hashlib.md5(match.group(0) + secret.encode()).hexdigest()


async def test_apop_enabled_account(start_pop3) -> None:
    running = await start_pop3(apop=True)

    def session() -> None:
        client = connect(running)
        assert client.apop(CAROL, CAROL_APOP).startswith(b"+OK")
        client.quit()
        client = connect(running)
        with pytest.raises(poplib.error_proto, match=r"\[AUTH\]"):
            client.apop(CAROL, "wrong")
        client.quit()
        client = connect(running)  # bob has no APOP secret: refused whatever he sends
        with pytest.raises(poplib.error_proto, match=r"\[AUTH\]"):
            client.apop(BOB, BOB_PASSWORD)
        client.quit()

    await asyncio.to_thread(session)


async def test_apop_disabled_on_the_server(start_pop3, raw_client) -> None:
    running = await start_pop3(apop=False)
    client = await raw_client(running)
    assert b"<" not in client.greeting
    reply = await client.cmd(f"APOP {CAROL} {hashlib.md5(CAROL_APOP.encode()).hexdigest()}")
    assert reply == b"-ERR APOP not available\r\n"


async def test_apop_greeting_timestamps_are_unique(start_pop3, raw_client) -> None:
    running = await start_pop3(apop=True)
    first, second = await raw_client(running), await raw_client(running)
    assert apop_digest(first.greeting, "x") != apop_digest(second.greeting, "x")


async def test_auth_plain_initial_response_and_continuation(start_pop3, raw_client) -> None:
    running = await start_pop3()
    client = await raw_client(running)
    assert (await client.cmd(f"AUTH PLAIN {plain(BOB, BOB_PASSWORD)}")).startswith(b"+OK")
    assert (await client.cmd("QUIT")).startswith(b"+OK")
    client = await raw_client(running)
    assert await client.cmd("AUTH PLAIN") == b"+ \r\n"
    assert await client.cmd("*") == b"-ERR authentication cancelled\r\n"
    assert await client.cmd("AUTH PLAIN") == b"+ \r\n"
    assert (await client.cmd(plain(BOB, "bad"))).startswith(b"-ERR [AUTH]")
    assert await client.cmd("AUTH PLAIN") == b"+ \r\n"
    assert (await client.cmd(plain(BOB.upper(), BOB_PASSWORD))).startswith(b"+OK maildrop")
    assert (await client.cmd("STAT")).startswith(b"+OK 3 ")


async def test_plaintext_refused_without_tls_when_not_allowed(start_pop3, raw_client) -> None:
    running = await start_pop3(allow_plaintext_auth=False)
    client = await raw_client(running)
    assert await client.cmd("CAPA") == b"+OK capability list follows\r\n"
    capa = await client.rest_of_multiline()
    assert b"USER\r\n" not in capa and b"SASL PLAIN\r\n" not in capa and b"STLS\r\n" not in capa
    assert (await client.cmd(f"USER {BOB}")).startswith(b"-ERR plaintext")
    assert (await client.cmd(f"AUTH PLAIN {plain(BOB, BOB_PASSWORD)}")).startswith(b"-ERR")


async def test_stls_then_login(start_pop3, server_tls, client_tls) -> None:
    running = await start_pop3(ssl_context=server_tls, allow_plaintext_auth=False)

    def session() -> None:
        client = connect(running)
        caps = client.capa()
        assert "STLS" in caps and "USER" not in caps
        with pytest.raises(poplib.error_proto, match="plaintext"):
            client.user(BOB)
        client.stls(context=client_tls)
        caps = client.capa()
        assert "STLS" not in caps and "USER" in caps and caps["SASL"] == ["PLAIN"]
        client.user(BOB)
        client.pass_(BOB_PASSWORD)
        assert client.stat()[0] == 3
        assert client.sock.version() is not None  # really TLS
        client.quit()

    await asyncio.to_thread(session)


async def test_commands_pipelined_after_stls_are_discarded(
    start_pop3, raw_client, server_tls, client_tls, caplog, observed
) -> None:
    running = await start_pop3(ssl_context=server_tls, allow_plaintext_auth=False)
    client = await raw_client(running)
    caplog.set_level(logging.INFO, logger="labmail.pop3")
    await client.send(b"STLS\r\nUSER bob@bob.lab\r\n")  # one write
    assert await client.line() == b"+OK begin TLS negotiation\r\n"
    await client.writer.start_tls(client_tls, server_hostname="127.0.0.1")
    discarded = len(b"USER bob@bob.lab\r\n")
    assert any(r.getMessage().endswith(f"discarded {discarded} octets pipelined after STLS")
               for r in caplog.records if r.name == "labmail.pop3")
    # had USER run (in plain text or under TLS), PASS would be accepted now
    assert await client.cmd(f"PASS {BOB_PASSWORD}") == b"-ERR USER first\r\n"
    client_lines = [text for _, direction, text in observed.lines() if direction == "C"]
    assert client_lines == ["STLS", "PASS ****"]
    assert await client.cmd("STLS") == b"-ERR command not permitted when TLS active\r\n"


async def test_the_private_stream_buffer_stls_clears_is_still_there() -> None:
    """discard_buffered leans on asyncio.StreamReader._buffer (no public way exists)."""
    reader = asyncio.StreamReader()
    assert isinstance(getattr(reader, "_buffer", None), bytearray), (
        "asyncio.StreamReader._buffer is gone in this Python: pop3.server.discard_buffered"
        " (RFC 2595 4, nothing pipelined before STLS survives it) must find the new way")
    reader.feed_data(b"USER pipelined\r\n")
    assert discard_buffered(reader) == 16
    reader.feed_data(b"NOOP\r\n")
    reader.feed_eof()
    assert await reader.read() == b"NOOP\r\n"


async def test_second_session_gets_in_use(start_pop3, maildrop: MemoryMaildrop) -> None:
    running = await start_pop3()

    def session() -> None:
        first = login(running)
        second = connect(running)
        second.user(BOB)
        with pytest.raises(poplib.error_proto, match=r"\[IN-USE\]"):
            second.pass_(BOB_PASSWORD)
        assert first.stat()[0] == 3
        first.quit()
        second.user(BOB)  # the first session let go at QUIT
        assert second.pass_(BOB_PASSWORD).startswith(b"+OK")
        second.quit()

    await asyncio.to_thread(session)


async def test_300_octet_line_is_refused_and_the_session_continues(start_pop3, raw_client):
    running = await start_pop3()
    client = await raw_client(running)
    assert await client.cmd("NOOP " + "x" * 293) == b"-ERR line too long\r\n"  # 300 with CRLF
    assert await client.cmd("USER " + "y" * 5000) == b"-ERR line too long\r\n"
    assert await client.cmd("X" * 253) == b"-ERR unknown command\r\n"  # exactly 255: fine
    await client.cmd(f"USER {BOB}")
    assert (await client.cmd(f"PASS {BOB_PASSWORD}")).startswith(b"+OK")


async def test_idle_timeout_closes_without_deleting(start_pop3, raw_client, maildrop) -> None:
    running = await start_pop3(idle_timeout=0.3)
    stored = maildrop.messages(BOB)
    client = await raw_client(running)
    await client.cmd(f"USER {BOB}")
    await client.cmd(f"PASS {BOB_PASSWORD}")
    assert await client.cmd("DELE 1") == b"+OK message 1 deleted\r\n"
    assert await client.eof()  # no reply, just closed (RFC 1939 3)
    await maildrop.wait_unlocked(BOB)
    assert maildrop.messages(BOB) == stored


async def test_connection_limit(start_pop3, raw_client) -> None:
    running = await start_pop3(max_connections=1)
    first = await raw_client(running)
    assert first.greeting.startswith(b"+OK")
    second = await raw_client(running)
    assert second.greeting == b"-ERR [SYS/TEMP] too many connections\r\n"
    assert await second.eof()
    assert (await first.cmd("QUIT")).startswith(b"+OK")
    assert await first.eof()
    third = await raw_client(running)
    assert third.greeting.startswith(b"+OK")


@pytest.mark.parametrize(("failing", "retr"), [
    ("fetch_many", "RETR 1"),  # messages 2 and 3 would come along: one fetch_many
    ("fetch", "RETR 3"),  # the last message: nothing to read ahead, a plain fetch
])
async def test_maildrop_error_is_sys_temp_and_logged(
    start_pop3, raw_client, maildrop, caplog, failing: str, retr: str
) -> None:
    running = await start_pop3()
    client = await raw_client(running)
    await client.cmd(f"USER {BOB}")
    await client.cmd(f"PASS {BOB_PASSWORD}")
    maildrop.fail_on.add(failing)
    with caplog.at_level(logging.ERROR, logger="labmail.pop3"):
        assert await client.cmd(retr) == b"-ERR [SYS/TEMP] internal error\r\n"
    assert any("maildrop failed on Fetch" in r.getMessage() for r in caplog.records)
    assert (await client.cmd("NOOP")) == b"+OK\r\n"
    await client.cmd("DELE 1")
    maildrop.fail_on.add("delete")
    assert await client.cmd("QUIT") == b"-ERR [SYS/TEMP] internal error, no messages removed\r\n"
    assert await client.eof()
    assert len(maildrop.messages(BOB)) == 3


async def test_core_bug_is_internal_error_without_detail(
    start_pop3, raw_client, monkeypatch, caplog
) -> None:
    def broken(self, rest: str):
        raise ValueError("secret detail")

    monkeypatch.setattr(POP3Protocol, "cmd_NOOP", broken)
    running = await start_pop3()
    client = await raw_client(running)
    await client.cmd(f"USER {BOB}")
    await client.cmd(f"PASS {BOB_PASSWORD}")
    with caplog.at_level(logging.ERROR, logger="labmail.pop3"):
        assert await client.cmd("NOOP") == b"-ERR [SYS/TEMP] internal error\r\n"
        assert await client.eof()
    assert any(r.exc_info for r in caplog.records)


async def test_failed_logins_are_refused_and_delay_grows(start_pop3, raw_client) -> None:
    assert [failed_auth_delay(1.0, n) for n in (1, 2, 3, 4)] == [1, 2, 4, 8]
    assert failed_auth_delay(1.0, 100) == 64
    assert failed_auth_delay(0, 5) == 0
    running = await start_pop3(failed_auth_delay=0.001)
    client = await raw_client(running)
    for _ in range(3):
        await client.cmd(f"USER {BOB}")
        assert await client.cmd("PASS wrong") == b"-ERR [AUTH] invalid login or password\r\n"
    await client.cmd(f"USER {BOB}")
    assert (await client.cmd(f"PASS {BOB_PASSWORD}")).startswith(b"+OK")


class RenewSpy(MemoryMaildrop):
    def __init__(self, keep: bool) -> None:
        super().__init__()
        self.keep = keep
        self.renewed = asyncio.Event()

    async def renew_lock(self, owner: str, holder: str, lease_seconds: float) -> bool:
        ok = await super().renew_lock(owner, holder, lease_seconds)
        self.renewed.set()
        return ok and self.keep


@pytest.mark.parametrize("keep", [True, False])
async def test_lock_lease_is_renewed_or_the_session_ends(raw_client, keep: bool) -> None:
    from pop3.server import POP3Options, start_server

    maildrop = RenewSpy(keep)
    maildrop.add_account(BOB, BOB_PASSWORD)
    maildrop.deliver(BOB, b"Subject: x\r\n\r\nx\r\n")
    options = POP3Options("pop.bob.lab", allow_plaintext_auth=True, lock_lease=0.15)
    server = await start_server(maildrop, "127.0.0.1", 0, options)
    try:
        host, port = server.sockets[0].getsockname()[:2]
        running = type("R", (), {"host": host, "port": port})()
        client = await raw_client(running)
        await client.cmd(f"USER {BOB}")
        await client.cmd(f"PASS {BOB_PASSWORD}")
        await client.cmd("DELE 1")
        await asyncio.wait_for(maildrop.renewed.wait(), 10)
        if keep:
            assert maildrop.holder(BOB) is not None
            assert (await client.cmd("QUIT")).endswith(b"(1 messages deleted)\r\n")
            assert maildrop.messages(BOB) == []
        else:  # lost lease: the session closes and removes nothing
            assert await client.eof()
            assert len(maildrop.messages(BOB)) == 1
    finally:
        server.close()
        await server.wait_closed()


async def test_trace_lines(start_pop3, observed) -> None:
    running = await start_pop3()

    def session() -> None:
        client = login(running)
        client.retr(1)
        client.quit()

    await asyncio.to_thread(session)
    lines = observed.lines()
    assert all(re.fullmatch(r"127\.0\.0\.1:\d+", peer) for peer, _, _ in lines)
    shown = [(direction, text) for _, direction, text in lines]
    names = [name for name, _ in observed.calls]
    assert names[0] == "opened" and "retrieved" in names
    assert ("C", "PASS ****") in shown
    assert not any(BOB_PASSWORD in line for _, line in shown)
    at = shown.index(("C", "RETR 1"))
    assert shown[at + 1][0] == "S" and shown[at + 1][1].startswith("+OK ")
    assert re.fullmatch(r"<\d+ octets>", shown[at + 2][1])
    assert not any("Hello Bob" in line for _, line in shown)


async def test_tls_handshake_failure_is_quiet(start_pop3, raw_client, server_tls,
                                              caplog) -> None:
    caplog.set_level(logging.INFO, logger="labmail.pop3")
    running = await start_pop3(ssl_context=server_tls)
    client = await raw_client(running)
    assert await client.cmd("STLS") == b"+OK begin TLS negotiation\r\n"
    untrusting = ssl.create_default_context()
    with pytest.raises(ssl.SSLError):
        await client.writer.start_tls(untrusting, server_hostname="127.0.0.1")

    def pop3_records() -> list[logging.LogRecord]:
        return [r for r in caplog.records if r.name == "labmail.pop3"]

    # bounded: wait until the server's session has seen the failure and ended
    deadline = asyncio.get_running_loop().time() + 10
    while not any("connection lost" in r.getMessage() for r in pop3_records()):
        assert asyncio.get_running_loop().time() < deadline, "the server never ended the session"
        await asyncio.sleep(0.01)
    loud = [r for r in pop3_records() if r.levelno >= logging.WARNING or r.exc_info]
    assert loud == [], [r.getMessage() for r in loud]
    # and the server serves on
    after = await raw_client(running)
    assert after.greeting.startswith(b"+OK")


async def test_pipelined_commands_are_answered_in_order(start_pop3, raw_client, maildrop):
    """RFC 2449 6.6: every command of one write is answered, in the order sent (the server
    answers all the complete commands it has before writing)."""
    running = await start_pop3()
    messages = maildrop.messages(BOB)
    client = await raw_client(running)
    await client.send(
        f"USER {BOB}\r\nPASS {BOB_PASSWORD}\r\nSTAT\r\nRETR 2\r\nNOOP\r\nDELE 1\r\n"
        f"LIST\r\nBOGUS\r\nRETR 1\r\nUIDL 3\r\nRSET\r\nQUIT\r\n".encode())
    assert await client.line() == b"+OK send PASS\r\n"
    assert (await client.line()).startswith(b"+OK maildrop has 3 messages")
    sizes = [len(raw) for raw in messages]
    assert await client.line() == f"+OK 3 {sum(sizes)}\r\n".encode()
    assert await client.line() == f"+OK {sizes[1]} octets\r\n".encode()
    body = b"".join(await client.rest_of_multiline())
    assert body == messages[1].replace(b"\r\n.", b"\r\n..")
    assert await client.line() == b"+OK\r\n"
    assert await client.line() == b"+OK message 1 deleted\r\n"
    assert (await client.line()).startswith(b"+OK 2 messages")
    assert await client.rest_of_multiline() == [f"2 {sizes[1]}\r\n".encode(),
                                                f"3 {sizes[2]}\r\n".encode()]
    assert await client.line() == b"-ERR unknown command\r\n"
    assert await client.line() == b"-ERR message 1 already deleted\r\n"
    assert (await client.line()).startswith(b"+OK 3 ")
    assert (await client.line()).startswith(b"+OK maildrop has 3 messages")
    assert (await client.line()).startswith(b"+OK pop.bob.lab labmail POP3 server signing off")
    assert await client.eof()
    assert len(maildrop.messages(BOB)) == 3  # RSET came before QUIT


async def test_pipelined_input_split_anywhere_gives_the_same_replies(start_pop3, raw_client):
    running = await start_pop3()
    client = await raw_client(running)
    data = f"USER {BOB}\r\nPASS {BOB_PASSWORD}\r\nSTAT\r\n{'N' * 300}\r\nNOOP\r\n".encode()
    for cut in (3, 17, 29, 41, 200, 330):  # inside lines, at CRLFs, inside the long line
        await client.send(data[:cut])
        data = data[cut:]
    await client.send(data)
    assert await client.line() == b"+OK send PASS\r\n"
    assert (await client.line()).startswith(b"+OK maildrop has 3 messages")
    assert (await client.line()).startswith(b"+OK 3 ")
    assert await client.line() == b"-ERR line too long\r\n"
    assert await client.line() == b"+OK\r\n"


async def test_idle_timeout_fires_after_pipelined_commands(start_pop3, raw_client, maildrop):
    """The one timer per session counts from the last command answered, in any state."""
    running = await start_pop3(idle_timeout=0.3)
    stored = maildrop.messages(BOB)
    client = await raw_client(running)
    await client.send(f"USER {BOB}\r\nPASS {BOB_PASSWORD}\r\nDELE 1\r\nDELE 2\r\n".encode())
    for _ in range(4):
        assert (await client.line()).startswith(b"+OK")
    assert await client.eof()  # no reply, just closed (RFC 1939 3)
    await maildrop.wait_unlocked(BOB)
    assert maildrop.messages(BOB) == stored
    idle = await raw_client(running)  # AUTHORIZATION: the same timer
    assert await idle.eof()


def test_failed_logins_count_per_address_and_reset_per_account() -> None:
    logins = FailedLogins(1.0, max_tracked=2)
    assert [logins.failed("10.0.0.1", "carol@bob.lab") for _ in range(2)] == [1.0, 2.0]
    assert logins.failed("10.0.0.1", "Dave@bob.lab") == 4.0
    logins.succeeded("10.0.0.1", "dave@bob.lab")  # only dave's failure is forgotten
    assert logins.count("10.0.0.1") == 2
    logins.failed("10.0.0.2", "x")
    logins.failed("10.0.0.3", "x")  # the oldest address is dropped
    assert logins.count("10.0.0.1") == 0 and logins.count("10.0.0.3") == 1


async def test_a_good_login_does_not_reset_guessing_other_accounts(start_pop3,
                                                                  raw_client) -> None:
    base = 0.05
    running = await start_pop3(failed_auth_delay=base)
    loop = asyncio.get_running_loop()

    async def fail_once() -> float:
        client = await raw_client(running)
        await client.cmd(f"USER {CAROL}")
        started = loop.time()
        assert (await client.cmd("PASS wrong")).startswith(b"-ERR [AUTH]")
        await client.close()
        return loop.time() - started

    await fail_once()
    await fail_once()  # a new connection each time: the address is what counts
    bob = await raw_client(running)
    await bob.cmd(f"USER {BOB}")
    assert (await bob.cmd(f"PASS {BOB_PASSWORD}")).startswith(b"+OK")
    await bob.cmd("QUIT")
    assert await fail_once() >= 4 * base * 0.99  # the third failure from this address
