"""The MX listener's handler: the far end of step 4, mail from other servers for local users.

RFC 5321: accept RCPT only for this server's own domains and ``postmaster`` (4.5.1), never
relay (unknown user ``550 5.1.1``, other domain ``550 5.7.1``), accept ``MAIL FROM:<>``,
refuse mail loops (more than ``max_received_headers`` Received headers, ``554 5.4.6``), and
answer ``250`` only after the store has committed the message (``Store.deliver``).
"""

from __future__ import annotations

import logging
import re
from collections import deque
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session

from mta import replies, trace
from mta.addresses import AddressError, parse
from mta.config import Config
from mta.message import (
    count_received,
    header_section,
    received_header,
    return_path,
    to_crlf,
    with_protocol,
)
from mta.smtp_server import exception_reply, extend_ehlo
from mta.store import Store, StoreError, new_txn_id

log = logging.getLogger("labmail.mx")

_MESSAGE_ID = re.compile(rb"^message-id[ \t]*:[ \t]*(.*(?:\r\n[ \t].*)*)", re.I | re.M)


class FaultInjector:
    """Lab and test fault injection: replies given to the next transactions, one each."""

    def __init__(self, replies_: tuple[str, ...] = ()) -> None:
        self._replies: deque[str] = deque(replies_)

    def script(self, *replies_: str) -> None:
        self._replies.extend(replies_)

    def clear(self) -> None:
        self._replies.clear()

    def pending(self) -> tuple[str, ...]:
        """The replies still scripted, in the order they will be given."""
        return tuple(self._replies)

    def next(self) -> str | None:
        return self._replies.popleft() if self._replies else None

    def __len__(self) -> int:
        return len(self._replies)


def message_id_of(raw: bytes) -> str:
    """The Message-ID field of ``raw`` ("" when there is none), for log records."""
    match = _MESSAGE_ID.search(header_section(raw))
    if not match:
        return ""
    return " ".join(match.group(1).decode("utf-8", "replace").split())


def txn_extra(component: str, hostname: str, session: Session, raw: bytes,
              txn_id: str | None) -> dict[str, Any]:
    """Structured fields of a transaction's log record: they tie the message (Message-ID,
    queue id) to the traced session (component and peer as in ``labmail.trace``)."""
    return {"component": component, "hostname": hostname,
            "peer": trace.peer_text(session.peer), "txn_id": txn_id,
            "message_id": message_id_of(raw)}


def received_for(session: Session, envelope: Envelope, hostname: str, txn_id: str, *,
                 auth: bool) -> bytes:
    """The Received header this server adds for the session's transaction (RFC 5321 4.4)."""
    protocol = with_protocol(esmtp=session.extended_smtp, tls=session.ssl is not None,
                             auth=auth, smtputf8=envelope.smtp_utf8)
    return received_header(helo=session.host_name, peer_ip=peer_ip(session), by=hostname,
                           protocol=protocol, txn_id=txn_id, recipients=envelope.rcpt_tos)


def address_reply(error: AddressError) -> str:
    template = {"routed": replies.ROUTED_ADDRESS, "non-ascii": replies.NON_ASCII_ADDRESS}
    return template.get(error.kind, replies.BAD_ADDRESS).format(address=error.address)


class LocalRecipients:
    """Maps an envelope recipient to the local mailbox that receives it, or to a reply."""

    def __init__(self, config: Config, store: Store) -> None:
        self.config = config
        self.store = store

    async def owner(self, address: str, *, smtputf8: bool) -> tuple[str | None, str]:
        """(mailbox owner, reply); owner is None when the recipient is refused."""
        if address.lower() == "postmaster":  # RFC 5321 4.5.1: bare <postmaster>
            return self.config.postmaster_address, replies.RECIPIENT_OK
        try:
            mailbox = parse(address, smtputf8=smtputf8)
        except AddressError as exc:
            return None, address_reply(exc)
        if not self.config.is_local_domain(mailbox.domain):
            return None, replies.RELAY_DENIED.format(address=address)
        if mailbox.local.lower() == "postmaster":
            return self.config.postmaster_address, replies.RECIPIENT_OK
        wanted = mailbox.address.lower()
        if await self.store.has_account(wanted):
            return wanted, replies.RECIPIENT_OK
        catch_all = self.config.catch_all.get(mailbox.domain)
        if catch_all:
            return catch_all, replies.RECIPIENT_OK
        return None, replies.UNKNOWN_USER.format(address=address)


def check_sender(address: str, smtputf8: bool) -> str | None:
    """A reply refusing the envelope sender, or None if it is acceptable."""
    if address == "<>":
        return None
    try:
        parse(address, smtputf8=smtputf8)
    except AddressError as exc:
        if exc.kind != "routed":  # a % or ! in a sender is odd but harmless
            return address_reply(exc)
    return None


def smtputf8_requested(options: list[str]) -> bool:
    return any(opt.upper() == "SMTPUTF8" for opt in options)


def peer_ip(session: Session) -> str:
    peer = session.peer
    return str(peer[0]) if isinstance(peer, tuple) else str(peer)


class InboundHandler:
    """aiosmtpd handler for the MX listener (hooks are upper-case or never called)."""

    def __init__(self, config: Config, store: Store, faults: FaultInjector | None = None) -> None:
        self.config = config
        self.store = store
        self.recipients = LocalRecipients(config, store)
        self.faults = faults if faults is not None else FaultInjector(config.faults.mx_replies)

    async def handle_EHLO(self, server: SMTP, session: Session, envelope: Envelope,
                          hostname: str, responses: list[str]) -> list[str]:
        session.host_name = hostname
        return extend_ehlo(responses, auth=False)

    async def handle_MAIL(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, mail_options: list[str]) -> str:
        refusal = check_sender(address, smtputf8_requested(mail_options))
        if refusal:
            return refusal
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        envelope.owners = []  # type: ignore[attr-defined]
        return replies.SENDER_OK

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, rcpt_options: list[str]) -> str:
        if len(envelope.rcpt_tos) >= self.config.limits.max_recipients:
            return replies.TOO_MANY_RECIPIENTS
        owner, reply = await self.recipients.owner(
            address, smtputf8=smtputf8_requested(envelope.mail_options))
        if owner is None:
            log.info("mx refused RCPT %s from %s: %s", address, peer_ip(session), reply)
            return reply
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        envelope.owners.append(owner)  # type: ignore[attr-defined]
        return reply

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = to_crlf(envelope.original_content or b"")
        fault = self.faults.next()
        if fault:
            log.info("mx fault injection: answering %r", fault,
                     extra=txn_extra("mx", self.config.hostname, session, raw, None))
            return fault
        if count_received(raw) >= self.config.limits.max_received_headers:
            log.warning("mx refused message from %s: mail loop", envelope.mail_from)
            return replies.MAIL_LOOP
        txn_id = new_txn_id()
        sender = "" if envelope.mail_from == "<>" else (envelope.mail_from or "")
        trace_headers = return_path(sender) + received_for(
            session, envelope, self.config.hostname, txn_id, auth=False)
        owners: list[str] = envelope.owners  # type: ignore[attr-defined]
        try:
            await self.store.deliver(list(dict.fromkeys(owners)), raw, sender, txn_id,
                                     prefix=trace_headers)
        except StoreError as exc:
            log.error("mx could not store message from %s: %s", sender or "<>", exc)
            return replies.TEMPORARY_FAILURE
        log.info("accepted id=%s from=<%s> to=%s size=%d", txn_id, sender,
                 ",".join(f"<{r}>" for r in envelope.rcpt_tos), len(trace_headers) + len(raw),
                 extra=txn_extra("mx", self.config.hostname, session, raw, txn_id))
        return replies.QUEUED.format(txn_id=txn_id)

    async def handle_exception(self, error: Exception) -> str:
        return exception_reply("mx", error)


def handler_kwargs(config: Config) -> dict[str, Any]:
    """aiosmtpd settings of the MX listener: no AUTH offered."""
    return {"offer_auth": False, "auth_exclude_mechanism": ["LOGIN", "PLAIN"]}
