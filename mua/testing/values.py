"""What the ``mail_lab`` fixture hands out: accounts, delivered messages, submission results.

Plain values with no lab behind them, so a test can keep them after the lab is gone.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import getaddresses

_FOR_CLAUSE = re.compile(r"\bfor\s+<([^>]+)>", re.IGNORECASE)


class MailWaitTimeout(AssertionError):
    """``mail_lab.wait_for`` gave up; the message lists what did arrive and what is queued."""


@dataclass(frozen=True)
class LabAccount:
    """A user of the lab, with where to reach its servers (all on 127.0.0.1)."""

    address: str
    password: str
    host: str
    smtp_port: int          # the submission listener of the user's domain (AUTH required)
    pop3_port: int | None   # None when the domain serves no POP3
    mx_port: int            # the domain's MX listener (no AUTH; mail for the domain only)

    @property
    def login(self) -> str:
        return self.address

    @property
    def domain(self) -> str:
        return self.address.rpartition("@")[2]

    @property
    def smtp_host(self) -> str:
        return self.host

    @property
    def pop3_host(self) -> str:
        return self.host


class LabMessage(EmailMessage):
    """A delivered message, parsed (``email.policy.default``), with its raw bytes and where
    it was stored: ``raw``, ``mailbox``, ``envelope_sender``, ``queue_id`` (the id the final
    hop's 250 reply named) and ``uid`` (its POP3 UIDL)."""

    raw: bytes = b""
    mailbox: str = ""
    envelope_sender: str = ""
    queue_id: str = ""
    uid: str = ""

    @property
    def text(self) -> str:
        """The body as text: the plain part (or HTML) decoded, "" when there is none."""
        part = self.get_body(preferencelist=("plain", "html"))
        return "" if part is None else str(part.get_content())

    def __repr__(self) -> str:
        return (f"<LabMessage {self.mailbox} from {self.get('From', '?')} "
                f"subject {str(self.get('Subject', ''))!r}>")


@dataclass(frozen=True)
class Sent:
    """What ``mail_lab.send`` submitted and what the submission server answered."""

    message: EmailMessage
    message_id: str
    sender: str
    recipients: list[str]
    refused: dict[str, tuple[int, str]]
    reply: str         # "250 2.0.0 OK: queued as 3F2A..."
    queue_id: str      # the id in that reply


def parse(raw: bytes, *, mailbox: str, sender: str, queue_id: str, uid: str) -> LabMessage:
    """A stored message as a ``LabMessage`` (parsed with Python's line ends, so text comes
    out with "\\n"; ``raw`` keeps CRLF)."""
    message = BytesParser(_class=LabMessage, policy=policy.default).parsebytes(
        raw.replace(b"\r\n", b"\n"))
    assert isinstance(message, LabMessage)
    message.raw, message.mailbox, message.envelope_sender = raw, mailbox, sender
    message.queue_id, message.uid = queue_id, uid
    return message


def addressed_to(message: EmailMessage, address: str) -> bool:
    """Whether a catch-all mailbox's message was for ``address`` (Received ``for``, To, Cc)."""
    received = [str(v) for v in message.get_all("Received", [])]
    named = [m.group(1) for v in received for m in _FOR_CLAUSE.finditer(v)]
    headers = [str(v) for name in ("To", "Cc") for v in message.get_all(name, [])]
    named += [addr for _, addr in getaddresses(headers)]
    return any(n.strip().lower() == address for n in named)
