"""Delivery status notifications: how step 4 tells a sender that mail could not be delivered.

RFC 3464 (``multipart/report; report-type=delivery-status``, RFC 6522): a human-readable part,
a ``message/delivery-status`` part with one block per failed recipient (``Action: failed``, an
RFC 3463 ``Status``, and the remote server's reply quoted in ``Diagnostic-Code: smtp; ...``),
and the original message's headers as ``text/rfc822-headers``. When a failed recipient's address
or the original header section is not ASCII, the RFC 6533 forms are used instead:
``report-type=global-delivery-status``, a ``message/global-delivery-status`` part whose
``Final-Recipient`` has the ``utf-8`` address type for non-ASCII addresses, and the headers as
``message/global-headers``. The envelope sender of a DSN is
``<>`` (RFC 5321 4.5.5) so it is never bounced in turn; ``From:`` is ``MAILER-DAEMON@<domain>``.
"""

from __future__ import annotations

import datetime
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from email.utils import format_datetime, localtime

from mta.config import Config
from mta.message import header_section

_ENHANCED = re.compile(r"^([245])\.(\d{1,3})\.(\d{1,3})$")


@dataclass(frozen=True)
class FailedRecipient:
    """One recipient a DSN reports."""

    recipient: str
    status: str                  # RFC 3463, e.g. "5.1.1"
    diagnostic: str              # the remote reply, or what went wrong
    smtp_reply: bool = True      # diagnostic is an SMTP reply (Diagnostic-Code type "smtp")
    remote_mta: str | None = None
    last_attempt: float | None = None


def status_of(reply: str) -> str:
    """The RFC 3463 status of an SMTP reply: its enhanced code, else derived from its class."""
    parts = reply.split(None, 2)
    if len(parts) >= 2 and _ENHANCED.match(parts[1]) and parts[1][0] == reply[:1]:
        return parts[1]
    return f"{reply[:1]}.0.0" if reply[:1] in "245" and reply[:1] else "5.0.0"


def _stamp(when: float | None) -> str:
    if when is None:
        return format_datetime(localtime())
    return format_datetime(datetime.datetime.fromtimestamp(when).astimezone())


def _one_line(text: str, limit: int = 900) -> str:
    text = " ".join(text.split())
    return "".join(c if c.isprintable() else "?" for c in text)[:limit]


def build(config: Config, *, original: bytes, sender: str, queue_id: str, arrival: float,
          failures: Sequence[FailedRecipient], now: float | None = None) -> bytes:
    """The DSN message (CRLF line ends) for ``failures`` of the message ``original``."""
    boundary = f"=_labmail_{secrets.token_hex(12)}"
    domain = config.domains[0]
    headers = header_section(original)
    utf8 = not headers.isascii() or not all(f.recipient.isascii() for f in failures)
    report = "global-delivery-status" if utf8 else "delivery-status"
    lines = [
        f"From: Mail Delivery System <MAILER-DAEMON@{domain}>",
        f"To: <{sender}>",
        "Subject: Undelivered Mail Returned to Sender",
        f"Date: {_stamp(now)}",
        f"Message-ID: <{secrets.token_hex(12)}@{config.hostname}>",
        "Auto-Submitted: auto-replied",  # RFC 3834 5
        "MIME-Version: 1.0",
        f"Content-Type: multipart/report; report-type={report};",
        f'\tboundary="{boundary}"',
        "",
        "This is a MIME-encapsulated message (an RFC 3464 delivery status notification).",
        "",
        f"--{boundary}",
        "Content-Type: text/plain; charset=utf-8",
        "Content-Transfer-Encoding: 8bit",
        "",
        f"This is the mail system at host {config.hostname}.",
        "",
        "Your message could not be delivered to one or more recipients.",
        f"It was queued as {queue_id}. The mail system said:",
        "",
    ]
    for failure in failures:
        where = f"host {failure.remote_mta} said: " if failure.remote_mta else ""
        lines.append(f"<{failure.recipient}>: {where}{_one_line(failure.diagnostic)}")
    lines += [
        "",
        f"--{boundary}",
        f"Content-Type: message/{report}",
        "",
        f"Reporting-MTA: dns; {config.hostname}",
        f"X-Labmail-Queue-ID: {queue_id}",
        f"Arrival-Date: {_stamp(arrival)}",
    ]
    for failure in failures:
        address_type = "rfc822" if failure.recipient.isascii() else "utf-8"  # RFC 6533 3
        lines += ["", f"Final-Recipient: {address_type}; {failure.recipient}", "Action: failed",
                  f"Status: {failure.status}"]
        if failure.remote_mta:
            lines.append(f"Remote-MTA: dns; {failure.remote_mta}")
        kind = "smtp" if failure.smtp_reply else "X-labmail"
        lines.append(f"Diagnostic-Code: {kind}; {_one_line(failure.diagnostic)}")
        if failure.last_attempt is not None:
            lines.append(f"Last-Attempt-Date: {_stamp(failure.last_attempt)}")
    headers_type = "message/global-headers" if utf8 else "text/rfc822-headers"  # RFC 6533 6.3
    lines += ["", f"--{boundary}", f"Content-Type: {headers_type}", ""]
    head = ("\r\n".join(lines) + "\r\n").encode("utf-8")
    if not headers.endswith(b"\r\n"):
        headers += b"\r\n"
    tail = f"\r\n--{boundary}--\r\n".encode()
    return head + headers + tail
