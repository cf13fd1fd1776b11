"""Step 6: rendering, including hostile messages that must render or be refused cleanly."""

from __future__ import annotations

import base64
import os

import pytest

from mua.compose import Attachment, build_message, to_bytes
from mua.render import (
    attachments,
    body_text,
    html_to_text,
    list_row,
    parse,
    render_message,
    safe_filename,
)


def test_render_decodes_headers_body_and_lists_attachments():
    msg = build_message(
        sender="alice@alice.lab", sender_name="爱丽丝", to=["鲍勃 <bob@bob.lab>"],
        subject="季度报告", body="正文 body\n", priority=1, cc=["c@x.lab"],
        attachments=[Attachment("报告.pdf", b"%PDF" * 300)],
    )
    text = render_message(parse(to_bytes(msg)))
    assert "From: 爱丽丝 <alice@alice.lab>" in text
    assert "To: 鲍勃 <bob@bob.lab>" in text
    assert "Subject: 季度报告" in text
    assert "X-Priority: 1 (Highest)" in text
    assert "\n正文 body\n" in text
    assert "1. 报告.pdf  (application/pdf, 1.2 KB)" in text


def test_list_row():
    msg = build_message(sender="alice@alice.lab", sender_name="爱丽丝", to=["bob@bob.lab"],
                        subject="subject", body="x",
                        attachments=[Attachment("a.txt", b"a")])
    row = list_row(3, parse(to_bytes(msg)), 1234)
    assert (row.number, row.sender, row.size, row.has_attachments) == (3, "爱丽丝", 1234, True)
    assert row.subject == "subject"
    encoded = parse(b"From: =?utf-8?q?Jos=C3=A9?= <j@x>\nSubject: =?gb2312?b?xOO6ww==?=\n\nx\n")
    row = list_row(1, encoded, 10)
    assert (row.sender, row.subject, row.has_attachments) == ("José", "你好", False)


def test_html_only_message_is_converted_without_scripts():
    html = (
        "<html><head><title>t</title><style>body{color:red}</style>"
        "<script>document.location='http://evil.example/'</script></head><body>"
        "<h1>Hello</h1><p>See <a href='https://lab.example/x'>the lab</a>"
        " and <a href='javascript:alert(1)'>this</a>.</p>"
        "<img src='http://tracker.example/pixel.gif' alt='logo'>"
        "<script type='text/javascript'>alert('x')</script><ul><li>one</li><li>two</li></ul>"
        "<p>a &amp; b &lt;c&gt;</p></body></html>"
    )
    raw = (
        "From: a@x\r\nSubject: html\r\nMIME-Version: 1.0\r\n"
        "Content-Type: text/html; charset=utf-8\r\n\r\n" + html
    ).encode()
    text = body_text(parse(raw))
    assert "Hello" in text and "See the lab <https://lab.example/x>" in text
    assert "- one\n- two" in text and "a & b <c>" in text and "[image: logo]" in text
    for bad in ("alert", "document.location", "color:red", "javascript", "tracker", "evil"):
        assert bad not in text


def test_html_to_text_never_fails_on_broken_html():
    for html in ["<p", "<<<>>>", "<script>never closed", "</p></div>", "<a href=x>", "&#xdead;"]:
        assert isinstance(html_to_text(html), str)
    assert "never closed" not in html_to_text("<script>never closed")


HOSTILE = {
    "no boundary": b"From: a@x\nContent-Type: multipart/mixed\n\n--x\n\nhello\n--x--\n",
    "wrong boundary": (b"From: a@x\nContent-Type: multipart/mixed; boundary=nope\n\n--x\n"
                       b"Content-Type: text/plain\n\nhello\n--x--\n"),
    "unknown charset": (b"From: a@x\nSubject: =?x-klingon?q?abc?=\nContent-Type: text/plain;"
                        b" charset=x-klingon\n\nhello \xff\xfe\n"),
    "codec charset": b"From: a@x\nContent-Type: text/plain; charset=base64\n\naGVsbG8=\n",
    "wrong charset": b"From: a@x\nContent-Type: text/plain; charset=utf-8\n\ncaf\xe9 \xff\n",
    "bad base64": (b"From: a@x\nContent-Type: text/plain\nContent-Transfer-Encoding: base64\n"
                   b"\n!!!notbase64===\n"),
    "bad header": b"From: <<<@@@>>>\nTo: ,,,;;;\nDate: yesterday-ish\nSubject: \xff\xfe\n\nhi\n",
    "terminal escapes": (b"From: \x1b[31mred\x1b[0m <a@x>\nSubject: =?utf-8?q?=1B]0;pwn=07?=\n"
                         b"\n\x1b[2J\x1b]52;c;bad\x07visible\n"),
    "empty": b"",
    "only headers": b"From: a@x\nSubject: nothing\n",
    "nested rfc822": (b"From: a@x\nContent-Type: multipart/mixed; boundary=b\n\n--b\n"
                      b"Content-Type: message/rfc822\n\nFrom: inner@x\nSubject: inner\n\nbody\n"
                      b"--b--\n"),
    "deep nesting": b"From: a@x\nContent-Type: multipart/mixed; boundary=b\n\n"
    + b"--b\nContent-Type: multipart/mixed; boundary=b\n\n" * 200 + b"--b--\n",
}


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_messages_render_cleanly(name):
    msg = parse(HOSTILE[name])
    text = render_message(msg)
    assert isinstance(text, str)
    assert "\x1b" not in text and "\x07" not in text
    list_row(1, msg, len(HOSTILE[name]))
    for info in attachments(msg):
        info.payload()
    if name == "terminal escapes":
        assert "visible" in text and "red" in text
    if name == "wrong charset":
        assert "caf\ufffd" in text


def test_ten_megabyte_base64_part():
    data = os.urandom(10 * 1024 * 1024)
    raw = (
        b"From: a@x\nSubject: big\nMIME-Version: 1.0\n"
        b"Content-Type: multipart/mixed; boundary=BB\n\n--BB\nContent-Type: text/plain\n\nsee"
        b" attachment\n--BB\nContent-Type: application/octet-stream\n"
        b"Content-Disposition: attachment; filename=big.bin\n"
        b"Content-Transfer-Encoding: base64\n\n"
        + base64.encodebytes(data) + b"--BB--\n"
    )
    msg = parse(raw)
    text = render_message(msg)
    assert "see attachment" in text and "big.bin  (application/octet-stream, 10.0 MB)" in text
    [info] = attachments(msg)
    assert info.payload() == data


@pytest.mark.parametrize(
    "name, expected",
    [
        ("../../etc/passwd", "passwd"),
        ("..\\..\\windows\\system32\\evil.dll", "evil.dll"),
        ("/absolute/path.txt", "path.txt"),
        ("..", "fallback"),
        (".bashrc", "bashrc"),
        ("", "fallback"),
        ("a\x00b\x1b[31m.txt", "ab[31m.txt"),
        ("报告.pdf", "报告.pdf"),
        ("x" * 300 + ".pdf", "x" * 196 + ".pdf"),
    ],
)
def test_safe_filename(name, expected):
    assert safe_filename(name, "fallback") == expected


def test_traversal_attachment_name_is_sanitised():
    raw = (b"From: a@x\nContent-Type: multipart/mixed; boundary=b\n\n--b\n"
           b"Content-Type: text/plain\n\nhi\n--b\nContent-Type: text/plain\n"
           b"Content-Disposition: attachment; filename=\"../../etc/passwd\"\n\nroot:x:0:0\n"
           b"--b\nContent-Type: application/octet-stream\n"
           b"Content-Disposition: attachment; filename*=utf-8''..%2F..%2F%E6%8A%A5.sh\n\nx\n"
           b"--b--\n")
    names = [a.filename for a in attachments(parse(raw))]
    assert names == ["passwd", "报.sh"]


def test_whole_message_pdf_is_an_attachment():
    raw = (b"From: a@x\nSubject: scan\nMIME-Version: 1.0\nContent-Type: application/pdf\n"
           b"Content-Disposition: attachment; filename=\"scan.pdf\"\n"
           b"Content-Transfer-Encoding: base64\n\n" + base64.encodebytes(b"%PDF-1.4 data"))
    msg = parse(raw)
    found = attachments(msg)
    assert [(a.index, a.filename, a.content_type) for a in found] == [
        (1, "scan.pdf", "application/pdf")]
    assert found[0].payload() == b"%PDF-1.4 data"
    assert body_text(msg) == ""
    text = render_message(msg)
    assert "[no text or HTML part]" in text
    assert "1. scan.pdf  (application/pdf, 13 B)" in text
    assert list_row(1, msg, len(raw)).has_attachments


def test_whole_message_pdf_without_a_name_gets_a_fallback_name():
    raw = b"From: a@x\nContent-Type: application/pdf\n\n%PDF\n"
    assert [a.filename for a in attachments(parse(raw))] == ["attachment-1.pdf"]


def test_text_message_marked_as_attachment_can_be_read_and_saved():
    raw = (b"From: a@x\nSubject: notes\nContent-Type: text/plain; charset=utf-8\n"
           b"Content-Disposition: attachment; filename=\"notes.txt\"\n\nhello notes\n")
    msg = parse(raw)
    assert body_text(msg) == "hello notes\n"
    found = attachments(msg)
    assert [(a.filename, a.payload()) for a in found] == [("notes.txt", b"hello notes\n")]
    assert "1. notes.txt  (text/plain" in render_message(msg)


def test_plain_single_part_message_has_no_attachments():
    msg = parse(b"From: a@x\nContent-Type: text/plain\n\nhi\n")
    assert body_text(msg) == "hi\n"
    assert attachments(msg) == []
    malformed = parse(b"From: a@x\nContent-Type: multipart/mixed\n\nno boundary\n")
    assert attachments(malformed) == []


def test_safe_filename_cuts_long_names_once_and_keeps_the_extension():
    name = safe_filename("报" * 100 + ".pdf", "f")  # 3 bytes a character: cut mid-character
    assert name == "报" * 65 + ".pdf" and len(name.encode()) <= 200
    no_ext = safe_filename("é" * 150, "f")
    assert no_ext == "é" * 100
    long_ext = safe_filename("a" * 10 + "." + "b" * 300, "f")  # not a usable extension
    assert long_ext == ("a" * 10 + "." + "b" * 300)[:200]
    huge = safe_filename("x" * 2_000_000 + ".txt", "f")  # untrusted: must stay linear
    assert huge == "x" * 196 + ".txt"
    assert safe_filename("a\udcff.txt", "f") == "a?.txt"


def test_list_row_flag_matches_attachments_without_decoding(monkeypatch):
    import mua.render as render

    plain = parse(b"From: a@x\nContent-Type: text/plain\n\nhi\n")
    pdf = parse(b"From: a@x\nContent-Type: application/pdf\n\n%PDF\n")
    with_part = parse(to_bytes(build_message(sender="a@x.lab", to=["b@x.lab"], subject="s",
                                             body="x", attachments=[Attachment("a.bin", b"a")])))
    expected = [bool(attachments(m)) for m in (plain, pdf, with_part)]
    monkeypatch.setattr(render, "_payload_bytes", lambda part: pytest.fail("decoded"))
    assert [list_row(1, m, 1).has_attachments for m in (plain, pdf, with_part)] == expected
    assert expected == [False, True, True]
