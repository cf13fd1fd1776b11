"""``start(config)``: one domain's mail server in one process (steps 3, 4 and 5).

Opens the store (migrating it), writes the config's accounts into it (hashed), and starts every
listener the config names: MX (step 4's far end), submission (step 3) and POP3 (step 5). The
CLI, the tests, ``mta.lab``, the demo and the pytest plugin all start servers through here.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Protocol

from mta import tls, trace
from mta.clock import Clock
from mta.config import IMPLICIT_TLS, Config, ConfigError, HTTPListener
from mta.events import Bus, MessageStored
from mta.memory import return_large_blocks_to_os
from mta.pop3_events import POP3Events
from mta.smtp import mx, submission
from mta.smtp.faults import FaultInjector
from mta.smtp.server import start_smtp_listener
from mta.store import Delivered, Store
from pop3.server import POP3Listener, POP3Options
from pop3.server import start_server as start_pop3

if TYPE_CHECKING:  # imported where used: an MX-only process needs neither (issue 16, memory)
    from mta.http import HttpListener
    from mta.relay import RelayWorker

log = logging.getLogger("labmail.server")


class Listener(Protocol):
    """What the server needs of a bound listener, SMTP or POP3."""

    @property
    def port(self) -> int: ...

    def stop_accepting(self) -> None:
        """Stop accepting and tell the sessions (at once, before anyone waits)."""

    async def close(self, grace: float = 10.0) -> None:
        """Stop accepting; sessions get ``grace`` seconds to finish."""


@dataclass
class POP3Listening:
    """``pop3.server``'s listener seen through ``Listener`` (pop3 stays free of mta)."""

    listener: POP3Listener

    @property
    def port(self) -> int:
        return self.listener.sockets[0].getsockname()[1]

    def stop_accepting(self) -> None:
        self.listener.close()  # ends the sessions: each releases its maildrop lock

    async def close(self, grace: float = 10.0) -> None:
        self.stop_accepting()
        await self.listener.wait_closed(grace)


@dataclass
class Server:
    """A running server: its store, bound listeners and ports; ``await close()`` stops it."""

    config: Config
    store: Store
    faults: FaultInjector
    listeners: dict[str, Listener] = field(default_factory=dict)
    services: list[Any] = field(default_factory=list)
    clock: Clock = field(default_factory=Clock)
    relay: RelayWorker | None = None
    bus: Bus = field(default_factory=Bus)
    _closed: bool = False

    @property
    def ports(self) -> dict[str, int]:
        """Bound ports by listener name (port 0 in the config is read back here)."""
        return {name: listener.port for name, listener in self.listeners.items()}

    def start_relay(self, *, background: bool = True,
                    routes: Mapping[str, tuple[str, int]] | None = None) -> RelayWorker:
        """Create the relay worker for this server's queue; ``background`` starts its loop
        (tests with a fake clock leave it off and call ``server.relay.run_once()``).
        ``routes`` replace the config's static routes for the relay only (``mta.lab``: they
        are known once every domain's MX is bound)."""
        if self.relay is None:
            # dnspython and aiosmtplib (~10 MB resident) load only when mail goes out
            from mta.relay import RelayWorker

            config = self.config if routes is None else replace(self.config, routes=routes)
            self.relay = RelayWorker(config, self.store, self.clock, bus=self.bus)
            self.services.append(self.relay)
        if background:
            self.relay.start()
        return self.relay

    async def close(self, grace: float = 10.0) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            await self._close_listeners(grace)
            for service in reversed(self.services):
                try:
                    await service.close()
                except Exception:
                    log.exception("closing %r failed", service)
        finally:  # whatever failed above: the store's threads must end (issue 17 item 16)
            await self.store.close()

    async def _close_listeners(self, grace: float) -> None:
        # Every listener at once: idle POP3 sessions get their notice now, not after the SMTP
        # listeners' grace period for transactions in flight.
        for listener in self.listeners.values():
            listener.stop_accepting()
        results = await asyncio.gather(*(listener.close(grace)
                                         for listener in self.listeners.values()),
                                       return_exceptions=True)
        for name, result in zip(self.listeners, results, strict=True):
            if isinstance(result, Exception):
                log.error("closing listener %s failed", name, exc_info=result)


async def ensure_accounts(config: Config, store: Store) -> None:
    """Write the config's accounts into the store (hashing runs off the event loop)."""
    await asyncio.gather(*(store.ensure_account(a.address, a.password, apop=a.apop)
                           for a in config.accounts))


async def start_http(server: Server, listener: HTTPListener) -> HttpListener:
    """The HTTP listener (``mta.http``) over this server, its store and its bus."""
    # aiohttp and the pages (~20 MB resident) load only when the config names this listener
    from mta import http as mta_http

    options = mta_http.Options(token=listener.token, cors_origins=listener.cors_origins)
    return await mta_http.start(server, server.bus, listener.host, listener.port, options)


def publish_stored(server: Server, delivered: Delivered) -> None:
    """Publish one ``MessageStored`` per mailbox entry a delivery committed (end of step 4).

    Called by the store after the commit (``Store.on_delivery``), so a consumer that sees the
    event finds the message in the store.
    """
    bus = server.bus
    if not bus.active:
        return
    config = server.config
    for (owner, uid), row_id in zip(delivered.entries, delivered.ids, strict=True):
        bus.emit(MessageStored, {
            "server": config.hostname, "domain": config.domains[0], "step": 4,
            "queue_id": delivered.queue_id or None, "message_id": delivered.message_id or None,
            "mailbox_id": row_id, "uidl": uid, "owner": owner, "size": delivered.size,
            "sender": delivered.sender})


async def _listen_pop3(server: Server, name: str, tls_context: ssl.SSLContext | None,
                       shared_ports: bool) -> POP3Listening:
    """The POP3 listener (110, STLS) or pop3s (995, RFC 8314 implicit TLS)."""
    config, limits = server.config, server.config.limits
    listener = getattr(config.listeners, name)
    return POP3Listening(await start_pop3(
        server.store, listener.host, listener.port,
        POP3Options(config.hostname,
                    allow_plaintext_auth=config.allow_plaintext_auth,
                    apop=any(account.apop for account in config.accounts),
                    idle_timeout=limits.pop3_idle_timeout,
                    max_connections=limits.max_connections,
                    failed_auth_delay=limits.failed_auth_delay,
                    lock_lease=limits.pop3_lock_lease,
                    implicit_tls=name in IMPLICIT_TLS),
        tls_context, reuse_port=shared_ports,
        observer=POP3Events(server.bus, config.hostname, config.domains[0])))


async def start(config: Config, *, clock: Clock | None = None, relay: bool = True,
                shared_ports: bool = False, write_accounts: bool = True,
                bus: Bus | None = None, http: bool = True) -> Server:
    """Start every listener ``config`` names; the caller owns the returned Server.

    With a submission listener the relay worker runs too (``relay=False``: it is not started;
    ``mta.lab`` starts it once every domain's ports are known). ``clock`` times the queue.
    ``shared_ports``: worker processes listen on the same ports (``mta.workers``);
    ``write_accounts=False``: a worker leaves the config's accounts to the first process.
    ``bus``: the event bus to publish on (``mta.lab`` shares one); default: a new one.
    ``http=False``: no HTTP listener even if the config names one (``mta.workers``' extra
    processes: the first process serves it).
    """
    return_large_blocks_to_os()
    store = await Store.open(config.database)
    server = Server(config, store, FaultInjector(config.faults.mx_replies), clock=clock or Clock(),
                    bus=bus if bus is not None else Bus())
    if trace.enabled():  # the labmail.trace log (``--trace``) is a subscriber of the bus
        trace.follow(server.bus)
    store.on_delivery(lambda delivered: publish_stored(server, delivered))
    try:
        # a read-only file, folder or mount: refuse now rather than answer 451 to everyone
        await store.check_writable()
        if write_accounts:
            await ensure_accounts(config, store)
        await _start_listeners(server, tls.server_context(config), shared_ports, relay, http)
        for name, port in server.ports.items():
            log.info("%s listening on %s:%d", name, getattr(config.listeners, name).host, port)
    except BaseException:
        await server.close(grace=0)
        raise
    return server


async def _start_listeners(server: Server, tls_context: ssl.SSLContext | None,
                           shared_ports: bool, relay: bool, http: bool) -> None:
    """Bind every listener the config names, in ``LISTENER_NAMES`` order."""
    config, limits = server.config, server.config.limits
    for name in IMPLICIT_TLS:
        if getattr(config.listeners, name) and tls_context is None:
            raise ConfigError(f"{config.source}: 'listeners.{name}' needs TLS: set "
                              'tls = "self-signed" or a [tls] table with cert and key')
    if config.listeners.mx:
        handler = mx.InboundHandler(config, server.store, server.faults)
        server.listeners["mx"] = await start_smtp_listener(
            handler, config.listeners.mx.host, config.listeners.mx.port,
            hostname=config.hostname, component="mx", step=4,
            max_connections=limits.max_connections,
            max_per_client=limits.max_connections_per_client,
            max_junk=limits.max_junk_commands,
            data_size_limit=limits.max_message_size, timeout=limits.command_timeout,
            tls_context=tls_context, reuse_port=shared_ports, **_published(server),
            **mx.handler_kwargs(config))
    for name in ("submission", "submissions"):
        if getattr(config.listeners, name):
            server.listeners[name] = await _submission(server, name, tls_context)
    if relay and server.listeners.keys() & {"submission", "submissions"}:
        server.start_relay()
    for name in ("pop3", "pop3s"):
        if getattr(config.listeners, name):
            server.listeners[name] = await _listen_pop3(server, name, tls_context, shared_ports)
    if config.listeners.http and http:
        server.listeners["http"] = await start_http(server, config.listeners.http)


async def _submission(server: Server, name: str,
                      tls_context: ssl.SSLContext | None) -> Listener:
    """The submission listener (587, STARTTLS) or submissions (465, RFC 8314 implicit TLS)."""
    config, limits = server.config, server.config.limits
    implicit = name in IMPLICIT_TLS
    if not implicit and tls_context is None and not config.allow_plaintext_auth:
        log.warning("submission: no TLS and plain-text AUTH not allowed: "
                    "nobody can authenticate")
    listener = getattr(config.listeners, name)
    return await start_smtp_listener(
        submission.SubmissionHandler(config, server.store, server.clock),
        listener.host, listener.port, hostname=config.hostname, component="submission", step=3,
        max_connections=limits.max_connections,
        max_per_client=limits.max_connections_per_client,
        max_junk=limits.max_junk_commands,
        data_size_limit=limits.max_message_size, timeout=limits.command_timeout,
        tls_context=tls_context, implicit_tls=implicit, **_published(server),
        **submission.handler_kwargs(config))


def _published(server: Server) -> dict[str, Any]:
    """What an SMTP listener needs to publish its events."""
    return {"bus": server.bus, "domain": server.config.domains[0]}
