"""aiosmtpd's per-connection introspection, learnt once per listener (mta.smtp.introspection).

The set-up a later connection gets must be the one ``SMTP.__init__`` would have built: the same
attributes, the protocol's methods bound to the new connection, and every handler hook still
called, AUTH mechanisms still advertised and usable, EHLO hook versions still honoured.
"""

from __future__ import annotations

import asyncio
import base64
import smtplib
import types
from typing import Any

import pytest
from aiosmtpd.smtp import AuthResult, LoginPassword

from mta.events import Bus, ProtocolLine, SessionOpened
from mta.smtp.introspection import ConnectionSetUp
from mta.smtp.server import LabSMTP, ListenerState, start_smtp_listener

MESSAGE = b"From: a@alice.lab\r\nTo: b@bob.lab\r\nSubject: hooks\r\n\r\nbody\r\n"
PER_CONNECTION_TYPES = (asyncio.StreamReader, asyncio.Future, types.MethodType)


class RecordingHandler:
    """Every hook aiosmtpd calls for the commands below, recorded with the protocol object."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        self.calls.append(("EHLO", server))
        session.host_name = hostname  # the new-style hook owns this (aiosmtpd leaves it)
        return [*responses[:-1], "250-XRECORDED", responses[-1]]

    async def handle_NOOP(self, server, session, envelope, arg):
        self.calls.append(("NOOP", server))
        return "250 OK noop hook"

    async def handle_VRFY(self, server, session, envelope, address):
        self.calls.append(("VRFY", server))
        return "252 vrfy hook"

    async def handle_MAIL(self, server, session, envelope, address, options):
        self.calls.append(("MAIL", server))
        envelope.mail_from = address
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, options):
        self.calls.append(("RCPT", server))
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.calls.append(("DATA", server))
        return "250 OK data hook"

    async def handle_RSET(self, server, session, envelope):
        self.calls.append(("RSET", server))
        return "250 OK"

    async def handle_QUIT(self, server, session, envelope):
        self.calls.append(("QUIT", server))
        return "221 bye from the hook"

    async def auth_XTEST(self, server, args):  # a handler's own AUTH mechanism
        self.calls.append(("AUTH XTEST", server))
        return AuthResult(success=True, handled=False, auth_data="xtest")


class OldStyleEhlo:
    """The 4-argument handle_EHLO aiosmtpd still honours (it returns the whole reply)."""

    def __init__(self) -> None:
        self.calls = 0

    async def handle_EHLO(self, server, session, envelope, hostname):
        self.calls += 1
        session.host_name = hostname
        return "250 old style hook"


def accept_bob(server, session, envelope, mechanism, auth_data) -> AuthResult:
    ok = isinstance(auth_data, LoginPassword) and auth_data.login == b"bob"
    return AuthResult(success=ok and auth_data.password == b"pw", handled=False)


def normalised(value: Any, owner: object) -> Any:
    """A value with the connection it belongs to taken out, for comparing two connections."""
    if isinstance(value, types.MethodType):
        return ("method", value.__func__, value.__self__ is owner or value.__self__)
    if isinstance(value, dict):
        return {key: normalised(item, owner) for key, item in value.items()}
    if isinstance(value, tuple) and hasattr(value, "_fields"):
        return tuple(normalised(item, owner) for item in value)
    if isinstance(value, PER_CONNECTION_TYPES) or type(value).__name__ == "ReferenceType":
        return ("per connection", type(value))
    return value


@pytest.mark.parametrize("kwargs", [
    {"offer_auth": False, "auth_exclude_mechanism": ["LOGIN", "PLAIN"]},  # the MX
    {"auth_require_tls": False, "authenticator": accept_bob},  # like submission
    {"command_call_limit": {"NOOP": 3, "*": 50}},
])
async def test_later_connections_get_what_smtp_init_builds(kwargs: dict[str, Any]) -> None:
    loop = asyncio.get_running_loop()
    handler = RecordingHandler()
    state = ListenerState("mx.bob.lab", "mx", 4, 10)
    common = {"hostname": "mx.bob.lab", "ident": "labmail ESMTP", "loop": loop, **kwargs}
    set_up = ConnectionSetUp()
    first = LabSMTP(handler, state, set_up=set_up, **common)
    assert set_up.learnt
    later = LabSMTP(handler, state, set_up=set_up, **common)
    built = LabSMTP(handler, state, **common)  # SMTP.__init__ in full
    assert vars(later).keys() == vars(built).keys()
    for name in vars(built):
        assert normalised(vars(later)[name], later) == normalised(vars(built)[name], built), name
    for name, value in vars(later).items():  # nothing per connection is shared with the first
        if isinstance(value, (dict, *PER_CONNECTION_TYPES)):
            assert value is not vars(first)[name], name
    assert later._stream_reader is not first._stream_reader
    assert all(m.__self__ is later for m in later._smtp_methods.values()
               if isinstance(m, types.MethodType) and m.__self__ is not handler)
    assert later._ehlo_hook_ver == "new"


def session(port: int, login: tuple[str, str, str] | None = None) -> tuple[str, list[str]]:
    """EHLO, NOOP, VRFY, (AUTH), MAIL, RCPT, DATA, RSET, QUIT; the EHLO reply and replies."""
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        code, ehlo = client.ehlo("client.alice.lab")
        replies = [client.noop()[1].decode(), client.verify("b@bob.lab")[1].decode()]
        if login:  # one mechanism, named: smtplib's login() would try the next on failure
            mechanism, client.user, client.password = login
            client.auth(mechanism, getattr(client, f"auth_{mechanism.lower()}"))
        client.sendmail("a@alice.lab", ["b@bob.lab"], MESSAGE)
        replies.append(client.rset()[1].decode())
    return ehlo.decode(), replies


def help_reply(port: int, verb: str) -> tuple[int, bytes]:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.ehlo("client.alice.lab")
        return client.docmd("HELP", verb)


async def serve(handler: Any, **kwargs: Any) -> Any:
    return await start_smtp_listener(handler, "127.0.0.1", 0, hostname="mx.bob.lab",
                                     component="mx", step=4, max_connections=10,
                                     data_size_limit=1 << 20, timeout=10, **kwargs)


async def test_every_hook_is_called_on_every_connection() -> None:
    handler = RecordingHandler()
    listener = await serve(handler, offer_auth=False)
    try:
        for _ in range(3):
            handler.calls.clear()
            ehlo, replies = await asyncio.to_thread(session, listener.port)
            assert "XRECORDED" in ehlo
            assert replies[0].endswith("noop hook") and replies[1].endswith("vrfy hook")
            names = [name for name, _ in handler.calls]
            assert names == ["EHLO", "NOOP", "VRFY", "MAIL", "RCPT", "DATA", "RSET", "QUIT"]
            servers = {id(server) for _, server in handler.calls}
            assert len(servers) == 1  # every hook got this connection's own protocol object
    finally:
        await listener.close(grace=1)


async def test_hooks_and_events_with_a_subscriber_on_every_connection() -> None:
    """With the bus watched, each connection wraps its own commands and has its own id."""
    handler = RecordingHandler()
    bus = Bus()
    listener = await serve(handler, offer_auth=False, bus=bus)
    try:
        with bus.subscribe() as events:
            for _ in range(3):
                handler.calls.clear()
                await asyncio.to_thread(session, listener.port)
                assert [name for name, _ in handler.calls] == [
                    "EHLO", "NOOP", "VRFY", "MAIL", "RCPT", "DATA", "RSET", "QUIT"]
            seen = events.drain()
        opened = [e.session for e in seen if isinstance(e, SessionOpened)]
        assert len(set(opened)) == 3

        plain = await serve(RecordingHandler(), offer_auth=False)  # nobody watching
        try:  # the wrapped verbs keep their syntax for HELP
            for verb in ("", "MAIL", "RCPT"):
                assert (await asyncio.to_thread(help_reply, listener.port, verb)
                        == await asyncio.to_thread(help_reply, plain.port, verb))
        finally:
            await plain.close(grace=1)
        client_lines = [e for e in seen if isinstance(e, ProtocolLine) and e.direction == "C"]
        assert [e.line.split()[0] for e in client_lines].count("MAIL") == 3
        assert {e.session for e in client_lines} == set(opened)
    finally:
        await listener.close(grace=1)


async def test_auth_mechanisms_are_advertised_and_work_on_later_connections() -> None:
    handler = RecordingHandler()
    listener = await serve(handler, auth_require_tls=False, authenticator=accept_bob)
    try:
        for mechanism in ("PLAIN", "LOGIN", "PLAIN"):
            ehlo, _ = await asyncio.to_thread(session, listener.port, (mechanism, "bob", "pw"))
            assert "AUTH LOGIN PLAIN XTEST" in ehlo
            with pytest.raises(smtplib.SMTPAuthenticationError):
                await asyncio.to_thread(session, listener.port, (mechanism, "bob", "wrong"))

        def xtest() -> tuple[int, bytes]:
            with smtplib.SMTP("127.0.0.1", listener.port, timeout=10) as client:
                client.ehlo("client.alice.lab")
                return client.docmd("AUTH", "XTEST " + base64.b64encode(b"x").decode())
        handler.calls.clear()
        assert (await asyncio.to_thread(xtest))[0] == 235
        assert [name for name, _ in handler.calls] == ["EHLO", "AUTH XTEST", "QUIT"]
    finally:
        await listener.close(grace=1)


async def test_mx_still_refuses_auth_on_later_connections() -> None:
    listener = await serve(RecordingHandler(), offer_auth=False,
                           auth_exclude_mechanism=["LOGIN", "PLAIN"])
    try:
        for _ in range(3):
            def attempt() -> tuple[str, int]:
                with smtplib.SMTP("127.0.0.1", listener.port, timeout=10) as client:
                    ehlo = client.ehlo("client.alice.lab")[1].decode()
                    return ehlo, client.docmd("AUTH", "PLAIN AGJvYgBwdw==")[0]
            ehlo, code = await asyncio.to_thread(attempt)
            assert "AUTH LOGIN" not in ehlo and "AUTH PLAIN" not in ehlo
            assert code == 502
    finally:
        await listener.close(grace=1)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # aiosmtpd's, for the old hook
async def test_old_style_ehlo_hook_is_still_honoured_on_later_connections() -> None:
    handler = OldStyleEhlo()
    listener = await serve(handler, offer_auth=False)
    try:
        for count in range(1, 4):
            def ehlo() -> tuple[int, bytes]:
                with smtplib.SMTP("127.0.0.1", listener.port, timeout=10) as client:
                    return client.ehlo("client.alice.lab")
            code, text = await asyncio.to_thread(ehlo)
            # aiosmtpd's own lines first, then the old hook's one line (its old behaviour)
            assert code == 250 and text.startswith(b"mx.bob.lab\n")
            assert text.endswith(b"\nold style hook")
            assert handler.calls == count
    finally:
        await listener.close(grace=1)
