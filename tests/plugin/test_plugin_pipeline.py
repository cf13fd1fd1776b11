"""End to end with the real user agent: compose, submit to alice.lab, relay to bob.lab, fetch
by POP3 into a Maildir, render; a Chinese subject and body survive the whole trip."""

from __future__ import annotations

import mailbox
from pathlib import Path

from mua.compose import build_message
from mua.fetch import fetch
from mua.profile import Profile, profile_from_dict
from mua.render import parse, render_message
from mua.submit import submit
from mua.testing import LabAccount, MailLab

SUBJECT = "你好，鲍勃：季度报告 ✓"
BODY = "数据都在这里。\nThe numbers are all here.\n"


def profile_for(account: LabAccount, maildir: Path) -> Profile:
    assert account.pop3_port is not None
    return profile_from_dict({
        "address": account.address,
        "maildir": str(maildir),
        "smtp": {"host": account.smtp_host, "port": account.smtp_port, "verify": False,
                 "timeout": 10.0},
        "pop3": {"host": account.pop3_host, "port": account.pop3_port, "verify": False,
                 "timeout": 10.0},
    })


def test_the_six_steps_with_the_real_user_agent(mail_lab: MailLab, tmp_path: Path) -> None:
    alice = mail_lab.account("alice@alice.lab")
    bob = mail_lab.account("bob@bob.lab")
    alice_profile = profile_for(alice, tmp_path / "alice" / "Maildir")
    bob_profile = profile_for(bob, tmp_path / "bob" / "Maildir")

    # steps 1-2: compose and format; step 3: submit to alice.lab's submission listener
    message = build_message(sender=alice.address, sender_name="爱丽丝", to=[bob.address],
                            subject=SUBJECT, body=BODY)
    result = submit(alice_profile, alice.password, message)
    assert result.accepted == [bob.address] and result.reply.startswith("250 2.0.0")

    # step 4: relay to bob.lab's MX (waited for on the store's delivery events)
    [stored] = mail_lab.wait_for(bob.address)
    assert stored["Subject"] == SUBJECT
    trace = mail_lab.trace(str(message["Message-ID"]))
    assert [(hop.component, hop.server) for hop in trace.hops] == [
        ("submission", "mx.alice.lab"), ("relay", "mx.alice.lab"), ("mx", "mx.bob.lab")]

    # step 5: retrieve by POP3 into a Maildir (and delete from the server)
    fetched = fetch(bob_profile, bob.password)
    assert (fetched.on_server, fetched.downloaded, fetched.deleted) == (1, 1, 1)
    assert mail_lab.messages(bob.address) == []
    trace = mail_lab.trace(str(message["Message-ID"]))
    assert [hop.component for hop in trace.hops][-1] == "pop3"
    assert [e.kind for e in trace.hops[-1].events if e.kind in ("retrieved", "deleted")] == [
        "retrieved", "deleted"]
    [key] = fetched.keys
    data = mailbox.Maildir(bob_profile.maildir, create=False).get_bytes(key)

    # step 6: render
    shown = render_message(parse(data))
    assert f"Subject: {SUBJECT}" in shown
    assert "From: 爱丽丝 <alice@alice.lab>" in shown
    assert "数据都在这里。" in shown and "The numbers are all here." in shown
    assert SUBJECT.encode("utf-8") not in data  # on the wire it was RFC 2047 encoded
