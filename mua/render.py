"""Step 6: render a received message for a person to read.

Pure functions: a parsed message in, text or table rows out. Headers are shown decoded (RFC 2047
encoded words, RFC 2231 parameters); the body is the text/plain part, or the text/html part
converted to plain text when there is no text part. The HTML converter is built on stdlib
``html.parser``: it never executes, loads or fetches anything, drops ``script`` and ``style``,
and shows link targets in brackets. Attachments are listed with type and size.

Mail is hostile input: malformed MIME, unknown or wrong charsets, huge parts and terminal escape
sequences are all rendered (with replacement characters) rather than raising, and control
characters are removed so a message cannot drive the terminal.
"""

from __future__ import annotations

import codecs
import mimetypes
import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from email import policy
from email.header import decode_header, make_header
from email.message import EmailMessage, Message
from email.parser import BytesParser
from email.utils import getaddresses, parsedate_to_datetime
from html.parser import HTMLParser

DISPLAY_HEADERS = ("From", "To", "Cc", "Reply-To", "Date", "Subject", "X-Priority")
MAX_FILENAME_BYTES = 200

# C0 and C1 controls except TAB and LF; ESC starts terminal escape sequences.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def parse(data: bytes) -> EmailMessage:
    """Parse raw message bytes with the default (modern) policy; never raises on bad MIME."""
    return BytesParser(policy=policy.default).parsebytes(data)


def clean(text: str) -> str:
    """Remove control characters (terminal escapes) and bidi overrides; keep TAB and LF."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _CONTROL.sub("", text)
    return "".join(c for c in text if unicodedata.category(c) != "Cf" or c == "\u200d")


def header(msg: Message, name: str) -> str:
    """A header's decoded value on one line ('' when absent); RFC 2047 words decoded.

    The structured value is used when it parsed cleanly; otherwise the raw value is decoded
    word by word, so a malformed field is still shown rather than mangled or dropped.
    """
    values = []
    for key, raw in msg.raw_items():
        if key.lower() != name.lower():
            continue
        try:
            parsed = msg.policy.header_fetch_parse(key, raw)
            text = str(parsed) if not getattr(parsed, "defects", ()) else _decode_raw(raw)
        except Exception:
            text = _decode_raw(raw)
        values.append(text)
    return " ".join(clean(", ".join(values)).split())


def _decode_raw(raw: object) -> str:
    text = str(raw)
    try:
        return str(make_header(decode_header(text)))
    except Exception:  # unknown charset, bad encoded word: show it as it is
        return text


def sender_label(msg: Message) -> str:
    """The From display name, or the address when there is no name."""
    value = header(msg, "From")
    try:
        pairs = getaddresses([value])
    except Exception:
        return value
    if pairs and (pairs[0][0] or pairs[0][1]):
        return pairs[0][0] or pairs[0][1]
    return value


def message_date(msg: Message) -> datetime | None:
    try:
        value = msg.get("Date")
        return parsedate_to_datetime(str(value)) if value else None
    except Exception:
        return None


@dataclass(frozen=True)
class AttachmentInfo:
    """One attachment: index (1-based), sanitised file name, MIME type, decoded size."""

    index: int
    filename: str
    content_type: str
    size: int
    part: Message

    def payload(self) -> bytes:
        return _payload_bytes(self.part)


@dataclass(frozen=True)
class ListRow:
    number: int
    date: str
    sender: str
    subject: str
    size: int
    has_attachments: bool


def list_row(number: int, msg: Message, size: int) -> ListRow:
    """A row of ``mua list``: number, date, from, subject, size, attachment mark."""
    when = message_date(msg)
    return ListRow(
        number=number,
        date=when.strftime("%Y-%m-%d %H:%M") if when else "",
        sender=sender_label(msg),
        subject=header(msg, "Subject"),
        size=size,
        has_attachments=has_attachments(msg),
    )


def human_size(size: int) -> str:
    """``512 B``, ``1.5 KB``, ``10.0 MB``."""
    if size < 1024:
        return f"{size} B"
    if size < 1024 * 1024:
        return f"{size / 1024:.1f} KB"
    return f"{size / (1024 * 1024):.1f} MB"


def body_part(msg: Message) -> Message | None:
    """The part to show: text/plain first, else text/html, else None."""
    if isinstance(msg, EmailMessage):
        try:
            part = msg.get_body(preferencelist=("plain", "html"))
        except Exception:
            part = None
        if part is not None:
            return part
    if not msg.is_multipart() and msg.get_content_maintype() == "text":
        return msg
    return None


def body_text(msg: Message) -> str:
    """The readable body text: the text part, or the HTML part as text ('' when neither)."""
    part = body_part(msg)
    if part is None:
        if msg.get_content_maintype() == "multipart" and not msg.is_multipart():
            # malformed MIME (no or wrong boundary): the parser kept the body as one string
            return "[malformed MIME message, shown as raw text]\n" + clean(part_text(msg))
        return ""
    text = part_text(part)
    if part.get_content_subtype() == "html":
        text = html_to_text(text)
    return clean(text)


def part_text(part: Message) -> str:
    """Decode a text part: transfer encoding, then charset (unknown or wrong -> replacement)."""
    data = _payload_bytes(part)
    charset = part.get_content_charset() or "utf-8"
    try:
        codecs.lookup(charset)
        return data.decode(charset, errors="replace")
    except (LookupError, UnicodeError, ValueError, TypeError):
        return data.decode("utf-8", errors="replace")


def _payload_bytes(part: Message) -> bytes:
    try:
        payload = part.get_payload(decode=True)
    except Exception:
        payload = None
    if isinstance(payload, bytes):
        return payload
    raw = part.get_payload()
    if isinstance(raw, str):
        return raw.encode("utf-8", "surrogateescape")
    if isinstance(raw, list) and raw and isinstance(raw[0], Message):  # message/rfc822
        try:
            return raw[0].as_bytes()
        except Exception:
            return b""
    return b""


def attachments(msg: Message) -> list[AttachmentInfo]:
    """Every part that is not the shown body nor a text alternative of it, in order."""
    return [
        AttachmentInfo(
            index=index,
            filename=safe_filename(_filename(part), f"attachment-{index}{_extension(part)}"),
            content_type=part.get_content_type(),
            size=len(_payload_bytes(part)),
            part=part,
        )
        for index, part in enumerate(_attachment_parts(msg), start=1)
    ]


def has_attachments(msg: Message) -> bool:
    """Whether ``attachments(msg)`` would list anything, without decoding any payload."""
    return next(_attachment_parts(msg), None) is not None


def _attachment_parts(msg: Message) -> Iterator[Message]:
    """The parts ``attachments`` lists, in order, undecoded."""
    shown = body_part(msg)

    def visit(part: Message) -> Iterator[Message]:
        disposition = (part.get_content_disposition() or "").lower()
        if part is shown and disposition != "attachment":
            return  # a whole-message attachment is both shown and listed (so it can be saved)
        maintype = part.get_content_maintype()
        if maintype == "multipart" and part.is_multipart():
            for sub in part.get_payload():
                if isinstance(sub, Message):
                    yield from visit(sub)
            return
        if maintype == "text" and disposition != "attachment" and not _filename(part):
            return  # an alternative rendering of the body (text/html next to text/plain)
        yield part

    if msg.is_multipart() or msg.get_content_maintype() != "multipart":
        yield from visit(msg)  # a single-part message may itself be the attachment (a PDF)


def _extension(part: Message) -> str:
    if part.get_content_type() == "message/rfc822":
        return ".eml"
    return mimetypes.guess_extension(part.get_content_type()) or ".bin"


def _filename(part: Message) -> str:
    try:
        return part.get_filename() or ""
    except Exception:
        return ""


def safe_filename(name: str, fallback: str) -> str:
    """A file name safe to create in a chosen directory: no directories, no traversal.

    Keeps only the last path component (either slash), removes control characters and leading
    dots, and bounds the length; falls back to ``fallback`` when nothing usable remains.
    """
    name = clean(str(name)).replace("\n", " ").replace("\t", " ")
    name = name.replace("\\", "/").rsplit("/", 1)[-1].strip()
    name = name.lstrip(".").strip()
    data = name.encode("utf-8", "replace")  # a lone surrogate becomes "?"
    if len(data) > MAX_FILENAME_BYTES:  # cut once, keeping a short extension
        stem, dot, ext = name.rpartition(".")
        suffix = ("." + ext).encode("utf-8", "replace") if dot and stem and len(ext) < 16 else b""
        head = data[: len(data) - len(suffix)] if suffix else data
        data = head[: MAX_FILENAME_BYTES - len(suffix)] + suffix
    name = data.decode("utf-8", "ignore")  # "ignore" drops a character cut in two
    return name or fallback


def render_message(msg: Message) -> str:
    """The message as a person reads it: decoded headers, body text, attachment list."""
    lines = []
    for name in DISPLAY_HEADERS:
        value = header(msg, name)
        if value:
            lines.append(f"{name}: {value}")
    lines.append("")
    body = body_text(msg)
    if body:
        lines.append(body.rstrip("\n"))
    elif body_part(msg) is None:
        lines.append("[no text or HTML part]")
    found = attachments(msg)
    if found:
        lines.append("")
        lines.append("Attachments:")
        for info in found:
            lines.append(
                f"  {info.index}. {info.filename}  ({info.content_type}, {human_size(info.size)})"
            )
    return "\n".join(lines) + "\n"


class _HTMLToText(HTMLParser):
    """Collects readable text from HTML; script/style/head contents are dropped."""

    SKIP = {"script", "style", "head", "title", "template", "noscript", "object", "iframe"}
    BLOCK = {
        "p", "div", "section", "article", "header", "footer", "blockquote", "pre", "table",
        "tr", "ul", "ol", "dl", "dt", "dd", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "form",
        "address", "figure", "body", "html",
    }  # fmt: skip

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.skip_depth = 0
        self.pre_depth = 0
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.SKIP:
            self.skip_depth += 1
            return
        if self.skip_depth:
            return
        if tag == "br":
            self.out.append("\n")
        elif tag == "li":
            self.out.append("\n- ")
        elif tag in ("td", "th"):
            self.out.append("\t")
        elif tag in self.BLOCK:
            self.out.append("\n\n")
            if tag == "pre":
                self.pre_depth += 1
        elif tag == "img":
            alt = dict(attrs).get("alt")
            if alt:
                self.out.append(f"[image: {alt}]")
        if tag == "a":
            self.links.append(dict(attrs).get("href") or "")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.SKIP:
            return  # <script/> opens nothing
        self.handle_starttag(tag, attrs)
        if tag == "a":
            self.links.pop()

    def handle_endtag(self, tag: str) -> None:
        if tag in self.SKIP:
            self.skip_depth = max(0, self.skip_depth - 1)
            return
        if self.skip_depth:
            return
        if tag == "a" and self.links:
            href = self.links.pop()
            if href and not href.lower().startswith(("javascript:", "data:", "#")):
                self.out.append(f" <{href}>")
        elif tag in self.BLOCK:
            self.out.append("\n\n")
            if tag == "pre":
                self.pre_depth = max(0, self.pre_depth - 1)

    def handle_data(self, data: str) -> None:
        if self.skip_depth:
            return
        if self.pre_depth:
            self.out.append(data)
        else:
            self.out.append(re.sub(r"\s+", " ", data))


def html_to_text(html: str) -> str:
    """Readable plain text from HTML, without executing or fetching anything."""
    parser = _HTMLToText()
    try:
        parser.feed(html)
        parser.close()
    except Exception:  # html.parser is lenient; this guards against the unexpected
        pass
    text = "".join(parser.out)
    lines = [line.strip(" ") for line in text.split("\n")]
    text = "\n".join(lines)
    text = re.sub(r"\n{3,}", "\n\n", text).strip("\n")
    return clean(text) + "\n" if text else ""
