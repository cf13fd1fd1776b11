"""The relay's SMTP client (step 4): mail transactions with next hops.

``RelayClient.transmit`` tries each hop in order until one answers the transaction and returns a
status per recipient (``Attempt``). TLS to the next hop is opportunistic (RFC 7435): STARTTLS
when offered, unverified unless ``relay.verify_tls``; if the handshake fails (and certificates
are not verified) the transaction is retried at once in plain text. Sessions that ended with a
``2xx`` are kept for the next transaction to the same hop (``mta.smtp.connections``).

``TracedSMTP`` is aiosmtplib publishing its session and each protocol line it exchanges on the
bus: the receiving server publishes both directions; this is the sending server's own view of
the same hop, so ``mta serve --trace`` on the sender shows the relay dialogue too (listener
``relay``, step 4). Message data is summarised as ``<message, N octets>``; nothing secret
passes here (the relay does not log in).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import ssl
from dataclasses import dataclass
from typing import Any

import aiosmtplib
from aiosmtplib.protocol import PERIOD_REGEX, normalize_message_line_endings

from mta import dsn
from mta.config import Config
from mta.events import Bus, Event, ProtocolLine, SessionClosed, SessionOpened, new_session_id
from mta.retry_policy import AttemptKind
from mta.routing import Hop
from mta.smtp.connections import SessionCache, close_session
from mta.smtp.fit import Unfit, fit

log = logging.getLogger("labmail.relay")


@dataclass(frozen=True)
class Attempt:
    """What one delivery attempt said about one recipient."""

    reply: str                   # "250 2.0.0 OK", or what went wrong without an SMTP reply
    kind: AttemptKind
    status: str                  # RFC 3463
    smtp_reply: bool = True
    remote: Hop | None = None


def _reply_text(code: int, message: str) -> str:
    return f"{code} {' '.join(message.split())}".strip()


def from_reply(code: int, message: str, hop: Hop | None) -> Attempt:
    text = _reply_text(code, message)
    kind = (AttemptKind.DELIVERED if 200 <= code < 300 else
            AttemptKind.PERMANENT if 500 <= code < 600 else AttemptKind.TEMPORARY)
    return Attempt(text, kind, dsn.status_of(text), True, hop)


def temporary(text: str, hop: Hop | None = None, status: str = "4.4.1") -> Attempt:
    return Attempt(text, AttemptKind.TEMPORARY, status, False, hop)


class _HopFailed(Exception):
    """No transaction with this hop: try the next one (or retry later)."""

    def __init__(self, attempt: Attempt) -> None:
        super().__init__(attempt.reply)
        self.attempt = attempt


class _Stale(Exception):
    """A cached session turned out to be closed before the transaction began."""


class _TLSFailed(_HopFailed):
    pass


class RelayClient:
    """Mail transactions with next hops, over cached sessions; ``close()`` QUITs them."""

    def __init__(self, config: Config, bus: Bus | None = None) -> None:
        self.config = config
        self.bus = bus if bus is not None else Bus()
        self._sessions = SessionCache()
        self._closing_sessions: set[asyncio.Task[None]] = set()
        self._reuse = True

    def stop_reuse(self) -> None:
        """Sessions still in use are closed after their transaction (the relay is stopping)."""
        self._reuse = False

    async def close(self) -> None:
        await self._sessions.close()
        await asyncio.gather(*self._closing_sessions, return_exceptions=True)

    async def transmit(self, hops: list[Hop], sender: str, recipients: list[str],
                       raw: bytes, ids: tuple[str | None, str | None] = (None, None), *,
                       smtputf8: bool = False) -> dict[str, Attempt]:
        """One transaction with the first hop that answers; a status per recipient.
        ``ids``: the queue id and Message-ID the transaction's protocol lines carry;
        ``smtputf8``: the message needs SMTPUTF8 (carried from acceptance through the queue)."""
        failure = temporary("no next hop")
        message = _Message(sender, recipients, raw, smtputf8, ids)
        for hop in hops:
            try:
                return await self._session(hop, message, tls=True)
            except _TLSFailed as exc:
                failure = exc.attempt
                if self.config.relay.verify_tls:
                    continue
                log.info("relay: TLS with %s failed (%s); retrying without TLS", hop,
                         exc.attempt.reply)
                try:
                    return await self._session(hop, message, tls=False)
                except _HopFailed as again:
                    failure = again.attempt
            except _HopFailed as exc:
                failure = exc.attempt
            log.info("relay: %s: %s", hop, failure.reply)
        return dict.fromkeys(recipients, failure)

    @functools.cached_property
    def _tls_context(self) -> ssl.SSLContext:
        # built once: create_default_context reads the CA store from disk
        context = ssl.create_default_context(cafile=self.config.relay.ca_file or None)
        if not self.config.relay.verify_tls:  # RFC 7435: encrypt, do not authenticate
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    async def _session(self, hop: Hop, message: _Message, *, tls: bool) -> dict[str, Attempt]:
        key = (hop.host, hop.port, hop.name, tls)
        cached = self._sessions.take(key)
        if cached is not None:
            try:
                results, reusable = await self._transaction(cached, hop, message, fresh=False)
            except _Stale:
                await close_session(cached)  # closed by the server meanwhile: start afresh
            else:
                self._done_with(key, cached, reusable)
                return results
        client = await self._open(hop, tls)
        try:
            results, reusable = await self._transaction(client, hop, message, fresh=True)
        except BaseException:
            await close_session(client)
            raise
        self._done_with(key, client, reusable)
        return results

    def _done_with(self, key: tuple[str, int, str, bool], client: TracedSMTP,
                   reusable: bool) -> None:
        if reusable and self._reuse:
            self._sessions.give(key, client)
        else:
            task = asyncio.get_running_loop().create_task(close_session(client))
            self._closing_sessions.add(task)
            task.add_done_callback(self._closing_sessions.discard)

    async def _open(self, hop: Hop, tls: bool) -> TracedSMTP:
        """A new session to ``hop``, after EHLO (and STARTTLS when ``tls`` and offered)."""
        relay = self.config.relay
        client = TracedSMTP(hostname=hop.host, port=hop.port,
                            local_hostname=self.config.hostname, start_tls=False,
                            timeout=relay.command_timeout, validate_certs=relay.verify_tls,
                            bus=self.bus, server=self.config.hostname,
                            domain=self.config.domains[0])
        try:
            try:
                await client.connect(timeout=relay.connect_timeout)
                await self._ehlo(client)
            except aiosmtplib.SMTPResponseException as exc:
                raise _HopFailed(from_reply(exc.code, exc.message, hop)) from None
            except (aiosmtplib.SMTPException, OSError) as exc:
                raise _HopFailed(temporary(f"connect to {hop}: {_error(exc)}", hop)) from None
            if tls and client.supports_extension("starttls"):
                try:
                    await client.starttls(server_hostname=hop.name,
                                          tls_context=self._tls_context)
                    await self._ehlo(client)
                except aiosmtplib.SMTPResponseException as exc:
                    raise _TLSFailed(from_reply(exc.code, exc.message, hop)) from None
                except (aiosmtplib.SMTPException, OSError, ssl.SSLError) as exc:
                    raise _TLSFailed(temporary(f"TLS with {hop}: {_error(exc)}", hop,
                                               "4.7.5")) from None
            elif tls and relay.verify_tls:
                raise _TLSFailed(temporary(f"{hop} does not offer STARTTLS", hop, "4.7.5"))
        except BaseException:
            await close_session(client)
            raise
        return client

    @staticmethod
    async def _ehlo(client: aiosmtplib.SMTP) -> None:
        try:
            await client.ehlo()
        except aiosmtplib.SMTPHeloError:
            await client.helo()

    async def _transaction(self, client: TracedSMTP, hop: Hop, message: _Message, *,
                           fresh: bool) -> tuple[dict[str, Attempt], bool]:
        """One mail transaction; the results and whether the session can carry another
        (only after a 2xx: a server that refused something gets a fresh start next time)."""
        client.transaction = message.ids
        try:
            return await self._transaction_lines(client, hop, message, fresh=fresh)
        finally:
            client.transaction = (None, None)

    async def _transaction_lines(self, client: TracedSMTP, hop: Hop, message: _Message, *,
                                 fresh: bool) -> tuple[dict[str, Attempt], bool]:
        sender, recipients = message.sender, message.recipients
        fitted = fit(client.supports_extension, sender, recipients, message.raw,
                     smtputf8=message.smtputf8)
        if isinstance(fitted, Unfit):  # RFC 6531 3.4, RFC 6152 3: returned, not retried
            failed = Attempt(f"{hop} {fitted.reason}", AttemptKind.PERMANENT, fitted.status,
                             False, hop)
            return dict.fromkeys(recipients, failed), True
        raw, options, encoding = fitted.raw, fitted.options, fitted.encoding
        results: dict[str, Attempt] = {}
        try:
            refused = await _mail(client, hop, sender, options, encoding, fresh=fresh)
            if refused is not None:
                return dict.fromkeys(recipients, refused), False
            accepted = await _rcpt_each(client, hop, recipients, encoding, results)
            if not accepted:
                await client.rset()
                return results, False
            answer = await _data(client, hop, raw)
        except (aiosmtplib.SMTPException, OSError) as exc:
            # Lost mid-transaction: whoever has no answer yet is retried (at-least-once).
            lost = temporary(f"{hop}: connection lost: {_error(exc)}", hop)
            for recipient in recipients:
                results.setdefault(recipient, lost)
            return results, False
        results.update(dict.fromkeys(accepted, answer))
        reusable = answer.kind == AttemptKind.DELIVERED and not results.keys() - set(accepted)
        return results, reusable


@dataclass(frozen=True)
class _Message:
    """One queued message's transaction: envelope, data, and whether it needs SMTPUTF8."""

    sender: str
    recipients: list[str]
    raw: bytes
    smtputf8: bool
    ids: tuple[str | None, str | None]  # queue id and Message-ID, for the protocol lines


async def _mail(client: aiosmtplib.SMTP, hop: Hop, sender: str, options: list[str],
                encoding: str, *, fresh: bool) -> Attempt | None:
    """MAIL FROM; the refusal, or None when accepted. A reused session the server has closed
    meanwhile (421 or gone) raises ``_Stale``: the transaction moves to a fresh session."""
    try:
        await client.mail(sender, options=options, encoding=encoding)
    except aiosmtplib.SMTPSenderRefused as exc:
        if not fresh and exc.code == 421:
            raise _Stale() from None
        return from_reply(exc.code, exc.message, hop)
    except (aiosmtplib.SMTPServerDisconnected, OSError):
        if not fresh:
            raise _Stale() from None
        raise
    return None


async def _rcpt_each(client: aiosmtplib.SMTP, hop: Hop, recipients: list[str], encoding: str,
                     results: dict[str, Attempt]) -> list[str]:
    """RCPT TO for each recipient; refusals go into ``results``; the accepted ones."""
    accepted = []
    for recipient in recipients:
        try:
            await client.rcpt(recipient, encoding=encoding)
            accepted.append(recipient)
        except aiosmtplib.SMTPRecipientRefused as exc:
            results[recipient] = from_reply(exc.code, exc.message, hop)
    return accepted


async def _data(client: aiosmtplib.SMTP, hop: Hop, raw: bytes) -> Attempt:
    """DATA and the message; the answer for every accepted recipient."""
    try:
        response = await client.data(raw)
    except aiosmtplib.SMTPDataError as exc:
        return from_reply(exc.code, exc.message, hop)
    return from_reply(response.code, response.message, hop)


def _error(exc: BaseException) -> str:
    text = str(exc) or exc.__class__.__name__
    return " ".join(text.split())[:300]


class TracedSMTP(aiosmtplib.SMTP):
    """``aiosmtplib.SMTP`` publishing its session and each protocol line it exchanges.

    The receiving server publishes both directions too; this is the sending server's own view
    of the same hop (listener ``relay``, step 4). Lines of a transaction carry the queue id and
    Message-ID the relay sets on ``transaction`` (the contract in ``mta.events``).
    """

    def __init__(self, *args: Any, bus: Bus, server: str, domain: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.peer = f"{self.hostname}:{self.port}"
        self.bus = bus
        self._ids = {"server": server, "domain": domain, "step": 4,
                     "session": new_session_id()}
        self.transaction: tuple[str | None, str | None] = (None, None)  # queue id, Message-ID
        self._opened = False

    def _publish(self, cls: type[Event], **fields: Any) -> None:
        self.bus.emit(cls, {**self._ids, "listener": "relay", "peer": self.peer, **fields})

    def _line(self, direction: str, text: str) -> None:
        queue_id, message_id = self.transaction
        self._publish(ProtocolLine, queue_id=queue_id, message_id=message_id,
                      direction=direction, line=text)

    def _server(self, response: aiosmtplib.SMTPResponse) -> aiosmtplib.SMTPResponse:
        if self.bus.active:
            lines = response.message.split("\n")
            for i, text in enumerate(lines):
                sep = " " if i == len(lines) - 1 else "-"
                self._line("S", f"{response.code}{sep}{text}".rstrip())
        return response

    async def connect(self, *args: Any, **kwargs: Any) -> aiosmtplib.SMTPResponse:
        response = await super().connect(*args, **kwargs)
        self._opened = True
        if self.bus.active:
            self._publish(SessionOpened, tls=self.use_tls)
        return self._server(response)

    def close(self) -> None:
        super().close()
        if self._opened:
            self._opened = False
            if self.bus.active:
                self._publish(SessionClosed, tls=self.use_tls or self._tls_on)

    @property
    def _tls_on(self) -> bool:
        return self.transport is not None and self.get_transport_info("sslcontext") is not None

    async def execute_command(self, *args: bytes, **kwargs: Any) -> aiosmtplib.SMTPResponse:
        if self.bus.active:
            self._line("C", b" ".join(args).decode("utf-8", "replace"))
        return self._server(await super().execute_command(*args, **kwargs))

    async def starttls(self, *args: Any, **kwargs: Any) -> aiosmtplib.SMTPResponse:
        if self.bus.active:
            self._line("C", "STARTTLS")
        return self._server(await super().starttls(*args, **kwargs))

    async def data(self, message: str | bytes, /, **kwargs: Any) -> aiosmtplib.SMTPResponse:
        """DATA, its ``354``, the message (summarised) and the reply to it."""
        # aiosmtplib's own data() reads the 354 inside its protocol, out of sight; the same two
        # steps over public calls show it. One transaction at a time uses a session, so nothing
        # comes between DATA and the message (RFC 5321 4.1.1.4; dot-stuffing as aiosmtplib's).
        if isinstance(message, str):
            message = message.encode("ascii")
        start = await self.execute_command(b"DATA")
        if start.code != 354:
            raise aiosmtplib.SMTPDataError(start.code, start.message)
        if self.bus.active:
            self._line("C", f"<message, {len(message)} octets>")
            self._line("C", ".")
        if self.protocol is None:
            raise aiosmtplib.SMTPServerDisconnected("Connection lost")
        payload = PERIOD_REGEX.sub(b"..", normalize_message_line_endings(message)) + b".\r\n"
        self.protocol.write(payload)
        try:
            response = self._server(await self.protocol.read_response(timeout=self.timeout))
        except (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPTimeoutError):
            self.close()
            raise
        if response.code != 250:
            raise aiosmtplib.SMTPDataError(response.code, response.message)
        return response
