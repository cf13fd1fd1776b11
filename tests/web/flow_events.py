"""Events of one alice -> bob delivery as the servers publish them, built by hand.

The flow page's tests that must not depend on timing (replay, two streams merged, 200 events)
publish these on the bus themselves; the acceptance tests use real deliveries.
"""

from __future__ import annotations

import dataclasses
import itertools
import time
from collections.abc import Iterator

from mta.events import (
    DeliveryAttempt,
    Event,
    MessageAccepted,
    MessageRetrieved,
    MessageStored,
    ProtocolLine,
    RouteDecided,
    SessionClosed,
    SessionOpened,
)

ALICE, BOB = "alice@alice.lab", "bob@bob.lab"
A = {"server": "mx.alice.lab", "domain": "alice.lab"}
B = {"server": "mx.bob.lab", "domain": "bob.lab"}


def _dialogue(where: dict[str, str], step: int, listener: str, session: str,
              lines: list[str], **ids: str | None) -> Iterator[Event]:
    yield SessionOpened(**where, step=step, session=session, listener=listener, peer="127.0.0.1:1")
    for line in lines:
        direction, _, text = line.partition(" ")
        yield ProtocolLine(**where, step=step, session=session, listener=listener,
                           peer="127.0.0.1:1", direction=direction, line=text, **ids)
    yield SessionClosed(**where, step=step, session=session, listener=listener, peer="127.0.0.1:1")


def delivery(n: int = 1, *, fail_once: bool = False, start: float | None = None) -> list[Event]:
    """Every event of message ``n``: submission, queue, route, relay and MX (451 first when
    ``fail_once``), store, POP3 retrieval; times 1 ms apart from ``start``."""
    mid, qa, qb, uidl = f"<m{n}@alice.lab>", f"QA{n:04d}", f"QB{n:04d}", f"u{n:031d}"
    envelope = [f"C MAIL FROM:<{ALICE}>", "S 250 2.1.0 OK", f"C RCPT TO:<{BOB}>",
                "S 250 2.1.5 OK", "C DATA", "S 354 End data with <CR><LF>.<CR><LF>", "C ."]
    events: list[Event] = [
        *_dialogue(A, 3, "submission", f"s{n}", ["S 220 mx.alice.lab ESMTP", "C EHLO ua",
                   "S 250-mx.alice.lab", "S 250 AUTH PLAIN", "C AUTH PLAIN ****",
                   "S 235 2.7.0 OK", *envelope, f"S 250 2.0.0 OK: queued as {qa}",
                   "C QUIT", "S 221 Bye"], queue_id=qa, message_id=mid),
        MessageAccepted(**A, step=3, session=f"s{n}", queue_id=qa, message_id=mid,
                        listener="submission", sender=ALICE, recipients=(BOB,), size=300,
                        outbound=(BOB,)),
        RouteDecided(**A, step=4, queue_id=qa, message_id=mid, destination="bob.lab",
                     how="static", answer=("127.0.0.1:2525",), hops=("127.0.0.1:2525",)),
    ]
    tries = [("451 4.3.0 try later", "deferred"), ("250 2.0.0 OK", "delivered")] if fail_once \
        else [("250 2.0.0 OK", "delivered")]
    for attempt, (reply, outcome) in enumerate(tries, 1):
        relay = ["S 220 mx.bob.lab ESMTP", "C EHLO mx.alice.lab", "S 250 mx.bob.lab",
                 *envelope, f"S {reply}", "C QUIT", "S 221 Bye"]
        # the same conversation seen from both ends: alice.lab's relay and bob.lab's MX
        client = _dialogue(A, 4, "relay", f"r{n}.{attempt}", relay, queue_id=qa,
                           message_id=mid)
        server = _dialogue(B, 4, "mx", f"x{n}.{attempt}", relay, queue_id=qb, message_id=mid)
        events += [e for pair in zip(client, server, strict=True) for e in pair]
        events.append(DeliveryAttempt(**A, step=4, queue_id=qa, message_id=mid,
                                      recipients=(BOB,), hop="127.0.0.1:2525", reply=reply,
                                      outcome=outcome, attempts=attempt,
                                      next_attempt=time.time() + 1 if outcome == "deferred"
                                      else None))
    events += [
        MessageStored(**B, step=4, session=f"x{n}.{len(tries)}", queue_id=qb, message_id=mid,
                      mailbox_id=n, uidl=uidl, owner=BOB, size=320, sender=ALICE),
        *_dialogue(B, 5, "pop3", f"p{n}", ["S +OK POP3 ready", f"C USER {BOB}", "S +OK",
                   "C PASS ****", "S +OK logged in", "C STAT", "S +OK 1 320", "C LIST",
                   "S +OK 1 message", "S 1 320", "S .", "C RETR 1",
                   "S +OK 320 octets", "C DELE 1", "S +OK", "C QUIT", "S +OK bye"]),
    ]
    events.insert(-1, MessageRetrieved(**B, step=5, session=f"p{n}", mailbox_id=n, uidl=uidl,
                                       owner=BOB, size=320))
    clock = itertools.count()
    # message n starts n/10 s from now: the messages of one test never overlap in time
    base = start if start is not None else time.time() + n / 10
    return [dataclasses.replace(e, time=base + next(clock) / 1000) for e in events]
