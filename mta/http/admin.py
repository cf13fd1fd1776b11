"""``/api/v1/queue`` and ``/api/v1/faults/mx``: the outbound queue and scripted MX replies.

The queue is shown as ``mta queue list`` shows it; flush makes every queued row due now and
wakes the relay worker; delete removes one row (its number) or a whole message (its queue
id). Faults use the server's ``FaultInjector`` (the mechanism behind ``[faults]``): each
scripted reply answers one coming MX transaction at end of DATA, then the MX is normal again.
Only the administrator may use these.
"""

from __future__ import annotations

import dataclasses
import re
import time
from typing import Any

from aiohttp import web

from mta.http import messages, params
from mta.http.auth import require_admin
from mta.http.context import CONTEXT
from mta.http.errors import ApiError
from mta.store import QueueRow

MAX_SCRIPTED = 100
_REPLY = re.compile(r"[45][0-9][0-9](?: [\x20-\x7e]{1,400})?")
DEFAULT_TEXT = {"4": "4.3.0 temporary failure (lab fault)", "5": "5.0.0 refused (lab fault)"}


def _queue_row(row: QueueRow) -> dict[str, Any]:
    data = dataclasses.asdict(row)
    data["state"] = str(row.state)
    data["next_attempt_at"] = messages.iso(row.next_attempt)
    data["created_at"] = messages.iso(row.created)
    return data


async def queue_list(request: web.Request) -> web.Response:
    require_admin(request)
    include_final = request.query.get("all", "").lower() in ("1", "true", "yes")
    rows = await request.app[CONTEXT].store.queue_rows(include_final=include_final)
    return web.json_response({"rows": [_queue_row(r) for r in rows[:10_000]],
                              "count": len(rows)})


async def queue_flush(request: web.Request) -> web.Response:
    require_admin(request)
    flushed = await request.app[CONTEXT].store.flush_queue(time.time())
    return web.json_response({"flushed": flushed})


async def queue_delete(request: web.Request) -> web.Response:
    require_admin(request)
    ident = request.match_info["ident"].strip()
    if not ident.isalnum() or len(ident) > 40:
        raise ApiError(404, f"no queue row or queue id {ident[:40]!r}")
    deleted = await request.app[CONTEXT].store.delete_queued(ident)
    if not deleted:
        raise ApiError(404, f"no queue row or queue id {ident}")
    return web.json_response({"deleted": deleted})


async def faults_show(request: web.Request) -> web.Response:
    require_admin(request)
    return web.json_response({"replies": list(request.app[CONTEXT].server.faults.pending())})


async def faults_script(request: web.Request) -> web.Response:
    """Append ``count`` copies of ``reply`` (a code such as ``451``, or a full reply line)."""
    require_admin(request)
    data = await json_body(request)
    reply, count = data.get("reply"), data.get("count", 1)
    if not isinstance(reply, str | int) or isinstance(reply, bool):
        raise params.bad("reply", "must be an SMTP reply such as \"451 4.3.0 try later\"")
    reply = str(reply).strip()
    if reply.isdigit() and len(reply) == 3:
        reply = f"{reply} {DEFAULT_TEXT.get(reply[0], '')}".rstrip()
    if not _REPLY.fullmatch(reply):
        raise params.bad("reply", "must be a 4xx or 5xx code and printable ASCII text")
    if not isinstance(count, int) or isinstance(count, bool) or not 1 <= count <= MAX_SCRIPTED:
        raise params.bad("count", f"must be a whole number from 1 to {MAX_SCRIPTED}")
    faults = request.app[CONTEXT].server.faults
    if len(faults) + count > MAX_SCRIPTED:
        raise ApiError(409, f"at most {MAX_SCRIPTED} scripted replies at a time")
    faults.script(*([reply] * count))
    return web.json_response({"replies": list(faults.pending())})


async def faults_clear(request: web.Request) -> web.Response:
    require_admin(request)
    request.app[CONTEXT].server.faults.clear()
    return web.json_response({"replies": []})


async def json_body(request: web.Request) -> dict[str, Any]:
    """The request's JSON object; ``415``/``400`` for anything else (size bounded by the app)."""
    if request.content_type != "application/json":
        raise ApiError(415, "send JSON (Content-Type: application/json)")
    try:
        data = await request.json()
    except ValueError:
        raise ApiError(400, "the body is not valid JSON") from None
    if not isinstance(data, dict):
        raise ApiError(400, "the body must be a JSON object")
    return data
