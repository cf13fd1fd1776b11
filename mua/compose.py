"""Steps 1 and 2: compose a message and format it as RFC 5322 with MIME.

Pure functions: inputs in, an ``email.message.EmailMessage`` (default policy) out; no I/O except
``Attachment.from_path``. The message carries every header the course notes name: From (with
display name), To, Cc, Subject, Date, Message-ID, MIME-Version, Content-Type, Reply-To and
X-Priority. Non-ASCII text is encoded so the message is 7-bit clean: RFC 2047 encoded words in
headers, RFC 2231 parameters for attachment names, UTF-8 bodies in quoted-printable or base64.

Bcc recipients are never written into the message: they are passed to ``submit`` separately.
A CR or LF inside any header value is refused (``ComposeError``) before anything is built, so a
value can never smuggle in another header (header injection).
"""

from __future__ import annotations

import base64
import mimetypes
import quopri
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, getaddresses, make_msgid
from pathlib import Path

from mua.errors import UsageError

# X-Priority is not standardised; these are the values common user agents write and read.
PRIORITY_NAMES = {1: "1 (Highest)", 2: "2 (High)", 3: "3 (Normal)", 4: "4 (Low)", 5: "5 (Lowest)"}
MAX_LINE = 78  # RFC 5322 2.1.1: lines SHOULD be at most 78 characters


class ComposeError(UsageError):
    """The inputs cannot make a valid message (bad address, CR/LF in a header, ...)."""


@dataclass(frozen=True)
class Attachment:
    """A file to attach: its name as the recipient will see it, its bytes and MIME type."""

    filename: str
    data: bytes
    content_type: str | None = None

    @classmethod
    def from_path(cls, path: str | Path, content_type: str | None = None) -> Attachment:
        path = Path(path)
        try:
            data = path.read_bytes()
        except OSError as e:
            raise ComposeError(f"cannot attach {path}: {e.strerror or e}") from None
        return cls(filename=path.name, data=data, content_type=content_type)

    def mime_type(self) -> tuple[str, str]:
        """The declared type, or one guessed from the file name (octet-stream when unknown)."""
        content_type = self.content_type
        if content_type is None:
            guessed, encoding = mimetypes.guess_type(self.filename, strict=False)
            # A compressed file (x.tar.gz) is not its inner type: send it as opaque bytes.
            content_type = guessed if guessed and not encoding else "application/octet-stream"
        maintype, _, subtype = content_type.partition("/")
        if not maintype or not subtype or maintype == "multipart":
            raise ComposeError(f"attachment {self.filename!r}: bad content type {content_type!r}")
        return maintype.lower(), subtype.lower()


def check_header_value(name: str, value: str) -> None:
    """Refuse a header value containing CR, LF or NUL (RFC 5322 2.2: no CR/LF in a field)."""
    for bad, label in (("\r", "CR"), ("\n", "LF"), ("\x00", "NUL")):
        if bad in value:
            raise ComposeError(f"{name} contains a {label} character: refused {value!r}")


def parse_addresses(field: str, values: Iterable[str]) -> list[Address]:
    """Parse ``--to``-style values (each may hold several comma-separated addresses)."""
    values = list(values)
    for value in values:
        check_header_value(field, value)
    result = []
    for name, addr in getaddresses([_without_empty_items(value) for value in values]):
        result.append(make_address(field, addr, name))
    return result


def _without_empty_items(value: str) -> str:
    """``value`` without empty comma-separated items (``"a@b.c,"``, ``"a@b.c,,d@e.f"``).

    Commas inside quoted strings, comments and angle brackets do not separate items. A value
    with no item at all is returned unchanged, so that it is still refused as an address.
    """
    items, current, quoted, escaped, depth = [], [], False, False, 0
    for char in value:
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif not quoted and char in "(<":
            depth += 1
        elif not quoted and char in ")>":
            depth = max(0, depth - 1)
        elif char == "," and not quoted and not depth:
            items.append("".join(current))
            current = []
            continue
        current.append(char)
    items.append("".join(current))
    kept = [item for item in items if item.strip()]
    return ",".join(kept) if kept else value


def make_address(field: str, addr_spec: str, display_name: str = "") -> Address:
    """An ``Address`` for ``addr_spec`` (ASCII user@domain) with an optional display name."""
    check_header_value(field, addr_spec)
    check_header_value(field, display_name)
    local, at, domain = addr_spec.rpartition("@")
    if not at or not local or not domain or not addr_spec.isascii() or " " in addr_spec:
        raise ComposeError(f"{field}: {addr_spec!r} is not a valid ASCII user@domain address")
    try:
        return Address(display_name=display_name, addr_spec=addr_spec)
    except (ValueError, IndexError) as e:
        raise ComposeError(f"{field}: {addr_spec!r} is not a valid address: {e}") from None


def build_message(
    *,
    sender: str,
    to: Sequence[str],
    subject: str,
    body: str = "",
    sender_name: str = "",
    cc: Sequence[str] = (),
    html: str | None = None,
    attachments: Sequence[Attachment] = (),
    reply_to: Sequence[str] = (),
    priority: int | None = None,
    date: datetime | None = None,
    message_id: str | None = None,
) -> EmailMessage:
    """Compose and format a message (steps 1-2). Raises ``ComposeError`` on bad input.

    ``to``, ``cc`` and ``reply_to`` take address strings such as ``"Bob <bob@bob.lab>"``; each
    may list several separated by commas. When ``html`` is given without ``body``, the text
    alternative is derived from the HTML. Bcc is not a parameter: see ``submit.submit``.
    """
    check_header_value("Subject", subject)
    if message_id is not None:
        check_header_value("Message-ID", message_id)
    for attachment in attachments:
        check_header_value("attachment file name", attachment.filename)
    from_address = make_address("From", sender, sender_name)
    to_addresses = parse_addresses("To", to)
    cc_addresses = parse_addresses("Cc", cc)
    reply_addresses = parse_addresses("Reply-To", reply_to)
    if not to_addresses and not cc_addresses:
        raise ComposeError("a message needs at least one To or Cc recipient")
    if priority is not None and priority not in PRIORITY_NAMES:
        raise ComposeError(f"priority must be 1 (highest) to 5 (lowest), not {priority}")

    msg = EmailMessage(policy=policy.default)
    msg["From"] = from_address
    _set_if("To", msg, to_addresses)
    _set_if("Cc", msg, cc_addresses)
    msg["Subject"] = subject
    msg["Date"] = format_datetime(date or datetime.now().astimezone())
    msg["Message-ID"] = message_id or make_msgid(domain=from_address.domain)
    _set_if("Reply-To", msg, reply_addresses)
    if priority is not None:
        msg["X-Priority"] = PRIORITY_NAMES[priority]
    _add_body(msg, body, html, attachments)
    return msg


def _set_if(name: str, msg: EmailMessage, addresses: list[Address]) -> None:
    if addresses:
        msg[name] = addresses


def _add_body(
    msg: EmailMessage, body: str, html: str | None, attachments: Sequence[Attachment]
) -> None:
    """The text part, the HTML alternative and the attachments (RFC 2045-2046 MIME)."""
    if html is not None and not body:
        from mua.render import html_to_text  # the text alternative for HTML-only mail

        body = html_to_text(html)
    body = _normalise_text(body)
    msg.set_content(body, cte=text_transfer_encoding(body))  # sets MIME-Version too
    if html is not None:
        html = _normalise_text(html)
        msg.add_alternative(html, subtype="html", cte=text_transfer_encoding(html))
    for attachment in attachments:
        maintype, subtype = attachment.mime_type()
        msg.add_attachment(
            attachment.data, maintype=maintype, subtype=subtype, filename=attachment.filename
        )
    for part in msg.walk():
        if part is not msg:
            del part["MIME-Version"]  # RFC 2045 4: required at the top level only


def _normalise_text(text: str) -> str:
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text if text.endswith("\n") or not text else text + "\n"


def text_transfer_encoding(text: str) -> str:
    """7bit for short-lined ASCII; otherwise the shorter of quoted-printable and base64."""
    lines = text.splitlines()
    if text.isascii() and all(len(line) <= MAX_LINE for line in lines):
        return "7bit"
    data = text.encode("utf-8")
    qp_size = len(quopri.encodestring(data))
    b64_size = len(base64.encodebytes(data))
    return "quoted-printable" if qp_size <= b64_size else "base64"


def recipients(msg: EmailMessage, bcc: Iterable[str] = ()) -> list[str]:
    """Envelope recipients: every To, Cc and Bcc address in ``msg`` plus ``bcc``, deduplicated."""
    found: list[str] = []
    fields = [str(v) for name in ("To", "Cc", "Bcc") for v in msg.get_all(name, [])]
    for _, addr in getaddresses(fields + [b for b in bcc]):
        if addr and addr.lower() not in {f.lower() for f in found}:
            found.append(addr)
    return found


def to_bytes(msg: EmailMessage) -> bytes:
    """The message as sent over SMTP: CRLF line ends, Bcc fields removed."""
    clean = _without_bcc(msg)
    return clean.as_bytes(policy=clean.policy.clone(linesep="\r\n"))


def _without_bcc(msg: EmailMessage) -> EmailMessage:
    if "Bcc" not in msg and "Resent-Bcc" not in msg:
        return msg
    import copy

    clean = copy.copy(msg)
    del clean["Bcc"]
    del clean["Resent-Bcc"]
    return clean
