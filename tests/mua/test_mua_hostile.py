"""Step 6 on hostile and real-world mail (issue 15): ``mua read``, ``list`` and ``save``.

Each sample under ``tests/mua/samples/`` is a message as it arrives; the big ones are built
here. Every command must exit 0, show the expected text and print no control character
(nothing below 0x20 but LF and TAB, no DEL, no C1), whatever the message holds.
"""

from __future__ import annotations

import mailbox
import re
from pathlib import Path
from types import SimpleNamespace

import pytest
from mua_helpers import make_profile, write_profile

from mta import dsn
from mua import cli
from mua.cli import main

SAMPLES = Path(__file__).parent / "samples"
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


@pytest.fixture
def folder(tmp_path, monkeypatch):
    """Put messages in a fresh Maildir; run ``mua`` on it; check what every command prints."""
    monkeypatch.delenv("MUA_MAILDIR", raising=False)
    profile = write_profile(tmp_path / "bob.toml", make_profile(tmp_path, address="bob@bob.lab"))
    box = mailbox.Maildir(tmp_path / "Maildir", create=True)

    def mua(capsys, *argv):
        code = main(["--profile", str(profile), *argv])
        out, err = capsys.readouterr()
        assert code == 0, err
        assert "Traceback" not in out + err and "internal error" not in err
        assert not CONTROL.search(out + err), repr(CONTROL.search(out + err))
        return out

    return SimpleNamespace(add=box.add, mua=mua, saved=tmp_path / "saved")


def sample(name: str) -> bytes:
    return (SAMPLES / name).read_bytes()


def test_inline_text_parts_after_the_first_are_shown_in_order_and_saveable(folder, capsys):
    folder.add(sample("mixed-inline-text.eml"))
    out = folder.mua(capsys, "read", "1")
    expected = ["Here is the patch", "The text after the inline image.", "+new line",
                "BEGIN:VCALENDAR", "Lab meeting on Thursday", "mailing list footer"]
    positions = [out.index(text) for text in expected]
    assert positions == sorted(positions)  # in the order of the message
    assert "[part 2: attachment-2.txt (text/plain)]" in out
    assert "[part 3: attachment-3.diff (text/x-diff)]" in out
    for line in ("1. attachment-1.png  (image/png", "2. attachment-2.txt  (text/plain",
                 "3. attachment-3.diff  (text/x-diff", "4. attachment-4.ics  (text/calendar",
                 "5. attachment-5.txt  (text/plain"):
        assert line in out
    out = folder.mua(capsys, "save", "1", "--dir", str(folder.saved))
    assert out.count("saved ") == 5
    assert (folder.saved / "attachment-3.diff").read_bytes().endswith(b"+new line")
    assert b"Lab meeting" in (folder.saved / "attachment-4.ics").read_bytes()
    assert "@" in folder.mua(capsys, "list")


def labmail_dsn() -> bytes:
    config = SimpleNamespace(domains=("alice.lab",), hostname="mx.alice.lab")
    failures = [
        dsn.FailedRecipient("nobody@bob.lab", "5.1.1", "550 5.1.1 no such user",
                            remote_mta="mx.bob.lab", last_attempt=1_700_000_000.0),
        dsn.FailedRecipient("late@carol.lab", "4.4.7", "retry time exceeded", smtp_reply=False),
    ]
    return dsn.build(config, original=b"From: alice@alice.lab\r\nSubject: hi\r\n\r\nbody\r\n",
                     sender="alice@alice.lab", queue_id="Q42", arrival=1_700_000_000.0,
                     failures=failures, now=1_700_000_100.0)


@pytest.mark.parametrize("source", ["labmail", "postfix"])
def test_delivery_status_shows_every_recipient_block(folder, capsys, source):
    folder.add(labmail_dsn() if source == "labmail" else sample("bounce-postfix.eml"))
    out = folder.mua(capsys, "read", "1")
    if source == "labmail":
        recipients = [("nobody@bob.lab", "failed", "5.1.1", "smtp; 550 5.1.1 no such user"),
                      ("late@carol.lab", "failed", "4.4.7", "X-labmail; retry time exceeded")]
        assert "Reporting-MTA: dns; mx.alice.lab" in out and "X-Labmail-Queue-ID: Q42" in out
    else:
        recipients = [("nobody@example.org", "failed", "5.1.1",
                       "smtp; 550 5.1.1 <nobody@example.org>: Recipient address"),
                      ("full@example.org", "delayed", "4.2.2", "smtp; 452 4.2.2 Mailbox full")]
        assert "Reporting-MTA: dns; mail.example.org" in out
        assert "rejected: User unknown in local recipient table" in out
    for address, action, status, diagnostic in recipients:
        block = out[out.index(f"Final-Recipient: rfc822; {address}"):]
        block = block[: block.find("\n\n")]
        assert f"Action: {action}" in block and f"Status: {status}" in block
        assert f"Diagnostic-Code: {diagnostic}" in block
    out = folder.mua(capsys, "save", "1", "--dir", str(folder.saved))
    [saved] = [text for text in (p.read_text() for p in folder.saved.iterdir())
               if text.startswith("Reporting-MTA: ")]
    for address, _, status, _ in recipients:
        assert f"Final-Recipient: rfc822; {address}" in saved and f"Status: {status}" in saved


def test_no_escape_sequence_or_markup_reaches_the_terminal(folder, capsys, monkeypatch):
    folder.add(sample("terminal-escapes.eml"))
    out = folder.mua(capsys, "read", "1")
    assert "visible [8mhidden-attribute[0m text [link=x]markup[/link]" in out
    assert "Subject: c reset [bold red]not markup[/] [/] 31m evil" in out
    assert "From: ]0;pwnedEve <eve@evil.example>" in out
    assert "1. reportc.pdf  (application/x-[?1049hevil, " in out
    out = folder.mua(capsys, "list")
    assert "c reset [bold red]not markup[/] [/]" in out
    out = folder.mua(capsys, "save", "1", "--dir", str(folder.saved))
    assert "reportc.pdf (application/x-[?1049hevil, " in out
    monkeypatch.setattr(cli, "_is_terminal", lambda stream: True)  # the rich output paths
    monkeypatch.setenv("COLUMNS", "200")
    out = folder.mua(capsys, "list")
    assert "[bold red]not markup[/] [/]" in out.replace("│", " ")
    out = folder.mua(capsys, "read", "1")
    assert "[link=x]markup[/link]" in out and "[bold red]not markup[/] [/]" in out


def test_charset_labels_follow_the_whatwg_mapping(folder, capsys):
    folder.add(sample("charset-labels.eml"))
    out = folder.mua(capsys, "read", "1")
    assert "Subject: 朱镕基说：你好" in out and "From: 朱镕基 <zhu@example.cn>" in out
    assert "\n朱镕基说：你好\n" in out  # GBK labelled gb2312
    assert "\u201cquoted\u201d costs \u20ac5 \u2014 ok" in out  # windows-1252 as iso-8859-1
    assert "佢哋嘅嘢" in out  # Big5-HKSCS labelled big5
    assert "\u201cus-ascii\u201d" in out  # windows-1252 labelled us-ascii
    assert "\ufffd" not in out
    assert "朱镕基说：你好" in folder.mua(capsys, "list")


def huge_subject_messages() -> dict[str, bytes]:
    word = "=?utf-8?q?caf=C3=A9?= "  # 22 bytes; 40,000 of them near 1 MB
    many_words = f"From: a@x\nSubject: {word * 48_000}\n\nbody one\n"
    folded = "From: a@x\nSubject: start" + "\n folded line of text" * 150_000 + "\n\nbody two\n"
    return {"words": many_words.encode(), "folded": folded.encode()}


@pytest.mark.parametrize("kind", ["words", "folded"])
def test_huge_headers_are_cut_and_marked(folder, capsys, kind):
    data = huge_subject_messages()[kind]
    assert len(data) > 1_000_000
    folder.add(data)
    folder.add(b"From: b@x\nSubject: the next message\n\nhi\n")
    out = folder.mua(capsys, "read", "1")
    subject = next(line for line in out.splitlines() if line.startswith("Subject: "))
    assert subject.endswith(" [...]") and len(subject) < 20_000
    assert ("cafécafé" if kind == "words" else "start folded line of text") in subject
    assert "body one" in out or "body two" in out
    out = folder.mua(capsys, "list")
    assert "the next message" in out  # the listing is not held hostage


def test_five_thousand_parts(folder, capsys):
    parts = "".join(f"--B\nContent-Type: application/octet-stream\n"
                    f"Content-Disposition: attachment; filename=\"f{i}.bin\"\n\n{i}\n"
                    for i in range(5000))
    folder.add(f"From: a@x\nSubject: many\nContent-Type: multipart/mixed; boundary=B\n\n"
               f"--B\nContent-Type: text/plain\n\nthe body\n{parts}--B--\n".encode())
    out = folder.mua(capsys, "read", "1")
    assert "the body" in out and "5000. f4999.bin  (application/octet-stream, 4 B)" in out


def test_a_message_that_fails_to_render_keeps_its_row(folder, capsys, monkeypatch):
    from mua import render

    folder.add(b"From: a@x\nSubject: poison\n\nx\n")
    folder.add(b"From: b@x\nSubject: fine\n\ny\n")
    real = render.list_row

    def fragile(number, msg, size):
        if "poison" in str(msg["Subject"]):
            raise RecursionError("too deep")
        return real(number, msg, size)

    monkeypatch.setattr(render, "list_row", fragile)
    out = folder.mua(capsys, "list")
    assert "[cannot be shown: RecursionError]" in out and "fine" in out
