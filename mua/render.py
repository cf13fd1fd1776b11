"""Step 6: render a received message for a person to read.

Pure functions: a parsed message in, text or table rows out. Headers are shown decoded (RFC 2047
encoded words, RFC 2231 parameters) with bounded work (``mua.headers``) and charset labels read
as browsers read them (``mua.charsets``). Parts are laid out as mail clients do (``layout``):
the body is the text/plain part (or text/html converted to text), and inline text parts after
it (a diff, a calendar, a list footer, a delivery-status report) are shown in order; every part
but the body can be saved. The HTML converter is built on stdlib ``html.parser``: it never
executes, loads or fetches anything, drops ``script`` and ``style``, and shows link targets in
brackets.

Mail is hostile input: malformed MIME, unknown or wrong charsets, huge headers, thousands of
parts and terminal escape sequences are all rendered (with replacement characters) rather than
raising, and every string from the message passes ``mua.sanitize`` before it is returned.
"""

from __future__ import annotations

import mimetypes
import re
from dataclasses import dataclass, field
from datetime import datetime
from email.message import EmailMessage, Message
from email.parser import BytesParser
from email.utils import getaddresses, parsedate_to_datetime
from html.parser import HTMLParser

from mua import charsets, sanitize
from mua.headers import POLICY, bound_header_section, decode_words

DISPLAY_HEADERS = ("From", "To", "Cc", "Reply-To", "Date", "Subject", "X-Priority")
MAX_FILENAME_BYTES = 200


def parse(data: bytes) -> EmailMessage:
    """Parse raw message bytes with the bounded default policy; never raises on bad MIME."""
    return BytesParser(policy=POLICY).parsebytes(bound_header_section(data))


def header(msg: Message, name: str) -> str:
    """A header's decoded value on one line ('' when absent); RFC 2047 words decoded.

    Decoded here rather than by the stdlib header parser: bounded (``mua.headers``), lenient (a
    malformed field is shown rather than dropped) and with WHATWG charset labels (``charsets``).
    """
    values = [decode_words(str(raw)) for key, raw in msg.raw_items() if key.lower() == name.lower()]
    return sanitize.line(", ".join(values))


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
        value = header(msg, "Date")
        return parsedate_to_datetime(value) if value else None
    except Exception:
        return None


@dataclass(frozen=True)
class AttachmentInfo:
    """One saveable part: index (1-based), sanitised file name, MIME type, decoded size."""

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


# RFC 3464 2 and RFC 6533 6.2: per-message and per-recipient fields, one block each.
_STATUS_TYPES = frozenset({"message/delivery-status", "message/global-delivery-status"})
_ALTERNATIVE_ORDER = ("text/plain", "text/html")


@dataclass
class Layout:
    """What a mail client does with a message's parts, found in one walk without decoding.

    ``shown``: the parts shown inline, in order; the first is the body. ``saveable``: every
    other part (attachments, inline parts after the body, alternatives not shown), in order.
    """

    shown: list[Message] = field(default_factory=list)
    saveable: list[Message] = field(default_factory=list)


def layout(msg: Message) -> Layout:
    """Split ``msg`` into shown and saveable parts the way mail clients do (RFC 2046 5.1)."""
    found = Layout()
    kind = msg.get_content_type()
    if kind.startswith("multipart/") and not msg.is_multipart():
        return found  # malformed MIME: ``body_text`` shows it raw
    if not msg.is_multipart() and _shows(kind):
        found.shown.append(msg)  # a single text part is the body, even when marked attachment
        if _is_attachment(msg):
            found.saveable.append(msg)
        return found
    stack: list[tuple[Message, bool]] = [(msg, True)]
    while stack:  # depth first, in document order, without recursion (nesting is unbounded)
        part, inline = stack.pop()
        kind = part.get_content_type()
        if kind.startswith("multipart/") and part.is_multipart():
            children = [p for p in part.get_payload() if isinstance(p, Message)]
            chosen = _alternative(children) if kind == "multipart/alternative" else None
            for child in reversed(children):
                stack.append((child, inline and (chosen is None or child is chosen)))
        elif inline and _shows(kind) and not _is_attachment(part):
            if found.shown:
                found.saveable.append(part)
            found.shown.append(part)
        else:
            found.saveable.append(part)
    return found


def _alternative(children: list[Message]) -> Message | None:
    """The alternative to show: plain text, else HTML, else the first (RFC 2046 5.1.4)."""
    types = [p.get_content_type() for p in children]
    for wanted in _ALTERNATIVE_ORDER:
        if wanted in types:
            return children[types.index(wanted)]
    return children[0] if children else None


def _is_attachment(part: Message) -> bool:
    return (part.get_content_disposition() or "") == "attachment" or bool(_filename(part))


def _shows(kind: str) -> bool:
    return kind.startswith("text/") or kind in _STATUS_TYPES


def body_text(msg: Message, found: Layout | None = None) -> str:
    """The readable body text: the first shown part as text ('' when there is none)."""
    shown = (found or layout(msg)).shown
    part = shown[0] if shown else None
    if part is None:
        if msg.get_content_maintype() == "multipart" and not msg.is_multipart():
            # malformed MIME (no or wrong boundary): the parser kept the body as one string
            return "[malformed MIME message, shown as raw text]\n" + sanitize.text(part_text(msg))
        return ""
    return shown_text(part)


def shown_text(part: Message) -> str:
    """A shown part as text: HTML converted, delivery-status blocks listed, controls removed."""
    if part.get_content_type() in _STATUS_TYPES:
        return sanitize.text(_status_text(part))
    text = part_text(part)
    if part.get_content_subtype() == "html":
        text = html_to_text(text)
    return sanitize.text(text)


def part_text(part: Message) -> str:
    """Decode a text part: transfer encoding, then charset by WHATWG label (see ``charsets``)."""
    return charsets.decode(_payload_bytes(part), part.get_content_charset())


def _status_text(part: Message) -> str:
    """Every block of a delivery-status part (RFC 3464 2.1): per message, then per recipient."""
    blocks = part.get_payload()
    if not isinstance(blocks, list):
        return charsets.decode(_payload_bytes(part), "utf-8")
    lines = []
    for block in blocks:
        if isinstance(block, Message):
            lines += [f"{name}: {decode_words(str(value))}" for name, value in block.raw_items()]
            lines.append("")
    return "\n".join(lines)


def _payload_bytes(part: Message) -> bytes:
    raw = part.get_payload()
    if isinstance(raw, list):  # message/*: the blocks of a delivery status, or one message
        if part.get_content_type() in _STATUS_TYPES:
            return _status_text(part).encode("utf-8", "surrogateescape")
        try:
            return raw[0].as_bytes() if raw and isinstance(raw[0], Message) else b""
        except Exception:
            return b""
    try:
        payload = part.get_payload(decode=True)
    except Exception:
        payload = None
    if isinstance(payload, bytes):
        return payload
    return raw.encode("utf-8", "surrogateescape") if isinstance(raw, str) else b""


def attachments(msg: Message, found: Layout | None = None) -> list[AttachmentInfo]:
    """Every saveable part (everything but the body), in order."""
    saveable = (found or layout(msg)).saveable
    return [_attachment(index, part) for index, part in enumerate(saveable, start=1)]


def _attachment(index: int, part: Message) -> AttachmentInfo:
    kind = part.get_content_type()
    name = safe_filename(_filename(part), "")
    if not name:
        extension = _EXTENSIONS.get(kind) or mimetypes.guess_extension(kind) or ".bin"
        name = f"attachment-{index}{extension}"
    return AttachmentInfo(
        index=index,
        filename=name,
        content_type=sanitize.line(kind),
        size=len(_payload_bytes(part)),
        part=part,
    )


def has_attachments(msg: Message) -> bool:
    """Whether ``attachments(msg)`` would list anything, without decoding any payload."""
    return bool(layout(msg).saveable)


_EXTENSIONS = {"message/rfc822": ".eml", "message/delivery-status": ".txt",
               "message/global-delivery-status": ".txt", "text/plain": ".txt"}


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
    name = sanitize.text(str(name)).replace("\n", " ").replace("\t", " ")
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
    """The message as a person reads it: decoded headers, the shown parts, the saveable list."""
    lines = []
    for name in DISPLAY_HEADERS:
        value = header(msg, name)
        if value:
            lines.append(f"{name}: {value}")
    lines.append("")
    found = layout(msg)
    body = body_text(msg, found)
    if body:
        lines.append(body.rstrip("\n"))
    elif not found.shown:
        lines.append("[no text or HTML part]")
    saved = attachments(msg, found)
    numbers = {id(info.part): info for info in saved}
    for part in found.shown[1:]:  # inline parts after the body, in order, as mail clients do
        info = numbers[id(part)]
        lines += ["", f"[part {info.index}: {info.filename} ({info.content_type})]",
                  shown_text(part).rstrip("\n")]
    if saved:
        lines += ["", "Attachments:"]
        lines += [f"  {a.index}. {a.filename}  ({a.content_type}, {human_size(a.size)})"
                  for a in saved]
    return "\n".join(lines) + "\n"


class _HTMLToText(HTMLParser):
    """Collects readable text from HTML; script/style/head contents are dropped."""

    SKIP = {"script", "style", "head", "title", "template", "noscript", "object", "iframe"}
    BLOCK = {
        "p", "div", "section", "article", "header", "footer", "blockquote", "pre", "table",
        "tr", "ul", "ol", "dl", "dt", "dd", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "form",
        "address", "figure", "body", "html",
    }  # fmt: skip
    BREAKS = {"br": "\n", "li": "\n- ", "td": "\t", "th": "\t"}

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
        if tag in self.BREAKS:
            self.out.append(self.BREAKS[tag])
        elif tag in self.BLOCK:
            self.out.append("\n\n")
            self.pre_depth += tag == "pre"
        elif tag == "img" and dict(attrs).get("alt"):
            self.out.append(f"[image: {dict(attrs)['alt']}]")
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
    return sanitize.text(text) + "\n" if text else ""
