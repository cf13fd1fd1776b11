"""One message's way through every hop, rebuilt from the bus's events (steps 3, 4 and 5).

``build_trace(events, ident)`` takes the events a lab's bus held (``mta.events``) and the
Message-ID or any hop's queue id of one message, and returns its ``MessageTrace``: the ordered
hops that carried it. A hop is one server's part in one session: the session-level lines
(greeting, EHLO, STARTTLS, AUTH, QUIT: lines without a queue id), the lines of *this*
message's transaction (other transactions of a shared connection are left out) and the
events about it. The hops come in the order of their first event about the message:

1. submission (step 3): the session lines and ``accepted``;
2. relay (step 4): the routing decision, the relay's session lines and the attempt(s);
3. MX (step 4): the session lines, ``accepted`` (or ``refused``) and ``stored``;
4. after a fetch, POP3 (step 5): the whole session (it is about a maildrop) and ``retrieved``.

A 451-then-250 delivery shows a relay hop and an MX hop per attempt. The correlation follows
the contract in ``mta.events``: the Message-ID names the queue ids (``accepted``, ``refused``,
``routed``), the queue ids name the transactions' lines and ``stored``, and ``stored`` names
the UIDL that POP3's ``retrieved`` carries. ``str(trace)`` is the transcript people read.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from mta.events import (
    BounceGenerated,
    DeliveryAttempt,
    Event,
    MessageAccepted,
    MessageDeleted,
    MessageRefused,
    MessageRetrieved,
    MessageStored,
    ProtocolLine,
    RouteDecided,
    SessionClosed,
    SessionOpened,
)

HOW = {"static": "static route", "mx": "DNS MX", "a": "DNS A, the implicit MX"}


@dataclass(frozen=True)
class TraceLine:
    """One protocol line as a server (or the relay) saw it: direction "C" or "S"."""

    step: int
    component: str      # "submission", "relay", "mx" or "pop3"
    server: str         # the server's hostname, e.g. "mx.bob.lab"
    peer: str           # the other end's address:port
    direction: str
    line: str

    def __str__(self) -> str:
        return f"{self.direction}: {self.line}"


@dataclass(frozen=True)
class Hop:
    """One server's part in carrying the message: one session (or, for a relay attempt that
    found no next hop, just its routing decision and attempt)."""

    step: int
    component: str
    server: str
    peer: str
    queue_id: str | None  # the id this hop's accepting 250 named (None: not accepted here)
    events: tuple[Event, ...]

    @property
    def lines(self) -> tuple[TraceLine, ...]:
        return tuple(TraceLine(self.step, self.component, self.server, e.peer, e.direction,
                               e.line) for e in self.events if isinstance(e, ProtocolLine))

    def __str__(self) -> str:
        where = "to" if self.component == "relay" else "client"
        head = f"step {self.step} {self.component} at {self.server}"
        if self.peer:
            head += f", {where} {self.peer}"
        if self.component in ("submission", "mx") and not self.queue_id:
            head += " (not accepted)"
        body = [text for e in self.events if (text := describe(e))]
        return "\n".join([head] + [f"  {text}" for text in body])


@dataclass(frozen=True)
class MessageTrace:
    """The hops of one message in order, its Message-ID and the queue ids that named it.
    ``str()`` is the transcript; iterating gives every hop's ``TraceLine``s."""

    message_id: str
    hops: tuple[Hop, ...]
    queue_ids: tuple[tuple[str, str], ...]  # (server, queue id) per accepting hop

    @property
    def events(self) -> list[Event]:
        return [event for hop in self.hops for event in hop.events]

    @property
    def lines(self) -> list[TraceLine]:
        return [line for hop in self.hops for line in hop.lines]

    @property
    def attempts(self) -> tuple[str, ...]:
        """The relay's attempts as text, one line per recipient (``attempt_lines``)."""
        return tuple(f"{e.server}: {text}" for e in self.events
                     if isinstance(e, DeliveryAttempt) for text in attempt_lines(e))

    def __iter__(self) -> Iterator[TraceLine]:
        return iter(self.lines)

    def __len__(self) -> int:
        return len(self.lines)

    def __str__(self) -> str:
        parts = ([str(hop) for hop in self.hops]
                 or [f"(no event names {self.message_id})"])
        parts.append(f"Message-ID: {self.message_id}")
        ids = ", ".join(f"{qid} at {server}" for server, qid in self.queue_ids) or "-"
        parts.append(f"queue ids: {ids}")
        return "\n".join(parts)


# -- one event as text ------------------------------------------------------------------------


def attempt_lines(event: DeliveryAttempt) -> list[str]:
    """A relay attempt as the relay's log said it, one line per recipient."""
    via = f" via {event.hop.rpartition(':')[0] or event.hop}" if event.hop else ""
    return [f"relay id={event.queue_id} to=<{rcpt}>{via} attempt={event.attempts} "
            f"{event.outcome}: {event.reply}" for rcpt in event.recipients or ("",)]


def route_text(event: RouteDecided) -> str:
    """``bob.lab -> 127.0.0.1:2525  (static route)``: the relay's decision as published."""
    if event.error:
        return f"{event.destination}: no route ({event.error})"
    how = HOW.get(event.how, event.how)
    answer = f": {', '.join(event.answer)}" if event.answer and event.how != "static" else ""
    return f"{event.destination} -> {', '.join(event.hops)}  ({how}{answer})"


def describe(event: Event) -> str:
    """One line for the transcript ("" for the session's own open/close)."""
    if isinstance(event, ProtocolLine):
        return f"{event.direction}: {event.line}"
    if isinstance(event, MessageAccepted):
        where = ", ".join(f"{n} {', '.join(v)}" for n, v in
                          (("local", event.local), ("outbound", event.outbound)) if v)
        return (f"accepted: queue id {event.queue_id}, <{event.sender}> -> "
                f"{', '.join(event.recipients)}, {event.size} bytes"
                + (f" ({where})" if where else ""))
    if isinstance(event, MessageRefused):
        return f"refused: {event.reply}"
    if isinstance(event, RouteDecided):
        return f"routed: {route_text(event)}"
    if isinstance(event, DeliveryAttempt):
        return "\n  ".join(f"attempt: {text}" for text in attempt_lines(event))
    if isinstance(event, MessageStored):
        return (f"stored: mailbox {event.owner}, row {event.mailbox_id}, uidl {event.uidl}, "
                f"{event.size} bytes")
    if isinstance(event, BounceGenerated):
        return f"bounced: DSN {event.bounce_queue_id} to <{event.to}> for {', '.join(event.failed)}"
    if isinstance(event, (MessageRetrieved, MessageDeleted)):
        return f"{event.kind}: {event.owner} uidl {event.uidl}"
    return ""


# -- grouping events into hops --------------------------------------------------------------------


@dataclass
class _Group:
    """The events of one session (or of one relay run that opened none), in order."""

    server: str
    session: str | None
    events: list[Event] = field(default_factory=list)

    def queue_ids(self) -> set[str]:
        return {_upper(e.queue_id) for e in self.events if e.queue_id}


def _upper(value: str | None) -> str:
    return (value or "").upper()


def _bare(message_id: str | None) -> str:
    return (message_id or "").strip().strip("<>").strip()


def _group(events: Iterable[Event]) -> list[_Group]:
    """Sessions by (server, session id); a sessionless event joins the latest group of its
    server that names its queue id, except a routing decision: it starts a group of its own,
    which the relay session that then carries that queue id takes over."""
    groups: list[_Group] = []
    by_session: dict[tuple[str, str], _Group] = {}
    routed: dict[tuple[str, str], _Group] = {}  # decisions no session has taken up yet
    for event in events:
        qid = _upper(event.queue_id)
        if event.session is not None:
            group = by_session.get((event.server, event.session))
            if group is None:
                group = by_session[(event.server, event.session)] = _Group(
                    event.server, event.session)
                groups.append(group)
            pending = routed.pop((event.server, qid), None) if qid else None
            if pending is not None:
                group.events = sorted(group.events + pending.events, key=lambda e: e.seq)
                groups.remove(pending)
        else:
            group = _home(groups, event)
            if group is None:
                group = _Group(event.server, None)
                groups.append(group)
                if isinstance(event, RouteDecided) and qid:
                    routed[(event.server, qid)] = group
        group.events.append(event)
    return groups


def _home(groups: Sequence[_Group], event: Event) -> _Group | None:
    """The group a sessionless event (stored, attempt, bounced) belongs to, if any."""
    qid = _upper(event.queue_id)
    if isinstance(event, RouteDecided) or not qid:
        return None
    return next((g for g in reversed(groups)
                 if g.server == event.server and qid in g.queue_ids()), None)


# -- the trace -------------------------------------------------------------------------------------


@dataclass
class _Wanted:
    """What names the message: its Message-ID, queue ids and (server, UIDL)s."""

    message_id: str
    queue_ids: set[str]
    uidls: set[tuple[str, str]]

    def names(self, event: Event) -> bool:
        if event.message_id and _bare(event.message_id) == self.message_id:
            return True
        if event.queue_id and _upper(event.queue_id) in self.queue_ids:
            return True
        return bool(event.uidl) and (event.server, event.uidl or "") in self.uidls


def _wanted(events: Sequence[Event], ident: str) -> tuple[str, _Wanted]:
    """Resolve a Message-ID or a queue id to everything that names that message; with the
    Message-ID as published (for the transcript)."""
    wanted_id = _bare(ident)
    named = next((e.message_id for e in events  # a queue id names its Message-ID
                  if e.message_id and e.queue_id and _upper(e.queue_id) == _upper(wanted_id)),
                 None)
    if named:
        wanted_id = _bare(named)
    shown = next((e.message_id for e in events
                  if e.message_id and _bare(e.message_id) == wanted_id), ident.strip())
    queue_ids = {_upper(e.queue_id) for e in events
                 if e.queue_id and e.message_id and _bare(e.message_id) == wanted_id}
    if not queue_ids:  # a queue id whose Message-ID nobody published
        queue_ids = {_upper(wanted_id)}
    uidls = {(e.server, e.uidl) for e in events if isinstance(e, MessageStored)
             and e.uidl and (_upper(e.queue_id) in queue_ids
                             or _bare(e.message_id) == wanted_id)}
    return shown, _Wanted(wanted_id, queue_ids, uidls)


def _hop(group: _Group, wanted: _Wanted) -> Hop | None:
    """The group's part in the message: session-level events plus those naming it."""
    if not any(wanted.names(e) for e in group.events):
        return None
    kept = tuple(e for e in group.events if wanted.names(e) or _session_level(e))
    opened = next((e for e in group.events if isinstance(e, (SessionOpened, ProtocolLine))),
                  None)
    component = opened.listener if opened is not None else "relay"
    peer = opened.peer if opened is not None else ""
    accepted = next((e.queue_id for e in kept if isinstance(e, MessageAccepted)), None)
    step = next((e.step for e in kept if e.step), 0)
    return Hop(step, component, group.server, peer, accepted, kept)


def _session_level(event: Event) -> bool:
    """Lines and session events that belong to no one transaction (no id names them)."""
    return (isinstance(event, (ProtocolLine, SessionOpened, SessionClosed))
            and not event.queue_id and not event.message_id and not event.uidl)


def build_trace(events: Iterable[Event], ident: str) -> MessageTrace:
    """The trace of the message whose Message-ID (with or without <>) or queue id (any
    hop's) is ``ident``, from ``events`` in publishing order."""
    events = sorted(events, key=lambda e: e.seq)
    shown, wanted = _wanted(events, ident)
    # only the sessions that carried it, and the sessionless events about it: a lab's bus
    # holds every message's events
    sessions = {(e.server, e.session) for e in events if e.session and wanted.names(e)}
    mine = [e for e in events if ((e.server, e.session) in sessions if e.session
                                  else wanted.names(e))]
    hops = [hop for group in _group(mine) if (hop := _hop(group, wanted)) is not None]
    # in the order of each hop's first event about the message (a reused connection's
    # greeting may be older than the message itself)
    hops.sort(key=lambda hop: next(e.seq for e in hop.events if wanted.names(e)))
    queue_ids = tuple((e.server, e.queue_id or "") for hop in hops for e in hop.events
                      if isinstance(e, MessageAccepted))
    return MessageTrace(shown, tuple(hops), queue_ids)
