"""Stored messages as JSON (step 6 for programs): listing summaries and one message parsed.

A summary is built from the message's first ``HEAD_BYTES`` only (the header section and the
start of the body, read by SQL), so listing a big mailbox never loads whole messages; its
attachment count covers the parts whose headers lie in those bytes. One message is parsed in
full: headers (RFC 2047 words decoded), text and HTML bodies, attachments with name, type and
size. Nothing here raises on malformed mail: what cannot be decoded is shown replaced.
"""

from __future__ import annotations

import datetime
import re
import urllib.parse
from email import policy
from email.header import decode_header, make_header
from email.message import EmailMessage, Message
from email.parser import BytesParser
from typing import Any

from mta.store import Entry

HEAD_BYTES = 64 * 1024
# Text and HTML bodies longer than this are cut in the JSON (the raw message has them whole).
MAX_BODY_CHARS = 1024 * 1024
SUMMARY_HEADERS = ("From", "To", "Cc", "Subject", "Date", "Message-ID")
# A listing's header fields are cut here (RFC 5322 2.1.1's line limit), so a page of 500 rows
# stays small whatever the headers hold; the message itself shows them whole.
MAX_FIELD = 998

_COMPAT = BytesParser(policy=policy.compat32)
_MODERN = BytesParser(policy=policy.default)


def iso(seconds: float) -> str:
    return datetime.datetime.fromtimestamp(seconds, datetime.UTC).isoformat(
        timespec="milliseconds").replace("+00:00", "Z")


def decoded(value: Any) -> str:
    """A header value with RFC 2047 encoded words decoded; never raises."""
    if value is None:
        return ""
    if "=?" not in str(value):  # no RFC 2047 encoded word: nothing to decode
        return " ".join(str(value).split())
    try:
        text = str(make_header(decode_header(str(value))))
    except (ValueError, LookupError, UnicodeError, TypeError):
        text = str(value)
    return " ".join(text.split())


def summary(entry: Entry, head: bytes) -> dict[str, Any]:
    """A listing row: ids, envelope, header fields, size, time stored, attachment count."""
    end = head.find(b"\r\n\r\n")
    message = _COMPAT.parsebytes(head[: end + 2] if end >= 0 else head, headersonly=True)
    fields = {name: decoded(message.get(name))[:MAX_FIELD] for name in SUMMARY_HEADERS}
    return {
        "id": entry.id,
        "mailbox": entry.owner,
        "uidl": entry.uid,
        "queue_id": entry.queue_id,
        "envelope": {"sender": entry.sender, "recipients": [entry.owner]},
        "from": fields["From"],
        "to": fields["To"],
        "cc": fields["Cc"],
        "subject": fields["Subject"],
        "date": fields["Date"],
        "message_id": fields["Message-ID"],
        "size": entry.size,
        "stored": iso(entry.received),
        "attachment_count": _count_attachments(message, head),
    }


# A MIME part header naming an attachment: disposition "attachment", or a file name given.
_ATTACHMENT = re.compile(rb"^content-disposition[ \t]*:[ \t]*attachment", re.I | re.M)


def _count_attachments(message: Message, head: bytes) -> int:
    """Attachments in ``head``: a scan of part headers, not a parse (listings stay fast)."""
    if message.get_content_maintype() != "multipart":
        return int(_ATTACHMENT.match(head) is not None or
                   (message.get("Content-Disposition") or "").lower().startswith("attachment"))
    end = head.find(b"\r\n\r\n")
    body = head[end + 4:] if end >= 0 else b""
    return len(_ATTACHMENT.findall(body))


def _attachment_parts(message: Message) -> Any:
    """Parts that are attachments: disposition ``attachment``, or a file name on a leaf."""
    for part in message.walk():
        if part.is_multipart():
            continue
        disposition = (part.get("Content-Disposition") or "").split(";")[0].strip().lower()
        if disposition == "attachment" or (part.get_filename() and disposition != "inline"):
            yield part


def matches(row: dict[str, Any], *, to: str | None = None, sender: str | None = None,
            subject: str | None = None) -> bool:
    """Whether a summary passes the filters (lower-case "contains" on the decoded fields)."""
    if to is not None and not any(to in row[k].lower() for k in ("to", "cc", "mailbox")):
        return False
    if sender is not None and not (sender in row["from"].lower()
                                   or sender in row["envelope"]["sender"].lower()):
        return False
    return subject is None or subject in row["subject"].lower()


def parse(raw: bytes) -> EmailMessage:
    message = _MODERN.parsebytes(raw)
    assert isinstance(message, EmailMessage)
    return message


def _content(part: EmailMessage | None) -> tuple[str | None, bool]:
    if part is None:
        return None, False
    try:
        text = part.get_content()
    except (LookupError, ValueError, UnicodeError, AssertionError, KeyError):
        payload = part.get_payload(decode=True)
        text = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else ""
    if not isinstance(text, str):
        return None, False
    text = text.replace("\r\n", "\n")
    return text[:MAX_BODY_CHARS], len(text) > MAX_BODY_CHARS


def attachments(message: EmailMessage) -> list[EmailMessage]:
    return list(_attachment_parts(message))


def attachment_info(part: Message, index: int) -> dict[str, Any]:
    payload = part.get_payload(decode=True)
    return {"index": index, "name": decoded(part.get_filename() or ""),
            "type": part.get_content_type(),
            "size": len(payload) if isinstance(payload, bytes) else 0}


def detail(entry: Entry, raw: bytes) -> dict[str, Any]:
    """One message parsed: its summary fields, every header, text, HTML and attachments."""
    message = parse(raw)
    head_end = raw.find(b"\r\n\r\n")
    row = summary(entry, raw[: head_end + 4] if head_end >= 0 else raw)
    parts = attachments(message)
    text, text_cut = _content(_body(message, "plain"))
    html, html_cut = _content(_body(message, "html"))
    row.update(
        headers=[{"name": name, "value": decoded(value)} for name, value in
                 _COMPAT.parsebytes(raw, headersonly=True).items()],
        text=text, html=html, truncated=text_cut or html_cut,
        attachment_count=len(parts),
        attachments=[attachment_info(part, i) for i, part in enumerate(parts)])
    return row


def _body(message: EmailMessage, subtype: str) -> EmailMessage | None:
    try:
        part = message.get_body(preferencelist=(subtype,))
    except (KeyError, ValueError, AssertionError):
        return None
    return part if isinstance(part, EmailMessage) else None


_UNSAFE = re.compile(r'[\x00-\x1f\x7f"\\/:*?<>|;]+')


def safe_filename(name: str, fallback: str) -> str:
    """A file name that cannot climb directories or break a header: no path, no controls."""
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    name = _UNSAFE.sub("_", name).strip(" .")[:120]
    return name or fallback


def content_disposition(name: str) -> str:
    """``attachment`` with an ASCII ``filename`` and the exact UTF-8 one (RFC 6266 4.3)."""
    ascii_name = name.encode("ascii", "replace").decode("ascii").replace("?", "_")
    value = f'attachment; filename="{ascii_name}"'
    if ascii_name != name:
        value += f"; filename*=UTF-8''{urllib.parse.quote(name, safe='')}"
    return value
