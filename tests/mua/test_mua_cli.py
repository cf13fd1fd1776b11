"""The ``mua`` command end to end against real servers on loopback ports."""

from __future__ import annotations

from email import policy
from email.parser import BytesParser

import pytest
from mua_helpers import ALICE, BOB, USERS, make_profile, write_profile

from mua.cli import SUBCOMMANDS, Subcommand, build_parser, main


@pytest.fixture
def lab(start_smtp, start_pop3, tmp_path, ca_file, monkeypatch):
    """Alice submits to an SMTP server that delivers into Bob's POP3 maildrop."""
    smtp = start_smtp()
    pop3 = start_pop3()
    smtp.handler.on_message = lambda received: [
        pop3.mailbox(rcpt).add(received.content)
        for rcpt in received.rcpt_tos if rcpt in pop3.mailboxes
    ]
    alice = write_profile(tmp_path / "alice.toml", make_profile(
        tmp_path / "alice", smtp_port=smtp.port, pop3_port=pop3.port, ca_file=ca_file))
    bob = write_profile(tmp_path / "bob.toml", make_profile(
        tmp_path / "bob", address=BOB, name="Bob", smtp_port=smtp.port, pop3_port=pop3.port,
        ca_file=ca_file))
    monkeypatch.delenv("MUA_MAILDIR", raising=False)
    monkeypatch.delenv("MUA_PROFILE", raising=False)
    return smtp, pop3, alice, bob


def run(capsys, monkeypatch, profile, password, *argv):
    monkeypatch.setenv("MUA_PASSWORD", password)
    code = main(["--profile", str(profile), *argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err


def test_send_fetch_list_read_save(lab, capsys, monkeypatch, tmp_path):
    smtp, pop3, alice, bob = lab
    attachment = tmp_path / "季度报告.bin"
    attachment.write_bytes(bytes(range(256)) * 10)
    html = tmp_path / "body.html"
    html.write_text("<p>HTML <script>alert(1)</script>version</p>", encoding="utf-8")
    code, out, err = run(
        capsys, monkeypatch, alice, USERS[ALICE], "send", "--to", "Bob <bob@bob.lab>",
        "--bcc", "bob@bob.lab", "--subject", "你好 Bob", "--body", "Hello from 爱丽丝\n",
        "--html", str(html), "--attach", str(attachment), "--priority", "2", "--trace",
    )
    assert code == 0, err
    assert "sent to bob@bob.lab" in out and "queued as Q1" in out
    assert "C: AUTH PLAIN ****" in err and USERS[ALICE] not in err  # the trace, masked

    code, out, err = run(capsys, monkeypatch, bob, USERS[BOB], "fetch")
    assert code == 0, err
    assert "fetched 1 new message(s)" in out and "1 deleted from the server" in out
    assert "(the server held 1 message(s), " in out and " KB)" in out  # from STAT and LIST
    assert pop3.mailbox(BOB).messages == []

    code, out, err = run(capsys, monkeypatch, bob, USERS[BOB], "list")
    assert code == 0, err
    [header, row] = out.splitlines()
    assert "Subject" in header
    assert row.split()[0] == "1" and "你好 Bob" in row and "Alice Liddell" in row and "@" in row

    code, out, err = run(capsys, monkeypatch, bob, USERS[BOB], "read", "1")
    assert code == 0, err
    assert "Subject: 你好 Bob" in out and "Hello from 爱丽丝" in out
    assert "From: Alice Liddell <alice@alice.lab>" in out
    assert "1. attachment-1.html  (text/html, " in out  # the HTML alternative, saveable
    assert "2. 季度报告.bin  (application/octet-stream, 2.5 KB)" in out
    assert "alert" not in out

    code, out, err = run(capsys, monkeypatch, bob, USERS[BOB], "read", "1", "--raw")
    back = BytesParser(policy=policy.default).parsebytes(out.encode())
    assert back["Subject"] == "你好 Bob" and "Bcc" not in back

    saved = tmp_path / "saved"
    code, out, err = run(capsys, monkeypatch, bob, USERS[BOB], "save", "1", "--dir", str(saved))
    assert code == 0, err
    assert (saved / "季度报告.bin").read_bytes() == attachment.read_bytes()
    code, out, err = run(capsys, monkeypatch, bob, USERS[BOB], "save", "1", "--dir", str(saved))
    assert code == 1 and "already exist" in err and "--force" in err
    code, out, err = run(capsys, monkeypatch, bob, USERS[BOB], "save", "1", "--dir", str(saved),
                         "--force")
    assert code == 0

    code, out, err = run(capsys, monkeypatch, bob, USERS[BOB], "read", "7")
    assert code == 1 and err.startswith("mua: no message 7")


def test_keep_twice_downloads_once_then_plain_fetch_empties(lab, capsys, monkeypatch):
    smtp, pop3, alice, bob = lab
    for n in range(2):
        code, _, err = run(capsys, monkeypatch, alice, USERS[ALICE], "send", "--to", BOB,
                           "--subject", f"m{n}", "--body", "x")
        assert code == 0, err
    code, out, _ = run(capsys, monkeypatch, bob, USERS[BOB], "fetch", "--keep")
    assert code == 0 and "fetched 2 new message(s)" in out and "left on the server" in out
    code, out, _ = run(capsys, monkeypatch, bob, USERS[BOB], "fetch", "--keep", "--trace")
    assert code == 0 and "fetched 0 new message(s)" in out
    assert len(pop3.mailbox(BOB).messages) == 2
    code, out, _ = run(capsys, monkeypatch, bob, USERS[BOB], "fetch")
    assert code == 0 and "fetched 0 new message(s)" in out and "2 deleted" in out
    assert pop3.mailbox(BOB).messages == []
    code, out, _ = run(capsys, monkeypatch, bob, USERS[BOB], "list")
    assert len(out.splitlines()) == 3


@pytest.mark.parametrize("command", [["send", "--to", BOB, "--subject", "s", "--body", "b"],
                                     ["fetch"]])
def test_wrong_password_exit_code_and_one_line(lab, capsys, monkeypatch, command):
    smtp, pop3, alice, bob = lab
    profile = alice if command[0] == "send" else bob
    code, out, err = run(capsys, monkeypatch, profile, "wrong-password", *command)
    assert code == 1
    assert err.count("\n") == 1 and err.startswith("mua: ")
    assert "refused the login" in err and ("535" in err or "-ERR" in err)
    assert "wrong-password" not in err


@pytest.mark.parametrize("option", ["--subject", "--to", "--cc", "--bcc", "--reply-to"])
def test_cr_lf_in_a_header_is_refused_before_connecting(lab, capsys, monkeypatch, option):
    smtp, pop3, alice, bob = lab
    args = {"--subject": "s", "--to": BOB}
    args[option] = ("bob@bob.lab" if option != "--subject" else "s") + "\r\nBcc: evil@evil.lab"
    argv = ["send", "--body", "b"] + [x for kv in args.items() for x in kv]
    code, out, err = run(capsys, monkeypatch, alice, USERS[ALICE], *argv)
    assert code == 2
    assert err.startswith("mua: ") and "CR" in err
    assert smtp.connections == 0 and smtp.messages == []


def test_dry_run_prints_the_message_without_bcc(lab, capsys, monkeypatch):
    smtp, pop3, alice, bob = lab
    code, out, err = run(capsys, monkeypatch, alice, "unused", "send", "--to", BOB,
                         "--bcc", "hidden@x.lab", "--subject", "Grüße", "--body", "héllo",
                         "--reply-to", "r@alice.lab", "--dry-run")
    assert code == 0
    assert "Subject: =?utf-8?" in out and "Reply-To: r@alice.lab" in out
    assert "MIME-Version: 1.0" in out and "Message-ID: <" in out
    assert "hidden" not in out and "Bcc" not in out
    assert smtp.connections == 0


def test_send_reads_body_from_stdin(lab, capsys, monkeypatch):
    import io
    import sys

    smtp, pop3, alice, bob = lab
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO("stdin 正文\n".encode())))
    code, out, err = run(capsys, monkeypatch, alice, USERS[ALICE], "send", "--to", BOB,
                         "--subject", "s")
    assert code == 0, err
    body = BytesParser(policy=policy.default).parsebytes(smtp.messages[0].content)
    assert body.get_content() == "stdin 正文\n"


def test_send_failures_are_one_line(start_smtp, tmp_path, capsys, monkeypatch, ca_file):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    profile = write_profile(tmp_path / "p.toml", make_profile(tmp_path, smtp_port=port))
    code, out, err = run(capsys, monkeypatch, profile, "pw", "send", "--to", BOB,
                         "--subject", "s", "--body", "b")
    assert code == 1 and err == f"mua: cannot connect to 127.0.0.1:{port}: connection refused\n"

    server = start_smtp(refuse_rcpt={"nobody@bob.lab"})
    profile = write_profile(tmp_path / "q.toml", make_profile(
        tmp_path, smtp_port=server.port, ca_file=ca_file))
    code, out, err = run(capsys, monkeypatch, profile, USERS[ALICE], "send", "--to", BOB,
                         "--to", "nobody@bob.lab", "--subject", "s", "--body", "b")
    assert code == 1 and err.count("\n") == 1
    assert "nobody@bob.lab: 550 5.1.1" in err and "was sent to bob@bob.lab" in err


def test_usage_and_profile_errors(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("MUA_PROFILE", raising=False)
    assert main(["list"]) == 2
    assert capsys.readouterr().err == "mua: no profile: use --profile FILE or set MUA_PROFILE\n"
    bad = tmp_path / "bad.toml"
    bad.write_text('address = "a@b.lab"\ncolour = "blue"\n')
    assert main(["--profile", str(bad), "list"]) == 2
    assert capsys.readouterr().err == f"mua: {bad}: unknown key 'colour'\n"
    assert main(["--profile", str(bad), "frobnicate"]) == 2
    assert main(["--help"]) == 0


def test_subcommands_can_be_registered(capsys, monkeypatch):
    def add(p):
        p.add_argument("--flag", action="store_true")

    monkeypatch.setitem(SUBCOMMANDS, "demo", Subcommand("a demo", add, lambda a: 7 if a.flag
                                                        else 0))
    assert "demo" in build_parser().format_help()
    assert main(["demo", "--flag"]) == 7


def test_ctrl_c_at_the_password_prompt_exits_130(tmp_path, monkeypatch, capsys):
    import getpass

    import mua.profile

    def interrupted(prompt=""):
        raise KeyboardInterrupt

    monkeypatch.delenv("MUA_PASSWORD", raising=False)
    monkeypatch.delenv("MUA_PASSWORD_FILE", raising=False)
    monkeypatch.setattr(mua.profile, "_has_terminal", lambda: True)
    monkeypatch.setattr(getpass, "getpass", interrupted)
    profile = write_profile(tmp_path / "bob.toml", make_profile(tmp_path, address=BOB))
    assert main(["--profile", str(profile), "fetch"]) == 130
    assert "interrupted" in capsys.readouterr().err
