"""The ``mail_lab`` fixture (``mua.testing``): send, wait, scripted replies, the clock, traces."""

from __future__ import annotations

import poplib
import re
import smtplib
from email.message import EmailMessage
from pathlib import Path

import pytest

from mua.testing import LabMessage, MailLab, MailWaitTimeout

TRY_LATER = "451 4.3.0 try later"


def test_send_and_wait_for(mail_lab: MailLab) -> None:
    sent = mail_lab.send(to="bob@bob.lab", subject="Hello Bob", body="Lunch at noon?")

    [msg] = mail_lab.wait_for("bob@bob.lab", timeout=5)

    assert isinstance(msg, LabMessage)
    assert msg["Subject"] == "Hello Bob"
    assert msg["From"] == "alice@alice.lab"
    assert msg["Message-ID"] == sent.message_id
    assert msg.text == "Lunch at noon?\n"
    assert msg.envelope_sender == "alice@alice.lab"
    assert msg.mailbox == "bob@bob.lab"
    assert msg.raw.startswith(b"Return-Path: <alice@alice.lab>\r\n")
    assert b"Lunch at noon?" in msg.raw
    assert sent.reply.startswith("250 2.0.0") and sent.queue_id in sent.reply
    assert sent.recipients == ["bob@bob.lab"] and not sent.refused
    assert mail_lab.queue() == []


def test_send_an_email_message_to_several_mailboxes(mail_lab: MailLab) -> None:
    mail_lab.account("carol@bob.lab")
    msg = EmailMessage()
    msg["From"] = "Alice <alice@alice.lab>"
    msg["To"] = "bob@bob.lab, carol@bob.lab"
    msg["Subject"] = "Minutes"
    msg.set_content("Attached are the minutes.")

    sent = mail_lab.send(msg, cc="alice@alice.lab")

    assert sorted(sent.recipients) == ["alice@alice.lab", "bob@bob.lab", "carol@bob.lab"]
    for mailbox in ("alice@alice.lab", "bob@bob.lab", "carol@bob.lab"):
        [got] = mail_lab.wait_for(mailbox)
        assert got["Subject"] == "Minutes"
        assert got["Message-ID"] == sent.message_id


def test_account_is_created_on_request_and_works_with_stdlib_clients(mail_lab: MailLab) -> None:
    carol = mail_lab.account("Carol@bob.lab")
    assert carol.address == "carol@bob.lab"
    assert carol.password == "carol-lab-password"
    assert (carol.smtp_host, carol.pop3_host) == ("127.0.0.1", "127.0.0.1")
    assert carol.smtp_port == mail_lab.domain("bob.lab").ports["submission"]
    assert mail_lab.account("carol@bob.lab") == carol  # the same account, not a new one

    with smtplib.SMTP(carol.smtp_host, carol.smtp_port, timeout=10) as smtp:
        smtp.login(carol.login, carol.password)
        smtp.sendmail(carol.address, ["alice@alice.lab", "bob@bob.lab"],
                      b"Subject: from carol\r\n\r\nhi\r\n")
    assert [m["Subject"] for m in mail_lab.wait_for("alice@alice.lab")] == ["from carol"]
    mail_lab.wait_for("bob@bob.lab")

    assert carol.pop3_port is not None
    pop = poplib.POP3(carol.pop3_host, carol.pop3_port, timeout=10)
    try:
        pop.user(carol.login)
        pop.pass_(carol.password)
        assert pop.stat() == (0, 0)
    finally:
        pop.quit()


def test_account_with_its_own_password(mail_lab: MailLab) -> None:
    dave = mail_lab.account("dave@alice.lab", password="s3cret-dave")
    with smtplib.SMTP(dave.smtp_host, dave.smtp_port, timeout=10) as smtp:
        smtp.login("dave@alice.lab", "s3cret-dave")
    with pytest.raises(ValueError, match="not a lab domain"):
        mail_lab.account("someone@example.com")


def test_an_app_points_smtplib_at_the_submission_port(mail_lab: MailLab) -> None:
    msg = EmailMessage()
    msg["From"] = mail_lab.sender.address
    msg["To"] = "bob@bob.lab"
    msg["Subject"] = "Your order has shipped"
    msg.set_content("Tracking number: 42")

    with smtplib.SMTP(mail_lab.smtp_host, mail_lab.smtp_port, timeout=10) as smtp:
        smtp.starttls()
        smtp.login(mail_lab.sender.address, mail_lab.sender.password)
        smtp.send_message(msg)

    [got] = mail_lab.wait_for("bob@bob.lab")
    assert got["Subject"] == "Your order has shipped"
    assert "Tracking number: 42" in got.text


def test_wait_for_fails_listing_what_arrived_and_what_is_queued(mail_lab: MailLab) -> None:
    mail_lab.account("carol@bob.lab")
    mail_lab.send(to="carol@bob.lab", subject="Receipt #7", body="thanks")
    mail_lab.wait_for("carol@bob.lab")

    with pytest.raises(MailWaitTimeout) as info:
        mail_lab.wait_for("bob@bob.lab", timeout=0.2)

    text = str(info.value)
    assert isinstance(info.value, AssertionError)
    assert text.startswith("mail_lab: bob@bob.lab has 0 of 1 expected message(s) after 0.2s\n")
    assert "arrived (every mailbox of the lab):" in text
    assert "  carol@bob.lab  from alice@alice.lab  subject 'Receipt #7'" in text
    assert "still queued:\n  (nothing)" in text


def reply_to_data(lines: list) -> str:
    """The server's answer to the end of data (the line after the client's lone '.')."""
    end = max(i for i, line in enumerate(lines) if line.direction == "C" and line.line == ".")
    return next(line.line for line in lines[end + 1:] if line.direction == "S")


@pytest.mark.mail_lab(clock="fake")
def test_scripted_451_451_then_250_on_the_third_attempt(mail_lab: MailLab) -> None:
    mail_lab.script_replies("bob.lab", TRY_LATER, TRY_LATER)
    sent = mail_lab.send(to="bob@bob.lab", subject="Persistence", body="third time lucky")

    assert mail_lab.advance() == 1  # the first attempt is due at once: 451
    [row] = mail_lab.queue()
    assert (row.attempts, row.last_reply) == (1, TRY_LATER)
    assert row.queue_id == sent.queue_id

    assert mail_lab.advance(0.5) == 0  # the first retry comes 1 s after the first attempt
    assert mail_lab.advance(0.5) == 1  # second attempt: 451 again; next in 2 s
    [row] = mail_lab.queue()
    assert (row.attempts, row.last_reply) == (2, TRY_LATER)
    assert mail_lab.messages("bob@bob.lab") == []

    assert mail_lab.advance(2) == 1  # third attempt: 250
    assert mail_lab.queue() == []
    [msg] = mail_lab.wait_for("bob@bob.lab", timeout=1)
    assert msg["Subject"] == "Persistence"

    replies = [reply_to_data(hop.lines) for hop in mail_lab.trace(sent.message_id).hops
               if hop.component == "mx"]
    assert replies[:2] == ["451 4.3.0 try later"] * 2
    assert replies[2].startswith("250 2.0.0 OK: queued as")


@pytest.mark.mail_lab(clock="fake")
def test_advance_walks_through_every_retry_until_the_lifetime_ends(mail_lab: MailLab) -> None:
    mail_lab.script_replies("bob.lab", *[TRY_LATER] * 200)
    mail_lab.send(to="bob@bob.lab", subject="Doomed", body="never arrives")

    attempts = mail_lab.advance(400)  # lab lifetime: 300 s; retries 1, 2, 4, 8, 10, 10 ... s

    assert 30 <= attempts <= 40
    assert mail_lab.queue() == []
    [bounce] = mail_lab.wait_for("alice@alice.lab", timeout=1)
    assert bounce.envelope_sender == ""
    assert bounce.get_content_type() == "multipart/report"
    assert mail_lab.messages("bob@bob.lab") == []


@pytest.mark.mail_lab(clock="fake")
def test_fake_clock_moves_only_when_told(mail_lab: MailLab) -> None:
    start = mail_lab.clock.now()
    mail_lab.send(to="bob@bob.lab", subject="Waiting", body="for the clock")

    with pytest.raises(MailWaitTimeout) as info:
        mail_lab.wait_for("bob@bob.lab", timeout=0.2)
    assert re.search(r"at alice\.lab: .* queued +0 +.*\(due\)", str(info.value))  # no attempt yet
    assert "(fake clock: the queue moves only in mail_lab.advance())" in str(info.value)
    assert mail_lab.clock.now() == start

    mail_lab.advance()
    mail_lab.wait_for("bob@bob.lab", timeout=1)


def test_advance_needs_the_fake_clock(mail_lab: MailLab) -> None:
    with pytest.raises(RuntimeError, match="clock='fake'"):
        mail_lab.advance(10)


@pytest.mark.parametrize("mail_lab", [{"clock": "fake"}], indirect=True)
def test_options_as_an_indirect_parameter(mail_lab: MailLab) -> None:
    assert mail_lab.fake_clock
    mail_lab.send(to="bob@bob.lab", subject="x", body="y")
    assert len(mail_lab.queue()) == 1


def test_trace_follows_a_message_across_hops(mail_lab: MailLab) -> None:
    sent = mail_lab.send(to="bob@bob.lab", subject="Trace me", body="hop hop")
    mail_lab.wait_for("bob@bob.lab")

    trace = mail_lab.trace(sent.message_id)

    assert [(h.step, h.component, h.server) for h in trace.hops] == [
        (3, "submission", "mx.alice.lab"), (4, "relay", "mx.alice.lab"), (4, "mx", "mx.bob.lab")]
    submission, relay, mx = trace.hops
    texts = [str(line) for line in submission.lines]
    assert "C: AUTH PLAIN ****" in texts
    assert "C: RCPT TO:<bob@bob.lab>" in texts
    assert f"S: 250 2.0.0 OK: queued as {sent.queue_id}" in texts
    relayed = [str(line) for line in relay.lines]
    assert "C: RCPT TO:<bob@bob.lab>" in relayed
    assert any(t.startswith("S: 354") for t in relayed)  # the relay's side shows 354 too
    assert str(mx.lines[0]).startswith("S: 220 mx.bob.lab")
    assert "C: EHLO mx.alice.lab" in [str(line) for line in mx.lines]
    # stored (committed) comes just before accepted (the 250 that says so)
    assert sorted(e.kind for e in mx.events if e.kind in ("accepted", "stored")) == [
        "accepted", "stored"]
    assert [qid for _, qid in trace.queue_ids][0] == sent.queue_id
    assert trace.queue_ids[1][0] == "mx.bob.lab"
    assert any("attempt=1 delivered: 250" in a for a in trace.attempts)

    text = str(trace)
    assert text.splitlines()[0].startswith("step 3 submission at mx.alice.lab, client 127.0.0.1:")
    assert "  routed: bob.lab -> 127.0.0.1:" in text and "(static route)" in text
    assert text.splitlines()[-2] == f"Message-ID: {sent.message_id}"
    assert text.splitlines()[-1].startswith(f"queue ids: {sent.queue_id} at mx.alice.lab, ")
    assert mail_lab.trace(sent.message_id.strip("<>")).hops == trace.hops
    assert mail_lab.trace(sent.queue_id).hops == trace.hops  # by queue id too


def test_trace_keeps_only_its_own_transaction_of_a_shared_connection(mail_lab: MailLab) -> None:
    alice = mail_lab.sender
    with smtplib.SMTP(alice.smtp_host, alice.smtp_port, timeout=10) as smtp:
        smtp.login(alice.login, alice.password)
        for n in (1, 2):
            smtp.sendmail(alice.address, ["alice@alice.lab"],
                          f"Message-ID: <m{n}@test>\r\nSubject: n{n}\r\n\r\nbody\r\n".encode())
    mail_lab.wait_for("alice@alice.lab", count=2)

    [hop] = mail_lab.trace("<m2@test>").hops
    texts = [str(line) for line in hop.lines]
    assert len([t for t in texts if t.startswith("C: MAIL FROM:<alice@alice.lab>")]) == 1
    assert len([t for t in texts if t.startswith("C: <message, ")]) == 1
    assert "C: AUTH PLAIN ****" in texts and texts[-1] == "S: 221 2.0.0 Bye"
    [first] = mail_lab.trace("<m1@test>").hops
    assert first.peer == hop.peer and first.queue_id != hop.queue_id
    assert f"S: 250 2.0.0 OK: queued as {hop.queue_id}" in texts
    assert f"S: 250 2.0.0 OK: queued as {first.queue_id}" not in texts
    assert mail_lab.trace("<nobody@test>").hops == ()


@pytest.mark.mail_lab(catch_all="test.lab")
def test_catch_all_domain_takes_any_address_without_auth(mail_lab: MailLab) -> None:
    assert mail_lab.catch_all == "catch-all@test.lab"
    assert mail_lab.mx_port == mail_lab.domain("test.lab").ports["mx"]

    with smtplib.SMTP(mail_lab.smtp_host, mail_lab.mx_port, timeout=10) as smtp:
        smtp.sendmail("noreply@shop.example", ["anyone@test.lab"],
                      b"To: anyone@test.lab\r\nSubject: Welcome\r\n\r\nhello\r\n")
        smtp.sendmail("noreply@shop.example", ["other@test.lab"],
                      b"To: other@test.lab\r\nSubject: Reset\r\n\r\nreset\r\n")
        with pytest.raises(smtplib.SMTPRecipientsRefused):  # never an open relay
            smtp.sendmail("noreply@shop.example", ["bob@bob.lab"], b"Subject: x\r\n\r\nx\r\n")
    mail_lab.send(to="third@test.lab", subject="Via the relay", body="from alice")

    assert [m["Subject"] for m in mail_lab.wait_for("anyone@test.lab")] == ["Welcome"]
    assert [m["Subject"] for m in mail_lab.wait_for("Other@test.lab")] == ["Reset"]
    assert [m["Subject"] for m in mail_lab.wait_for("third@test.lab")] == ["Via the relay"]
    everything = mail_lab.wait_for("test.lab", count=3)
    assert [m.mailbox for m in everything] == ["catch-all@test.lab"] * 3
    assert [m.raw for m in mail_lab.messages("catch-all@test.lab")] == [m.raw for m in everything]
    assert mail_lab.messages("nobody@test.lab") == []


@pytest.mark.mail_lab(domains={"shop.example": ["orders"], "customer.example": ["jo"]},
                      tls="off")
def test_own_domains(mail_lab: MailLab) -> None:
    assert mail_lab.domains == ["shop.example", "customer.example"]
    assert mail_lab.sender.address == "orders@shop.example"
    mail_lab.send(to="jo@customer.example", subject="Order 1", body="shipped")
    [msg] = mail_lab.wait_for("jo@customer.example")
    assert msg["From"] == "orders@shop.example"


def test_each_test_has_its_own_lab(mail_lab: MailLab, tmp_path: Path) -> None:
    assert mail_lab.folder.parent == tmp_path
    assert sorted(p.name for p in mail_lab.folder.glob("*.db")) == ["alice.lab.db", "bob.lab.db"]
    assert mail_lab.messages("bob@bob.lab") == []
    ports = [p for d in mail_lab.domains for p in mail_lab.domain(d).ports.values()]
    assert len(set(ports)) == len(ports) == 6
