"""``mail_lab.trace``: one message's hops in order across every domain, from the bus.

The order the acceptance of issue 12 asks for, for a normal delivery and a 451-then-250 one:
submission session lines, accepted, routing decision, attempt(s), MX session lines, stored,
and after a fetch the POP3 retrieval.
"""

from __future__ import annotations

import poplib

import pytest

from mua.testing import MailLab

ORDER = ["line:submission", "accepted:submission", "routed", "attempt", "line:mx",
         "stored", "retrieved"]


def fetch_all(mail_lab: MailLab, address: str) -> int:
    """Bob's user agent, in short: log in by POP3, RETR every message, QUIT."""
    account = mail_lab.account(address)
    assert account.pop3_port is not None
    pop = poplib.POP3(account.pop3_host, account.pop3_port, timeout=10)
    try:
        pop.user(account.login)
        pop.pass_(account.password)
        count, _ = pop.stat()
        for number in range(1, count + 1):
            pop.retr(number)
    finally:
        pop.quit()
    return count


def labels(trace) -> list[str]:
    """Each event of the trace as "kind" (lines and accepted with their listener)."""
    out = []
    for hop in trace.hops:
        for event in hop.events:
            if event.kind in ("line", "accepted"):
                out.append(f"{event.kind}:{hop.component}")
            else:
                out.append(event.kind)
    return out


def assert_in_order(found: list[str], wanted: list[str]) -> None:
    """Every wanted label occurs, and each one's first occurrence follows the previous's."""
    firsts = [found.index(label) for label in wanted]
    assert firsts == sorted(firsts), list(zip(wanted, firsts, strict=True))


def test_a_normal_delivery_traced_in_order(mail_lab: MailLab) -> None:
    sent = mail_lab.send(to="bob@bob.lab", subject="Follow me", body="all the way")
    mail_lab.wait_for("bob@bob.lab")
    assert fetch_all(mail_lab, "bob@bob.lab") == 1

    trace = mail_lab.trace(sent.message_id)

    assert [h.component for h in trace.hops] == ["submission", "relay", "mx", "pop3"]
    assert_in_order(labels(trace), ORDER)
    last_mx = max(i for i, label in enumerate(labels(trace)) if label == "line:mx")
    assert last_mx < labels(trace).index("retrieved")
    [stored] = [e for e in trace.events if e.kind == "stored"]
    [retrieved] = [e for e in trace.events if e.kind == "retrieved"]
    assert (retrieved.uidl, retrieved.owner) == (stored.uidl, "bob@bob.lab")
    assert "retrieved: bob@bob.lab uidl " in str(trace)
    assert_made_as_declared(trace.events)


def assert_made_as_declared(made) -> None:
    """Events the bus made from their publishers' dicts (``Bus.emit``) hold only their class's
    fields, equal the event ``__init__`` makes of them, and stay frozen."""
    from dataclasses import FrozenInstanceError, fields

    for event in made:
        names = {f.name for f in fields(event)}
        assert set(vars(event)) <= names, (event.kind, set(vars(event)) - names)
        assert type(event)(**{name: getattr(event, name) for name in names}) == event
        with pytest.raises(FrozenInstanceError):
            event.seq = 0


@pytest.mark.mail_lab(clock="fake")
def test_a_451_then_250_delivery_traced_in_order(mail_lab: MailLab) -> None:
    mail_lab.script_replies("bob.lab", "451 4.3.0 try later")
    sent = mail_lab.send(to="bob@bob.lab", subject="Second time", body="lucky")
    assert mail_lab.advance() == 1    # 451
    assert mail_lab.advance(1) == 1   # the retry: 250
    mail_lab.wait_for("bob@bob.lab", timeout=1)
    fetch_all(mail_lab, "bob@bob.lab")

    trace = mail_lab.trace(sent.message_id)

    assert [(h.component, bool(h.queue_id)) for h in trace.hops] == [
        ("submission", True), ("relay", False), ("mx", False), ("relay", False), ("mx", True),
        ("pop3", False)]
    assert_in_order(labels(trace), ORDER)
    attempts = [e for e in trace.events if e.kind == "attempt"]
    assert [(a.attempts, a.outcome) for a in attempts] == [(1, "deferred"), (2, "delivered")]
    assert attempts[0].next_attempt is not None
    assert [e.reply for e in trace.events if e.kind == "refused"] == ["451 4.3.0 try later"]
    text = str(trace)
    assert "attempt=1 deferred: 451 4.3.0 try later" in text
    assert "(not accepted)" in text.split("attempt=2")[0]
