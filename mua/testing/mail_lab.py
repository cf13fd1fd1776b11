"""``MailLab``: the blocking facade the ``mail_lab`` fixture hands a test.

Every call runs on the lab's own event loop (``mua.testing.loop``) and goes through the
harness API of ``mta.lab`` (accounts, mailboxes, the queue, the clock, waiting on the bus,
traces); nothing here reaches into a store or a relay, and nothing here waits on its own.
``send`` submits through ``mua.submit``, as the user agent does. ``mta`` is imported only when a
lab starts, so loading the plugin costs nothing.
"""

from __future__ import annotations

import copy
from collections.abc import Coroutine, Mapping, Sequence
from dataclasses import replace
from email.message import EmailMessage
from email.utils import getaddresses, make_msgid
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from mua.testing.loop import CALL_TIMEOUT, LoopThread
from mua.testing.values import (
    LabAccount,
    LabMessage,
    MailWaitTimeout,
    Sent,
    addressed_to,
    parse,
)

if TYPE_CHECKING:
    from mta.clock import Clock
    from mta.config import Config
    from mta.lab import Lab, LabDomain, StoredMessage
    from mta.lab_trace import MessageTrace
    from mta.store import QueueRow

T = TypeVar("T")

DEFAULT_DOMAINS: dict[str, list[str]] = {"alice.lab": ["alice"], "bob.lab": ["bob"]}
DEFAULT_CATCH_ALL = "test.lab"
DEFAULT_TIMEOUT = 5.0
FAKE_CLOCK_NOTE = "  (fake clock: the queue moves only in mail_lab.advance())"


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
        self._thread: LoopThread | None = None

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> MailLab:
        from mta.clock import Clock, FakeClock
        from mta.lab import Lab

        self.folder.mkdir(parents=True, exist_ok=True)
        domains = {name.lower(): users for name, users in self._domains.items()}
        if self.catch_all_domain:
            domains.setdefault(self.catch_all_domain, [])
        clock: Clock = FakeClock() if self.fake_clock else Clock()
        self._thread = LoopThread()

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

    def _configure(self, config: Config) -> Config:
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
        address = address.strip().lower()
        domain = self._domain_of(address)
        if address not in domain.accounts or (password and domain.accounts[address] != password):
            self._call(self.lab.add_account(address, password))
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
        """Submit a message through real submission with the user agent (``mua.submit``:
        STARTTLS when offered, AUTH at the sender's domain), as the demo does.

        Pass an ``EmailMessage`` or the parts (``to``, ``subject``, ``body``, ...); the sender
        is ``from_``, else the message's From, else ``sender`` (alice@alice.lab); its account
        is created on request. A refusal raises ``mua.submit.SubmitError`` (code and reply).
        """
        from mua.compose import build_message
        from mua.profile import profile_from_dict
        from mua.submit import submit

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
        account = self.account(sender)
        profile = profile_from_dict({  # LAB ONLY: the lab's certificates are self-signed
            "address": account.address, "maildir": str(self.folder / "maildir"),
            "smtp": {"host": account.host, "port": account.smtp_port, "verify": False}},
            env={})
        result = submit(profile, account.password, message, bcc=bcc)
        reply = result.reply
        queue_id = reply.rpartition("queued as ")[2].split()[0] if "queued as " in reply else ""
        return Sent(message, str(message["Message-ID"]), account.address, result.accepted,
                    result.refused, reply, queue_id)

    # -- receiving -----------------------------------------------------------------------------

    def wait_for(self, mailbox: str, count: int = 1,
                 timeout: float = DEFAULT_TIMEOUT) -> list[LabMessage]:
        """Wait until ``mailbox`` holds at least ``count`` messages; all its messages.

        Event-driven (the lab's bus), no polling. An address of the catch-all domain without
        an account of its own matches the catch-all mailbox's messages for it (Received
        ``for``, To or Cc); the bare domain matches all of them. On timeout the test fails
        (``MailWaitTimeout``, an AssertionError) with what arrived and is queued.
        """
        __tracebackhide__ = True
        owner, wanted = self._mailbox(mailbox)

        def accept(stored: StoredMessage) -> bool:
            return wanted is None or addressed_to(self._parse(owner, stored), wanted)

        try:
            found = self._call(self.lab.wait_for_messages(owner, count, timeout, accept),
                               timeout + CALL_TIMEOUT)
        except TimeoutError:
            have = len(self.messages(mailbox))
            raise MailWaitTimeout(
                f"mail_lab: {mailbox} has {have} of {count} expected message(s) after "
                f"{timeout:g}s\n{self.report()}") from None
        return [self._parse(owner, stored) for stored in found]

    def messages(self, mailbox: str) -> list[LabMessage]:
        """The messages in ``mailbox`` now (as ``wait_for`` matches them), oldest first."""
        owner, wanted = self._mailbox(mailbox)
        found = [self._parse(owner, stored) for stored in self._call(self.lab.messages(owner))]
        return [m for m in found if wanted is None or addressed_to(m, wanted)]

    def _mailbox(self, mailbox: str) -> tuple[str, str | None]:
        """The mailbox that holds ``mailbox``'s mail, and the address to pick out of it
        (None: all of it)."""
        mailbox = mailbox.strip().lower()
        if "@" not in mailbox:
            if mailbox != self.catch_all_domain:
                raise ValueError(f"mail_lab: {mailbox!r} is not an address (or the "
                                 "catch-all domain)")
            return self.catch_all or "", None
        domain = self._domain_of(mailbox)
        if (domain.name == self.catch_all_domain and mailbox != self.catch_all
                and mailbox not in domain.accounts):
            return self.catch_all or "", mailbox
        return mailbox, None

    @staticmethod
    def _parse(owner: str, stored: StoredMessage) -> LabMessage:
        entry = stored.entry
        return parse(stored.raw, mailbox=owner, sender=entry.sender, queue_id=entry.queue_id,
                     uid=entry.uid)

    # -- the queue and the clock ----------------------------------------------------------------

    def queue(self, domain: str | None = None) -> list[QueueRow]:
        """Outbound queue rows still queued (every domain's, or ``domain``'s), once the
        attempts in flight are recorded."""
        return self._call(self.lab.queue(domain))

    def script_replies(self, domain: str, *replies: str) -> None:
        """``domain``'s MX answers its next transactions with ``replies`` at DATA, one each
        (e.g. "451 4.3.0 try later"); after them it accepts again."""
        async def script() -> None:
            self.lab.script_replies(domain, *replies)

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
        return self._call(self.lab.advance(seconds))

    # -- looking back --------------------------------------------------------------------------

    def trace(self, message_id: str, settle: float = 2.0) -> MessageTrace:
        """Every hop that carried the message, in order (by Message-ID, with or without <>,
        or by any hop's queue id): its submission, relay (routing decision, attempts) and MX
        sessions, where it was stored and its POP3 retrieval (``mta.lab_trace``).

        Attempts in flight are waited for first (at most ``settle`` seconds), so right after
        ``wait_for`` the trace includes the relay's verdict.
        """
        return self._call(self.lab.trace(message_id, settle), settle + CALL_TIMEOUT)

    def report(self) -> str:
        """What arrived in every mailbox of the lab and what is still queued."""
        text = self._call(self.lab.report())
        if self.fake_clock and not text.endswith("still queued:\n  (nothing)"):
            text += "\n" + FAKE_CLOCK_NOTE
        return text


def _listed(value: str | Sequence[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)
