"""``/api/v1/accounts`` and ``/api/v1/mailboxes/...``: read and tidy mailboxes (steps 4 to 6).

Messages are listed newest first with filters and a cursor, shown parsed (with their trace:
the held bus events that carry their Message-ID or queue id), downloaded raw (the exact
stored bytes) or attachment by attachment. Deleting honours the POP3 maildrop lock (RFC 1939
8): while a POP3 session holds a mailbox, delete and purge answer ``409``.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from mta import events
from mta.http import messages, params, search
from mta.http.auth import access, require_mailbox
from mta.http.context import CONTEXT, Context
from mta.http.errors import ApiError
from mta.store import Entry, MaildropLocked

MAX_TRACE = 500


async def accounts(request: web.Request) -> web.Response:
    counts = await request.app[CONTEXT].store.mailbox_counts()
    owner = access(request).owner
    rows = [{"address": address, "messages": count} for address, count in counts.items()
            if owner is None or address == owner]
    return web.json_response({"accounts": rows})


async def _mailbox(request: web.Request) -> tuple[Context, str]:
    address = require_mailbox(request, request.match_info["address"])
    context = request.app[CONTEXT]
    if not await context.store.has_account(address):
        raise ApiError(404, f"no mailbox {address[:320]}")
    return context, address


async def list_messages(request: web.Request) -> web.Response:
    context, address = await _mailbox(request)
    query = request.query
    limit = params.integer(query, "limit", params.DEFAULT_LIMIT, low=1, high=params.MAX_LIMIT)
    assert limit is not None
    rows, cursor = await search.find(context.store, address, search.filters_from(query), limit,
                                     search.cursor_from(query))
    return web.json_response({"messages": rows,
                              "next_cursor": None if cursor is None else str(cursor)})


async def _entry(request: web.Request) -> tuple[Context, Entry, bytes]:
    context, address = await _mailbox(request)
    entry_id = params.row_id(request.match_info["id"], "message")
    entry = await search.entry(context.store, address, entry_id)
    try:
        if entry is None:
            raise KeyError(entry_id)
        raw = await context.store.fetch(address, entry_id)
    except KeyError:
        raise ApiError(404, f"no message {entry_id} in {address}") from None
    return context, entry, raw


def trace(bus: events.Bus, row: dict[str, Any]) -> list[dict[str, Any]]:
    """The held events of this message at every hop: same Message-ID or same queue id."""
    message_id = row["message_id"].strip().strip("<>").strip() or None
    queue_id = (row["queue_id"] or "").upper() or None
    # A plain scan of up to HISTORY events: attribute compares only (a few ms for 10,000).
    found = [event.to_dict() for event in bus.history()
             if (queue_id is not None and (event.queue_id or "").upper() == queue_id)
             or (message_id is not None and event.message_id is not None
                 and event.message_id.strip().strip("<>").strip() == message_id)]
    return found[-MAX_TRACE:]


async def show_message(request: web.Request) -> web.Response:
    context, entry, raw = await _entry(request)
    data = messages.detail(entry, raw)
    data["trace"] = trace(context.bus, data)
    return web.json_response(data)


async def raw_message(request: web.Request) -> web.Response:
    _, _, raw = await _entry(request)
    return web.Response(body=raw, content_type="message/rfc822")


async def attachment(request: web.Request) -> web.Response:
    _, entry, raw = await _entry(request)
    parts = messages.attachments(messages.parse(raw))
    index = request.match_info["index"]
    if not index.isdigit() or int(index) >= len(parts):
        raise ApiError(404, f"message {entry.id} has no attachment {index[:20]!r}")
    part = parts[int(index)]
    payload = part.get_payload(decode=True)
    name = messages.safe_filename(messages.decoded(part.get_filename() or ""),
                                  f"attachment-{int(index) + 1}")
    return web.Response(
        body=payload if isinstance(payload, bytes) else b"",
        content_type=part.get_content_type(),
        headers={"Content-Disposition": messages.content_disposition(name),
                 "X-Content-Type-Options": "nosniff"})


async def delete_message(request: web.Request) -> web.Response:
    context, entry, raw = await _entry(request)
    deleted = await _delete(context, entry.owner, [entry.id])
    if not deleted:
        raise ApiError(404, f"no message {entry.id} in {entry.owner}")
    if context.bus.active:
        row = messages.summary(entry, raw[:messages.HEAD_BYTES])
        config = context.server.config
        context.bus.publish(events.MessageDeleted(
            server=config.hostname, domain=config.domains[0], step=5, queue_id=entry.queue_id,
            message_id=row["message_id"] or None, mailbox_id=entry.id, uidl=entry.uid,
            owner=entry.owner, by="http"))
    return web.json_response({"deleted": deleted})


async def purge(request: web.Request) -> web.Response:
    context, address = await _mailbox(request)
    return web.json_response({"deleted": await _delete(context, address, None)})


async def _delete(context: Context, owner: str, ids: list[int] | None) -> int:
    try:
        return await context.store.delete_unless_locked(owner, ids)
    except MaildropLocked:
        raise ApiError(409, f"{owner}: a POP3 session holds the maildrop; try again when it "
                            "ends", mailbox=owner) from None
