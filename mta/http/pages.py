"""The web pages (all six steps, watched and driven from a browser): flow, mail and server.

Serves the static pages shipped in ``mta/http/static`` (plain HTML, CSS and ES modules, no CDN,
nothing fetched from the Internet), with a Content-Security-Policy that lets them load only
their own scripts, and the few JSON endpoints the pages need beyond the API of ``mta.http``:

- ``/api/v1/texts?lang=zh``: the step headings and explanations, from the one bilingual source
  the terminal demo prints (``mta.texts``);
- ``/api/v1/pages/config``: what the flow page needs to know: this server's domains, the peer
  servers whose event streams it merges, and (``mua demo --web`` only) the lab's accounts;
- ``/api/v1/pages/replay?message_id=``: the held events of one message on this server
  (``mta.lab_trace``, the trace builder the lab uses);
- the user agent's actions, plugged in through the ``labmail.http`` entry point group
  (``mua.web_actions``: compose, submit, fetch as a user), since ``mta`` imports nothing of ``mua``.

Separate processes: the page subscribes to each server's own stream (CORS, the listener's
``cors_origins``) instead of one server proxying the others': no second copy of every event,
and each server stays the authority of its own stream. In one process (``mua demo --web``)
the domains share one bus, so one stream already carries everything (``shared_bus``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from aiohttp import web

from mta.http import mime
from mta.http.context import CONTEXT
from mta.http.errors import ApiError, Handler
from mta.lab_trace import build_trace
from mta.texts import TEXT

STATIC = Path(__file__).with_name("static")
# Entry point group of route plug-ins: each is called with the app (the user agent registers
# its actions here, so the dependency stays mua -> mta).
PLUG_INS = "labmail.http"
PAGES = {"/flow": "flow.html", "/mail": "mail.html", "/server": "server.html"}
# The pages run only their own scripts. Images and connections may go anywhere because the
# flow page talks to peer servers and a message's HTML may be allowed its remote images (its
# iframe has its own, stricter policy); frames, plugins and <base> are refused.
CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
       "img-src 'self' data: blob: http: https:; connect-src 'self' http: https:; "
       "object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
PAGE_HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff",
                "Referrer-Policy": "no-referrer", "Cache-Control": "no-cache"}
FAULT_REPLY = "451 4.3.0 Try again later (fault injected from the flow page)"


@dataclass(frozen=True)
class Peer:
    """Another server the flow page follows: its HTTP base URL and the domains it serves."""

    url: str
    domains: tuple[str, ...] = ()


@dataclass
class PageOptions:
    """How the pages of one listener are set up. Not frozen: ``mua demo --web`` adds the peers
    once every listener is bound (their ports are known only then)."""

    lang: str = "en"
    peers: list[Peer] = field(default_factory=list)
    shared_bus: bool = False          # the peers publish on this process's bus too
    lab_accounts: tuple[tuple[str, str], ...] = ()  # LAB ONLY: (address, password) to prefill
    subject: str = ""
    body: str = ""


OPTIONS = web.AppKey("labmail.pages", PageOptions)


def setup(app: web.Application, options: PageOptions | None = None) -> None:
    """Add the pages, their static files and their endpoints to the HTTP listener's app."""
    app[OPTIONS] = options or PageOptions()
    app.router.add_get("/", _home)
    for path, name in PAGES.items():
        app.router.add_get(path, _page(name))
    app.router.add_static("/static/", STATIC, append_version=False)
    app.on_response_prepare.append(_page_headers)
    app.router.add_get("/api/v1/texts", texts)
    app.router.add_get("/api/v1/pages/config", config)
    app.router.add_get("/api/v1/pages/replay", replay)
    for plug_in in entry_points(group=PLUG_INS):  # mua.web_actions, when installed
        plug_in.load()(app)
    mime.setup(app)


async def _home(request: web.Request) -> web.StreamResponse:
    raise web.HTTPFound("/flow")


def _page(name: str) -> Handler:
    async def page(request: web.Request) -> web.StreamResponse:
        return web.FileResponse(STATIC / name)

    return page


async def _page_headers(request: web.Request, response: web.StreamResponse) -> None:
    """The pages' policy on every page and static file (``/static/mail.html`` included)."""
    if request.path in PAGES or request.path.startswith("/static/"):
        response.headers.update(PAGE_HEADERS)


def texts_for(lang: str) -> dict[str, str]:
    """The step headings and explanations in ``lang`` (``mta.texts``: the terminal demo prints
    the same); 400 for a language it lacks."""
    if lang not in TEXT:
        raise ApiError(400, f"lang: one of {', '.join(sorted(TEXT))}")
    return TEXT[lang]


async def texts(request: web.Request) -> web.Response:
    lang = request.query.get("lang", request.app[OPTIONS].lang)
    return web.json_response({"lang": lang, "texts": texts_for(lang)})


async def config(request: web.Request) -> web.Response:
    options = request.app[OPTIONS]
    server = request.app[CONTEXT].server
    data: dict[str, Any] = {
        "lang": options.lang, "domains": list(server.config.domains),
        "peers": [{"url": p.url, "domains": list(p.domains)} for p in options.peers],
        "shared_bus": options.shared_bus, "fault_reply": FAULT_REPLY,
        "subject": options.subject, "body": options.body, "lab": None,
    }
    if len(options.lab_accounts) >= 2:
        (sender, sender_pw), (recipient, recipient_pw) = options.lab_accounts[:2]
        data["lab"] = {"sender": {"address": sender, "password": sender_pw},
                       "recipient": {"address": recipient, "password": recipient_pw}}
    return web.json_response(data)


async def replay(request: web.Request) -> web.Response:
    message_id = request.query.get("message_id", "").strip()
    if not message_id or len(message_id) > 998:
        raise ApiError(400, "message_id: the Message-ID of a message is required")
    # the same trace builder as mta.lab's: the sessions that carried the message, its events
    trace = build_trace(request.app[CONTEXT].bus.history(), message_id)
    events = sorted(trace.events, key=lambda e: e.seq)
    return web.json_response({"message_id": message_id, "events": [e.to_dict() for e in events]})
