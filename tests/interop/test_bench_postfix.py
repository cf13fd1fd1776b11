"""The benchmark's Postfix baseline (tests/bench/postfix_mta.py) accepts and delivers for real:
a private instance on loopback, fed by smtplib, delivering into its own maildir, and gone
without a trace afterwards (Debian package postfix; .ci/run installs it)."""

from __future__ import annotations

import smtplib

import pytest

from tests.bench import postfix_mta

MESSAGES = 20


@pytest.fixture
def master(need_tool) -> str:
    binary = postfix_mta.installed()
    need_tool(binary is not None, "Postfix is not installed (Debian package postfix) or not root")
    assert binary is not None
    return binary


def test_private_postfix_accepts_and_delivers_to_its_maildir(master: str) -> None:
    mta = postfix_mta.PostfixMTA(master, ["bob@bob.lab", "carol@bob.lab"])
    with mta:
        assert mta.proc is not None
        pgid = mta.proc.pid
        with smtplib.SMTP("127.0.0.1", mta.port, timeout=30) as client:
            for index in range(MESSAGES):
                client.sendmail("alice@alice.lab", ["bob@bob.lab"],
                                f"Subject: bench {index}\r\n\r\nhello bob\r\n".encode())
            # recipients are checked at RCPT, as labmail's MX does
            with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
                client.sendmail("alice@alice.lab", ["nobody@bob.lab"], b"Subject: x\r\n\r\nx\r\n")
            assert refused.value.recipients["nobody@bob.lab"][0] == 550
        assert mta.wait_delivered(MESSAGES, timeout=60) is not None
        new = mta.maildir("bob@bob.lab") / "new"
        subjects = {line for path in new.iterdir()
                    for line in path.read_bytes().splitlines() if line.startswith(b"Subject:")}
        assert subjects == {f"Subject: bench {i}".encode() for i in range(MESSAGES)}
        assert mta.delivered() == MESSAGES
        assert mta.cpu_seconds() > 0
    assert not mta.root.exists()
    assert postfix_mta.live_members(pgid) == 0
