"""The submission listener's handler: step 3, a user agent hands a message to its own server.

RFC 6409: every transaction needs AUTH (``530 5.7.0`` otherwise), and the envelope sender must
be the authenticated user's own address (``553 5.7.1``; ``<>`` included). AUTH PLAIN and LOGIN
(RFC 4954, 4616) are checked against the store off the event loop; in plain text only where the
config allows it (``538 5.7.11`` otherwise, and AUTH is then not advertised before STARTTLS).
A failed AUTH answers ``535 5.7.8`` after a delay that grows with the failures from the client's
address across connections (``pop3.failures``: ``limits.failed_auth_delay`` doubled each time;
a login forgets only its own account's failures); after ``limits.max_auth_failures`` in one
session the connection gets ``421`` and is closed.

The server completes the message (RFC 6409 8: ``Message-ID`` and ``Date`` when missing) and
prepends ``Received: ... with ESMTPA`` (``ESMTPSA`` under TLS, RFC 3848). Recipients in the
server's own domains go straight to their mailboxes (validated like the MX does); the others go
to the outbound queue. Both commit in one transaction before ``250 ... queued as <id>``.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from base64 import b64decode
from email.utils import format_datetime, localtime
from typing import Any

from aiosmtpd.smtp import MISSING, AuthResult, LoginPassword, Session

from mta import replies
from mta.addresses import AddressError, parse
from mta.clock import Clock
from mta.config import Config
from mta.message import count_received, has_header, needs_smtputf8, return_path
from mta.message import message_id as message_id_of
from mta.smtp.common import (
    LocalRecipients,
    address_reply,
    exception_reply,
    extend_ehlo,
    peer_ip,
    received_for,
    smtputf8_requested,
)
from mta.smtp.server import LabEnvelope, LabSMTP
from mta.store import Store, StoreError, new_queue_id
from pop3.crlf import to_crlf
from pop3.failures import FailedLogins

log = logging.getLogger("labmail.submission")


def complete_message(raw: bytes, hostname: str) -> bytes:
    """Add ``Message-ID`` and ``Date`` when missing (RFC 6409 8.2, 8.3); the body is untouched.

    The new fields go at the end of the header section, so nothing after it moves.
    """
    missing = b""
    if not has_header(raw, "Date"):
        missing += f"Date: {format_datetime(localtime())}\r\n".encode()
    if not has_header(raw, "Message-ID"):
        missing += f"Message-ID: <{secrets.token_hex(12)}@{hostname}>\r\n".encode()
    if not missing:
        return raw
    if raw.startswith(b"\r\n"):  # an empty header section
        return missing + raw
    end = raw.find(b"\r\n\r\n")
    if end < 0:  # headers only, or no blank line: the fields go first
        return missing + raw
    return raw[: end + 2] + missing + raw[end + 2:]


class SubmissionHandler:
    """aiosmtpd handler for the submission listener (hooks upper-case or never called).

    ``auth_PLAIN`` and ``auth_LOGIN`` on the handler replace aiosmtpd's own (which can only
    call a synchronous authenticator), so the password check is awaited off the event loop.
    """

    def __init__(self, config: Config, store: Store, clock: Clock | None = None) -> None:
        self.config = config
        self.store = store
        self.clock = clock or Clock()
        self.recipients = LocalRecipients(config, store)
        self.failed_logins = FailedLogins(config.limits.failed_auth_delay)

    # -- session --------------------------------------------------------------------------------

    async def handle_EHLO(self, server: LabSMTP, session: Session, envelope: LabEnvelope,
                          hostname: str, responses: list[str]) -> list[str]:
        session.host_name = hostname
        return extend_ehlo(responses, auth=True)

    # -- AUTH (RFC 4954) ------------------------------------------------------------------------

    async def auth_PLAIN(self, server: LabSMTP, args: list[str]) -> AuthResult:
        # RFC 4616: [authzid] NUL authcid NUL passwd; an initial response or a 334 challenge.
        if len(args) == 1:
            blob = await server.challenge_auth("")
        else:
            blob = await _initial_response(server, args[1])
        if blob is MISSING:  # aborted or undecodable: the client has had its reply
            return AuthResult(success=False, handled=True)
        parts = blob.split(b"\0")
        if len(parts) != 3:
            await server.push(replies.AUTH_BAD_ENCODING)
            return AuthResult(success=False, handled=True)
        authzid, login, password = parts
        if authzid and authzid.lower() != login.lower():
            # Acting for another user is not offered: treat like wrong credentials.
            return await self._verify(server, b"", b"")
        return await self._verify(server, login, password)

    async def auth_LOGIN(self, server: LabSMTP, args: list[str]) -> AuthResult:
        if len(args) == 1:
            login = await server.challenge_auth("Username:")
        else:
            login = await _initial_response(server, args[1])
        if login is MISSING:
            return AuthResult(success=False, handled=True)
        password = await server.challenge_auth("Password:")
        if password is MISSING:
            return AuthResult(success=False, handled=True)
        return await self._verify(server, login, password)

    async def _verify(self, server: LabSMTP, login_b: bytes, password_b: bytes) -> AuthResult:
        try:
            login = login_b.decode("utf-8").strip().lower()
            password = password_b.decode("utf-8")
        except UnicodeDecodeError:
            login = password = ""
        if login and password and await self.store.check_password(login, password):
            log.info("submission: %s authenticated from %s", login, peer_ip(server.session))
            self.failed_logins.succeeded(peer_ip(server.session), login)
            # Mark the session and reply here: aiosmtpd's own success path would only add its
            # deprecated ``login_data`` (and a warning per login); "handled" stops it.
            server.session.authenticated = True
            server.session.auth_data = LoginPassword(login.encode(), b"")
            await server.push(replies.AUTH_OK)
            return AuthResult(success=False, handled=True)
        server.failed_logins += 1
        failures = server.failed_logins
        log.warning("submission: failed AUTH %d for %r from %s", failures, login,
                    peer_ip(server.session))
        delay = self.failed_logins.failed(peer_ip(server.session), login)
        if delay > 0:
            await asyncio.sleep(delay)
        if failures >= self.config.limits.max_auth_failures:
            await server.push(replies.TOO_MANY_AUTH_FAILURES.format(hostname=server.hostname))
            if server.transport is not None:
                server.transport.close()
            return AuthResult(success=False, handled=True)
        await server.push(replies.AUTH_FAILED)
        return AuthResult(success=False, handled=True)

    # -- the transaction ------------------------------------------------------------------------

    async def handle_MAIL(self, server: LabSMTP, session: Session, envelope: LabEnvelope,
                          address: str, mail_options: list[str]) -> str:
        if not session.authenticated:
            return replies.AUTH_REQUIRED
        login = _login(session)
        # RFC 6409 6.1: the sender is the user's own address; <> is not a user's address.
        if address == "<>" or address.lower() != login:
            shown = "" if address == "<>" else address
            log.warning("submission: %s tried to send as <%s>", login, shown)
            return replies.SENDER_NOT_OWNED.format(address=shown)
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return replies.SENDER_OK

    async def handle_RCPT(self, server: LabSMTP, session: Session, envelope: LabEnvelope,
                          address: str, rcpt_options: list[str]) -> str:
        if not session.authenticated:
            return replies.AUTH_REQUIRED
        if len(envelope.rcpt_tos) >= self.config.limits.max_recipients:
            return replies.TOO_MANY_RECIPIENTS
        smtputf8 = smtputf8_requested(envelope.mail_options)
        if address.lower() == "postmaster":
            domain = self.config.domains[0]
        else:
            try:
                domain = parse(address, smtputf8=smtputf8).domain
            except AddressError as exc:  # includes user%other@x, "user@other"@x, other!user@x
                log.info("submission refused RCPT %s: %s", address, exc.kind)
                return address_reply(exc)
        if self.config.is_local_domain(domain):
            owner, reply = await self.recipients.owner(address, smtputf8=smtputf8)
            if owner is None:
                return reply
            envelope.owners.append(owner)
        else:
            envelope.remote.append(address)
        envelope.rcpt_tos.append(address)  # the hook owns the append (STYLE 7)
        envelope.rcpt_options.extend(rcpt_options)
        return replies.RECIPIENT_OK

    async def handle_DATA(self, server: LabSMTP, session: Session, envelope: LabEnvelope) -> str:
        raw = to_crlf(envelope.original_content or b"")
        if count_received(raw) >= self.config.limits.max_received_headers:
            return replies.MAIL_LOOP
        queue_id = envelope.queue_id or new_queue_id()
        sender = envelope.mail_from or ""
        raw = complete_message(raw, self.config.hostname)
        if server.state.bus.active:  # for the accepted and stored events only
            envelope.message_id = message_id_of(raw)
        raw = received_for(session, envelope, self.config.hostname, queue_id, auth=True) + raw
        owners = list(dict.fromkeys(envelope.owners))
        remote = list(dict.fromkeys(envelope.remote))
        try:
            await self.store.accept(queue_id, sender, local_owners=owners,
                                    local_raw=return_path(sender) + raw, remote=remote,
                                    queue_raw=raw, now=self.clock.now(),
                                    message_id=envelope.message_id or "",
                                    smtputf8=needs_smtputf8(envelope.smtp_utf8, sender, remote,
                                                            raw))
        except StoreError as exc:
            log.error("submission could not store message from %s: %s", sender, exc)
            return replies.TEMPORARY_FAILURE
        log.info("submitted id=%s user=%s from=<%s> local=%s queued=%s size=%d", queue_id,
                 _login(session), sender, ",".join(owners) or "-", ",".join(remote) or "-",
                 len(raw))
        return replies.QUEUED.format(queue_id=queue_id)

    async def handle_exception(self, error: Exception) -> str:
        return exception_reply("submission", error)


async def _initial_response(server: LabSMTP, text: str) -> Any:
    """An AUTH initial response (RFC 4954 4), decoded; MISSING after refusing bad base64."""
    try:
        return b64decode(text.encode(), validate=True)
    except ValueError:
        await server.push(replies.AUTH_BAD_ENCODING)
        return MISSING


def _login(session: Session) -> str:
    data = session.auth_data
    login = getattr(data, "login", b"") or b""
    return login.decode("utf-8", "replace") if isinstance(login, bytes) else str(login)


def handler_kwargs(config: Config) -> dict[str, Any]:
    """aiosmtpd settings of the submission listener.

    AUTH is checked by the handler per command (``530 5.7.0``), not with aiosmtpd's
    ``auth_required``, which would also refuse HELP and NOOP-like commands before AUTH.
    """
    return {"auth_require_tls": not config.allow_plaintext_auth}
