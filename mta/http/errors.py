"""JSON errors for the HTTP API: every refusal is a status code and a short JSON body.

One place turns failures into responses (STYLE habit 6): a handler raises ``ApiError`` with a
message written for the client; aiohttp's own refusals (unknown route, wrong method, body too
large) get the same JSON shape; anything unexpected is logged and answered ``500`` without the
exception's text.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

log = logging.getLogger("labmail.http")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
         405: "method_not_allowed", 408: "timeout", 409: "conflict", 413: "too_large",
         415: "unsupported_media_type", 500: "internal_error", 503: "unavailable"}


class ApiError(Exception):
    """A refusal to send as ``status`` with ``{"error", "message", ...extra}``."""

    def __init__(self, status: int, message: str, *, headers: dict[str, str] | None = None,
                 **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}
        self.extra = extra


def error_response(status: int, message: str, headers: dict[str, str] | None = None,
                   **extra: Any) -> web.Response:
    data = {"error": CODES.get(status, "error"), "message": message, **extra}
    return web.json_response(data, status=status, headers=headers)


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn ``ApiError`` and aiohttp's plain-text refusals into JSON; hide the unexpected."""
    try:
        return await handler(request)
    except ApiError as exc:
        return error_response(exc.status, exc.message, exc.headers, **exc.extra)
    except web.HTTPException as exc:
        if exc.status_code < 400:
            raise
        message = "request body too large" if exc.status_code == 413 else exc.reason
        kept = {k: v for k, v in exc.headers.items() if k.lower() in ("allow", "www-authenticate")}
        return error_response(exc.status_code, message, kept)
    except Exception:
        log.exception("http %s %s failed", request.method, request.path)
        return error_response(500, "internal error (see the server log)")
