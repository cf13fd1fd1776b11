"""``GET /api/v1/events``: the event bus as Server-Sent Events (steps 3 to 5, live).

Each event is sent with ``id:`` its bus sequence number, ``event:`` its kind and ``data:`` the
JSON of ``Event.to_dict()`` (framing by aiohttp-sse). Filters (``kind``, ``step``,
``queue_id``, ``message_id``, ``server``) use ``mta.events.matches``. A client that
reconnects with ``Last-Event-ID`` (or ``?last_event_id=``) first gets every held event after
that one (the bus keeps the newest ``HISTORY``), so nothing still held is lost; an id older
than what is held gets a ``gap`` event first. A client that reads too slowly loses events (the
bus never waits for it) and is told so with ``dropped`` events. Events go out in batches, at
most ``BATCH_SECONDS`` after they happen.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping
from functools import partial

from aiohttp import web
from aiohttp_sse import EventSourceResponse

from mta import events
from mta.http import params
from mta.http.auth import require_admin
from mta.http.context import CONTEXT

PING_SECONDS = 15.0
BATCH_SECONDS = 0.02  # how long a stream gathers events before it writes them
SEND_TIMEOUT = 10.0  # seconds a batch of events may wait for the client to read


def event_filter(q: Mapping[str, str]) -> Callable[[events.Event], bool]:
    """The predicate of a stream's query string; ``400`` for unknown kinds or steps."""
    kinds = params.choice_list(q, "kind", set(events.KINDS))
    steps = params.choice_list(q, "step", {str(n) for n in range(1, 7)})
    for name in ("queue_id", "message_id", "server"):
        value = q.get(name, "")
        if len(value) > params.MAX_FILTER or any(ord(c) < 32 for c in value):
            raise params.bad(name, "is too long or has control characters")
    return partial(events.matches, kind=kinds,
                   step=tuple(int(s) for s in steps) if steps else None,
                   queue_id=q.get("queue_id") or None, message_id=q.get("message_id") or None,
                   server=q.get("server") or None)


def _last_event_id(request: web.Request) -> int | None:
    value = request.headers.get("Last-Event-ID") or request.query.get("last_event_id")
    if value is None or value == "":
        return None
    if not value.strip().isdigit() or len(value) > 18:
        raise params.bad("Last-Event-ID", "must be an event id this stream sent")
    return int(value)


async def stream(request: web.Request) -> web.StreamResponse:
    require_admin(request)
    predicate = event_filter(request.query)
    since = _last_event_id(request)
    context = request.app[CONTEXT]
    bus = context.bus
    subscription = context.subscribe(predicate=predicate, since=since)
    # send_all bounds each batch's write by SEND_TIMEOUT; a timer per event cost more
    response = BatchedEventSource(ping_interval=PING_SECONDS, send_timeout=None)
    try:
        await response.prepare(request)
        async with response:
            closer = asyncio.ensure_future(_close_when_gone(response, subscription.close))
            try:
                if since is not None and since + 1 < bus.oldest_held:
                    await response.send_all([(json.dumps(
                        {"after": since, "oldest_held": bus.oldest_held}), None, "gap")])
                await _pump(response, subscription)
            finally:
                closer.cancel()
    except (ConnectionResetError, TimeoutError):
        pass  # the client went away
    finally:
        context.release(subscription)
    return response


class BatchedEventSource(EventSourceResponse):
    """aiohttp-sse's response (its framing, its pings) that can put many events in one write:
    under load a stream has several events waiting each time it wakes, and a write per event
    cost the MX a third of its rate (issue 13)."""

    _batch: list[bytes] | None = None

    async def write(self, data: bytes) -> None:
        if self._batch is not None:
            self._batch.append(data)
        else:
            await super().write(data)

    async def send_all(self, items: list[tuple[str, str | None, str]]) -> None:
        """``send(data, id=, event=)`` for each (data, id, event), written at once."""
        self._batch = []
        try:
            for data, ident, kind in items:
                await self.send(data, id=ident, event=kind)
            chunk = b"".join(self._batch)
        finally:
            self._batch = None
        try:  # as aiohttp-sse's send: a client that stops reading ends its stream
            async with asyncio.timeout(SEND_TIMEOUT):
                await super().write(chunk)
        except TimeoutError:
            self.stop_streaming()
            raise


async def _pump(response: BatchedEventSource, subscription: events.Subscription) -> None:
    dropped = 0
    async for first in subscription:
        # Let a burst gather: one wake-up and one write for every event of the next moment,
        # not one per event (a delivery is about twenty events; issue 13).
        await asyncio.sleep(BATCH_SECONDS)
        items: list[tuple[str, str | None, str]] = []
        for event in [first, *subscription.drain()]:
            if subscription.dropped != dropped:
                dropped = subscription.dropped
                items.append((json.dumps({"dropped": dropped}), None, "dropped"))
            items.append((json.dumps(event.to_dict()), str(event.seq), event.kind))
        await response.send_all(items)


async def _close_when_gone(response: BatchedEventSource, close: Callable[[], None]) -> None:
    """End the stream once the client disconnects (the ping task notices it)."""
    await response.wait()
    close()

