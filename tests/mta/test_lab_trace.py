"""The trace builder (``mta.lab_trace``) on synthetic events: hops, their order, the filter."""

from __future__ import annotations

from collections.abc import Iterator

from mta import lab_trace
from mta.events import (
    Bus,
    DeliveryAttempt,
    Event,
    MessageAccepted,
    MessageRefused,
    MessageRetrieved,
    MessageStored,
    ProtocolLine,
    RouteDecided,
    SessionClosed,
    SessionOpened,
)

MID = "<m1@alice.lab>"
ALICE, BOB = "mx.alice.lab", "mx.bob.lab"


class Script:
    """Publishes events the way the servers do, numbered by a real bus."""

    def __init__(self) -> None:
        self.bus = Bus(history=1000)

    def __call__(self, cls: type[Event], server: str, **kw: object) -> None:
        domain = server.removeprefix("mx.")
        self.bus.publish(cls(server=server, domain=domain, **kw))  # type: ignore[arg-type]

    def line(self, server: str, session: str, listener: str, direction: str, text: str,
             **kw: object) -> None:
        step = {"submission": 3, "pop3": 5}.get(listener, 4)
        self(ProtocolLine, server, step=step, session=session, listener=listener,
             peer="127.0.0.1:5000", direction=direction, line=text, **kw)

    def events(self) -> list[Event]:
        return list(self.bus.history())


def submission(s: Script, session: str = "S1", qid: str = "AQ1", mid: str = MID) -> None:
    s(SessionOpened, ALICE, step=3, session=session, listener="submission", peer="127.0.0.1:5000")
    for d, text in (("S", "220 mx.alice.lab"), ("C", "EHLO x"), ("C", "AUTH PLAIN ****")):
        s.line(ALICE, session, "submission", d, text)
    for d, text in (("C", "MAIL FROM:<alice@alice.lab>"), ("C", "RCPT TO:<bob@bob.lab>"),
                    ("C", "DATA"), ("C", "."), ("S", f"250 2.0.0 OK: queued as {qid}")):
        s.line(ALICE, session, "submission", d, text, queue_id=qid)
    s(MessageAccepted, ALICE, step=3, session=session, listener="submission", queue_id=qid,
      message_id=mid, sender="alice@alice.lab", recipients=("bob@bob.lab",),
      outbound=("bob@bob.lab",), size=100)


def relay_and_mx(s: Script, attempt: int, reply: str, *, rs: str, ms: str,
                 qid: str = "AQ1", mid: str = MID, bob_qid: str = "BQ1") -> None:
    s(RouteDecided, ALICE, step=4, queue_id=qid, message_id=mid, destination="bob.lab",
      how="static", hops=("127.0.0.1:2525",))
    s(SessionOpened, ALICE, step=4, session=rs, listener="relay", peer="127.0.0.1:2525")
    s(SessionOpened, BOB, step=4, session=ms, listener="mx", peer="127.0.0.1:6000")
    s.line(BOB, ms, "mx", "S", "220 mx.bob.lab")
    s.line(ALICE, rs, "relay", "S", "220 mx.bob.lab")
    s.line(ALICE, rs, "relay", "C", "MAIL FROM:<alice@alice.lab>", queue_id=qid, message_id=mid)
    s.line(BOB, ms, "mx", "C", "MAIL FROM:<alice@alice.lab>", queue_id=bob_qid)
    s.line(BOB, ms, "mx", "S", reply, queue_id=bob_qid)
    if reply.startswith("250"):
        s(MessageAccepted, BOB, step=4, session=ms, listener="mx", queue_id=bob_qid,
          message_id=mid, recipients=("bob@bob.lab",), local=("bob@bob.lab",))
        s(MessageStored, BOB, step=4, queue_id=bob_qid, message_id=mid, owner="bob@bob.lab",
          mailbox_id=7, uidl="U7", size=120)
    else:
        s(MessageRefused, BOB, step=4, session=ms, listener="mx", queue_id=bob_qid,
          message_id=mid, reply=reply)
    s.line(ALICE, rs, "relay", "S", reply, queue_id=qid, message_id=mid)
    s(DeliveryAttempt, ALICE, step=4, queue_id=qid, message_id=mid, recipients=("bob@bob.lab",),
      hop="127.0.0.1:2525", reply=reply, attempts=attempt,
      outcome="delivered" if reply.startswith("250") else "deferred")


def pop3(s: Script, uidl: str = "U7") -> None:
    s(SessionOpened, BOB, step=5, session="P1", listener="pop3", peer="127.0.0.1:7000")
    s.line(BOB, "P1", "pop3", "C", "RETR 1")
    s(MessageRetrieved, BOB, step=5, session="P1", owner="bob@bob.lab", uidl=uidl, mailbox_id=7)
    s.line(BOB, "P1", "pop3", "C", "QUIT")
    s(SessionClosed, BOB, step=5, session="P1", listener="pop3", peer="127.0.0.1:7000")


def kinds(trace: lab_trace.MessageTrace) -> Iterator[str]:
    """The kinds in trace order, each line once per hop and component (``line:mx``)."""
    last = None
    for hop in trace.hops:
        for event in hop.events:
            kind = f"line:{hop.component}" if event.kind == "line" else event.kind
            if kind != last and event.kind != "session_opened":
                yield kind
            last = kind


def test_a_normal_delivery_in_order() -> None:
    s = Script()
    submission(s)
    relay_and_mx(s, 1, "250 2.0.0 OK: queued as BQ1", rs="R1", ms="M1")
    pop3(s)

    trace = lab_trace.build_trace(s.events(), MID)

    assert [(h.step, h.component, h.server) for h in trace.hops] == [
        (3, "submission", ALICE), (4, "relay", ALICE), (4, "mx", BOB), (5, "pop3", BOB)]
    assert list(kinds(trace)) == ["line:submission", "accepted", "routed", "line:relay",
                                  "attempt", "line:mx", "accepted", "stored", "line:pop3",
                                  "retrieved", "line:pop3", "session_closed"]
    assert trace.queue_ids == ((ALICE, "AQ1"), (BOB, "BQ1"))
    assert [h.queue_id for h in trace.hops] == ["AQ1", None, "BQ1", None]
    assert trace.attempts == (f"{ALICE}: relay id=AQ1 to=<bob@bob.lab> via 127.0.0.1 "
                              "attempt=1 delivered: 250 2.0.0 OK: queued as BQ1",)
    assert lab_trace.build_trace(s.events(), "m1@alice.lab") == trace
    assert lab_trace.build_trace(s.events(), "aq1").hops == trace.hops  # any hop's queue id
    assert lab_trace.build_trace(s.events(), "BQ1").hops == trace.hops


def test_451_then_250_shows_a_relay_and_an_mx_hop_per_attempt() -> None:
    s = Script()
    submission(s)
    relay_and_mx(s, 1, "451 4.3.0 try later", rs="R1", ms="M1", bob_qid="BQ0")
    relay_and_mx(s, 2, "250 2.0.0 OK: queued as BQ1", rs="R2", ms="M2")

    trace = lab_trace.build_trace(s.events(), MID)

    assert [(h.component, h.queue_id) for h in trace.hops] == [
        ("submission", "AQ1"), ("relay", None), ("mx", None), ("relay", None), ("mx", "BQ1")]
    assert [a.split(" attempt=")[1] for a in trace.attempts] == [
        "1 deferred: 451 4.3.0 try later", "2 delivered: 250 2.0.0 OK: queued as BQ1"]
    assert [e.outcome for e in trace.events if isinstance(e, DeliveryAttempt)] == [
        "deferred", "delivered"]
    text = str(trace)
    assert "step 4 mx at mx.bob.lab, client 127.0.0.1:6000 (not accepted)" in text
    assert "  refused: 451 4.3.0 try later" in text
    assert "  routed: bob.lab -> 127.0.0.1:2525  (static route)" in text
    assert text.splitlines()[-2:] == [f"Message-ID: {MID}", "queue ids: AQ1 at mx.alice.lab, "
                                      "BQ1 at mx.bob.lab"]


def test_other_transactions_of_a_shared_connection_are_left_out() -> None:
    s = Script()
    submission(s, qid="AQ1", mid=MID)
    submission(s, session="S1", qid="AQ2", mid="<m2@alice.lab>")  # the same connection
    s.line(ALICE, "S1", "submission", "S", "221 2.0.0 Bye")

    [hop] = lab_trace.build_trace(s.events(), "<m2@alice.lab>").hops

    texts = [str(line) for line in hop.lines]
    assert texts.count("C: MAIL FROM:<alice@alice.lab>") == 1
    assert "S: 250 2.0.0 OK: queued as AQ2" in texts and "C: AUTH PLAIN ****" in texts
    assert "S: 250 2.0.0 OK: queued as AQ1" not in texts
    assert texts[-1] == "S: 221 2.0.0 Bye"
    assert lab_trace.build_trace(s.events(), "<nobody@x>").hops == ()


def test_a_reused_relay_session_is_ordered_by_the_message_not_the_greeting() -> None:
    s = Script()
    submission(s, session="S1", qid="AQ1")
    relay_and_mx(s, 1, "250 2.0.0 OK: queued as BQ1", rs="R1", ms="M1")
    submission(s, session="S2", qid="AQ2", mid="<m2@alice.lab>")
    s(RouteDecided, ALICE, step=4, queue_id="AQ2", message_id="<m2@alice.lab>",
      destination="bob.lab", how="static", hops=("127.0.0.1:2525",))
    s.line(ALICE, "R1", "relay", "C", "MAIL FROM:<alice@alice.lab>", queue_id="AQ2",
           message_id="<m2@alice.lab>")

    trace = lab_trace.build_trace(s.events(), "<m2@alice.lab>")

    assert [h.component for h in trace.hops] == ["submission", "relay"]
    relay = trace.hops[1]
    assert [e.kind for e in relay.events if e.kind != "session_opened"] == [
        "line", "routed", "line"]  # the greeting, then this message's part
    assert "AQ1" not in str(trace)


def test_a_route_without_a_session_is_a_hop_of_its_own() -> None:
    s = Script()
    submission(s)
    s(RouteDecided, ALICE, step=4, queue_id="AQ1", message_id=MID, destination="bob.lab",
      how="mx", answer=("10 mx.bob.lab.",), hops=("mx.bob.lab:25",))
    s(DeliveryAttempt, ALICE, step=4, queue_id="AQ1", message_id=MID,
      recipients=("bob@bob.lab",), reply="connection refused", attempts=1, outcome="deferred")

    trace = lab_trace.build_trace(s.events(), MID)

    assert [h.component for h in trace.hops] == ["submission", "relay"]
    assert str(trace.hops[1]).splitlines() == [
        "step 4 relay at mx.alice.lab",
        "  routed: bob.lab -> mx.bob.lab:25  (DNS MX: 10 mx.bob.lab.)",
        "  attempt: relay id=AQ1 to=<bob@bob.lab> attempt=1 deferred: connection refused"]
