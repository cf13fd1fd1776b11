"""A stored message's MIME structure for the mail page (step 6): the tree and each leaf part.

The API shows a message as headers, bodies and attachments; a reader also wants to see how it
is built (RFC 2045/2046: which multipart holds which part) and the HTML part needs its
``cid:`` images (RFC 2392), which are inline parts rather than attachments. Parts are numbered
in the order ``email`` walks them; only the account that owns the mailbox may read them.
"""

from __future__ import annotations

from email.message import Message
from typing import Any

from aiohttp import web

from mta.http import messages, params, search
from mta.http.auth import require_mailbox
from mta.http.context import CONTEXT
from mta.http.errors import ApiError

BASE = "/api/v1/mailboxes/{address}/messages/{id}/parts"
MAX_PARTS = 1000


def setup(app: web.Application) -> None:
    app.router.add_get(BASE, tree)
    app.router.add_get(BASE + "/{index}", part)


async def _parts(request: web.Request) -> list[Message]:
    address = require_mailbox(request, request.match_info["address"])
    store = request.app[CONTEXT].store
    entry_id = params.row_id(request.match_info["id"], "message")
    if await search.entry(store, address, entry_id) is None:
        raise ApiError(404, f"no message {entry_id} in {address[:320]}")
    try:
        raw = await store.fetch(address, entry_id)
    except KeyError:
        raise ApiError(404, f"no message {entry_id} in {address[:320]}") from None
    return list(messages.parse(raw).walk())[:MAX_PARTS]


def describe(parts: list[Message]) -> list[dict[str, Any]]:
    """One row per part in walk order, with its depth in the tree."""
    depth: dict[int, int] = {}
    rows = []
    for index, node in enumerate(parts):
        level = depth.get(id(node), 0)
        if node.is_multipart():
            for child in node.get_payload():
                depth[id(child)] = level + 1
        payload = None if node.is_multipart() else node.get_payload(decode=True)
        rows.append({
            "index": index, "depth": level, "type": node.get_content_type(),
            "charset": node.get_content_charset(),
            "disposition": (node.get_content_disposition() or ""),
            "filename": messages.decoded(node.get_filename() or ""),
            "content_id": messages.decoded(node.get("Content-ID") or "").strip().strip("<>"),
            "encoding": str(node.get("Content-Transfer-Encoding") or ""),
            "size": len(payload) if isinstance(payload, bytes) else 0,
        })
    return rows


async def tree(request: web.Request) -> web.Response:
    return web.json_response({"parts": describe(await _parts(request))})


async def part(request: web.Request) -> web.Response:
    parts = await _parts(request)
    index = request.match_info["index"]
    if not index.isdigit() or int(index) >= len(parts) or parts[int(index)].is_multipart():
        raise ApiError(404, f"no leaf part {index[:20]!r}")
    node = parts[int(index)]
    payload = node.get_payload(decode=True)
    # served as bytes to download or to turn into a data: URL; never rendered by the browser
    return web.Response(body=payload if isinstance(payload, bytes) else b"",
                        content_type="application/octet-stream",
                        headers={"X-Part-Type": node.get_content_type(),
                                 "Content-Disposition": "attachment"})
