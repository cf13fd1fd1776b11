"""What the MX (step 4) and submission (step 3) handlers share: the recipient check, the
Received header, the reply for a bad address, EHLO keywords, log fields and the one place an
unexpected error becomes a reply.
"""

from __future__ import annotations

import logging

from aiosmtpd.smtp import Envelope, Session, TLSSetupException

from mta import replies
from mta.addresses import AddressError, parse
from mta.config import Config
from mta.message import received_header, with_protocol
from mta.store import Store

log = logging.getLogger("labmail.smtp")


def received_for(session: Session, envelope: Envelope, hostname: str, queue_id: str, *,
                 auth: bool) -> bytes:
    """The Received header this server adds for the session's transaction (RFC 5321 4.4)."""
    protocol = with_protocol(esmtp=session.extended_smtp, tls=session.ssl is not None,
                             auth=auth, smtputf8=envelope.smtp_utf8)
    return received_header(helo=session.host_name, peer_ip=peer_ip(session), by=hostname,
                           protocol=protocol, queue_id=queue_id, recipients=envelope.rcpt_tos)


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


def exception_reply(component: str, error: Exception) -> str:
    """The one place an unexpected error becomes a reply: 451, a log line, no detail."""
    if isinstance(error, TLSSetupException):
        cause = error.__cause__ or error
        log.info("%s: TLS handshake failed: %s", component, cause.__class__.__name__)
    else:
        log.error("%s: unexpected error", component, exc_info=error)
    return replies.TEMPORARY_FAILURE


def extend_ehlo(responses: list[str], *, auth: bool) -> list[str]:
    """Advertise PIPELINING and ENHANCEDSTATUSCODES; drop AUTH where it is not offered."""
    keywords = [r[4:] for r in responses[1:]
                if r[4:] != "HELP" and (auth or not r[4:].startswith("AUTH"))]
    keywords += ["PIPELINING", "ENHANCEDSTATUSCODES", "HELP"]
    lines = [responses[0]] + [f"250-{k}" for k in keywords]
    lines[-1] = "250 " + lines[-1][4:]
    return lines
