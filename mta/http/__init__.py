"""The HTTP listener of one ``mta`` (steps 3 to 6 for programs in any language).

A versioned JSON API (``/api/v1``) over the server's mailboxes and outbound queue, a
server-side wait for a message, the event bus as Server-Sent Events, and ``/healthz``; it runs
in the same event loop as the SMTP and POP3 listeners (aiohttp, embedded with ``AppRunner``)
and closes with them. Invariants: loopback unless a token is configured (``mta serve``
refuses otherwise); an account sees only its own mailbox; bad input is a 4xx with a JSON body,
never a traceback; every request and response is bounded.

Modules: ``app`` (routes, middlewares), ``auth``, ``mailboxes``, ``search``, ``messages``,
``wait``, ``sse``, ``admin`` (queue and faults), ``openapi``, ``params``, ``errors``; the web
pages: ``pages`` (the pages and their endpoints; what they do as a user agent is
``mua.web_actions``, plugged in by entry point),
``mime`` (a message's parts) and ``static/`` (HTML, CSS and JavaScript).
"""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING

from aiohttp import web

from mta.events import Bus
from mta.http.app import make_app
from mta.http.context import Context, Options
from mta.http.pages import PageOptions

if TYPE_CHECKING:
    from mta.server import Server

__all__ = ["HttpListener", "Options", "start"]

# Long-lived streams are ended at shutdown; other requests get this long to finish.
SHUTDOWN_GRACE = 2.0


class HttpListener:
    """A running HTTP listener (``mta.server.Listener``: ``port``, ``stop_accepting``,
    ``close``)."""

    def __init__(self, runner: web.AppRunner, sock: socket.socket, context: Context) -> None:
        self._runner = runner
        self._sock = sock
        self.context = context

    @property
    def port(self) -> int:
        return self._sock.getsockname()[1]

    def stop_accepting(self) -> None:
        """End the event streams and waits at once (they would hold the shutdown); the
        runner stops accepting in ``close``."""
        self.context.close_all()

    async def close(self, grace: float = SHUTDOWN_GRACE) -> None:
        """Stop accepting; event streams and waits end at once. Other requests get
        ``SHUTDOWN_GRACE`` seconds, whatever ``grace`` says (aiohttp's runner fixes it)."""
        self.context.close_all()
        await self._runner.cleanup()


def _bind(host: str, port: int) -> socket.socket:
    family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                flags=socket.AI_PASSIVE)[0][0]
    return socket.create_server((host, port), family=family, reuse_port=False)


async def start(server: Server, bus: Bus, host: str, port: int,
                options: Options | None = None,
                pages: PageOptions | None = None) -> HttpListener:
    """Serve ``server``'s API on ``host:port`` (0: any free port) in the running loop."""
    options = options or Options()
    bus.keep_history(options.history)
    context = Context(server, bus, options)
    runner = web.AppRunner(make_app(context, pages), access_log=None,
                           shutdown_timeout=SHUTDOWN_GRACE)
    await runner.setup()
    try:
        sock = _bind(host, port)
    except BaseException:
        await runner.cleanup()
        raise
    try:
        await web.SockSite(runner, sock).start()
    except BaseException:
        sock.close()
        await runner.cleanup()
        raise
    return HttpListener(runner, sock, context)
