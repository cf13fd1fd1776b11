"""``GET /api/v1/events``: the event bus as Server-Sent Events (steps 3 to 5, live).

Each event is sent with ``id:`` its bus sequence number, ``event:`` its kind and ``data:`` the
JSON of ``Event.to_dict()`` (aiohttp-sse's framing; see ``event_frame``). Filters (``kind``,
``step``, ``queue_id``, ``message_id``, ``server``) use ``mta.events.matches``. A client that
reconnects with ``Last-Event-ID`` (or ``?last_event_id=``) first gets every held event after
that one (the bus keeps the newest ``HISTORY``), so nothing still held is lost; an id older
than what is held gets a ``gap`` event first. A client that reads too slowly loses events (the
bus never waits for it) and is told so with ``dropped`` events. Events go out in batches, at
most ``BATCH_SECONDS`` after they happen.
"""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

from aiohttp import web
from aiohttp_sse import EventSourceResponse

from mta import events
from mta.http import params
from mta.http.auth import require_admin
from mta.http.context import CONTEXT

PING_SECONDS = 15.0
BATCH_SECONDS = 0.02  # how long a stream gathers events before it writes them
SEND_TIMEOUT = 10.0  # seconds a batch of events may wait for the client to read


def event_filter(q: Mapping[str, str]) -> Callable[[events.Event], bool] | None:
    """The predicate of a stream's query string (``None``: no filter, every event passes);
    ``400`` for unknown kinds or steps."""
    kinds = params.choice_list(q, "kind", set(events.KINDS))
    steps = params.choice_list(q, "step", {str(n) for n in range(1, 7)})
    for name in ("queue_id", "message_id", "server"):
        value = q.get(name, "")
        if len(value) > params.MAX_FILTER or any(ord(c) < 32 for c in value):
            raise params.bad(name, "is too long or has control characters")
    if not (kinds or steps or any(q.get(name) for name in ("queue_id", "message_id",
                                                          "server"))):
        return None  # a call per event saved: the stream of everything is the common one
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
    # write_all bounds each batch's write by SEND_TIMEOUT; a timer per event cost more
    response = BatchedEventSource(ping_interval=PING_SECONDS, send_timeout=None)
    try:
        await response.prepare(request)
        async with response:
            closer = asyncio.ensure_future(_close_when_gone(response, subscription.close))
            try:
                if since is not None and since + 1 < bus.oldest_held:
                    gap = {"after": since, "oldest_held": bus.oldest_held}
                    await response.write_all([await response.framed(json.dumps(gap), None,
                                                                    "gap")])
                await _pump(response, subscription)
            finally:
                closer.cancel()
    except (ConnectionResetError, TimeoutError):
        pass  # the client went away
    finally:
        context.release(subscription)
    return response


class BatchedEventSource(EventSourceResponse):
    """aiohttp-sse's response (its headers, pings and framing) that puts many events in one
    write: under load a stream has several events waiting each time it wakes, and a write per
    event cost the MX a third of its rate (issue 13)."""

    _batch: list[bytes] | None = None

    async def write(self, data: bytes) -> None:
        if self._batch is not None:
            self._batch.append(data)
        else:
            await super().write(data)

    async def framed(self, data: str, id: str | None, event: str) -> bytes:
        """What ``send(data, id=, event=)`` would write, returned instead."""
        self._batch = []
        try:
            await self.send(data, id=id, event=event)
            return b"".join(self._batch)
        finally:
            self._batch = None

    async def write_all(self, frames: list[bytes]) -> None:
        """Write framed events at once; as aiohttp-sse's ``send``, a client that stops reading
        for ``SEND_TIMEOUT`` ends its stream."""
        try:
            async with asyncio.timeout(SEND_TIMEOUT):
                await super().write(b"".join(frames))
        except TimeoutError:
            self.stop_streaming()
            raise

    @property
    def separator(self) -> bytes:
        return self._sep.encode()


def event_json(event: events.Event) -> bytes:
    """``Event.to_dict()`` as JSON in UTF-8, on one line (``events.to_json``)."""
    return events.to_json(event)


@functools.cache
def _frame_parts(cls: type[events.Event], separator: bytes) -> tuple[bytes, dict[str, Any]]:
    """The frame of a ``cls`` event with holes for its id and for its JSON after ``"kind"``,
    and every field of ``cls`` with its default."""
    template = b'id: %%d%bevent: %b%bdata: {"kind":"%b",%%b%b%b' % (
        separator, cls.kind.encode(), separator, cls.kind.encode(), separator, separator)
    return template, events.blank(cls)


def event_frame(event: events.Event, separator: bytes) -> bytes:
    """The bytes aiohttp-sse's ``send(event_json(event), id=str(seq), event=kind)`` writes
    (tests/http/test_sse_frames.py holds them equal), made in one step: its ``send`` cost 9 µs
    an event, about 20 an SMTP delivery, on the MX's loop (issue 13). Only for a ``data`` of
    one line, which JSON is; anything else goes through ``send`` itself."""
    template, blank = _frame_parts(type(event), separator)
    fields = vars(event)
    if len(fields) != len(blank):  # made from some of its fields: the rest are defaults
        fields = blank | fields
    # to_dict() but for tuples, which JSON writes as arrays as it does lists; "kind" first
    return template % (event.seq, events.json_bytes(fields)[1:])


async def _pump(response: BatchedEventSource, subscription: events.Subscription) -> None:
    dropped = 0
    separator = response.separator
    async for first in subscription:
        # Let a burst gather: one wake-up and one write for every event of the next moment,
        # not one per event (a delivery is about twenty events; issue 13).
        await asyncio.sleep(BATCH_SECONDS)
        frames: list[bytes] = []
        for event in [first, *subscription.drain()]:
            if subscription.dropped != dropped:
                dropped = subscription.dropped
                frames.append(await response.framed(json.dumps({"dropped": dropped}), None,
                                                    "dropped"))
            frames.append(event_frame(event, separator))
        await response.write_all(frames)


async def _close_when_gone(response: BatchedEventSource, close: Callable[[], None]) -> None:
    """End the stream once the client disconnects (the ping task notices it)."""
    await response.wait()
    close()
