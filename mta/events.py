"""Events: everything that happens to a message at every hop, declared once (steps 3 to 5).

Servers publish what they see as typed, frozen events on one in-process :class:`Bus`; everything
that *shows* a delivery consumes the bus and nothing else: the ``--trace`` log, the six-step
demo, the pytest plugin, the HTTP event stream and the web pages.

Every event carries the same envelope: when, which server (hostname and mail domain), the step
(1-6) it belongs to, and the ids that follow one message across hops: the SMTP or POP3
``session``, the ``queue_id`` a ``250`` reply names, the RFC 5322 ``message_id`` and, once
stored, the mailbox row id and its POP3 ``uidl``. Protocol lines are masked before they are
published (``mask``): AUTH secrets never reach a subscriber.

Publishing never blocks and never waits for a consumer: each subscriber has a bounded queue,
and a subscriber that falls behind loses events (counted in ``dropped``) instead of slowing
SMTP down. The bus numbers events (``seq``) and can keep the newest ones (``history``) so a
consumer that connects late (an SSE client with ``Last-Event-ID``, ``Lab.trace``) still sees
them. Publishers ask ``bus.active`` first, so a server nobody watches builds no events; the
busiest ones hand the bus an event's class and fields (``emit``), which makes the event from
that dict as it is, without the dataclass ``__init__`` (a delivery is about twenty events, and
the frozen ``__init__`` cost seven times as much: issues 12 and 13). The history keeps what
nobody has read yet as those dicts and makes the events when it is read: dicts of plain values
are no work for the garbage collector.

How one message is followed across hops (the contract every publisher keeps):

1. A server-side SMTP transaction gets its queue id at ``MAIL FROM``; every ``ProtocolLine`` of
   the transaction (MAIL through the reply to the data) carries it, session-level lines (EHLO,
   STARTTLS, AUTH, QUIT) carry none. The end of the data is ``MessageAccepted`` (the ``250``) or
   ``MessageRefused`` (any other reply), both with the ``message_id`` read from the data.
2. The relay's ``RouteDecided``, its own protocol lines of the transaction and each
   ``DeliveryAttempt`` carry the queue id and Message-ID of the queued message; a DSN is a
   ``BounceGenerated`` with both queue ids.
3. ``MessageStored`` carries the accepting transaction's queue id, the Message-ID, the mailbox
   row id and the UIDL; POP3's ``MessageRetrieved`` and ``MessageDeleted`` carry the UIDL and the
   row id (POP3 lines carry neither: a POP3 session is about a maildrop, not a message).
Every event of a session carries its ``session`` id, so a consumer can group a dialogue.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import json
import re
import secrets
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import MISSING, dataclass, field, fields
from typing import Any, ClassVar

import orjson

# -- the events --------------------------------------------------------------------------------


@functools.cache
def _blank(cls: type) -> dict[str, Any]:
    """Each field of ``cls`` with its default, in declaration order (``time`` has none, and
    every event's ``__dict__`` holds one)."""
    return {f.name: None if f.default is MISSING else f.default for f in fields(cls)}


def blank(cls: type[Event]) -> dict[str, Any]:
    """A new dict of every field of ``cls`` with its default, in declaration order: a
    publisher's template for ``Bus.emit`` (``time`` and ``seq`` are stamped there)."""
    return dict(_blank(cls))


@functools.cache
def _tuple_fields(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in fields(cls) if isinstance(f.default, tuple))


STEP_OF_LISTENER = {"submission": 3, "mx": 4, "relay": 4, "pop3": 5}


@dataclass(frozen=True, kw_only=True)
class Event:
    """The envelope every event carries.

    Events keep their fields in ``__dict__`` (no ``__slots__``) so that ``Bus.emit`` can make
    one from a dict of fields in one step; a field the dict lacks reads its class default.
    """

    kind: ClassVar[str] = "event"

    time: float = field(default_factory=time.time)
    server: str = ""             # the hostname of the server that saw it
    domain: str = ""             # the mail domain that server serves (its first)
    step: int = 0                # 1-6, the six steps
    session: str | None = None   # SMTP/POP3 session id (server side) or relay session id
    queue_id: str | None = None  # the id a 250 reply names; the outbound queue's key
    message_id: str | None = None  # the RFC 5322 Message-ID field, as sent
    mailbox_id: int | None = None  # the mailbox row, once stored
    uidl: str | None = None      # its POP3 unique id
    seq: int = 0                 # stamped by the bus: 1, 2, 3 ... in publishing order

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (tuples become lists) with the event's ``kind``."""
        cls = type(self)
        out: dict[str, Any] = {"kind": self.kind, **_blank(cls), **self.__dict__}
        for name in _tuple_fields(cls):
            out[name] = list(out[name])
        return out


@dataclass(frozen=True, kw_only=True)
class SessionOpened(Event):
    """A client connected to a listener, or the relay connected to the next hop."""

    kind: ClassVar[str] = "session_opened"
    listener: str = ""           # "submission", "mx", "pop3" or "relay"
    peer: str = ""               # the other end, "host:port"
    tls: bool = False            # TLS from the first byte


@dataclass(frozen=True, kw_only=True)
class SessionClosed(Event):
    kind: ClassVar[str] = "session_closed"
    listener: str = ""
    peer: str = ""
    tls: bool = False            # TLS on when it ended (STARTTLS / STLS included)
    user: str | None = None      # the authenticated login, if any


@dataclass(frozen=True, kw_only=True)
class ProtocolLine(Event):
    """One line of an SMTP or POP3 dialogue; ``direction`` "C" (client) or "S" (server)."""

    kind: ClassVar[str] = "line"
    listener: str = ""           # whose session: "submission", "mx", "pop3" or "relay"
    peer: str = ""
    direction: str = "C"
    line: str = ""


@dataclass(frozen=True, kw_only=True)
class MessageAccepted(Event):
    """A listener committed a message and answered ``250`` (steps 3 and 4)."""

    kind: ClassVar[str] = "accepted"
    listener: str = ""
    sender: str = ""             # the envelope sender, "" for <>
    recipients: tuple[str, ...] = ()
    size: int = 0
    local: tuple[str, ...] = ()      # recipients stored in this server's mailboxes
    outbound: tuple[str, ...] = ()   # recipients queued for relay


@dataclass(frozen=True, kw_only=True)
class MessageRefused(Event):
    """A transaction's data was read and refused (``4xx`` or ``5xx``; steps 3 and 4)."""

    kind: ClassVar[str] = "refused"
    listener: str = ""
    sender: str = ""
    recipients: tuple[str, ...] = ()
    size: int = 0
    reply: str = ""


@dataclass(frozen=True, kw_only=True)
class RouteDecided(Event):
    """The relay chose where a recipient domain's mail goes next (step 4)."""

    kind: ClassVar[str] = "routed"
    destination: str = ""        # the recipient domain
    how: str = ""                # "static", "mx" or "a" (the implicit MX, RFC 5321 5.1)
    answer: tuple[str, ...] = ()  # what the table or DNS said, e.g. "10 mx.bob.lab."
    hops: tuple[str, ...] = ()   # "host:port" in the order they will be tried
    error: str | None = None     # no route: why (then nothing is tried)


@dataclass(frozen=True, kw_only=True)
class DeliveryAttempt(Event):
    """One relay attempt for some recipients of a message, and what came of it (step 4)."""

    kind: ClassVar[str] = "attempt"
    recipients: tuple[str, ...] = ()
    hop: str = ""                # "host:port" that answered, "" if none did
    reply: str = ""              # the SMTP reply, or what went wrong without one
    outcome: str = ""            # "delivered", "deferred" or "failed"
    attempts: int = 0            # attempts so far, this one included
    next_attempt: float | None = None  # when deferred: the next try (epoch seconds)


@dataclass(frozen=True, kw_only=True)
class MessageStored(Event):
    """A message is in a local mailbox, durably (end of step 4)."""

    kind: ClassVar[str] = "stored"
    owner: str = ""
    size: int = 0
    sender: str = ""


@dataclass(frozen=True, kw_only=True)
class BounceGenerated(Event):
    """A delivery status notification (RFC 3464) was made for failed recipients (step 4).

    ``queue_id`` is the failed message's; ``bounce_queue_id`` the DSN's own.
    """

    kind: ClassVar[str] = "bounced"
    to: str = ""                 # the original envelope sender
    failed: tuple[str, ...] = ()
    bounce_queue_id: str = ""


@dataclass(frozen=True, kw_only=True)
class MessageRetrieved(Event):
    """A POP3 client read a message with RETR or TOP (step 5)."""

    kind: ClassVar[str] = "retrieved"
    owner: str = ""
    size: int = 0


@dataclass(frozen=True, kw_only=True)
class MessageDeleted(Event):
    """A message left its mailbox: POP3 QUIT after DELE, or an administrator (step 5)."""

    kind: ClassVar[str] = "deleted"
    owner: str = ""
    by: str = "pop3"             # "pop3", "http" or "cli"


EVENT_TYPES: tuple[type[Event], ...] = (
    SessionOpened, SessionClosed, ProtocolLine, MessageAccepted, MessageRefused, RouteDecided,
    DeliveryAttempt, MessageStored, BounceGenerated, MessageRetrieved, MessageDeleted,
)
KINDS: dict[str, type[Event]] = {cls.kind: cls for cls in EVENT_TYPES}


def json_bytes(data: dict[str, Any]) -> bytes:
    """``data`` as compact JSON in UTF-8, on one line (JSON escapes CR and LF): orjson's, a
    fifth of ``json.dumps``' time; json's escapes for a lone surrogate (aiosmtpd decodes
    undecodable octets to those), in the same layout."""
    try:
        return orjson.dumps(data)
    except orjson.JSONEncodeError:
        return json.dumps(data, separators=(",", ":")).encode("ascii")


def to_json(event: Event) -> bytes:
    """``event.to_dict()`` as ``json_bytes``: what the event stream and workers send."""
    return json_bytes(event.to_dict())


def from_json(line: bytes) -> Event:
    """The event ``to_json`` wrote (ValueError, KeyError or TypeError if it is not one)."""
    try:
        data = orjson.loads(line)
    except orjson.JSONDecodeError:  # json's escapes of a lone surrogate
        data = json.loads(line)
    return from_dict(data)


def from_dict(data: dict[str, Any]) -> Event:
    """The event ``to_dict`` made (from another process); unknown fields are ignored."""
    cls = KINDS[data["kind"]]
    names = {f.name for f in fields(cls)}
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if k in names}
    return cls(**values)


# -- masking -----------------------------------------------------------------------------------

_AUTH = re.compile(r"^(AUTH\s+\S+)(\s+.*)?$", re.IGNORECASE)
_POP3_SECRET = re.compile(r"^(PASS|APOP\s+\S+)(\s+.*)?$", re.IGNORECASE)
MASK = "****"


def mask(line: str) -> str:
    """Hide secrets in a client line: ``AUTH PLAIN <b64>`` -> ``AUTH PLAIN ****``,
    ``PASS x`` -> ``PASS ****``, ``APOP user <digest>`` -> ``APOP user ****``."""
    match = _AUTH.match(line) or _POP3_SECRET.match(line)
    if match and match.group(2):
        return f"{match.group(1)} {MASK}"
    return line


_SESSION_PREFIX = secrets.token_hex(3)  # this process's: ids stay unique across workers
_session_numbers = itertools.count(1)


def new_session_id() -> str:
    """A session id for events: unique in the lab, cheap (no system call per connection)."""
    return f"{_SESSION_PREFIX}{next(_session_numbers):04x}"


def peer_text(peer: object) -> str:
    """``host:port`` (``[v6]:port``) of a socket address, for humans and correlation."""
    if isinstance(peer, tuple) and len(peer) >= 2:
        host = f"[{peer[0]}]" if ":" in str(peer[0]) else str(peer[0])
        return f"{host}:{peer[1]}"
    return str(peer)


# -- filters -----------------------------------------------------------------------------------


def _bare(message_id: str | None) -> str:
    return (message_id or "").strip().strip("<>").strip()


def matches(event: Event, *, kind: str | Iterable[str] | None = None,
            step: int | Iterable[int] | None = None, queue_id: str | None = None,
            message_id: str | None = None, server: str | None = None) -> bool:
    """Whether ``event`` passes every filter given (``message_id`` ignores angle brackets)."""
    if kind is not None and event.kind not in ((kind,) if isinstance(kind, str) else kind):
        return False
    if step is not None and event.step not in ((step,) if isinstance(step, int) else step):
        return False
    if queue_id is not None and queue_id.upper() not in (
            (event.queue_id or "").upper(), getattr(event, "bounce_queue_id", "").upper()):
        return False
    if message_id is not None and _bare(event.message_id) != _bare(message_id):
        return False
    return server is None or server.lower() in (event.server.lower(), event.domain.lower())


# -- the bus -----------------------------------------------------------------------------------


class Subscription:
    """A subscriber's bounded queue of events; iterate it (``async for``) or ``drain()`` it.

    When the queue is full, new events are dropped and counted in ``dropped``: a slow
    subscriber loses events, the publisher never waits.
    """

    def __init__(self, bus: Bus, maxsize: int, predicate: Callable[[Event], bool] | None):
        self._bus = bus
        self.maxsize = maxsize
        self._predicate = predicate
        self._events: deque[Event] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self.dropped = 0
        self.closed = False

    def offer(self, event: Event) -> None:
        if self.closed or (self._predicate is not None and not self._predicate(event)):
            return
        if len(self._events) >= self.maxsize:
            self.dropped += 1
            self._bus.dropped += 1
            return
        self._events.append(event)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def drain(self) -> list[Event]:
        """Every event queued so far, without waiting."""
        events = list(self._events)
        self._events.clear()
        return events

    async def get(self, timeout: float | None = None) -> Event:
        """The next event; TimeoutError after ``timeout`` seconds; EOFError once closed."""
        if not self._events:  # the common case under load: no timer, no future
            async with asyncio.timeout(timeout):
                while not self._events:
                    if self.closed:
                        raise EOFError("subscription closed")
                    self._waiter = asyncio.get_running_loop().create_future()
                    try:
                        await self._waiter
                    finally:
                        self._waiter = None
        return self._events.popleft()

    def close(self) -> None:
        """Unsubscribe; a waiting ``get`` ends with EOFError once the queue is empty."""
        if self.closed:
            return
        self.closed = True
        self._bus._remove(self)
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Event:
        try:
            return await self.get()
        except EOFError:
            raise StopAsyncIteration from None

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_new_object = object.__new__
_set_attribute = object.__setattr__


def _made(cls: type[Event], fields: dict[str, Any]) -> Event:
    """``cls(**fields)`` without ``__init__``: ``fields`` becomes the event's ``__dict__`` (the
    frozen ``__init__`` sets each field through ``object.__setattr__``, seven times the cost)."""
    event = _new_object(cls)
    _set_attribute(event, "__dict__", fields)
    return event


class Bus:
    """One process's event bus. Publish from the event loop's thread only."""

    def __init__(self, history: int = 0) -> None:
        self._subscribers: list[Subscription] = []
        self._history: deque[Event] = deque(maxlen=history)
        # Published since the history was last read, as classes and dicts of fields: a dict of
        # plain values is no work for the garbage collector, an event is (issue 13: a third of
        # what an idle HTTP listener's history cost the MX). Made into events when read.
        self._new_classes: deque[type[Event]] = deque(maxlen=history)
        self._new_fields: deque[dict[str, Any]] = deque(maxlen=history)
        self._keep = history > 0
        self._seq = itertools.count(1)
        self.published = 0
        self.dropped = 0  # events lost by subscribers that fell behind (all of them)
        self.active = self._keep

    # -- publishing ----------------------------------------------------------------------------

    def publish(self, event: Event) -> None:
        """Number the event and hand it to every subscriber; never blocks, never raises."""
        if not self.active:
            return
        # Frozen for consumers; the bus alone stamps the sequence number, once.
        object.__setattr__(event, "seq", next(self._seq))
        self.published += 1
        if self._keep:
            self._new_classes.append(type(event))
            self._new_fields.append(vars(event))
        for subscriber in self._subscribers:
            subscriber.offer(event)

    def emit(self, cls: type[Event], fields: dict[str, Any]) -> None:
        """Publish ``cls(**fields)``, made from ``fields`` itself (the bus's from now on; only
        names of ``cls``'s fields; ``time`` and ``seq`` are stamped here)."""
        if not self.active:
            return
        fields["time"] = time.time()
        fields["seq"] = next(self._seq)
        self.published += 1
        if self._keep:
            self._new_classes.append(cls)
            self._new_fields.append(fields)
        if self._subscribers:
            event = _new_object(cls)  # _made(cls, fields), inline: a call less per event
            _set_attribute(event, "__dict__", fields)
            for subscriber in self._subscribers:
                subscriber.offer(event)

    # -- subscribing ---------------------------------------------------------------------------

    def subscribe(self, maxsize: int = 10_000, predicate: Callable[[Event], bool] | None = None,
                  *, since: int | None = None) -> Subscription:
        """A new subscription; ``since``: first replay held events with ``seq > since``."""
        subscription = Subscription(self, maxsize, predicate)
        if since is not None:
            for event in self.history(since):
                subscription.offer(event)
        self._subscribers.append(subscription)
        self.active = True
        return subscription

    def _remove(self, subscription: Subscription) -> None:
        if subscription in self._subscribers:
            self._subscribers.remove(subscription)
        self.active = self._keep or bool(self._subscribers)

    def keep_history(self, size: int) -> None:
        """Hold at least the newest ``size`` events for late consumers. Never shrinks: two
        consumers on one bus (a lab's traces and an HTTP listener) each get what they asked."""
        size = max(size, self._history.maxlen or 0)
        self._history = deque(self._held(), maxlen=size)
        self._new_classes = deque(maxlen=size)
        self._new_fields = deque(maxlen=size)
        self._keep = size > 0
        self.active = self._keep or bool(self._subscribers)

    def _held(self) -> deque[Event]:
        """The history, the events published since it was last read made now."""
        if self._new_fields:
            self._history.extend(map(_made, self._new_classes, self._new_fields))
            self._new_classes.clear()
            self._new_fields.clear()
        return self._history

    def history(self, since: int = 0) -> Iterator[Event]:
        """Held events with ``seq > since``, oldest first."""
        return (event for event in list(self._held()) if event.seq > since)

    @property
    def oldest_held(self) -> int:
        """The ``seq`` of the oldest held event (0 when none is held)."""
        held = self._held()
        return held[0].seq if held else 0

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    async def wait_for(self, predicate: Callable[[Event], bool], timeout: float,
                       *, past: bool = True) -> Event:
        """The first event ``predicate`` accepts: a held one (``past``) or the next one
        published; TimeoutError after ``timeout`` seconds. Event-driven, no polling."""
        if past:
            for event in self.history():
                if predicate(event):
                    return event
        with self.subscribe(predicate=predicate) as subscription:
            return await subscription.get(timeout)
