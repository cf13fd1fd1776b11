"""SMTP listener plumbing shared by the submission (step 3) and MX (step 4) listeners.

aiosmtpd does the protocol; this module adds what a real server needs around it: enhanced status
codes on every reply (aiosmtpd's own carry none, RFC 2034) with no control characters echoed
from the client, the session's events on the bus (``mta.smtp.observed``), connection limits
(per listener and per client address), a junk-command limit, RFC 5321 size limits, paths
refused before aiosmtpd misreads them (``mta.smtp.paths``), and a clean shutdown (idle sessions
get ``421``; a transaction in flight finishes first). It binds with ``loop.create_server``, so
port 0 works.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import logging
import re
import ssl
import types
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from aiosmtpd.smtp import MISSING, SMTP, Envelope

from mta import replies
from mta.events import Bus, mask, peer_text
from mta.smtp import library_log, paths, reply_text
from mta.smtp.data import DataBuffer, DataState
from mta.smtp.introspection import ConnectionSetUp
from mta.smtp.observed import Observed
from mta.store import new_queue_id

log = logging.getLogger("labmail.smtp")
library_log.install()

_AUTH_PARAMETER = re.compile(r"\s+AUTH=\S*", re.IGNORECASE)
COMMAND_LIMIT = 512  # RFC 5321 4.5.3.1.4, CRLF included


@dataclass
class ListenerState:
    """What one listener knows about its live sessions."""

    hostname: str
    component: str  # "mx" or "submission"
    step: int
    max_connections: int
    max_per_client: int = 0  # connections from one IP address (0: no limit)
    max_junk: int = 0  # junk commands between accepted messages (0: no limit)
    domain: str = ""  # the first mail domain served, for events
    bus: Bus = field(default_factory=Bus)
    sessions: set[LabSMTP] = field(default_factory=set)
    clients: collections.Counter[str] = field(default_factory=collections.Counter)
    closing: bool = False
    idle: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self.idle.set()


class LabEnvelope(Envelope):
    """aiosmtpd's envelope plus what labmail's handlers decide per recipient (one per mail
    transaction: a new one after DATA and RSET, through ``LabSMTP._create_envelope``)."""

    owners: list[str]  # local mailboxes receiving the message, one per accepted recipient
    remote: list[str]  # submission: recipients in other domains, for the outbound queue
    queue_id: str | None  # given at MAIL FROM; the 250 reply to the data names it
    message_id: str | None  # the Message-ID the stored message carries (handlers, for events)

    def __init__(self) -> None:
        super().__init__()
        self.owners = []
        self.remote = []
        self.queue_id = None
        self.message_id = None


class LabSMTP(Observed, SMTP):
    """aiosmtpd's SMTP protocol with labmail's limits, events and reply conventions."""

    local_part_limit = 64
    # The stream reader's limit (aiosmtpd: 1001). Lines are limited by RFC 5321's own counts
    # (COMMAND_LIMIT, mta.smtp.data); a larger buffer reads a typical message in one piece
    # instead of pausing the transport every 2 KB (issue 16).
    line_length_limit = 8192
    envelope: LabEnvelope | None
    # failed AUTH attempts in this session (submission); not named auth_*: aiosmtpd offers
    # every auth_<NAME> attribute of the protocol as an AUTH mechanism
    failed_logins: int = 0
    _junk = 0  # junk commands since the session began or last had a message accepted
    _client = ""  # the peer's IP address, counted in ``state.clients``

    def __init__(self, handler: Any, state: ListenerState, *, offer_auth: bool = True,
                 implicit_tls: bool = False, set_up: ConnectionSetUp | None = None,
                 **kwargs: Any) -> None:
        if implicit_tls:
            # RFC 8314 3.3: the session is encrypted from the first byte. aiosmtpd counts
            # only STARTTLS as encryption and would never offer AUTH here (aiosmtpd #274,
            # #281): tell it TLS is not required for AUTH, and offer no STARTTLS.
            kwargs |= {"auth_require_tls": False, "tls_context": None}
        # set_up: the listener's SMTP.__init__ result, learnt once (mta.smtp.introspection);
        # learnt before observe(), so nothing of one session's events is shared
        if set_up is not None and set_up.learnt:
            set_up.apply(self)
        else:
            super().__init__(handler, **kwargs)
            if set_up is not None:
                set_up.learn(self)
        self.implicit_tls = implicit_tls
        self.observe(state)  # self.state, and what the events need
        # aiosmtpd keeps these limits on the class, shared by every session; keep ours apart.
        self.command_size_limits = collections.defaultdict(lambda: COMMAND_LIMIT - 2)
        self._greeted = False
        self._held: list[bytes] = []  # the lines of a multi-line reply before its last
        self._plain_reply = False  # greeting and EHLO/HELO replies carry no enhanced code
        self._peer = "?"
        self._offer_auth = offer_auth
        if not offer_auth:
            self._smtp_methods["AUTH"] = self._no_auth
        if state.bus.active:  # decided per connection: no wrapper cost when nobody listens
            self._smtp_methods = _TracedMethods(self._smtp_methods)

    def _create_envelope(self) -> LabEnvelope:
        return LabEnvelope()

    async def _no_auth(self, arg: str | None) -> None:
        await self.push(replies.AUTH_NOT_OFFERED)

    # -- events -------------------------------------------------------------------------------

    def _begin_transaction(self) -> None:
        if self.envelope is not None and self.envelope.queue_id is None:
            self.envelope.queue_id = new_queue_id()

    async def challenge_auth(self, *args: Any, **kwargs: Any) -> Any:
        result = await super().challenge_auth(*args, **kwargs)
        if self.state.bus.active:
            self.publish_line("C", "****")
        return result

    # -- replies ------------------------------------------------------------------------------

    async def push(self, status: str | bytes) -> None:
        text = status.decode("utf-8", "replace") if isinstance(status, bytes) else status
        text = reply_text.safe(text)
        if not self._greeted:
            self._greeted = True
        elif not self._plain_reply:
            text = reply_text.with_enhanced_code(text)
        if self.state.bus.active:
            self.publish_line("S", text)
        # What SMTP.push writes (same encoding, CRLF). Its one addition, a DEBUG line on
        # aiosmtpd's "mail.log", is off in labmail (mta.cli).
        wire = reply_text.wire(text, self.enable_SMTPUTF8)
        if text[3:4] == "-":  # a multi-line reply (EHLO) goes out in one write with its end
            self._held.append(wire)
            return
        if self._held:
            wire = b"".join(self._held) + wire
            self._held.clear()
        self._writer.write(wire)
        await self._writer.drain()
        if self.state.closing and self._idle() and not text.startswith("421"):
            await self._close_421()

    async def smtp_EHLO(self, hostname: str) -> None:
        if await self._over_junk_limit():
            return
        self._plain_reply = True
        try:
            await super().smtp_EHLO(hostname)
        finally:
            self._plain_reply = False
            self.command_size_limits["MAIL"] = COMMAND_LIMIT - 2 + 26 + 10

    async def smtp_MAIL(self, arg: str | None) -> None:
        # RFC 4954 5: a server that offers AUTH accepts MAIL's AUTH= parameter (clients such
        # as Postfix send AUTH=<>); labmail's submission checks the logged-in user instead.
        if arg and self._offer_auth:
            arg = _AUTH_PARAMETER.sub("", arg)
        if await self._refused_path("MAIL", arg, "FROM:"):
            return
        self._begin_transaction()  # the handler's queue id (contract: mta.events)
        await super().smtp_MAIL(arg)

    async def smtp_RCPT(self, arg: str | None) -> None:
        if not await self._refused_path("RCPT", arg, "TO:"):
            await super().smtp_RCPT(arg)

    async def smtp_VRFY(self, arg: str) -> None:
        if not await self._over_junk_limit() and not await self._refused_path("VRFY", arg, ""):
            await super().smtp_VRFY(arg)

    async def smtp_NOOP(self, arg: str) -> None:
        if not await self._over_junk_limit():
            await super().smtp_NOOP(arg)

    async def smtp_RSET(self, arg: str) -> None:
        if not await self._over_junk_limit():
            await super().smtp_RSET(arg)

    async def smtp_HELP(self, arg: str) -> None:
        if not await self._over_junk_limit():
            await super().smtp_HELP(arg)

    async def _over_junk_limit(self) -> bool:
        """Count a junk command (NOOP, RSET, VRFY, HELP, EHLO, HELO); past the limit the
        session gets 421 and is closed, so nobody holds a connection with NOOPs (Postfix's
        smtpd_junk_command_limit)."""
        self._junk += 1
        if not self.state.max_junk or self._junk <= self.state.max_junk:
            return False
        log.warning("%s: closing %s after %d junk commands", self.state.component, self._peer,
                    self._junk - 1)
        await self._close_with(replies.TOO_MANY_JUNK_COMMANDS.format(hostname=self.hostname))
        return True

    async def _refused_path(self, command: str, arg: str | None, keyword: str) -> bool:
        """Refuse a path aiosmtpd would misread (``mta.smtp.paths``): one short log line."""
        path = self._strip_command_keyword(keyword, arg) if arg else None
        reply = paths.refusal(command, path) if path is not None else None
        if reply is None:
            return False
        log.info("%s: %s from %s refused: %s", self.state.component, command, self._peer,
                 reply)
        await self.push(reply)
        return True

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        return paths.parse(arg, self.local_part_limit)

    async def smtp_DATA(self, arg: str) -> None:
        """aiosmtpd's DATA (same replies and hooks), read into one buffer (``mta.smtp.data``):
        a message over a limit is read to the end of data and refused, keeping nothing."""
        if await self.check_helo_needed() or await self.check_auth_needed("DATA"):
            return
        assert self.envelope is not None
        if not self.envelope.rcpt_tos:
            await self.push("503 Error: need RCPT command")
            return
        if arg:
            await self.push("501 Syntax: DATA")
            return
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        buffer = await self._read_data()
        if buffer.state is not DataState.DONE:  # the connection went away
            return
        envelope = self.envelope
        if buffer.refusal is not None:
            await self._end_transaction(envelope, buffer.refusal, buffer.received, b"")
            return
        content = buffer.take()
        if self.state.bus.active:
            self.publish_line("C", f"<message, {len(content)} octets>")
            self.publish_line("C", ".")
        envelope.content = envelope.original_content = content
        status = await self._call_handler_hook("DATA")
        if status is MISSING or status.startswith("2"):
            self._junk = 0  # a message accepted: the client is doing real work
        await self._end_transaction(envelope, "250 OK" if status is MISSING else status,
                                    len(content), content)

    async def _end_transaction(self, envelope: LabEnvelope, reply: str, size: int,
                               content: bytes) -> None:
        """Reply to the data: the reply (and the outcome event) still carry the queue id."""
        self._set_post_data_state()
        self.reply_queue_id = envelope.queue_id
        try:
            if self.state.bus.active:
                self.publish_outcome(envelope, reply_text.with_enhanced_code(reply), size, content)
            await self.push(reply)
        finally:
            self.reply_queue_id = None

    async def _read_data(self) -> DataBuffer:
        """The data up to its end: whole lines up to each "." + CRLF at once (the end of data
        is one, RFC 5321 4.1.1.4), lines split at CRLF only, pieces cut by the stream limit."""
        buffer = DataBuffer(self.data_size_limit)
        reader = self._reader
        while self.transport is not None and buffer.state is not DataState.DONE:
            try:
                if buffer.at_line_start:
                    buffer.lines(await reader.readuntil(b".\r\n"))
                else:
                    buffer.line(await reader.readuntil(b"\r\n"))
            except asyncio.LimitOverrunError as exc:
                piece = await reader.readexactly(exc.consumed)
                cut = piece.rfind(b"\r\n") if buffer.at_line_start else -1
                whole = cut + 2 if cut >= 0 else 0
                if whole:  # whole lines first, none of them "." (the limit cut before it)
                    buffer.lines(piece[:whole])
                if whole < len(piece):
                    buffer.overrun(piece[whole:])
            except asyncio.CancelledError:
                self._writer.close()  # the connection went away mid-message
                raise
        return buffer

    async def smtp_STARTTLS(self, arg: str) -> None:
        # aiosmtpd would start a second handshake inside the first one (RFC 3207 4.2)
        if self._tls_protocol is not None or self.implicit_tls:
            await self.push(replies.TLS_ALREADY_ACTIVE)
            return
        await super().smtp_STARTTLS(arg)

    async def smtp_HELO(self, hostname: str) -> None:
        if await self._over_junk_limit():
            return
        self._plain_reply = True
        try:
            await super().smtp_HELO(hostname)
        finally:
            self._plain_reply = False

    # -- connections --------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        first = self.transport is None
        super().connection_made(transport)
        if first:
            if self.implicit_tls and self.session is not None:
                # what aiosmtpd records after STARTTLS; Received then says ESMTPSA (RFC 3848)
                self.session.ssl = {name: transport.get_extra_info(name) for name in
                                    ("sslcontext", "ssl_object", "peercert", "cipher")}
            self._peer = peer_text(self.session.peer if self.session else None)
            peer = self.session.peer if self.session else None
            self._peer = peer_text(peer)
            self._client = str(peer[0]) if isinstance(peer, tuple) else str(peer)
            self.state.clients[self._client] += 1
            self.state.sessions.add(self)
            self.state.idle.clear()
            if self.state.bus.active:
                self.publish_opened(transport)

    def connection_lost(self, error: Exception | None) -> None:
        if self in self.state.sessions:
            self.state.clients[self._client] -= 1
            if self.state.clients[self._client] <= 0:
                del self.state.clients[self._client]
            if self.state.bus.active:
                self.publish_closed()
        self.state.sessions.discard(self)
        if not self.state.sessions:
            self.state.idle.set()
        super().connection_lost(error)

    async def _handle_client(self) -> None:
        if len(self.state.sessions) > self.state.max_connections:
            self._greeted = True
            log.warning("%s: refusing %s, %d connections", self.state.component, self._peer,
                        len(self.state.sessions))
            await self._close_with(replies.TOO_MANY_CONNECTIONS.format(hostname=self.hostname))
            return
        clients = self.state.clients[self._client]
        if self.state.max_per_client and clients > self.state.max_per_client:
            # slow clients from one address must not keep everyone else out (issue 17 item 9)
            self._greeted = True
            log.warning("%s: refusing %s, %d connections from that address",
                        self.state.component, self._peer, clients)
            await self._close_with(replies.TOO_MANY_FROM_CLIENT.format(hostname=self.hostname))
            return
        if self.state.closing:
            self._greeted = True
            await self._close_421()
            return
        await super()._handle_client()

    def _timeout_cb(self) -> None:
        # RFC 5321 4.5.3.2: say why before closing an idle connection
        if self.transport is not None and not self.transport.is_closing():
            line = replies.TIMEOUT.format(hostname=self.hostname)
            if self.state.bus.active:
                self.publish_line("S", line)
            self.transport.write(line.encode() + b"\r\n")
        super()._timeout_cb()

    async def _close_with(self, reply: str) -> None:
        await self.push(reply)
        if self.transport is not None:
            self.transport.close()

    def _idle(self) -> bool:
        return self.envelope is None or not self.envelope.mail_from

    async def _close_421(self) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        await super().push(replies.SHUTTING_DOWN.format(hostname=self.hostname))
        self.transport.close()

    async def shutdown(self) -> None:
        """Close now if idle; a session inside a transaction closes after its reply."""
        if self._idle():
            try:
                await self._close_421()
            except (ConnectionError, RuntimeError):
                if self.transport is not None:
                    self.transport.close()


# HELP lists a command by the syntax aiosmtpd's decorator put on its method: keep it on these
# overrides (they only add checks in front of aiosmtpd's own).
for _name in ("smtp_RCPT", "smtp_VRFY", "smtp_NOOP", "smtp_RSET", "smtp_HELP"):
    vars(LabSMTP)[_name].__dict__.update(vars(SMTP)[_name].__dict__)


class _TracedMethods(dict[str, Any]):
    """A session's verb -> method table (aiosmtpd's ``_smtp_methods``) whose ``get`` gives
    the method publishing the client's line first; bound when a verb is used, not for every
    verb of every connection."""

    def get(self, name: str, default: Any = None) -> Any:  # type: ignore[override]
        method = super().get(name)
        if method is None:
            return default
        return types.MethodType(_traced_function(name, method.__func__), method.__self__)


@functools.cache  # a handful of verbs and methods: one wrapper each, bound per use
def _traced_function(name: str, function: Callable) -> Callable:
    """``function``, a command method of LabSMTP, publishing the client's line first."""

    # wraps() copies the method's __dict__, so aiosmtpd's HELP still finds __smtp_syntax__.
    # Not a coroutine itself: it hands aiosmtpd the method's own coroutine to await (one
    # coroutine less per command).
    @functools.wraps(function)
    def run(self: LabSMTP, arg: str | None) -> Coroutine[Any, Any, None]:
        if self.state.bus.active:
            if name == "MAIL":  # the transaction's lines carry its queue id from here
                self._begin_transaction()
            if arg is None:
                self.publish_line("C", name)
            else:  # only AUTH's argument can hold a secret (its later lines: challenge_auth)
                text = f"{name} {arg}"
                self.publish_line("C", mask(text) if name == "AUTH" else text)
        return function(self, arg)

    return run


@dataclass
class SMTPListener:
    """A bound SMTP listener: the asyncio server plus what shutdown needs."""

    server: asyncio.Server
    state: ListenerState

    @property
    def port(self) -> int:
        return self.server.sockets[0].getsockname()[1]

    def stop_accepting(self) -> None:
        """Stop accepting; sessions see ``closing`` (an idle one gets 421 after its reply)."""
        self.state.closing = True
        self.server.close()

    async def close(self, grace: float = 10.0) -> None:
        """Stop accepting; 421 idle sessions; give transactions in flight ``grace`` seconds."""
        self.stop_accepting()
        for session in list(self.state.sessions):
            await session.shutdown()
        try:
            await asyncio.wait_for(self.state.idle.wait(), grace)
        except TimeoutError:
            for session in list(self.state.sessions):
                if session.transport is not None:
                    session.transport.close()
        await self.server.wait_closed()


async def start_smtp_listener(handler: Any, host: str, port: int, *, hostname: str,
                              component: str, step: int, max_connections: int,
                              data_size_limit: int, timeout: float, max_per_client: int = 0,
                              max_junk: int = 0,
                              tls_context: ssl.SSLContext | None = None,
                              implicit_tls: bool = False, reuse_port: bool = False,
                              bus: Bus | None = None, domain: str = "",
                              **smtp_kwargs: Any) -> SMTPListener:
    """Bind ``host:port`` (0 for an ephemeral port) and serve SMTP with ``handler``;
    ``implicit_tls``: TLS from the first byte with ``tls_context`` (RFC 8314, port 465),
    otherwise STARTTLS with it; ``reuse_port``: worker processes share the port (SO_REUSEPORT);
    ``bus``: where the sessions publish their events (``domain`` names the server in them)."""
    loop = asyncio.get_running_loop()
    state = ListenerState(hostname, component, step, max_connections, max_per_client, max_junk,
                          domain, bus if bus is not None else Bus())
    set_up = ConnectionSetUp()  # one handler, the same arguments: learnt once, reused

    def factory() -> LabSMTP:
        return LabSMTP(handler, state, set_up=set_up, hostname=hostname, ident="labmail ESMTP",
                       data_size_limit=data_size_limit, enable_SMTPUTF8=True,
                       decode_data=False, tls_context=tls_context, timeout=timeout,
                       implicit_tls=implicit_tls, loop=loop, **smtp_kwargs)

    server = await loop.create_server(factory, host, port, reuse_address=True, backlog=1024,
                                      reuse_port=reuse_port or None,
                                      ssl=tls_context if implicit_tls else None,
                                      ssl_handshake_timeout=timeout if implicit_tls else None)
    return SMTPListener(server, state)
