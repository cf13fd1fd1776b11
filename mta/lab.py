"""An in-process lab: several domains' mail servers in one event loop (steps 3, 4 and 5).

Each domain gets a full server (MX, submission, and POP3 where ``mta.server`` runs it) on
ephemeral 127.0.0.1 ports, a temporary SQLite file, its accounts, and static routes to every
other lab domain's MX, with lab-speed retry timing. The six-step demo, the pytest plugin and the
tests build on it::

    async with Lab.start({"alice.lab": ["alice"], "bob.lab": ["bob"]}) as lab:
        alice = lab["alice.lab"]
        port = alice.ports["submission"]          # also "mx", and "pop3" when served
        password = alice.accounts["alice@alice.lab"]
        ...                                       # submit with smtplib or the mua
        entries = await lab.wait_for_delivery("bob@bob.lab", count=1, timeout=10)

Ports are never guessed: every listener binds port 0 first and the routes are built from the
ports read back, then each domain's relay worker starts with them. Pass ``clock=FakeClock()``
and ``relay=False`` to drive the queues yourself with ``lab[d].relay.run_once()``.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mta import server as server_mod
from mta.addresses import normalise
from mta.clock import Clock
from mta.config import (
    TLS,
    Account,
    Config,
    HTTPListener,
    Limits,
    Listener,
    Listeners,
    Queue,
)
from mta.events import Bus
from mta.relay import RelayWorker
from mta.smtp.faults import FaultInjector
from mta.store import Delivered, Entry, Store

log = logging.getLogger("labmail.lab")

# Lab-speed retries: seconds, not Postfix's minutes.
LAB_QUEUE = Queue(retry_initial=1.0, retry_factor=2.0, retry_max=10.0, lifetime=300.0,
                  idle_recheck=1.0)
LAB_LIMITS = Limits(failed_auth_delay=0.0, command_timeout=60.0)


def lab_password(address: str) -> str:
    """The default lab password of an account: ``alice-lab-password``. LAB ONLY."""
    return f"{address.partition('@')[0]}-lab-password"


@dataclass
class LabDomain:
    """One running domain of the lab."""

    name: str
    server: server_mod.Server
    accounts: dict[str, str]  # address -> password

    @property
    def config(self) -> Config:
        """The domain's config as its relay sees it: the server's, with static routes to the
        other lab domains (the listeners keep the server's own, with port 0 where bound
        ephemerally: ``ports`` has the bound ones)."""
        return self.server.relay.config if self.server.relay else self.server.config

    @property
    def store(self) -> Store:
        return self.server.store

    @property
    def ports(self) -> dict[str, int]:
        """Bound ports by listener name: "mx", "submission", "pop3" (when served)."""
        return self.server.ports

    @property
    def host(self) -> str:
        return "127.0.0.1"

    @property
    def relay(self) -> RelayWorker:
        assert self.server.relay is not None
        return self.server.relay

    @property
    def faults(self) -> FaultInjector:
        """Scripted MX replies: ``lab[d].faults.script("451 4.3.0 try later")``."""
        return self.server.faults

    def address(self, local: str) -> str:
        return f"{local}@{self.name}"

    def password(self, address: str) -> str:
        address = address.lower() if "@" in address else self.address(address.lower())
        return self.accounts[address]


class Lab:
    """Running lab domains by name; ``await lab.close()`` (or ``async with``) stops them."""

    def __init__(self, folder: Path, clock: Clock,
                 tempdir: tempfile.TemporaryDirectory[str] | None) -> None:
        self.folder = folder
        self.clock = clock
        self.domains: dict[str, LabDomain] = {}
        self.bus = Bus()  # one bus for every domain: a message's hops in one stream
        self._tempdir = tempdir
        self._closed = False

    @classmethod
    def start(cls, domains: Mapping[str, Sequence[str] | Mapping[str, str]], *,
              folder: str | Path | None = None, clock: Clock | None = None,
              relay: bool = True, tls: str = "self-signed", queue: Queue = LAB_QUEUE,
              limits: Limits = LAB_LIMITS, routes: Mapping[str, tuple[str, int]] | None = None,
              pop3: bool = True, configure: Callable[[Config], Config] | None = None,
              http: bool = False) -> _Starting:
        """Start the lab; use as ``async with Lab.start(...) as lab`` or ``await Lab.start(...)``.

        ``domains`` maps each domain to its users: local parts (password
        ``<local>-lab-password``) or {local part or address: password}. ``folder`` keeps the
        databases (default: a temporary folder removed at close). ``relay=False`` leaves the
        relay workers' loops off (drive them with ``run_once``). ``routes`` adds static routes
        (e.g. to a server outside the lab); ``configure`` may change each domain's Config
        before it starts (it is frozen: use ``dataclasses.replace``). ``http=True`` gives
        each domain an HTTP listener (``ports["http"]``; loopback, no token).
        """
        options = dict(folder=folder, clock=clock, relay=relay, tls=tls, queue=queue,
                       limits=limits, routes=routes or {}, pop3=pop3, configure=configure,
                       http=http)
        return _Starting(lambda: cls._start(domains, **options))

    @classmethod
    async def _start(cls, domains: Mapping[str, Sequence[str] | Mapping[str, str]], *,
                     folder: str | Path | None, clock: Clock | None, relay: bool, tls: str,
                     queue: Queue, limits: Limits, routes: Mapping[str, tuple[str, int]],
                     pop3: bool, configure: Callable[[Config], Config] | None,
                     http: bool) -> Lab:
        if not domains:
            raise ValueError("a lab needs at least one domain")
        tempdir = None
        if folder is None:
            tempdir = tempfile.TemporaryDirectory(prefix="labmail-lab-")
            folder = tempdir.name
        lab = cls(Path(folder), clock or Clock(), tempdir)
        try:
            # 1. every server on port 0, relay off: nobody's MX port is known yet
            for name, users in domains.items():
                name = name.lower()
                accounts = _accounts(name, users)
                config = _config(name, accounts, lab.folder, tls=tls, queue=queue,
                                 limits=limits, pop3=pop3, http=http)
                if configure is not None:
                    config = configure(config)
                server = await server_mod.start(config, clock=lab.clock, relay=False,
                                                bus=lab.bus)
                lab.domains[name] = LabDomain(name, server, accounts)
            # 2. routes to the bound MX ports, given to the relay workers as they start (the
            # listeners' handlers keep the config they started with)
            mx_routes = {name: ("127.0.0.1", d.ports["mx"]) for name, d in lab.domains.items()
                         if "mx" in d.ports}
            for name, domain in lab.domains.items():
                table = {k: v for k, v in mx_routes.items() if k != name} | dict(routes)
                if "submission" in domain.ports:
                    domain.server.start_relay(background=relay, routes=table)
        except BaseException:
            await lab.close()
            raise
        for name, domain in lab.domains.items():
            log.info("lab %s: %s", name, ", ".join(f"{k} {v}" for k, v in domain.ports.items()))
        return lab

    def __getitem__(self, name: str) -> LabDomain:
        return self.domains[name.lower()]

    def __iter__(self) -> Iterator[LabDomain]:
        return iter(self.domains.values())

    def domain_of(self, address: str) -> LabDomain:
        domain = address.rpartition("@")[2].lower()
        if domain not in self.domains:
            raise KeyError(f"{address}: {domain} is not a lab domain ({', '.join(self.domains)})")
        return self.domains[domain]

    async def wait_for_delivery(self, address: str, count: int = 1,
                                timeout: float = 10.0) -> list[Entry]:
        """Wait until ``address``'s mailbox holds at least ``count`` messages; its entries.

        Event-driven (``Store.on_delivery``), no polling; TimeoutError after ``timeout``.
        """
        owner = normalise(address)
        store = self.domain_of(owner).store
        arrived = asyncio.Event()

        def seen(delivered: Delivered) -> None:
            if any(o == owner for o, _ in delivered.entries):
                arrived.set()

        remove = store.on_delivery(seen)
        try:
            async with asyncio.timeout(timeout):
                while True:
                    arrived.clear()
                    entries = await store.list_entries(owner)
                    if len(entries) >= count:
                        return entries
                    await arrived.wait()
        except TimeoutError:
            have = await store.count_entries(owner)
            raise TimeoutError(f"{owner}: {have} of {count} message(s) after {timeout}s"
                               ) from None
        finally:
            remove()

    async def wait_for_queue_empty(self, domain: str | None = None,
                                   timeout: float = 10.0) -> None:
        """Wait until ``domain``'s outbound queue (default: every domain's) has no queued row."""
        names = [domain.lower()] if domain else [n for n, d in self.domains.items()
                                                 if d.server.relay is not None]
        async with asyncio.timeout(timeout):
            for name in names:
                await self[name].relay.wait_queue_empty(timeout)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for domain in reversed(list(self.domains.values())):
            try:
                await domain.server.close(grace=1.0)
            except Exception:
                log.exception("lab: closing %s failed", domain.name)
        if self._tempdir is not None:
            self._tempdir.cleanup()

    async def __aenter__(self) -> Lab:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class _Starting:
    """What ``Lab.start`` returns: awaitable, or an async context manager that closes."""

    def __init__(self, factory: Callable[[], Any]) -> None:
        self._factory = factory
        self._lab: Lab | None = None

    def __await__(self) -> Any:
        return self._factory().__await__()

    async def __aenter__(self) -> Lab:
        self._lab = await self._factory()
        return self._lab

    async def __aexit__(self, *exc: object) -> None:
        if self._lab is not None:
            await self._lab.close()


def _accounts(domain: str, users: Sequence[str] | Mapping[str, str]) -> dict[str, str]:
    if isinstance(users, str):
        raise TypeError(f"{domain}: users must be a list or a mapping, not a string")
    pairs = users.items() if isinstance(users, Mapping) else ((u, None) for u in users)
    accounts = {}
    for user, password in pairs:
        address = user.lower() if "@" in user else f"{user.lower()}@{domain}"
        accounts[address] = password or lab_password(address)
    return accounts


def _config(name: str, accounts: Mapping[str, str], folder: Path, *, tls: str, queue: Queue,
            limits: Limits, pop3: bool, http: bool) -> Config:
    local = "127.0.0.1"
    return Config(
        hostname=f"mx.{name}",
        domains=(name,),
        database=folder / f"{name}.db",
        listeners=Listeners(mx=Listener(local, 0), submission=Listener(local, 0),
                            pop3=Listener(local, 0) if pop3 else None,
                            http=HTTPListener(local, 0) if http else None),
        accounts=tuple(Account(a, p) for a, p in accounts.items()),
        allow_plaintext_auth=True,  # LAB ONLY: so a class can read the transcript
        tls=TLS(tls),
        limits=limits,
        queue=queue,
        source=f"<lab {name}>",
    )
