"""Who may use the HTTP API: the administrator (a bearer token) or one account (HTTP Basic).

Without a configured ``token`` the listener trusts whoever reaches it (it binds loopback
unless told otherwise, and ``mta serve`` refuses anything else without a token). With one,
every request needs ``Authorization: Bearer <token>`` (RFC 6750 2.1), compared in constant
time. Either way an account may send its own address and password with HTTP Basic (RFC 7617);
it then sees its own mailbox and nothing else. The password is checked with the store's
salted scrypt, off the event loop; a wrong one waits ``limits.failed_auth_delay`` like SMTP AUTH
and POP3. ``/healthz`` needs nothing.
"""

from __future__ import annotations

import asyncio
import binascii
import hmac
from dataclasses import dataclass

from aiohttp import BasicAuth, hdrs, web

from mta.http.context import CONTEXT
from mta.http.errors import ApiError, Handler

PUBLIC = ("/healthz",)
CHALLENGE = 'Bearer realm="labmail", Basic realm="labmail", charset="UTF-8"'


@dataclass(frozen=True)
class Access:
    """What a request may see: everything (``owner`` None) or one account's mailbox."""

    owner: str | None = None

    @property
    def admin(self) -> bool:
        return self.owner is None


ADMIN = Access()
ACCESS = web.RequestKey("access", Access)


def _unauthorized(message: str) -> ApiError:
    return ApiError(401, message, headers={"WWW-Authenticate": CHALLENGE})


def middleware(token: str | None) -> Handler:
    """The auth middleware for a listener with (or without) an administrator ``token``."""

    @web.middleware
    async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in PUBLIC or request.method == "OPTIONS":
            return await handler(request)
        request[ACCESS] = await _access(request, token)
        return await handler(request)

    return authenticate


async def _access(request: web.Request, token: str | None) -> Access:
    header = request.headers.get(hdrs.AUTHORIZATION, "")
    scheme, _, credentials = header.partition(" ")
    scheme = scheme.lower()
    if scheme == "basic":
        return await _account(request, header)
    if scheme == "bearer" and token is not None:
        if hmac.compare_digest(credentials.strip().encode(), token.encode()):
            return ADMIN
        raise _unauthorized("wrong token")
    if token is None and scheme in ("", "bearer"):
        return ADMIN
    raise _unauthorized("authentication required (Bearer token or Basic account)")


async def _account(request: web.Request, header: str) -> Access:
    try:
        auth = BasicAuth.decode(header, encoding="utf-8")
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise _unauthorized("malformed Basic credentials") from None
    address = auth.login.strip().lower()
    if not address or len(address) > 320 or len(auth.password) > 1024:
        raise _unauthorized("wrong address or password")
    context = request.app[CONTEXT]
    if not await context.store.check_password(address, auth.password):
        # the same pause as SMTP AUTH and POP3 PASS after a failure (guessing stays slow)
        await asyncio.sleep(context.server.config.limits.failed_auth_delay)
        raise _unauthorized("wrong address or password")
    return Access(owner=address)


def access(request: web.Request) -> Access:
    return request[ACCESS]


def require_admin(request: web.Request) -> None:
    if not request[ACCESS].admin:
        raise ApiError(403, "only the administrator (bearer token) may do this")


def require_mailbox(request: web.Request, address: str) -> str:
    """The normalised ``address`` if this request may read that mailbox, else ``403``."""
    address = address.strip().lower()
    owner = request[ACCESS].owner
    if owner is not None and owner != address:
        raise ApiError(403, "an account may read only its own mailbox")
    return address

