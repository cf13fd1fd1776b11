"""``mua.testing``: MailLab.send leaves the caller's message alone; many messages at once."""

from __future__ import annotations

from email.message import EmailMessage

import pytest

pytest.importorskip("mta.lab")


def test_send_does_not_mutate_the_callers_message(mail_lab) -> None:
    message = EmailMessage()
    message["From"] = "alice@alice.lab"
    message["Subject"] = "untouched"
    message.set_content("hello\n")
    sent = mail_lab.send(message, to="bob@bob.lab")
    assert message["To"] is None and message["Message-ID"] is None
    assert sent.message["To"] == "bob@bob.lab" and sent.message_id
    got = mail_lab.wait_for("bob@bob.lab")
    assert [m["Subject"] for m in got] == ["untouched"]
    assert got[0]["Message-ID"] == sent.message_id


def test_wait_for_many_messages(mail_lab) -> None:
    for n in range(12):
        mail_lab.send(to="bob@bob.lab", subject=f"m{n}", body="x")
    got = mail_lab.wait_for("bob@bob.lab", 12, timeout=30)
    assert sorted(str(m["Subject"]) for m in got) == sorted(f"m{n}" for n in range(12))
