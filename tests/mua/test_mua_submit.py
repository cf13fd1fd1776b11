"""Step 3: submission to a real SMTP server (aiosmtpd) on a loopback ephemeral port."""

from __future__ import annotations

import base64
import socket
from email import policy
from email.parser import BytesParser

import pytest
from mua_helpers import ALICE, USERS, make_profile

from mua.compose import Attachment, build_message
from mua.submit import SubmitError, submit
from mua.trace import printing, recording

PASSWORD = USERS[ALICE]


def message(**kwargs):
    base = dict(sender=ALICE, sender_name="Alice Liddell", to=["bob@bob.lab"],
                subject="你好 Bob", body="Hello Bob\n.leading dot\n")
    return build_message(**{**base, **kwargs})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_submit_with_starttls_auth_and_bcc(start_smtp, tmp_path, ca_file):
    server = start_smtp()
    profile = make_profile(tmp_path, smtp_port=server.port, ca_file=ca_file,
                           smtp_security="starttls")
    msg = message(cc=["carol@carol.lab"],
                  attachments=[Attachment("图.png", b"\x89PNG\r\n\x1a\n" + bytes(300))])
    result = submit(profile, PASSWORD, msg, bcc=["secret@hidden.lab"])

    assert result.accepted == ["bob@bob.lab", "carol@carol.lab", "secret@hidden.lab"]
    assert result.refused == {}
    assert result.reply.startswith("250 2.0.0 OK queued as Q1")
    [got] = server.messages
    assert got.login == ALICE
    assert got.mail_from == ALICE
    assert got.rcpt_tos == ["bob@bob.lab", "carol@carol.lab", "secret@hidden.lab"]
    assert b"hidden.lab" not in got.content and b"Bcc" not in got.content
    back = BytesParser(policy=policy.default).parsebytes(got.content)
    assert back["Subject"] == "你好 Bob"
    assert back.get_body(("plain",)).get_content().replace("\r\n", "\n") == (
        "Hello Bob\n.leading dot\n"
    )
    [att] = back.iter_attachments()
    assert att.get_filename() == "图.png"
    assert att.get_payload(decode=True) == b"\x89PNG\r\n\x1a\n" + bytes(300)


def test_opportunistic_starttls_without_verification_and_plain(start_smtp, tmp_path):
    tls_server = start_smtp()
    profile = make_profile(tmp_path, smtp_port=tls_server.port)
    # default verification against the system CAs fails on the test CA: a clear error
    with pytest.raises(SubmitError, match="certificate not trusted"):
        submit(profile, PASSWORD, message())
    lab = make_profile(tmp_path, smtp_port=tls_server.port)
    lab = lab.__class__(**{**lab.__dict__, "smtp": lab.smtp.__class__(
        **{**lab.smtp.__dict__, "verify": False})})
    assert submit(lab, PASSWORD, message()).accepted == ["bob@bob.lab"]

    plain = start_smtp(tls=False)
    assert submit(make_profile(tmp_path, smtp_port=plain.port), PASSWORD,
                  message()).accepted == ["bob@bob.lab"]


def test_starttls_required_but_not_offered(start_smtp, tmp_path):
    server = start_smtp(tls=False)
    profile = make_profile(tmp_path, smtp_port=server.port, smtp_security="starttls")
    with pytest.raises(SubmitError, match="does not offer STARTTLS"):
        submit(profile, PASSWORD, message())
    assert server.messages == []


def test_implicit_tls(start_smtp, tmp_path, ca_file):
    server = start_smtp(implicit_tls=True)
    profile = make_profile(tmp_path, smtp_port=server.port, ca_file=ca_file,
                           smtp_security="tls")
    assert submit(profile, PASSWORD, message()).accepted == ["bob@bob.lab"]


def test_wrong_password_names_the_reply(start_smtp, tmp_path, ca_file):
    server = start_smtp()
    profile = make_profile(tmp_path, smtp_port=server.port, ca_file=ca_file)
    with pytest.raises(SubmitError, match=r"refused the login for alice@alice.lab: 535") as e:
        submit(profile, "wrong", message())
    assert e.value.code == 535
    assert server.messages == []


def test_connection_refused(tmp_path):
    profile = make_profile(tmp_path, smtp_port=free_port())
    with pytest.raises(SubmitError, match="cannot connect to 127.0.0.1:.*connection refused"):
        submit(profile, PASSWORD, message())


def test_sender_refused_553(start_smtp, tmp_path, ca_file):
    server = start_smtp(refuse_sender={ALICE})
    profile = make_profile(tmp_path, smtp_port=server.port, ca_file=ca_file)
    with pytest.raises(SubmitError, match="refused the sender alice@alice.lab: 553 5.7.1") as e:
        submit(profile, PASSWORD, message())
    assert e.value.code == 553


def test_every_recipient_refused_550(start_smtp, tmp_path, ca_file):
    server = start_smtp(refuse_rcpt={"bob@bob.lab"})
    profile = make_profile(tmp_path, smtp_port=server.port, ca_file=ca_file)
    with pytest.raises(SubmitError, match="refused every recipient.*550 5.1.1") as e:
        submit(profile, PASSWORD, message())
    assert e.value.code == 550
    assert server.messages == []


def test_partial_refusal_is_reported(start_smtp, tmp_path, ca_file):
    server = start_smtp(refuse_rcpt={"nobody@bob.lab"})
    profile = make_profile(tmp_path, smtp_port=server.port, ca_file=ca_file)
    result = submit(profile, PASSWORD, message(to=["bob@bob.lab", "nobody@bob.lab"]))
    assert result.accepted == ["bob@bob.lab"]
    assert result.refused == {"nobody@bob.lab": (550, "5.1.1 no such user here")}
    assert server.messages[0].rcpt_tos == ["bob@bob.lab"]


def test_trace_records_both_directions_and_masks_secrets(start_smtp, tmp_path, ca_file):
    server = start_smtp()
    profile = make_profile(tmp_path, smtp_port=server.port, ca_file=ca_file)
    with recording() as records:
        submit(profile, PASSWORD, message())
    assert {r.step for r in records} == {3}
    assert {r.peer for r in records} == {f"127.0.0.1:{server.port}"}
    lines = [(r.direction, r.line) for r in records]
    commands = [line.split(" ")[0].upper() for d, line in lines if d == "C"]
    for verb in ("EHLO", "STARTTLS", "AUTH", "MAIL", "RCPT", "DATA", "QUIT"):
        assert verb in commands
    assert ("S", "250 2.0.0 OK queued as Q1") in lines
    secret = base64.b64encode(f"\0{ALICE}\0{PASSWORD}".encode()).decode()
    everything = "\n".join(line for _, line in lines)
    assert PASSWORD not in everything and secret not in everything
    assert "AUTH PLAIN ****" in everything


def test_trace_masks_auth_login_continuations(start_smtp, tmp_path, ca_file, capsys):
    server = start_smtp()
    profile = make_profile(tmp_path, smtp_port=server.port, ca_file=ca_file)
    with printing():
        with pytest.raises(SubmitError):
            submit(profile, "wrong-secret", message())  # tries PLAIN, then LOGIN
    err = capsys.readouterr().err
    assert "AUTH LOGIN" in err and "334" in err
    for secret in ("wrong-secret", base64.b64encode(b"wrong-secret").decode()):
        assert secret not in err
    assert "****" in err


def test_every_failure_in_the_table_is_reachable() -> None:
    """First match wins in submit's error table: no line may hide a later one."""
    from mua.submit import _FAILURES

    kinds = [kind for kind, _ in _FAILURES]
    for i, later in enumerate(kinds):
        hidden_by = [k.__name__ for k in kinds[:i] if issubclass(later, k)]
        assert not hidden_by, f"{later.__name__} is hidden by {hidden_by}"
