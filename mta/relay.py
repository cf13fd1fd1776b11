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

The SMTP side of a delivery (sessions, opportunistic TLS, trying each hop in order) is
``mta.smtp.client``; this module is the queue runner around it.

Timing comes from an injected clock. ``run_once(now)`` delivers every due row and returns, so
tests drive retries without sleeping; ``start()`` runs the loop that waits on a wakeup event
(new mail wakes it at once) with a timeout until the next due row, re-reading the queue at
least every ``queue.idle_recheck`` seconds so ``mta queue flush`` from another process works.
Which rows are in flight is kept in memory only: after a crash they are simply due again (one
relay worker per database).
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from mta import dsn, retry_policy
from mta.clock import Clock
from mta.config import Config
from mta.events import BounceGenerated, Bus, DeliveryAttempt, RouteDecided
from mta.message import message_id as message_id_of
from mta.message import needs_smtputf8
from mta.retry_policy import AttemptKind
from mta.routing import Route, RouteError, Router
from mta.smtp.client import Attempt, RelayClient
from mta.store import Bounce, Outcome, QueueRow, QueueState, Store, StoreError

log = logging.getLogger("labmail.relay")

MAX_PARALLEL = 20  # SMTP transactions at once per run
_OUTCOMES = {QueueState.QUEUED: "deferred", QueueState.DELIVERED: "delivered",
             QueueState.FAILED: "failed"}


class RelayWorker:
    """Delivers the outbound queue of one store. ``start()`` the loop or call ``run_once``."""

    def __init__(self, config: Config, store: Store, clock: Clock | None = None,
                 router: Router | None = None, bus: Bus | None = None) -> None:
        self.config = config
        self.store = store
        self.clock = clock or Clock()
        self.router = router or Router(config)
        self._wakeup = asyncio.Event()
        self._in_flight: set[int] = set()
        self._batches: set[asyncio.Task[None]] = set()  # attempts the loop started
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._unsubscribe = store.on_queued(lambda _queue_id: self.wake())
        self.runs = 0  # looks at the queue so far (for tests and the lab)
        self._progress = asyncio.Event()  # set whenever attempts are recorded
        self.bus = bus if bus is not None else Bus()
        self.client = RelayClient(config, self.bus)

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
        self.client.stop_reuse()
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
        await self.client.close()

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
        """Start what is due whenever mail is queued or a retry falls due, without waiting for
        earlier attempts: they run on (``MAX_PARALLEL`` at once) while new mail starts."""
        recheck = self.config.queue.idle_recheck or 5.0
        slots = asyncio.Semaphore(MAX_PARALLEL)
        try:
            while not self._closing:
                self._wakeup.clear()
                try:
                    now = self.clock.now()
                    rows = await self.store.due(now, exclude=list(self._in_flight))
                    if rows:
                        self._launch(rows, now, slots)
                    self.runs += 1
                    next_due = await self.store.next_due(exclude=list(self._in_flight))
                except (StoreError, OSError, ValueError) as exc:
                    log.error("relay: queue run failed: %s", exc)
                    next_due = None
                except Exception:
                    log.exception("relay: queue run failed")
                    next_due = None
                if self._closing:
                    break
                timeout = recheck if next_due is None else min(recheck,
                                                               next_due - self.clock.now())
                if timeout > 0 and not self._wakeup.is_set():
                    try:
                        await asyncio.wait_for(self._wakeup.wait(), timeout)
                    except TimeoutError:
                        pass
        finally:
            # attempts in flight end before the loop does (close() gives them its grace; a
            # cancelled gather cancels them)
            if self._batches:
                await asyncio.gather(*self._batches)

    # -- one run ----------------------------------------------------------------------------------

    async def run_once(self, now: float | None = None) -> int:
        """Attempt every row due at ``now`` (default: the clock's) and wait for the outcomes;
        returns how many."""
        now = self.clock.now() if now is None else now
        rows = await self.store.due(now, exclude=list(self._in_flight))
        if rows:
            await self._launch(rows, now, asyncio.Semaphore(MAX_PARALLEL))
        self.runs += 1
        return len(rows)

    def _launch(self, rows: list[QueueRow], now: float,
                slots: asyncio.Semaphore) -> asyncio.Task[None]:
        """A task attempting ``rows``; they are in flight from now (the next query of the
        queue leaves them out) until their outcomes are recorded."""
        ids = [row.id for row in rows]
        self._in_flight.update(ids)
        task = asyncio.get_running_loop().create_task(self._attempt(rows, ids, now, slots))
        self._batches.add(task)
        task.add_done_callback(self._batches.discard)
        return task

    async def _attempt(self, rows: list[QueueRow], ids: list[int], now: float,
                       slots: asyncio.Semaphore) -> None:
        try:
            groups: dict[tuple[str, str], list[QueueRow]] = defaultdict(list)
            for row in rows:
                groups[(row.queue_id, row.domain)].append(row)
            routes: dict[str, asyncio.Future[Route]] = {}

            async def one(group: list[QueueRow]) -> None:
                async with slots:
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
            self.wake()  # deferred rows may be due before the loop's next look

    async def _route(self, domain: str, routes: dict[str, asyncio.Future[Route]]) -> Route:
        if domain not in routes:
            routes[domain] = asyncio.ensure_future(self.router.decide(domain))
        return await asyncio.shield(routes[domain])

    def _ids(self, queue_id: str, message_id: str | None) -> dict[str, Any]:
        """The envelope of this server's events about a message (contract: mta.events)."""
        return {"server": self.config.hostname, "domain": self.config.domains[0], "step": 4,
                "queue_id": queue_id, "message_id": message_id}

    async def _deliver(self, group: list[QueueRow], now: float,
                       routes: dict[str, asyncio.Future[Route]]) -> None:
        first = group[0]
        raw = await self.store.queued_message(first.queue_id)
        if raw is None:
            log.warning("relay: message %s is gone from the queue", first.queue_id)
            return
        recipients = [row.recipient for row in group]
        message_id = (message_id_of(raw) or None) if self.bus.active else None
        ids = self._ids(first.queue_id, message_id)
        try:
            route = await self._route(first.domain, routes)
        except RouteError as exc:
            if self.bus.active:
                self.bus.publish(RouteDecided(**ids, destination=first.domain, error=exc.text))
            kind = AttemptKind.PERMANENT if exc.permanent else AttemptKind.TEMPORARY
            attempt = Attempt(exc.text, kind, exc.status, False, None)
            results = dict.fromkeys(recipients, attempt)
        else:
            if self.bus.active:
                self.bus.publish(RouteDecided(
                    **ids, destination=first.domain, how=route.how, answer=route.answer,
                    hops=tuple(f"{hop.host}:{hop.port}" for hop in route.hops)))
            results = await self.client.transmit(route.hops, first.sender, recipients, raw,
                                                 (first.queue_id, message_id),
                                                 smtputf8=first.smtputf8)
        await self._record(group, results, raw, now, message_id)

    # -- results --------------------------------------------------------------------------------

    async def _record(self, group: list[QueueRow], results: dict[str, Attempt], raw: bytes,
                      now: float, message_id: str | None = None) -> None:
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
            if self.bus.active:
                self.bus.publish(DeliveryAttempt(
                    **self._ids(row.queue_id, message_id), recipients=(row.recipient,),
                    hop=f"{attempt.remote.host}:{attempt.remote.port}" if attempt.remote else "",
                    reply=attempt.reply, outcome=_OUTCOMES[state], attempts=attempts,
                    next_attempt=next_attempt if state == QueueState.QUEUED else None))
            if state == QueueState.FAILED:
                failures.append(dsn.FailedRecipient(
                    row.recipient, status, attempt.reply, attempt.smtp_reply,
                    attempt.remote.name if attempt.remote else None, now))
        bounce = await self._bounce(group[0], failures, raw, now) if failures else None
        await self.store.record_attempts(outcomes, now=now, bounce=bounce)
        if bounce is not None and self.bus.active:
            self.bus.publish(BounceGenerated(
                **self._ids(group[0].queue_id, message_id), to=group[0].sender,
                failed=tuple(f.recipient for f in failures), bounce_queue_id=bounce.queue_id))
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
        return Bounce(message, remote=row.sender,
                      smtputf8=needs_smtputf8(True, "", [row.sender], message))
