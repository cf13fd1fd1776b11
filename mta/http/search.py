"""Finding messages: a mailbox (or every mailbox) newest first, filtered, in pages.

The store answers one indexed SQL query with ``LIMIT`` per page (``Store.mailbox_page``), each
row with only the first ``HEAD_BYTES`` of its message. Without header filters one page is
all it takes; with them, pages of ``SCAN_BATCH`` rows are summarised off the event loop and
filtered until ``limit`` rows match or ``MAX_SCAN`` rows were looked at, and the cursor says
where to go on. A cursor is the row id to continue below.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mta.http import messages, params
from mta.store import Entry, Store

SCAN_BATCH = 500
MAX_SCAN = 20_000


@dataclass(frozen=True)
class Filters:
    to: str | None = None
    sender: str | None = None
    subject: str | None = None
    since: float | None = None

    @property
    def on_headers(self) -> bool:
        return any(f is not None for f in (self.to, self.sender, self.subject))

    def accept(self, row: dict[str, Any]) -> bool:
        return messages.matches(row, to=self.to, sender=self.sender, subject=self.subject)


def filters_from(query: Mapping[str, str]) -> Filters:
    return Filters(to=params.text(query, "to"), sender=params.text(query, "from"),
                   subject=params.text(query, "subject"), since=params.when(query, "since"))


def cursor_from(query: Mapping[str, str]) -> int | None:
    value = query.get("cursor")
    if value is None or value == "":
        return None
    if not value.isdigit() or len(value) > 18:
        raise params.bad("cursor", "is not a cursor this API gave out")
    return int(value)


def _summaries(page: list[tuple[Entry, bytes]]) -> list[dict[str, Any]]:
    return [messages.summary(entry, head) for entry, head in page]


async def find(store: Store, owner: str | None, filters: Filters, limit: int,
               cursor: int | None = None) -> tuple[list[dict[str, Any]], int | None]:
    """Up to ``limit`` summaries, newest first, and the cursor of the next page (or None)."""
    found: list[dict[str, Any]] = []
    before, scanned = cursor, 0
    while scanned < MAX_SCAN:
        batch = SCAN_BATCH if filters.on_headers else limit - len(found)
        page = await store.mailbox_page(owner, before=before, since=filters.since,
                                        limit=batch, head=messages.HEAD_BYTES)
        if not page:
            return found, None
        # Parsing hundreds of header sections would hold the event loop: a thread does it.
        rows = await asyncio.to_thread(_summaries, page) if len(page) > 50 else _summaries(page)
        for row in rows:
            scanned += 1
            before = row["id"]
            if filters.accept(row):
                found.append(row)
                if len(found) == limit:
                    return found, before
        if len(page) < batch:
            return found, None
    return found, before


async def entry(store: Store, owner: str | None, entry_id: int) -> Entry | None:
    """One row (of ``owner``'s mailbox when given), without its message, or None."""
    page = await store.mailbox_page(owner, before=entry_id + 1, limit=1, head=0)
    return page[0][0] if page and page[0][0].id == entry_id else None
