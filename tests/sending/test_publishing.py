"""What the servers publish on the bus for real deliveries through the lab (issue 12).

alice -> bob by submission, relay and MX, then a POP3 fetch: every kind of event, the ids that
follow the message across hops (the contract in ``mta.events``), masking, a 451-then-250
delivery, a bounce, and a stuck subscriber that never slows the servers down.
"""

from __future__ import annotations

import asyncio
import base64
import poplib
import smtplib
from typing import Any

from sending_helpers import ALICE, ALICE_PW, BOB, message, queue_id, submit

from mta.clock import FakeClock
from mta.events import Event, Subscription

BOB_PW = "bob-lab-password"


def fetch_and_delete(port: int) -> None:
    client = poplib.POP3("127.0.0.1", port, timeout=10)
    try:
        client.user(BOB)
        client.pass_(BOB_PW)
        client.retr(1)
        client.dele(1)
    finally:
        client.quit()


async def collect_until(sub: Subscription, done: Any, timeout: float = 10) -> list[Event]:
    """Events from ``sub`` up to and including the first ``done`` accepts."""
    got: list[Event] = []
    while True:
        event = await sub.get(timeout)
        got.append(event)
        if done(event):
            return got


def pop3_closed(event: Event) -> bool:
    return event.kind == "session_closed" and getattr(event, "listener", "") == "pop3"


async def test_a_delivery_publishes_every_hop_with_its_ids(lab_factory: Any,
                                                           clock: FakeClock) -> None:
    lab = await lab_factory(clock=clock, relay=False)
    alice, bob = lab["alice.lab"], lab["bob.lab"]
    with lab.bus.subscribe() as sub:
        reply = await submit(alice.ports["submission"], [BOB],
                             message(headers={"Message-ID": "<m1@alice.lab>"}))
        assert await alice.relay.run_once() == 1
        await asyncio.to_thread(fetch_and_delete, bob.ports["pop3"])
        got = await collect_until(sub, pop3_closed)
    kinds = {e.kind for e in got}
    assert kinds >= {"session_opened", "session_closed", "line", "accepted", "routed", "attempt",
                     "stored", "retrieved", "deleted"}
    first = queue_id(reply)
    [submitted, relayed] = [e for e in got if e.kind == "accepted"]
    assert (submitted.listener, submitted.queue_id) == ("submission", first)
    assert submitted.outbound == (BOB,) and submitted.message_id == "<m1@alice.lab>"
    [routed] = [e for e in got if e.kind == "routed"]
    assert (routed.queue_id, routed.how, routed.message_id) == (first, "static",
                                                                "<m1@alice.lab>")
    assert routed.hops == (f"127.0.0.1:{bob.ports['mx']}",)
    [attempt] = [e for e in got if e.kind == "attempt"]
    assert (attempt.queue_id, attempt.outcome, attempt.attempts) == (first, "delivered", 1)
    relay_lines = [e for e in got if e.kind == "line" and e.listener == "relay"]
    transaction = [e.line for e in relay_lines if e.queue_id == first]
    assert transaction[0].startswith("MAIL FROM:") and any(t.startswith("354") for t in
                                                          transaction)
    assert any(t.startswith("<message, ") for t in transaction)
    assert all(e.message_id == "<m1@alice.lab>" for e in relay_lines if e.queue_id == first)
    assert relayed.listener == "mx" and relayed.message_id == "<m1@alice.lab>"
    mx_lines = [e for e in got if e.kind == "line" and e.listener == "mx"]
    assert {e.line.split(":")[0] for e in mx_lines if e.queue_id == relayed.queue_id} >= {
        "MAIL FROM", "RCPT TO", "DATA", "."}
    assert not any(e.queue_id for e in mx_lines if e.line.startswith(("EHLO", "STARTTLS")))
    [stored] = [e for e in got if e.kind == "stored"]
    assert (stored.queue_id, stored.message_id, stored.owner) == (
        relayed.queue_id, "<m1@alice.lab>", BOB)
    assert stored.mailbox_id and stored.uidl
    [retrieved] = [e for e in got if e.kind == "retrieved"]
    [deleted] = [e for e in got if e.kind == "deleted"]
    for event in (retrieved, deleted):
        assert (event.mailbox_id, event.uidl, event.owner) == (stored.mailbox_id, stored.uidl,
                                                               BOB)
    listeners = {e.listener for e in got if e.kind == "session_opened"}
    assert listeners == {"submission", "relay", "mx", "pop3"}
    sessions = {e.session for e in got if e.kind == "session_opened"}
    assert {e.session for e in got if e.kind == "session_closed"} <= sessions
    assert [e.seq for e in got] == sorted(e.seq for e in got)


async def test_no_secret_reaches_an_event(lab_factory: Any, clock: FakeClock) -> None:
    lab = await lab_factory(clock=clock, relay=False)
    alice, bob = lab["alice.lab"], lab["bob.lab"]
    await bob.store.deliver([BOB], message(), ALICE)
    with lab.bus.subscribe() as sub:
        await submit(alice.ports["submission"], [BOB], message())
        await asyncio.to_thread(fetch_and_delete, bob.ports["pop3"])
        got = await collect_until(sub, pop3_closed)
    text = repr([e.to_dict() for e in got])
    plain = base64.b64encode(f"\0{ALICE}\0{ALICE_PW}".encode()).decode()
    for secret in (ALICE_PW, BOB_PW, plain):
        assert secret not in text
    lines = [e.line for e in got if e.kind == "line" and e.direction == "C"]
    assert "PASS ****" in lines and any(line.startswith("AUTH PLAIN ****") for line in lines)
    [closed] = [e for e in got if e.kind == "session_closed" and e.listener == "submission"]
    assert closed.user == ALICE


async def test_a_deferred_then_delivered_message(lab_factory: Any, clock: FakeClock) -> None:
    lab = await lab_factory(clock=clock, relay=False)
    alice, bob = lab["alice.lab"], lab["bob.lab"]
    bob.faults.script("451 4.3.0 try later")
    with lab.bus.subscribe() as sub:
        first = queue_id(await submit(alice.ports["submission"], [BOB], message()))
        assert await alice.relay.run_once() == 1
        clock.advance(3600)
        assert await alice.relay.run_once() == 1
        got = await collect_until(sub, lambda e: e.kind == "stored")
        attempts = [e for e in got if e.kind == "attempt"]
        while len(attempts) < 2:
            event = await sub.get(10)
            attempts += [event] if event.kind == "attempt" else []
    deferred, delivered = attempts
    assert (deferred.queue_id, deferred.outcome, deferred.attempts) == (first, "deferred", 1)
    assert deferred.reply.startswith("451") and deferred.next_attempt is not None
    assert (delivered.outcome, delivered.attempts, delivered.next_attempt) == ("delivered", 2,
                                                                             None)
    [refused] = [e for e in got if e.kind == "refused"]
    assert refused.listener == "mx" and refused.reply.startswith("451 4.3.0")
    assert len([e for e in got if e.kind == "routed" and e.queue_id == first]) == 2


async def test_a_refused_message_bounces(lab_factory: Any, clock: FakeClock) -> None:
    lab = await lab_factory(clock=clock, relay=False)
    alice, bob = lab["alice.lab"], lab["bob.lab"]
    bob.faults.script("550 5.7.1 not today")
    with lab.bus.subscribe() as sub:
        first = queue_id(await submit(alice.ports["submission"], [BOB], message()))
        assert await alice.relay.run_once() == 1
        got = await collect_until(sub, lambda e: e.kind == "bounced")
        got += sub.drain()
    [attempt] = [e for e in got if e.kind == "attempt"]
    assert attempt.outcome == "failed" and attempt.reply.startswith("550")
    [bounce] = [e for e in got if e.kind == "bounced"]
    assert (bounce.queue_id, bounce.to, bounce.failed) == (first, ALICE, (BOB,))
    [stored] = [e for e in got if e.kind == "stored"]  # the DSN, in alice's own mailbox
    assert stored.queue_id == bounce.bounce_queue_id and stored.owner == ALICE


async def test_a_stuck_subscriber_never_slows_delivery(lab_factory: Any) -> None:
    lab = await lab_factory()
    bob = lab["bob.lab"]
    stuck = lab.bus.subscribe(maxsize=10)  # never read
    total = 1000

    def send_all() -> None:
        with smtplib.SMTP("127.0.0.1", bob.ports["mx"], timeout=30) as client:
            for i in range(total):
                client.sendmail(ALICE, [BOB], message(f"n{i}"))

    await asyncio.to_thread(send_all)
    assert await bob.store.count_entries(BOB) == total
    assert stuck.dropped > 0 and lab.bus.dropped >= stuck.dropped
    assert len(stuck.drain()) == 10
    stuck.close()
