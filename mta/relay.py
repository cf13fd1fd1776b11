"""The relay worker: step 4, the sender's server hands queued mail to the next hop.

It delivers due queue rows, grouping the recipients of one message and one domain into one SMTP
transaction (aiosmtplib; never blocking smtplib in the event loop), and records a status per
recipient (maddy's habit, STYLE 5):

- ``2xx``: delivered;
- ``4xx``, timeouts, connection and DNS trouble: retried after
  ``retry_initial * retry_factor ** (attempt - 1)`` seconds, capped at ``retry_max``;
- ``5xx``, a permanent routing failure (NXDOMAIN, null MX), or a temporary failure once the
  message is older than ``queue.lifetime``: failed, and the sender gets an RFC 3464 DSN in the
  same transaction (never for a ``<>`` sender, RFC 5321 4.5.5).

TLS to the next hop is opportunistic (RFC 7435): STARTTLS when offered, unverified unless
``relay.verify_tls``; if the handshake fails (and certificates are not verified) the delivery is
retried at once in plain text. Hops are tried in order until one answers the transaction.

Timing comes from an injected clock. ``run_once(now)`` delivers every due row and returns, so
tests drive retries without sleeping; ``start()`` runs the loop that waits on a wakeup event
(new mail wakes it at once) with a timeout until the next due row, re-reading the queue at
least every ``queue.idle_recheck`` seconds so ``mta queue flush`` from another process works.
Which rows are in flight is kept in memory only: after a crash they are simply due again (one
relay worker per database).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import ssl
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import aiosmtplib

from mta import dsn, retry_policy
from mta.clock import Clock
from mta.config import Config
from mta.connections import SessionCache, close_session
from mta.retry_policy import AttemptKind
from mta.routing import Hop, RouteError, Router
from mta.smtp_client import TracedSMTP
from mta.store import Bounce, Outcome, QueueRow, QueueState, Store, StoreError

log = logging.getLogger("labmail.relay")

MAX_PARALLEL = 20  # SMTP transactions at once per run


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


class RelayWorker:
    """Delivers the outbound queue of one store. ``start()`` the loop or call ``run_once``."""

    def __init__(self, config: Config, store: Store, clock: Clock | None = None,
                 router: Router | None = None) -> None:
        self.config = config
        self.store = store
        self.clock = clock or Clock()
        self.router = router or Router(config)
        self._wakeup = asyncio.Event()
        self._in_flight: set[int] = set()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._unsubscribe = store.on_queued(lambda _queue_id: self.wake())
        self.runs = 0  # completed run_once calls (for tests and the lab)
        self._progress = asyncio.Event()  # set whenever attempts are recorded
        self._sessions = SessionCache()
        self._closing_sessions: set[asyncio.Task[None]] = set()

    # -- lifecycle ------------------------------------------------------------------------------

    def wake(self) -> None:
        """Look at the queue now (new mail, or a flush)."""
        self._wakeup.set()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="relay")

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    @property
    def busy(self) -> bool:
        """Whether delivery attempts are in flight (made but not yet recorded)."""
        return bool(self._in_flight)

    async def close(self, grace: float = 5.0) -> None:
        """Stop the loop; deliveries in flight get ``grace`` seconds, then are cancelled."""
        self._closing = True
        self._unsubscribe()
        self.wake()
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), grace)
            except TimeoutError:
                self._task.cancel()
                try:
                    await self._task
                except asyncio.CancelledError:
                    pass
        await self._sessions.close()
        await asyncio.gather(*self._closing_sessions, return_exceptions=True)

    async def wait_for(self, condition: Callable[[], Awaitable[bool]],
                       timeout: float = 10.0) -> None:
        """Wait until ``await condition()`` is true, re-checking after each recorded attempt
        (event-driven, no polling); TimeoutError after ``timeout``."""
        async with asyncio.timeout(timeout):
            while True:
                self._progress.clear()
                if await condition():
                    return
                await self._progress.wait()

    async def wait_queue_empty(self, timeout: float = 10.0) -> None:
        """Wait until no row is queued (all delivered or failed). With a fake clock and the
        loop off, something else (``run_once``) has to make the progress."""
        async def empty() -> bool:
            return not self._in_flight and not await self.store.count_queue(QueueState.QUEUED)

        await self.wait_for(empty, timeout)

    async def _run(self) -> None:
        recheck = self.config.queue.idle_recheck or 5.0
        while not self._closing:
            self._wakeup.clear()
            try:
                await self.run_once()
                next_due = await self.store.next_due(exclude=list(self._in_flight))
            except (StoreError, OSError, ValueError) as exc:
                log.error("relay: queue run failed: %s", exc)
                next_due = None
            except Exception:
                log.exception("relay: queue run failed")
                next_due = None
            if self._closing:
                return
            timeout = recheck if next_due is None else min(recheck, next_due - self.clock.now())
            if timeout > 0 and not self._wakeup.is_set():
                try:
                    await asyncio.wait_for(self._wakeup.wait(), timeout)
                except TimeoutError:
                    pass

    # -- one run ----------------------------------------------------------------------------------

    async def run_once(self, now: float | None = None) -> int:
        """Attempt every row due at ``now`` (default: the clock's); returns how many."""
        now = self.clock.now() if now is None else now
        rows = await self.store.due(now, exclude=list(self._in_flight))
        if not rows:
            self.runs += 1
            return 0
        ids = [row.id for row in rows]
        self._in_flight.update(ids)
        try:
            groups: dict[tuple[str, str], list[QueueRow]] = defaultdict(list)
            for row in rows:
                groups[(row.queue_id, row.domain)].append(row)
            routes: dict[str, asyncio.Future[list[Hop]]] = {}
            limit = asyncio.Semaphore(MAX_PARALLEL)

            async def one(group: list[QueueRow]) -> None:
                async with limit:
                    try:
                        await self._deliver(group, now, routes)
                    except StoreError as exc:
                        log.error("relay: could not record delivery of %s: %s",
                                  group[0].queue_id, exc)
                    except Exception:
                        log.exception("relay: delivering %s failed", group[0].queue_id)

            await asyncio.gather(*(one(group) for group in groups.values()))
            for future in routes.values():
                if future.done() and not future.cancelled():
                    future.exception()  # retrieved: no "never retrieved" warnings
        finally:
            self._in_flight.difference_update(ids)
            self._progress.set()
        self.runs += 1
        return len(rows)

    async def _route(self, domain: str,
                     routes: dict[str, asyncio.Future[list[Hop]]]) -> list[Hop]:
        if domain not in routes:
            routes[domain] = asyncio.ensure_future(self.router.route(domain))
        return await asyncio.shield(routes[domain])

    async def _deliver(self, group: list[QueueRow], now: float,
                       routes: dict[str, asyncio.Future[list[Hop]]]) -> None:
        first = group[0]
        raw = await self.store.queued_message(first.queue_id)
        if raw is None:
            log.warning("relay: message %s is gone from the queue", first.queue_id)
            return
        recipients = [row.recipient for row in group]
        try:
            hops = await self._route(first.domain, routes)
        except RouteError as exc:
            kind = AttemptKind.PERMANENT if exc.permanent else AttemptKind.TEMPORARY
            attempt = Attempt(exc.text, kind, exc.status, False, None)
            results = dict.fromkeys(recipients, attempt)
        else:
            results = await self._transmit(hops, first.sender, recipients, raw)
        await self._record(group, results, raw, now)

    # -- results --------------------------------------------------------------------------------

    async def _record(self, group: list[QueueRow], results: dict[str, Attempt], raw: bytes,
                      now: float) -> None:
        outcomes: list[Outcome] = []
        failures: list[dsn.FailedRecipient] = []
        for row in group:
            attempt = results[row.recipient]
            attempts = row.attempts + 1
            via = f" via {attempt.remote}" if attempt.remote else ""
            decision = retry_policy.decide(self.config.queue, row, attempt.kind, now)
            state, next_attempt = decision.state, decision.next_attempt
            status = retry_policy.EXPIRED_STATUS if decision.expired else attempt.status
            shown = "deferred" if state == QueueState.QUEUED else state
            log.info("relay id=%s to=<%s>%s attempt=%d %s: %s", row.queue_id, row.recipient,
                     via, attempts, shown, attempt.reply,
                     extra={"hostname": self.config.hostname, "queue_id": row.queue_id,
                            "recipient": row.recipient, "attempt": attempts, "state": state,
                            "reply": attempt.reply})
            outcomes.append(Outcome(row.id, row.queue_id, state, attempts, next_attempt,
                                    attempt.reply))
            if state == QueueState.FAILED:
                failures.append(dsn.FailedRecipient(
                    row.recipient, status, attempt.reply, attempt.smtp_reply,
                    attempt.remote.name if attempt.remote else None, now))
        bounce = await self._bounce(group[0], failures, raw, now) if failures else None
        await self.store.record_attempts(outcomes, now=now, bounce=bounce)
        self._progress.set()

    async def _bounce(self, row: QueueRow, failures: Sequence[dsn.FailedRecipient], raw: bytes,
                      now: float) -> Bounce | None:
        if not row.sender:  # RFC 5321 4.5.5: never bounce a bounce
            log.info("relay id=%s: failed, sender <> so no DSN", row.queue_id)
            return None
        message = dsn.build(self.config, original=raw, sender=row.sender,
                            queue_id=row.queue_id, arrival=row.created, failures=failures)
        domain = row.sender.rpartition("@")[2].lower()
        if self.config.is_local_domain(domain):
            owner = row.sender.lower()
            if not await self.store.has_account(owner):
                owner = self.config.postmaster_address
            log.info("relay id=%s: DSN to local mailbox %s", row.queue_id, owner)
            return Bounce(b"Return-Path: <>\r\n" + message, local_owner=owner)
        log.info("relay id=%s: DSN queued for <%s>", row.queue_id, row.sender)
        return Bounce(message, remote=row.sender)

    # -- SMTP -----------------------------------------------------------------------------------

    async def _transmit(self, hops: list[Hop], sender: str, recipients: list[str],
                        raw: bytes) -> dict[str, Attempt]:
        failure = temporary("no next hop")
        for hop in hops:
            try:
                return await self._session(hop, sender, recipients, raw, tls=True)
            except _TLSFailed as exc:
                failure = exc.attempt
                if self.config.relay.verify_tls:
                    continue
                log.info("relay: TLS with %s failed (%s); retrying without TLS", hop,
                         exc.attempt.reply)
                try:
                    return await self._session(hop, sender, recipients, raw, tls=False)
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

    async def _session(self, hop: Hop, sender: str, recipients: list[str], raw: bytes, *,
                       tls: bool) -> dict[str, Attempt]:
        key = (hop.host, hop.port, hop.name, tls)
        cached = self._sessions.take(key)
        if cached is not None:
            try:
                results, reusable = await self._transaction(cached, hop, sender, recipients,
                                                            raw, fresh=False)
            except _Stale:
                await close_session(cached)  # closed by the server meanwhile: start afresh
            else:
                self._done_with(key, cached, reusable)
                return results
        client = await self._open(hop, tls)
        try:
            results, reusable = await self._transaction(client, hop, sender, recipients, raw,
                                                        fresh=True)
        except BaseException:
            await close_session(client)
            raise
        self._done_with(key, client, reusable)
        return results

    def _done_with(self, key: tuple[str, int, str, bool], client: aiosmtplib.SMTP,
                   reusable: bool) -> None:
        if reusable and not self._closing:
            self._sessions.give(key, client)
        else:
            task = asyncio.get_running_loop().create_task(close_session(client))
            self._closing_sessions.add(task)
            task.add_done_callback(self._closing_sessions.discard)

    async def _open(self, hop: Hop, tls: bool) -> aiosmtplib.SMTP:
        """A new session to ``hop``, after EHLO (and STARTTLS when ``tls`` and offered)."""
        relay = self.config.relay
        client = TracedSMTP(hostname=hop.host, port=hop.port,
                            local_hostname=self.config.hostname, start_tls=False,
                            timeout=relay.command_timeout, validate_certs=relay.verify_tls)
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

    async def _transaction(self, client: aiosmtplib.SMTP, hop: Hop, sender: str,
                           recipients: list[str], raw: bytes, *, fresh: bool
                           ) -> tuple[dict[str, Attempt], bool]:
        """One mail transaction; the results and whether the session can carry another
        (only after a 2xx: a server that refused something gets a fresh start next time)."""
        results: dict[str, Attempt] = {}
        options = []
        if client.supports_extension("size"):
            options.append(f"SIZE={len(raw)}")
        if not raw.isascii() and client.supports_extension("8bitmime"):
            options.append("BODY=8BITMIME")
        utf8 = not (sender.isascii() and all(r.isascii() for r in recipients))
        if utf8:
            if not client.supports_extension("smtputf8"):
                failed = Attempt(f"{hop} does not support SMTPUTF8 (RFC 6531)",
                                 AttemptKind.PERMANENT, "5.6.7", False, hop)
                return dict.fromkeys(recipients, failed), True
            options.append("SMTPUTF8")
        encoding = "utf-8" if utf8 else "ascii"
        try:
            try:
                await client.mail(sender, options=options, encoding=encoding)
            except aiosmtplib.SMTPSenderRefused as exc:
                if not fresh and exc.code == 421:
                    raise _Stale() from None
                return dict.fromkeys(recipients, from_reply(exc.code, exc.message, hop)), False
            except (aiosmtplib.SMTPServerDisconnected, OSError):
                if not fresh:
                    raise _Stale() from None
                raise
            accepted = []
            for recipient in recipients:
                try:
                    await client.rcpt(recipient, encoding=encoding)
                    accepted.append(recipient)
                except aiosmtplib.SMTPRecipientRefused as exc:
                    results[recipient] = from_reply(exc.code, exc.message, hop)
            if not accepted:
                await client.rset()
                return results, False
            try:
                response = await client.data(raw)
            except aiosmtplib.SMTPDataError as exc:
                response_attempt = from_reply(exc.code, exc.message, hop)
            else:
                response_attempt = from_reply(response.code, response.message, hop)
            for recipient in accepted:
                results[recipient] = response_attempt
        except (aiosmtplib.SMTPException, OSError) as exc:
            # Lost mid-transaction: whoever has no answer yet is retried (at-least-once).
            lost = temporary(f"{hop}: connection lost: {_error(exc)}", hop)
            for recipient in recipients:
                results.setdefault(recipient, lost)
            return results, False
        reusable = (response_attempt.kind == AttemptKind.DELIVERED
                    and not results.keys() - set(accepted))
        return results, reusable


def _error(exc: BaseException) -> str:
    text = str(exc) or exc.__class__.__name__
    return " ".join(text.split())[:300]
