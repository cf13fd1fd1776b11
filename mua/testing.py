"""labmail's pytest plugin: a whole mail system per test, behind one synchronous fixture.

Installing labmail registers this module under the ``pytest11`` entry point, so every test can
ask for ``mail_lab``: an in-process lab (``mta.lab``) with two domains, ``alice.lab`` (user
``alice``) and ``bob.lab`` (user ``bob``), each with real submission, MX and POP3 listeners on
ephemeral 127.0.0.1 ports, a fresh SQLite database under the test's ``tmp_path``, and static
routes to each other. The lab's event loop runs in a background thread, so test code stays
ordinary blocking code and any SMTP or POP3 library can talk to it::

    def test_signup_mail(mail_lab):
        app.send_welcome("bob@bob.lab", smtp=(mail_lab.smtp_host, mail_lab.smtp_port),
                         login=(mail_lab.sender.address, mail_lab.sender.password))
        [msg] = mail_lab.wait_for("bob@bob.lab")
        assert msg["Subject"] == "Welcome"

Time. By default the relay workers run in the background on the real clock: ``send`` then
``wait_for`` just works, and a 4xx is retried after 1, 2, 4, 8, 10, 10 ... s (lab speed). With
``@pytest.mark.mail_lab(clock="fake")`` the clock is a ``FakeClock`` and nothing is relayed in
the background: the queue moves only inside ``mail_lab.advance(seconds)``, which walks the clock
through every due retry up to the target time, deterministically and without sleeping
(``advance()`` with no argument makes the attempts due now, such as a first attempt).

Options (``@pytest.mark.mail_lab(...)``, or ``indirect`` parametrization of ``mail_lab`` with a
dict): ``clock`` ("real" or "fake"), ``catch_all`` (a domain such as "test.lab", or True for
"test.lab": every address there lands in one mailbox, and its MX port is ``mail_lab.mx_port``),
``domains`` ({domain: [users]} or {domain: {user: password}}), ``tls`` ("self-signed" or "off").

Looking back. ``wait_for`` fails the test (``MailWaitTimeout``, an AssertionError) with every
mailbox's messages (recipient, From, Subject) and what is still queued with its last reply.
``mail_lab.trace(message_id)`` gives the protocol lines of every hop that carried a message
(the servers' side of each SMTP session, tied to the message by the Message-ID and queue id the
submission and MX handlers log), the relay's attempts, the Message-ID and the queue ids. The
servers' protocol lines also go through ``labmail.trace`` as usual, so pytest shows them under
"Captured log" when a test fails.

Nothing is imported from ``mta`` and nothing starts until a test asks for the fixture.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import re
import smtplib
import ssl
import threading
from collections.abc import Coroutine, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import getaddresses, make_msgid
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import pytest

if TYPE_CHECKING:
    from mta.clock import Clock
    from mta.lab import Lab, LabDomain
    from mta.store import Entry, QueueRow

T = TypeVar("T")

DEFAULT_DOMAINS: dict[str, list[str]] = {"alice.lab": ["alice"], "bob.lab": ["bob"]}
DEFAULT_CATCH_ALL = "test.lab"
DEFAULT_TIMEOUT = 5.0
OPTIONS = ("clock", "catch_all", "domains", "tls")
CALL_TIMEOUT = 60.0  # a bound on any one call into the lab's loop
FETCH_BATCH = 500  # messages read per Store.fetch_many call (its own bound)

# Loggers whose records the lab keeps (levels lowered while a lab runs, then restored).
_LOGGER_LEVELS = {"labmail.trace": logging.DEBUG, "labmail.submission": logging.INFO,
                  "labmail.mx": logging.INFO, "labmail.relay": logging.INFO}
_FOR_CLAUSE = re.compile(r"\bfor\s+<([^>]+)>", re.IGNORECASE)
_QUEUED_AS = re.compile(r"queued as (\S+)")


class MailWaitTimeout(AssertionError):
    """``mail_lab.wait_for`` gave up; the message lists what did arrive and what is queued."""


# -- what the fixture hands out -------------------------------------------------------------------


@dataclass(frozen=True)
class LabAccount:
    """A user of the lab, with where to reach its servers (all on 127.0.0.1)."""

    address: str
    password: str
    host: str
    smtp_port: int          # the submission listener of the user's domain (AUTH required)
    pop3_port: int | None   # None when the domain serves no POP3
    mx_port: int            # the domain's MX listener (no AUTH; mail for the domain only)

    @property
    def login(self) -> str:
        return self.address

    @property
    def domain(self) -> str:
        return self.address.rpartition("@")[2]

    @property
    def smtp_host(self) -> str:
        return self.host

    @property
    def pop3_host(self) -> str:
        return self.host


class LabMessage(EmailMessage):
    """A delivered message, parsed (``email.policy.default``), with its raw bytes and where
    it was stored: ``raw``, ``mailbox``, ``envelope_sender``, ``queue_id`` (the id the final
    hop's 250 reply named) and ``uid`` (its POP3 UIDL)."""

    raw: bytes = b""
    mailbox: str = ""
    envelope_sender: str = ""
    queue_id: str = ""
    uid: str = ""

    @property
    def text(self) -> str:
        """The body as text: the plain part (or HTML) decoded, "" when there is none."""
        part = self.get_body(preferencelist=("plain", "html"))
        return "" if part is None else str(part.get_content())

    def __repr__(self) -> str:
        return (f"<LabMessage {self.mailbox} from {self.get('From', '?')} "
                f"subject {str(self.get('Subject', ''))!r}>")


@dataclass(frozen=True)
class Sent:
    """What ``mail_lab.send`` submitted and what the submission server answered."""

    message: EmailMessage
    message_id: str
    sender: str
    recipients: list[str]
    refused: dict[str, tuple[int, str]]
    reply: str         # "250 2.0.0 OK: queued as 3F2A..."
    queue_id: str      # the id in that reply


@dataclass(frozen=True)
class TraceLine:
    """One protocol line as a server saw it: direction "C" (client) or "S" (server)."""

    step: int
    component: str      # "submission" or "mx"
    server: str         # the server's hostname, e.g. "mx.bob.lab"
    peer: str           # the client's address:port
    direction: str
    line: str

    def __str__(self) -> str:
        return f"{self.direction}: {self.line}"


@dataclass(frozen=True)
class Hop:
    """One SMTP session that carried (or tried to carry) the message."""

    step: int
    component: str
    server: str
    peer: str
    queue_id: str | None  # None when this attempt was refused
    lines: tuple[TraceLine, ...]

    def __str__(self) -> str:
        head = (f"step {self.step} {self.component} at {self.server}, client {self.peer}"
                f"{'' if self.queue_id else ' (not accepted)'}")
        return "\n".join([head] + [f"  {line}" for line in self.lines])


@dataclass(frozen=True)
class MessageTrace:
    """The protocol lines of every hop of one message, its relay attempts, Message-ID and
    queue ids. ``str()`` is the transcript; iterating gives the ``TraceLine``s."""

    message_id: str
    hops: tuple[Hop, ...]
    attempts: tuple[str, ...]                 # the relay workers' log lines, in order
    queue_ids: tuple[tuple[str, str], ...]    # (server, queue id) per accepting hop

    @property
    def lines(self) -> list[TraceLine]:
        return [line for hop in self.hops for line in hop.lines]

    def __iter__(self) -> Iterator[TraceLine]:
        return iter(self.lines)

    def __len__(self) -> int:
        return len(self.lines)

    def __str__(self) -> str:
        parts = ([str(hop) for hop in self.hops]
                 or [f"(no traced session carried {self.message_id})"])
        parts += [f"relay: {attempt}" for attempt in self.attempts]
        parts.append(f"Message-ID: {self.message_id}")
        ids = ", ".join(f"{qid} at {server}" for server, qid in self.queue_ids) or "-"
        parts.append(f"queue ids: {ids}")
        return "\n".join(parts)


# -- the trace recorder ---------------------------------------------------------------------------


class _Recorder(logging.Handler):
    """Keeps the labmail log records emitted on the lab's own thread (this lab only)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.thread_id: int | None = None
        self.records: list[logging.LogRecord] = []
        self._lock = threading.Lock()
        self._saved: dict[str, int] = {}

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread == self.thread_id:
            with self._lock:
                self.records.append(record)

    def snapshot(self) -> list[logging.LogRecord]:
        with self._lock:
            return list(self.records)

    def install(self) -> None:
        for name, level in _LOGGER_LEVELS.items():
            logger = logging.getLogger(name)
            self._saved[name] = logger.level
            if logger.level == logging.NOTSET or logger.level > level:
                logger.setLevel(level)
        logging.getLogger("labmail").addHandler(self)

    def uninstall(self) -> None:
        logging.getLogger("labmail").removeHandler(self)
        for name, level in self._saved.items():
            logging.getLogger(name).setLevel(level)
        self._saved.clear()


@dataclass
class _Session:
    step: int
    component: str
    peer: str
    server: str = ""
    lines: list[tuple[str, str]] = field(default_factory=list)
    # (first line index, last line index, Message-ID, queue id or None) per transaction
    transactions: list[tuple[int, int, str, str | None]] = field(default_factory=list)
    pending: list[tuple[int, str, str | None]] = field(default_factory=list)


def _sessions(records: Iterable[logging.LogRecord]) -> tuple[list[_Session], list[Any]]:
    """Group trace lines into SMTP sessions and tie each transaction to its Message-ID.

    A session is keyed by (component, client peer) from its first line until the server's
    221/421; the submission and MX handlers log each transaction with the same component and
    peer plus its Message-ID and queue id, while the session is open.
    """
    sessions: list[_Session] = []
    open_: dict[tuple[str, str], _Session] = {}
    attempts = []
    for record in records:
        fields = record.__dict__
        if record.name == "labmail.trace" and fields.get("component") in ("submission", "mx"):
            key = (fields["component"], fields["peer"])
            session = open_.get(key)
            if session is None:
                session = _Session(fields["step"], fields["component"], fields["peer"])
                open_[key] = session
                sessions.append(session)
            direction, text = fields["direction"], fields["line"]
            session.lines.append((direction, text))
            if direction == "S":
                _close_transactions(session)
                if text[:3] in ("221", "421"):
                    del open_[key]
        elif "message_id" in fields and "peer" in fields:
            session = open_.get((fields.get("component", ""), fields["peer"]))
            if session is not None:
                session.server = fields.get("hostname", "")
                session.pending.append((len(session.lines), fields["message_id"],
                                        fields.get("queue_id")))
        elif "queue_id" in fields:
            attempts.append(record)
    for session in sessions:
        _close_transactions(session)
    return sessions, attempts


def _close_transactions(session: _Session) -> None:
    """A transaction runs from its MAIL command to the server's reply to its data: the line
    just appended (or the session's last line, when it ended without one)."""
    last = len(session.lines) - 1
    for at, message_id, txn_id in session.pending:
        start = max((i for i in range(at) if session.lines[i][0] == "C"
                     and session.lines[i][1].upper().startswith("MAIL")), default=at)
        session.transactions.append((start, last, message_id, txn_id))
    session.pending.clear()


def _bare_id(value: str) -> str:
    return value.strip().strip("<>").strip()


def build_trace(records: Sequence[logging.LogRecord], ident: str) -> MessageTrace:
    """The trace of the message whose Message-ID (or any hop's queue id) is ``ident``."""
    sessions, attempt_records = _sessions(records)
    wanted = _bare_id(ident)
    message_id = ident.strip()
    for session in sessions:  # a queue id names its Message-ID
        for _, _, mid, txn in session.transactions:
            if wanted in (_bare_id(mid), (txn or "")):
                wanted, message_id = _bare_id(mid), mid
                break
    hops, queue_ids = [], []
    for session in sessions:
        mine = [t for t in session.transactions if _bare_id(t[2]) == wanted]
        if not mine:
            continue
        others = [t for t in session.transactions if _bare_id(t[2]) != wanted]
        keep = [(d, text) for i, (d, text) in enumerate(session.lines)
                if not any(start <= i <= stop for start, stop, _, _ in others)]
        txn = next((t[3] for t in mine if t[3]), None)
        if txn:
            queue_ids.append((session.server, txn))
        lines = tuple(TraceLine(session.step, session.component, session.server, session.peer,
                                d, text) for d, text in keep)
        hops.append(Hop(session.step, session.component, session.server, session.peer, txn,
                        lines))
    ids = {qid for _, qid in queue_ids}
    attempts = tuple(f"{r.__dict__.get('hostname', '?')}: {r.getMessage()}"
                     for r in attempt_records if r.__dict__["queue_id"] in ids)
    return MessageTrace(message_id, tuple(hops), attempts, tuple(queue_ids))


# -- the lab behind the fixture -------------------------------------------------------------------


class _LoopThread:
    """An event loop running in a daemon thread; ``call`` runs a coroutine there and waits."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self.thread = threading.Thread(target=self._run, name="mail_lab", daemon=True)
        self.thread.start()
        self._started.wait()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.call_soon(self._started.set)
        self.loop.run_forever()

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = CALL_TIMEOUT) -> T:
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result(timeout)
        except TimeoutError:
            future.cancel()
            raise

    def stop(self) -> None:
        if self.loop.is_closed():
            return
        try:
            self.call(self.loop.shutdown_default_executor(), 10)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            if not self.thread.is_alive():
                self.loop.close()


class MailLab:
    """The ``mail_lab`` fixture: a running lab and blocking helpers to drive and inspect it.

    Apps: ``smtp_host``/``smtp_port`` is alice.lab's submission listener (log in as
    ``sender``); ``mx_port`` is an MX that takes mail without AUTH for its domain (the
    catch-all domain when there is one). Tests: ``account``, ``send``, ``wait_for``,
    ``messages``, ``queue``, ``script_replies``, ``advance``, ``trace``, ``report``.
    """

    def __init__(self, folder: Path, *, clock: str = "real", catch_all: str | bool | None = None,
                 domains: Mapping[str, Sequence[str] | Mapping[str, str]] | None = None,
                 tls: str = "self-signed") -> None:
        if clock not in ("real", "fake"):
            raise ValueError(f"mail_lab: clock must be 'real' or 'fake', not {clock!r}")
        self.folder = folder
        self.fake_clock = clock == "fake"
        if catch_all is True:
            catch_all = DEFAULT_CATCH_ALL
        self.catch_all_domain: str | None = str(catch_all).lower() if catch_all else None
        self._domains = dict(domains if domains is not None else DEFAULT_DOMAINS)
        self._tls = tls
        self._lab: Lab | None = None
        self._recorder = _Recorder()
        self._thread: _LoopThread | None = None

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> MailLab:
        from mta.clock import Clock, FakeClock
        from mta.lab import Lab

        self.folder.mkdir(parents=True, exist_ok=True)
        domains = {name.lower(): users for name, users in self._domains.items()}
        if self.catch_all_domain:
            domains.setdefault(self.catch_all_domain, [])
        clock: Clock = FakeClock() if self.fake_clock else Clock()
        self._thread = _LoopThread()
        self._recorder.thread_id = self._thread.thread.ident
        self._recorder.install()
        async def start() -> Lab:
            return await Lab.start(domains, folder=self.folder, clock=clock,
                                   relay=not self.fake_clock, tls=self._tls,
                                   configure=self._configure)

        try:
            self._lab = self._thread.call(start())
        except BaseException:
            self.close()
            raise
        return self

    def _configure(self, config: Any) -> Any:
        from dataclasses import replace

        if self.catch_all_domain and config.domains[0] == self.catch_all_domain:
            owner = self.catch_all
            return replace(config, catch_all={self.catch_all_domain: owner}, postmaster=owner)
        return config

    def close(self) -> None:
        try:
            if self._lab is not None and self._thread is not None:
                self._thread.call(self._lab.close())
        finally:
            self._lab = None
            if self._thread is not None:
                self._thread.stop()
            self._recorder.uninstall()

    def _call(self, coro: Coroutine[Any, Any, T], timeout: float = CALL_TIMEOUT) -> T:
        assert self._thread is not None, "mail_lab is not running"
        return self._thread.call(coro, timeout)

    # -- the lab -------------------------------------------------------------------------------

    @property
    def lab(self) -> Lab:
        """The underlying ``mta.lab.Lab`` (its objects live on the lab's own loop)."""
        assert self._lab is not None, "mail_lab is not running"
        return self._lab

    @property
    def clock(self) -> Clock:
        return self.lab.clock

    @property
    def domains(self) -> list[str]:
        return list(self.lab.domains)

    def domain(self, name: str) -> LabDomain:
        return self.lab[name]

    @property
    def catch_all(self) -> str | None:
        """The mailbox every address of the catch-all domain lands in, if there is one."""
        return f"catch-all@{self.catch_all_domain}" if self.catch_all_domain else None

    # -- app-facing view -----------------------------------------------------------------------

    @property
    def smtp_host(self) -> str:
        return "127.0.0.1"

    @property
    def smtp_port(self) -> int:
        """The first domain's submission port (alice.lab): AUTH as ``sender``."""
        return self._first().ports["submission"]

    @property
    def sender(self) -> LabAccount:
        """The first domain's first user (alice@alice.lab): the login for ``smtp_port``."""
        first = self._first()
        if not first.accounts:
            raise LookupError(f"mail_lab: {first.name} has no users")
        return self.account(next(iter(first.accounts)))

    @property
    def mx_port(self) -> int:
        """An MX port that needs no AUTH: the catch-all domain's if there is one, else the
        second domain's (bob.lab). It takes mail for its own domain only."""
        names = self.domains
        name = self.catch_all_domain or (names[1] if len(names) > 1 else names[0])
        return self.lab[name].ports["mx"]

    def _first(self) -> LabDomain:
        return next(iter(self.lab))

    # -- accounts ------------------------------------------------------------------------------

    def account(self, address: str, password: str | None = None) -> LabAccount:
        """The account ``address``, created if it does not exist (password: ``password`` or
        ``<local>-lab-password``); its domain must be a lab domain."""
        from mta.lab import lab_password

        address = address.strip().lower()
        domain = self._domain_of(address)
        if address not in domain.accounts or (password and domain.accounts[address] != password):
            secret = password or lab_password(address)
            self._call(domain.store.set_account(address, secret))
            domain.accounts[address] = secret
        ports = domain.ports
        return LabAccount(address, domain.accounts[address], domain.host,
                          ports["submission"], ports.get("pop3"), ports["mx"])

    def _domain_of(self, address: str) -> LabDomain:
        try:
            return self.lab.domain_of(address)
        except KeyError as exc:
            raise ValueError(f"mail_lab: {exc.args[0]}") from None

    # -- sending -------------------------------------------------------------------------------

    def send(self, message: EmailMessage | None = None, *, from_: str | None = None,
             to: str | Sequence[str] = (), cc: str | Sequence[str] = (),
             bcc: str | Sequence[str] = (), subject: str = "", body: str = "",
             html: str | None = None) -> Sent:
        """Submit a message through real submission (SMTP AUTH at the sender's domain).

        Pass an ``EmailMessage`` or the parts (``to``, ``subject``, ``body``, ...); the sender
        is ``from_``, else the message's From, else ``sender`` (alice@alice.lab); its account
        is created on request. smtplib's exceptions (``SMTPRecipientsRefused`` ...) pass.
        """
        from mua.compose import build_message

        to, cc, bcc = _listed(to), _listed(cc), _listed(bcc)
        if message is None:
            sender = from_ or self.sender.address
            message = build_message(sender=sender, to=to, cc=cc, subject=subject, body=body,
                                    html=html)
        else:
            message = copy.deepcopy(message)  # the headers added below are not the caller's
            sender = from_ or (getaddresses([str(message["From"])])[0][1]
                               if message["From"] else self.sender.address)
            if to and not message["To"]:
                message["To"] = ", ".join(to)
            if cc and not message["Cc"]:
                message["Cc"] = ", ".join(cc)
            if not message["Message-ID"]:
                message["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2])
        fields = [str(v) for name in ("To", "Cc", "Bcc") for v in message.get_all(name, [])]
        recipients = list(dict.fromkeys(a for _, a in getaddresses(fields + bcc) if a))
        account = self.account(sender)
        with _SMTP(account.host, account.smtp_port, timeout=30) as smtp:
            smtp.ehlo()
            if smtp.has_extn("starttls"):  # the lab's certificates are self-signed
                smtp.starttls(context=_unverified())
                smtp.ehlo()
            smtp.login(account.address, account.password)
            refused = smtp.send_message(message, account.address, recipients)
            code, text = smtp.data_reply
        reply = f"{code} {' '.join(text.decode('utf-8', 'replace').split())}"
        found = _QUEUED_AS.search(reply)
        return Sent(message, str(message["Message-ID"]), account.address,
                    [r for r in recipients if r not in refused],
                    {r: (c, t.decode("utf-8", "replace")) for r, (c, t) in refused.items()},
                    reply, found.group(1) if found else "")

    # -- receiving -----------------------------------------------------------------------------

    def wait_for(self, mailbox: str, count: int = 1,
                 timeout: float = DEFAULT_TIMEOUT) -> list[LabMessage]:
        """Wait until ``mailbox`` holds at least ``count`` messages; all its messages.

        Event-driven (the store's delivery events), no polling. An address of the catch-all
        domain without an account of its own matches the catch-all mailbox's messages for
        it (Received ``for``, To or Cc); the bare domain matches all of them. On timeout the
        test fails (``MailWaitTimeout``, an AssertionError) with what arrived and is queued.
        """
        __tracebackhide__ = True
        got = self._call(self._wait(mailbox, count, timeout), timeout + CALL_TIMEOUT)
        if got is not None:
            return got
        have = len(self.messages(mailbox))
        raise MailWaitTimeout(
            f"mail_lab: {mailbox} has {have} of {count} expected message(s) after "
            f"{timeout:g}s\n{self.report()}")

    def messages(self, mailbox: str) -> list[LabMessage]:
        """The messages in ``mailbox`` now (as ``wait_for`` matches them), oldest first."""
        domain, owner, wanted = self._mailbox(mailbox)
        return self._call(self._messages(domain, owner, wanted))

    def _mailbox(self, mailbox: str) -> tuple[LabDomain, str, str | None]:
        mailbox = mailbox.strip().lower()
        if "@" not in mailbox:
            if mailbox != self.catch_all_domain:
                raise ValueError(f"mail_lab: {mailbox!r} is not an address (or the "
                                 "catch-all domain)")
            return self.lab[mailbox], self.catch_all or "", None
        domain = self._domain_of(mailbox)
        if (domain.name == self.catch_all_domain and mailbox != self.catch_all
                and mailbox not in domain.accounts):
            return domain, self.catch_all or "", mailbox
        return domain, mailbox, None

    async def _messages(self, domain: LabDomain, owner: str, wanted: str | None,
                        entries: Sequence[Entry] | None = None) -> list[LabMessage]:
        if entries is None:
            entries = await domain.store.list_entries(owner)
        ids = [entry.id for entry in entries]
        raws: dict[int, bytes] = {}
        for start in range(0, len(ids), FETCH_BATCH):
            raws.update(await domain.store.fetch_many(owner, ids[start:start + FETCH_BATCH]))
        found = []
        for entry in entries:
            raw = raws.get(entry.id)
            if raw is None:
                continue  # removed meanwhile (a POP3 client's DELE)
            message = _parse(raw)
            message.mailbox, message.envelope_sender = owner, entry.sender
            message.queue_id, message.uid = entry.queue_id, entry.uid
            if wanted is None or _addressed_to(message, wanted):
                found.append(message)
        return found

    async def _wait(self, mailbox: str, count: int, timeout: float) -> list[LabMessage] | None:
        domain, owner, wanted = self._mailbox(mailbox)
        arrived = asyncio.Event()

        def seen(delivered: Any) -> None:
            if any(o == owner for o, _ in delivered.entries):
                arrived.set()

        remove = domain.store.on_delivery(seen)
        parsed: tuple[int, ...] | None = None  # the entries parsed last time round
        try:
            async with asyncio.timeout(timeout):
                while True:
                    arrived.clear()
                    entries = await domain.store.list_entries(owner)
                    ids = tuple(entry.id for entry in entries)
                    # parse only when enough entries are there and they changed since
                    if len(entries) >= count and ids != parsed:
                        parsed = ids
                        found = await self._messages(domain, owner, wanted, entries)
                        if len(found) >= count:
                            return found
                    await arrived.wait()
        except TimeoutError:
            return None
        finally:
            remove()

    # -- the queue and the clock ----------------------------------------------------------------

    def queue(self, domain: str | None = None) -> list[QueueRow]:
        """Outbound queue rows still queued (every domain's, or ``domain``'s), once the
        attempts in flight are recorded."""
        async def rows() -> list[QueueRow]:
            await self._settle(2.0)
            names = [domain] if domain else self.domains
            return [row for name in names for row in await self.lab[name].store.queue_rows()]

        return self._call(rows())

    def script_replies(self, domain: str, *replies: str) -> None:
        """``domain``'s MX answers its next transactions with ``replies`` at DATA, one each
        (e.g. "451 4.3.0 try later"); after them it accepts again."""
        target = self.lab[domain]

        async def script() -> None:
            target.faults.script(*replies)

        self._call(script())

    def advance(self, seconds: float = 0.0) -> int:
        """Fake clock only: move it ``seconds`` ahead, running every queue entry that falls
        due on the way at its due time (retries, then bounces at the end of the lifetime).
        Returns how many delivery attempts ran. ``advance()`` runs what is due now."""
        if not self.fake_clock:
            raise RuntimeError("mail_lab runs on the real clock (relay in the background); "
                               "use @pytest.mark.mail_lab(clock='fake') to move time")
        if seconds < 0:
            raise ValueError("a clock does not go backwards")
        return self._call(self._advance(seconds))

    async def _advance(self, seconds: float) -> int:
        clock: Any = self.lab.clock
        target = clock.now() + seconds
        workers = [d.relay for d in self.lab if d.server.relay is not None]
        attempts = 0
        for _ in range(100_000):
            due = [t for w in workers if (t := await w.store.next_due()) is not None]
            if not due or min(due) > target:
                break
            if min(due) > clock.now():
                clock.set(min(due))
            ran = sum(await asyncio.gather(*(w.run_once() for w in workers)))
            attempts += ran
            if not ran:
                break
        if target > clock.now():
            clock.set(target)
        return attempts

    # -- looking back --------------------------------------------------------------------------

    def trace(self, message_id: str, settle: float = 2.0) -> MessageTrace:
        """The protocol lines of every hop that carried the message (by Message-ID, with or
        without <>, or by any hop's queue id), its relay attempts, Message-ID and queue ids.

        Attempts in flight are waited for first (at most ``settle`` seconds), so right after
        ``wait_for`` the trace includes the last hop's QUIT and the relay's verdict.
        """
        self._call(self._settle(settle), settle + CALL_TIMEOUT)
        return build_trace(self._recorder.snapshot(), message_id)

    async def _settle(self, timeout: float) -> None:
        for domain in self.lab:
            worker = domain.server.relay
            if worker is None or not worker.busy:
                continue

            async def idle(worker: Any = worker) -> bool:
                return not worker.busy

            try:
                await worker.wait_for(idle, timeout)
            except TimeoutError:
                pass

    def report(self) -> str:
        """What arrived in every mailbox of the lab and what is still queued."""
        return self._call(self._report())

    async def _report(self) -> str:
        from mta.store import format_row

        await self._settle(2.0)
        arrived, queued = [], []
        now = self.lab.clock.now()
        for domain in self.lab:
            config = domain.config
            owners = dict.fromkeys([*await domain.store.accounts(), *domain.accounts,
                                    config.postmaster_address, *config.catch_all.values()])
            for owner in owners:
                for entry in await domain.store.list_entries(owner):
                    raw = await domain.store.fetch(owner, entry.id)
                    head = BytesParser(policy=policy.default).parsebytes(raw, headersonly=True)
                    arrived.append(f"  {owner}  from {head.get('From', '<' + entry.sender + '>')}"
                                   f"  subject {str(head.get('Subject', ''))!r}")
            for row in await domain.store.queue_rows():
                queued.append(f"  at {domain.name}: {format_row(row, now)}")
        lines = ["arrived (every mailbox of the lab):"]
        lines += arrived or ["  (nothing)"]
        lines.append("still queued:")
        lines += queued or ["  (nothing)"]
        if queued and self.fake_clock:
            lines.append("  (fake clock: the queue moves only in mail_lab.advance())")
        return "\n".join(lines)


class _SMTP(smtplib.SMTP):
    """smtplib, keeping the reply to the message data (it names the queue id)."""

    data_reply: tuple[int, bytes] = (0, b"")

    def data(self, msg: bytes | str) -> tuple[int, bytes]:
        self.data_reply = super().data(msg)
        return self.data_reply


def _unverified() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def _listed(value: str | Sequence[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def _parse(raw: bytes) -> LabMessage:
    # Parsed with Python's line ends (so text comes out with "\n"); ``raw`` keeps CRLF.
    message = BytesParser(_class=LabMessage, policy=policy.default).parsebytes(
        raw.replace(b"\r\n", b"\n"))
    assert isinstance(message, LabMessage)
    message.raw = raw
    return message


def _addressed_to(message: EmailMessage, address: str) -> bool:
    received = [str(v) for v in message.get_all("Received", [])]
    named = [m.group(1) for v in received for m in _FOR_CLAUSE.finditer(v)]
    headers = [str(v) for name in ("To", "Cc") for v in message.get_all(name, [])]
    named += [addr for _, addr in getaddresses(headers)]
    return any(n.strip().lower() == address for n in named)


# -- pytest hooks and the fixture -----------------------------------------------------------------


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "mail_lab(clock='real'|'fake', catch_all=None|'test.lab'|True, domains={...}, "
        "tls='self-signed'|'off'): options of the labmail mail_lab fixture")


def _options(request: pytest.FixtureRequest) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for marker in reversed(list(request.node.iter_markers("mail_lab"))):  # closest wins
        if marker.args:
            raise pytest.UsageError("@pytest.mark.mail_lab takes keyword options only: "
                                    + ", ".join(OPTIONS))
        options.update(marker.kwargs)
    param = getattr(request, "param", None)
    if isinstance(param, Mapping):
        options.update(param)
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise pytest.UsageError(f"mail_lab: unknown option(s) {', '.join(unknown)}; "
                                f"known: {', '.join(OPTIONS)}")
    return options


@pytest.fixture
def mail_lab(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MailLab]:
    """A running two-domain mail lab (alice.lab, bob.lab) for this test; see ``mua.testing``."""
    lab = MailLab(tmp_path / "mail_lab", **_options(request)).start()
    try:
        yield lab
    finally:
        lab.close()


__all__ = ["LabAccount", "LabMessage", "MailLab", "MailWaitTimeout", "MessageTrace", "Sent",
           "TraceLine", "Hop", "build_trace", "mail_lab"]
