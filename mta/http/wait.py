"""``GET /api/v1/messages/wait``: answer as soon as a matching message is stored (step 4's end).

What is stored already is looked up first (the subscription to the bus is opened *before*,
so a message stored in between is not missed); then the handler sleeps on the bus until a
``MessageStored`` event of this server names a message that matches. No polling: the answer
leaves within one event-loop turn of the store's commit. After ``timeout`` seconds the
answer is ``408`` with the messages that did arrive meanwhile (and did not match).
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from mta import events
from mta.http import messages, params, search
from mta.http.auth import access
from mta.http.context import CONTEXT, Context
from mta.http.errors import ApiError

DEFAULT_TIMEOUT = 30.0
MAX_TIMEOUT = 300.0
MAX_ARRIVED = 50


async def wait(request: web.Request) -> web.Response:
    context = request.app[CONTEXT]
    owner = access(request).owner  # an account waits on its own mailbox only
    filters = search.filters_from(request.query)
    timeout = params.number(request.query, "timeout", DEFAULT_TIMEOUT, low=0, high=MAX_TIMEOUT)
    loop_time = asyncio.get_running_loop().time
    started = loop_time()
    hostname = context.server.config.hostname

    def stored_here(event: events.Event) -> bool:
        return (isinstance(event, events.MessageStored) and event.server == hostname
                and (owner is None or event.owner == owner))

    subscription = context.subscribe(predicate=stored_here)
    try:
        found, _ = await search.find(context.store, owner, filters, limit=1)
        if found:
            return _answer(found[0], 0.0)
        arrived: list[dict[str, Any]] = []
        while True:
            remaining = started + timeout - loop_time()
            try:
                event = await subscription.get(max(remaining, 0.0))
            except TimeoutError:
                raise ApiError(408, f"no matching message within {timeout:g} s",
                               arrived=arrived) from None
            except EOFError:
                raise ApiError(503, "the server is shutting down") from None
            row = await _stored_row(context, event, owner)
            if row is None:
                continue
            if filters.accept(row) and (filters.since is None or
                                        event.time >= filters.since):
                return _answer(row, loop_time() - started)
            if len(arrived) < MAX_ARRIVED:
                arrived.append(row)
    finally:
        context.release(subscription)


async def _stored_row(context: Context, event: events.Event,
                      owner: str | None) -> dict[str, Any] | None:
    """The summary of the message a MessageStored event names (None if gone already)."""
    entry = await context.store.entry_by_uid(event.uidl or "")
    if entry is None or (owner is not None and entry.owner != owner):
        return None
    page = await context.store.mailbox_page(entry.owner, before=entry.id + 1, limit=1,
                                            head=messages.HEAD_BYTES)
    if not page or page[0][0].id != entry.id:
        return None
    return messages.summary(*page[0])


def _answer(row: dict[str, Any], waited: float) -> web.Response:
    return web.json_response({"message": row, "waited": round(waited, 3)})
