"""The MX listener's handler: the far end of step 4, mail from other servers for local users.

RFC 5321: accept RCPT only for this server's own domains and ``postmaster`` (4.5.1), never
relay (unknown user ``550 5.1.1``, other domain ``550 5.7.1``), accept ``MAIL FROM:<>``,
refuse mail loops (more than ``max_received_headers`` Received headers, ``554 5.4.6``), and
answer ``250`` only after the store has committed the message (``Store.deliver``).
"""

from __future__ import annotations

import logging
from typing import Any

from aiosmtpd.smtp import Session

from mta import replies
from mta.config import Config
from mta.message import count_received, return_path
from mta.message import message_id as message_id_of
from mta.smtp.common import (
    LocalRecipients,
    check_sender,
    exception_reply,
    extend_ehlo,
    peer_ip,
    received_for,
    smtputf8_requested,
)
from mta.smtp.faults import FaultInjector
from mta.smtp.server import LabEnvelope, LabSMTP
from mta.store import Store, StoreError, new_queue_id
from pop3.crlf import to_crlf

log = logging.getLogger("labmail.mx")


class InboundHandler:
    """aiosmtpd handler for the MX listener (hooks are upper-case or never called)."""

    def __init__(self, config: Config, store: Store, faults: FaultInjector | None = None) -> None:
        self.config = config
        self.store = store
        self.recipients = LocalRecipients(config, store)
        self.faults = faults if faults is not None else FaultInjector(config.faults.mx_replies)

    async def handle_EHLO(self, server: LabSMTP, session: Session, envelope: LabEnvelope,
                          hostname: str, responses: list[str]) -> list[str]:
        session.host_name = hostname
        return extend_ehlo(responses, auth=False)

    async def handle_MAIL(self, server: LabSMTP, session: Session, envelope: LabEnvelope,
                          address: str, mail_options: list[str]) -> str:
        refusal = check_sender(address, smtputf8_requested(mail_options))
        if refusal:
            return refusal
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return replies.SENDER_OK

    async def handle_RCPT(self, server: LabSMTP, session: Session, envelope: LabEnvelope,
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
        envelope.owners.append(owner)
        return reply

    async def handle_DATA(self, server: LabSMTP, session: Session, envelope: LabEnvelope) -> str:
        raw = to_crlf(envelope.original_content or b"")
        fault = self.faults.next()
        if fault:
            log.info("mx fault injection: answering %r", fault)
            return fault
        if count_received(raw) >= self.config.limits.max_received_headers:
            log.warning("mx refused message from %s: mail loop", envelope.mail_from)
            return replies.MAIL_LOOP
        queue_id = envelope.queue_id or new_queue_id()
        sender = "" if envelope.mail_from == "<>" else (envelope.mail_from or "")
        trace_headers = return_path(sender) + received_for(
            session, envelope, self.config.hostname, queue_id, auth=False)
        if server.state.bus.active:  # for the accepted and stored events only
            envelope.message_id = message_id_of(raw)
        try:
            await self.store.deliver(list(dict.fromkeys(envelope.owners)), raw, sender, queue_id,
                                     prefix=trace_headers, message_id=envelope.message_id or "")
        except StoreError as exc:
            log.error("mx could not store message from %s: %s", sender or "<>", exc)
            return replies.TEMPORARY_FAILURE
        log.info("accepted id=%s from=<%s> to=%s size=%d", queue_id, sender,
                 ",".join(f"<{r}>" for r in envelope.rcpt_tos), len(trace_headers) + len(raw))
        return replies.QUEUED.format(queue_id=queue_id)

    async def handle_exception(self, error: Exception) -> str:
        return exception_reply("mx", error)


def handler_kwargs(config: Config) -> dict[str, Any]:
    """aiosmtpd settings of the MX listener: no AUTH offered."""
    return {"offer_auth": False, "auth_exclude_mechanism": ["LOGIN", "PLAIN"]}
