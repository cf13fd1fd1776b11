"""What the pages do as a user agent (steps 1, 2, 3, 5 and 6), on the server's own listeners.

The browser cannot speak SMTP or POP3, so the page asks its server to do it for the account
that logged in (HTTP Basic, checked by the API's auth): compose and format the message with
``mua.compose`` (steps 1-2), submit it through this server's own submission listener with
``mua.submit`` (step 3, exactly what ``mua send`` does: a real SMTP session with AUTH, seen by
everyone watching the event stream), and "fetch as Bob": a real POP3 session against this
server's POP3 listener with ``mua.fetch`` (step 5) and the message rendered by ``mua.render``
(step 6). The blocking clients run in a thread, off the event loop.

It plugs into the HTTP listener through the ``labmail.http`` entry point group (pyproject.toml),
like ``mua.testing`` plugs into pytest: the pages *are* a user agent that happens to run in a
browser, and ``mta`` imports nothing of ``mua`` (dependencies point one way).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import tempfile
from pathlib import Path
from typing import Any

from aiohttp import BasicAuth, hdrs, web

from mta.http.admin import json_body
from mta.http.context import CONTEXT
from mta.http.errors import ApiError
from mua import compose, fetch, render, submit
from mua.errors import MuaError
from mua.folder import open_folder
from mua.profile import Profile, ServerSettings

MAX_RENDERED = 20  # newest messages rendered back by one fetch
MAILDIRS = web.AppKey("labmail.maildirs", tempfile.TemporaryDirectory)


def setup(app: web.Application) -> None:
    """Register the actions under /api/v1/pages/ (the app's auth applies to each)."""
    app[MAILDIRS] = tempfile.TemporaryDirectory(prefix="labmail-pages-")
    app.on_cleanup.append(_cleanup)
    app.router.add_post("/api/v1/pages/format", format_message)
    app.router.add_post("/api/v1/pages/send", send)
    app.router.add_post("/api/v1/pages/fetch", fetch_messages)


async def _cleanup(app: web.Application) -> None:
    app[MAILDIRS].cleanup()


def _login(request: web.Request) -> tuple[str, str]:
    """The account's address and password (the auth middleware has already checked them)."""
    try:
        auth = BasicAuth.decode(request.headers.get(hdrs.AUTHORIZATION, ""), encoding="utf-8")
    except ValueError:
        raise ApiError(401, "log in with the account's address and password") from None
    return auth.login.strip().lower(), auth.password


def _text(data: dict[str, Any], key: str, *, required: bool = False) -> str:
    # (sizes are bounded by the app: a request body is at most mta.http.app.MAX_BODY)
    value = data.get(key, "")
    if not isinstance(value, str) or (required and not value.strip()):
        raise ApiError(400, f"{key}: a string is required")
    return value


def _local(host: str) -> str:
    return "127.0.0.1" if host in ("", "0.0.0.0", "::") else host


def _profile(request: web.Request, address: str, need: str) -> Profile:
    """The user agent's settings for this server's own listeners (loopback, our own TLS)."""
    server = request.app[CONTEXT].server
    config, ports = server.config, server.ports
    if need not in ports:
        raise ApiError(409, f"this server runs no {need} listener")
    security = "none" if config.tls.mode == "off" else "starttls"
    # verify=False: the certificate is this very server's own, reached over loopback
    found = {name: ServerSettings(_local(getattr(config.listeners, name).host), port, security,
                                  verify=False, login=address)
             for name, port in ports.items() if name in ("submission", "pop3")}
    return Profile(address=address, name="", smtp=found.get("submission", found[need]),
                   pop3=found.get("pop3", found[need]),
                   maildir=Path(request.app[MAILDIRS].name) / address)


async def format_message(request: web.Request) -> web.Response:
    """Steps 1-2: the form's fields as an RFC 5322 message (base64) and its Message-ID."""
    address, _ = _login(request)
    data = await json_body(request)
    try:
        message = compose.build_message(sender=address, to=[_text(data, "to", required=True)],
                                        subject=_text(data, "subject"), body=_text(data, "body"))
    except MuaError as exc:
        raise ApiError(400, str(exc)) from None
    raw = compose.to_bytes(message)
    return web.json_response({"message_id": str(message["Message-ID"]),
                              "raw": base64.b64encode(raw).decode("ascii"),
                              "text": raw.decode("utf-8", "replace").replace("\r\n", "\n")})


async def send(request: web.Request) -> web.Response:
    """Step 3: submit the formatted message through this server's submission listener."""
    address, password = _login(request)
    data = await json_body(request)
    try:
        raw = base64.b64decode(_text(data, "raw", required=True), validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(400, "raw: base64 of the formatted message is required") from None
    message = render.parse(raw)
    profile = _profile(request, address, "submission")
    try:
        result = await asyncio.to_thread(submit.submit, profile, password, message)
    except MuaError as exc:
        raise ApiError(502, str(exc)) from None
    return web.json_response({"reply": result.reply, "message_id": str(message["Message-ID"])})


async def fetch_messages(request: web.Request) -> web.Response:
    """Steps 5-6: a POP3 session as the account, then the new messages rendered."""
    address, password = _login(request)
    data = await json_body(request)
    profile = _profile(request, address, "pop3")
    try:
        found = await asyncio.to_thread(_fetch_and_render, profile, password,
                                        bool(data.get("keep")))
    except MuaError as exc:
        raise ApiError(502, str(exc)) from None
    # the newest event of this server's bus: the page draws step 6 once its stream got there
    return web.json_response({**found, "seq": request.app[CONTEXT].bus.published})


def _fetch_and_render(profile: Profile, password: str, keep: bool) -> dict[str, Any]:
    """``mua fetch`` into the page's own Maildir, then ``mua read`` of what it brought."""
    result = fetch.fetch(profile, password, keep=keep)
    folder = open_folder(profile.maildir)
    messages = []
    for key in result.keys[-MAX_RENDERED:]:
        parsed = render.parse(folder.get_bytes(key))
        messages.append({"subject": render.header(parsed, "Subject"),
                         "from": render.header(parsed, "From"),
                         "message_id": render.header(parsed, "Message-ID"),
                         "rendered": render.render_message(parsed)})
    return {"on_server": result.on_server, "downloaded": result.downloaded,
            "deleted": result.deleted, "messages": messages}
