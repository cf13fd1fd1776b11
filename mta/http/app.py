"""The aiohttp application of one server's HTTP listener: routes, limits, CORS, errors.

Every route lives under ``/api/v1`` (the version is in the path so a v2 can live beside it),
except ``/healthz``. Middlewares, outermost first: CORS (only for configured origins),
JSON errors, authentication. Request bodies are bounded (``MAX_BODY``); responses are bounded
by the endpoints themselves (page limits, the message size limit, cut bodies).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import hdrs, web

from mta.http import admin, auth, mailboxes, openapi, sse, wait
from mta.http.context import CONTEXT, Context
from mta.http.errors import Handler, json_errors
from mta.store import QueueState

MAX_BODY = 64 * 1024
API = "/api/v1"


def routes() -> list[web.RouteDef]:
    return [
        web.get("/healthz", healthz),
        web.get(f"{API}/openapi.json", openapi.serve),
        web.get(f"{API}/accounts", mailboxes.accounts),
        web.get(f"{API}/mailboxes/{{address}}/messages", mailboxes.list_messages),
        web.delete(f"{API}/mailboxes/{{address}}/messages", mailboxes.purge),
        web.get(f"{API}/mailboxes/{{address}}/messages/{{id}}", mailboxes.show_message),
        web.delete(f"{API}/mailboxes/{{address}}/messages/{{id}}", mailboxes.delete_message),
        web.get(f"{API}/mailboxes/{{address}}/messages/{{id}}/raw", mailboxes.raw_message),
        web.get(f"{API}/mailboxes/{{address}}/messages/{{id}}/attachments/{{index}}",
                mailboxes.attachment),
        web.get(f"{API}/messages/wait", wait.wait),
        web.get(f"{API}/events", sse.stream),
        web.get(f"{API}/queue", admin.queue_list),
        web.post(f"{API}/queue/flush", admin.queue_flush),
        web.delete(f"{API}/queue/{{ident}}", admin.queue_delete),
        web.get(f"{API}/faults/mx", admin.faults_show),
        web.post(f"{API}/faults/mx", admin.faults_script),
        web.delete(f"{API}/faults/mx", admin.faults_clear),
    ]


async def healthz(request: web.Request) -> web.Response:
    """Alive and able to read the store (``mta check`` and container health checks)."""
    context = request.app[CONTEXT]
    await context.store.count_queue(QueueState.QUEUED)
    return web.json_response({"status": "ok", "hostname": context.server.config.hostname})


def preflight(origins: tuple[str, ...]) -> Handler:
    """Answer CORS preflight requests (OPTIONS) from ``origins``; others reach the router."""

    @web.middleware
    async def answer(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.method == "OPTIONS" and request.headers.get(hdrs.ORIGIN) in origins and \
                hdrs.ACCESS_CONTROL_REQUEST_METHOD in request.headers:
            return web.Response(status=204, headers={
                "Access-Control-Allow-Methods": "GET, POST, DELETE",
                "Access-Control-Allow-Headers": "Authorization, Content-Type, Last-Event-ID",
                "Access-Control-Max-Age": "600"})
        return await handler(request)

    return answer


def response_headers(origins: tuple[str, ...]) -> Callable[
        [web.Request, web.StreamResponse], Awaitable[None]]:
    """Headers every response gets before it is sent (streams included): no sniffing, no
    caching, and ``Access-Control-Allow-Origin`` for exactly the configured origins."""

    async def add(request: web.Request, response: web.StreamResponse) -> None:
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Cache-Control", "no-store")
        origin = request.headers.get(hdrs.ORIGIN)
        if origin is not None and origin in origins:
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Vary"] = "Origin"

    return add


def make_app(context: Context) -> web.Application:
    options = context.options
    middlewares = [preflight(options.cors_origins), json_errors, auth.middleware(options.token)]
    app = web.Application(middlewares=middlewares, client_max_size=MAX_BODY)
    app[CONTEXT] = context
    app.on_response_prepare.append(response_headers(options.cors_origins))
    app.add_routes(routes())

    async def end_streams(_: web.Application) -> None:
        context.close_all()  # event streams and waits end now, not at the shutdown timeout

    app.on_shutdown.append(end_streams)
    return app
