"""An in-process lab: several domains' mail servers in one event loop (steps 3, 4 and 5).

Each domain gets a full server (MX, submission, and POP3 where ``mta.server`` runs it) on
ephemeral 127.0.0.1 ports, a temporary SQLite file, its accounts, and static routes to every
other lab domain's MX, with lab-speed retry timing. Every domain publishes on one bus
(``lab.bus``, holding the newest events), so one stream shows a message's every hop.

This is the only harness API: the six-step demo, the pytest plugin (``mua.testing``) and the
tests drive and watch the lab through it and never reach into a store or a relay::

    async with Lab.start({"alice.lab": ["alice"], "bob.lab": ["bob"]}) as lab:
        alice = lab["alice.lab"]
        port = alice.ports["submission"]          # also "mx", and "pop3" when served
        password = alice.accounts["alice@alice.lab"]
        ...                                       # submit with smtplib or the mua
        stored = await lab.wait_for(kind="stored", message_id=message_id)
        [mail] = await lab.messages("bob@bob.lab")
        print(await lab.trace(message_id))        # every hop, in order (mta.lab_trace)

Waiting is event-driven (the bus; no polling): ``wait_for`` (a predicate or filters),
``wait_for_messages`` / ``wait_for_delivery`` (a mailbox count), ``settle`` (nothing in
flight, every queue empty). ``script_replies`` makes an MX answer DATA with scripted replies;
``add_account`` adds a user. Ports are never guessed: every listener binds port 0 first and the
routes are built from the ports read back, then each domain's relay worker starts with them.
Pass ``clock=FakeClock()`` and ``relay=False`` and the queues move only in ``advance(seconds)``.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from email import policy
from email.parser import BytesParser
from pathlib import Path
from typing import Any

from mta import server as server_mod
from mta.addresses import normalise
from mta.clock import Clock, FakeClock
from mta.config import TLS, Account, Config, HTTPListener, Limits, Listener, Listeners, Queue
from mta.events import Bus, Event, MessageStored, matches
from mta.lab_trace import MessageTrace, build_trace
from mta.relay import RelayWorker
from mta.smtp.faults import FaultInjector
from mta.store import Entry, QueueRow, Store, format_row

log = logging.getLogger("labmail.lab")

# Lab-speed retries: seconds, not Postfix's minutes.
LAB_QUEUE = Queue(retry_initial=1.0, retry_factor=2.0, retry_max=10.0, lifetime=300.0,
                  idle_recheck=1.0)
LAB_LIMITS = Limits(failed_auth_delay=0.0, command_timeout=60.0)
HISTORY = 200_000  # events the lab's bus holds for traces (a delivery publishes ~100)
FETCH_BATCH = 500  # messages read per Store.fetch_many call (its own bound)


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


@dataclass(frozen=True)
class StoredMessage:
    """A message in a lab mailbox: its entry (owner, row id, UIDL, queue id, envelope
    sender, size) and its bytes as stored (CRLF line ends)."""

    entry: Entry
    raw: bytes


class Lab:
    """Running lab domains by name; ``await lab.close()`` (or ``async with``) stops them."""

    def __init__(self, folder: Path, clock: Clock,
                 tempdir: tempfile.TemporaryDirectory[str] | None, history: int = HISTORY,
                 ) -> None:
        self.folder = folder
        self.clock = clock
        self.domains: dict[str, LabDomain] = {}
        # one bus for every domain: a message's hops in one stream, held for traces
        self.bus = Bus(history=history)
        self._tempdir = tempdir
        self._closed = False

    @classmethod
    def start(cls, domains: Mapping[str, Sequence[str] | Mapping[str, str]], *,
              folder: str | Path | None = None, clock: Clock | None = None,
              relay: bool = True, tls: str = "self-signed", queue: Queue = LAB_QUEUE,
              limits: Limits = LAB_LIMITS, routes: Mapping[str, tuple[str, int]] | None = None,
              pop3: bool = True, configure: Callable[[Config], Config] | None = None,
              history: int = HISTORY, http: bool = False) -> _Starting:
        """Start the lab; use as ``async with Lab.start(...) as lab`` or ``await Lab.start(...)``.

        ``domains`` maps each domain to its users: local parts (password
        ``<local>-lab-password``) or {local part or address: password}. ``folder`` keeps the
        databases (default: a temporary folder removed at close). ``relay=False`` leaves the
        relay workers' loops off (drive them with ``run_once``). ``routes`` adds static routes
        (e.g. to a server outside the lab); ``configure`` may change each domain's Config
        before it starts (it is frozen: use ``dataclasses.replace``). ``history``: how many
        of the newest events the bus holds (``trace`` reads them). ``http=True`` gives each
        domain an HTTP listener (``ports["http"]``; loopback, no token).
        """
        options = dict(folder=folder, clock=clock, relay=relay, tls=tls, queue=queue,
                       limits=limits, routes=routes or {}, pop3=pop3, configure=configure,
                       history=history, http=http)
        return _Starting(lambda: cls._start(domains, **options))

    @classmethod
    async def _start(cls, domains: Mapping[str, Sequence[str] | Mapping[str, str]], *,
                     folder: str | Path | None, clock: Clock | None, relay: bool, tls: str,
                     queue: Queue, limits: Limits, routes: Mapping[str, tuple[str, int]],
                     pop3: bool, configure: Callable[[Config], Config] | None,
                     history: int, http: bool) -> Lab:
        if not domains:
            raise ValueError("a lab needs at least one domain")
        tempdir = None
        if folder is None:
            tempdir = tempfile.TemporaryDirectory(prefix="labmail-lab-")
            folder = tempdir.name
        lab = cls(Path(folder), clock or Clock(), tempdir, history)
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

    # -- watching: the bus ------------------------------------------------------------------

    async def wait_for(self, predicate: Callable[[Event], bool] | None = None,
                       timeout: float = 10.0, *, past: bool = True, **filters: Any) -> Event:
        """The first event that ``predicate`` and the filters of ``mta.events.matches``
        (``kind``, ``step``, ``queue_id``, ``message_id``, ``server``) accept: one the bus
        holds (``past``) or the next one published. TimeoutError after ``timeout``."""
        def wanted(event: Event) -> bool:
            return matches(event, **filters) and (predicate is None or predicate(event))

        return await self.bus.wait_for(wanted, timeout, past=past)

    async def trace(self, ident: str, settle: float = 2.0) -> MessageTrace:
        """Every hop of one message across every domain, in order (``mta.lab_trace``), by
        its Message-ID (with or without <>) or any hop's queue id. Attempts in flight are
        recorded first (waiting at most ``settle`` seconds)."""
        await self.settle(settle, queues=False, strict=False)
        return build_trace(self.bus.history(), ident)

    # -- mailboxes ------------------------------------------------------------------------------

    async def messages(self, address: str) -> list[StoredMessage]:
        """The messages in ``address``'s mailbox now, oldest first."""
        owner = normalise(address)
        return await self._read(owner, await self.domain_of(owner).store.list_entries(owner))

    async def _read(self, owner: str, entries: Sequence[Entry]) -> list[StoredMessage]:
        store = self.domain_of(owner).store
        raws: dict[int, bytes] = {}
        ids = [entry.id for entry in entries]
        for start in range(0, len(ids), FETCH_BATCH):
            raws.update(await store.fetch_many(owner, ids[start:start + FETCH_BATCH]))
        # an entry gone meanwhile (a POP3 client's DELE) is left out
        return [StoredMessage(e, raws[e.id]) for e in entries if e.id in raws]

    async def wait_for_messages(self, address: str, count: int = 1, timeout: float = 10.0,
                                where: Callable[[StoredMessage], bool] | None = None,
                                ) -> list[StoredMessage]:
        """Wait until ``address``'s mailbox holds at least ``count`` messages (that ``where``
        accepts); those messages. Woken by the bus's ``stored`` events for that mailbox,
        no polling; TimeoutError after ``timeout``."""
        owner = normalise(address)
        store = self.domain_of(owner).store

        def stored(event: Event) -> bool:
            return isinstance(event, MessageStored) and event.owner.lower() == owner

        with self.bus.subscribe(predicate=stored) as arrivals:
            async with asyncio.timeout(timeout):
                read: tuple[int, ...] | None = None  # the entries whose bodies were read last
                while True:
                    arrivals.drain()
                    entries = await store.list_entries(owner)
                    ids = tuple(entry.id for entry in entries)
                    # bodies only once enough entries are there, and only when they changed
                    if len(entries) >= count and ids != read:
                        read = ids
                        found = [m for m in await self._read(owner, entries)
                                 if where is None or where(m)]
                        if len(found) >= count:
                            return found
                    await arrivals.get()

    async def wait_for_delivery(self, address: str, count: int = 1,
                                timeout: float = 10.0) -> list[Entry]:
        """Wait until ``address``'s mailbox holds at least ``count`` messages; its entries.
        TimeoutError (saying how many there are) after ``timeout``."""
        try:
            found = await self.wait_for_messages(address, count, timeout)
        except TimeoutError:
            owner = normalise(address)
            have = await self.domain_of(owner).store.count_entries(owner)
            raise TimeoutError(f"{owner}: {have} of {count} message(s) after {timeout}s"
                               ) from None
        return [message.entry for message in found]

    async def add_account(self, address: str, password: str | None = None) -> str:
        """Create ``address`` in its lab domain (or set its password); returns the password
        (``password``, else the lab default ``<local>-lab-password``)."""
        address = normalise(address)
        domain = self.domain_of(address)
        secret = password or lab_password(address)
        await domain.store.set_account(address, secret)
        domain.accounts[address] = secret
        return secret

    # -- the queues and the clock ------------------------------------------------------------

    def _relays(self, domain: str | None = None) -> list[RelayWorker]:
        names = [domain.lower()] if domain else list(self.domains)
        return [relay for name in names if (relay := self[name].server.relay) is not None]

    def script_replies(self, domain: str, *replies: str) -> None:
        """``domain``'s MX answers its next transactions' data with ``replies``, one each
        (e.g. "451 4.3.0 try later"); after them it accepts again."""
        self[domain].faults.script(*replies)

    async def queue(self, domain: str | None = None, *,
                    include_final: bool = False) -> list[QueueRow]:
        """Outbound queue rows still queued (every domain's, or ``domain``'s; with
        ``include_final`` delivered and failed ones too), once attempts in flight are
        recorded."""
        await self.settle(2.0, queues=False, strict=False)
        names = [domain.lower()] if domain else list(self.domains)
        return [row for name in names
                for row in await self[name].store.queue_rows(include_final=include_final)]

    async def settle(self, timeout: float = 10.0, *, queues: bool = True,
                     strict: bool = True) -> None:
        """Wait until nothing more happens by itself: no delivery attempt in flight and, where
        a relay loop runs (``queues``), every queue empty. A lab whose relay loops are off
        (fake clock) moves only in ``advance``. TimeoutError after ``timeout`` (``strict``),
        or just return."""
        try:
            async with asyncio.timeout(timeout):
                for relay in self._relays():
                    if queues and relay.running:
                        await relay.wait_queue_empty(timeout)
                    elif relay.busy:
                        await relay.wait_for(_idle(relay), timeout)
        except TimeoutError:
            if strict:
                raise

    async def wait_for_queue_empty(self, domain: str | None = None,
                                   timeout: float = 10.0) -> None:
        """Wait until ``domain``'s outbound queue (default: every domain's) has no queued row."""
        async with asyncio.timeout(timeout):
            for relay in self._relays(domain):
                await relay.wait_queue_empty(timeout)

    async def advance(self, seconds: float = 0.0) -> int:
        """Fake clock only (``clock=FakeClock()``, ``relay=False``): move it ``seconds`` ahead,
        running every queue entry that falls due on the way at its due time (retries, then
        bounces at the end of the lifetime); how many attempts ran. ``advance()`` runs what
        is due now."""
        clock = self.clock
        if not isinstance(clock, FakeClock):
            raise TypeError("advance needs a lab started with clock=FakeClock()")
        target = clock.now() + seconds
        relays = self._relays()
        attempts = 0
        while True:
            due = [t for r in relays if (t := await r.store.next_due()) is not None]
            if not due or min(due) > target:
                break
            clock.set(max(min(due), clock.now()))
            ran = sum(await asyncio.gather(*(r.run_once() for r in relays)))
            attempts += ran
            if not ran:
                break
        clock.set(max(target, clock.now()))
        return attempts

    async def report(self) -> str:
        """What is in every mailbox of the lab (owner, From, Subject) and what is still
        queued, as text (a failing test shows it)."""
        await self.settle(2.0, queues=False, strict=False)
        arrived, queued = [], []
        now = self.clock.now()
        for domain in self:
            config = domain.config
            owners = dict.fromkeys([*await domain.store.accounts(), *domain.accounts,
                                    config.postmaster_address, *config.catch_all.values()])
            for owner in owners:
                for message in await self.messages(owner):
                    head = BytesParser(policy=policy.default).parsebytes(message.raw,
                                                                         headersonly=True)
                    sender = head.get("From", f"<{message.entry.sender}>")
                    arrived.append(f"  {owner}  from {sender}"
                                   f"  subject {str(head.get('Subject', ''))!r}")
            queued += [f"  at {domain.name}: {format_row(row, now)}"
                       for row in await domain.store.queue_rows()]
        return "\n".join(["arrived (every mailbox of the lab):", *(arrived or ["  (nothing)"]),
                          "still queued:", *(queued or ["  (nothing)"])])

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


def _idle(relay: RelayWorker) -> Callable[[], Awaitable[bool]]:
    """A ``RelayWorker.wait_for`` condition: no attempt in flight."""
    async def idle() -> bool:
        return not relay.busy

    return idle


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
