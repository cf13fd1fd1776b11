"""Step 6 on mail nobody on the project wrote: CPython's e-mail test corpus (issue 15).

Every ``Lib/test/test_email/data/msg_*.txt`` of the running interpreter goes through
``mua read`` and ``mua save``: both exit 0 without a traceback or a control character, and the
text of every text part Python's ``email`` package finds is in what they show or save.
"""

from __future__ import annotations

import email
import mailbox
import re
from email import policy
from email.message import Message
from pathlib import Path

import pytest
from mua_helpers import make_profile, write_profile

from mua.cli import main
from mua.render import html_to_text

DATA = Path(email.__file__).resolve().parent.parent / "test" / "test_email" / "data"
CORPUS = sorted(DATA.glob("msg_*.txt"))
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")

if not CORPUS:
    pytest.skip(f"this interpreter ships no e-mail test data (no {DATA}/msg_*.txt)",
                allow_module_level=True)


def words(text: str) -> str:
    """``text`` compared by its printable words (the sanitiser and line ends aside)."""
    return " ".join(CONTROL.sub("", text).split())


def text_of(part: Message) -> str:
    """A text part as Python's email package decodes it (HTML as the text it shows)."""
    data = part.get_payload(decode=True)
    if not isinstance(data, bytes):
        return ""
    try:
        text = data.decode(part.get_content_charset() or "utf-8")
    except (LookupError, UnicodeError):
        return ""  # a part Python cannot decode either: nothing to compare with
    return html_to_text(text) if part.get_content_subtype() == "html" else text


def saved_texts(folder: Path) -> list[str]:
    """What ``save`` wrote, with saved messages (message/rfc822) opened up part by part."""
    texts = []
    for path in folder.iterdir():
        data = path.read_bytes()
        texts.append(data.decode("utf-8", "replace"))
        texts.append(data.decode("latin-1"))
        if path.suffix == ".eml":
            inner = email.message_from_bytes(data, policy=policy.default)
            texts += [text_of(p) for p in inner.walk() if p.get_content_maintype() == "text"]
    return texts


@pytest.mark.parametrize("path", CORPUS, ids=[p.name for p in CORPUS])
def test_corpus_message_reads_and_saves(path, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("MUA_MAILDIR", raising=False)
    profile = write_profile(tmp_path / "p.toml", make_profile(tmp_path, address="bob@bob.lab"))
    data = path.read_bytes()
    mailbox.Maildir(tmp_path / "Maildir", create=True).add(data)
    shown = []
    for argv in (["read", "1"], ["save", "1", "--dir", str(tmp_path / "saved")]):
        code = main(["--profile", str(profile), *argv])
        out, err = capsys.readouterr()
        assert code == 0, err
        assert "Traceback" not in out + err and "internal error" not in err
        assert not CONTROL.search(out + err)
        shown.append(out)
    saved = saved_texts(tmp_path / "saved") if (tmp_path / "saved").exists() else []
    haystack = words("\n".join(shown + saved))
    message = email.message_from_bytes(data, policy=policy.default)
    for part in message.walk():
        if part.get_content_maintype() == "text":
            assert words(text_of(part)) in haystack, part.get_content_type()
