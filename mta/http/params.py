"""Query parameters of the HTTP API, checked: a bad value is a ``400`` naming the parameter.

Limits are bounded (``MAX_LIMIT``), cursors and ids are decimal row numbers, times are epoch
seconds or ISO 8601, filters are bounded strings. Nothing here raises anything but ``ApiError``.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping

from mta.http.errors import ApiError

DEFAULT_LIMIT = 50
MAX_LIMIT = 500
MAX_FILTER = 256
MAX_ROW_ID = 2**62


def bad(name: str, why: str) -> ApiError:
    return ApiError(400, f"{name}: {why}", parameter=name)


def integer(query: Mapping[str, str], name: str, default: int | None, *, low: int,
            high: int) -> int | None:
    """A decimal integer in ``[low, high]``, or ``default`` when absent."""
    text = query.get(name)
    if text is None:
        return default
    text = text.strip()
    if not text.isdigit() or len(text) > 19:
        raise bad(name, "must be a whole number")
    value = int(text)
    if not low <= value <= high:
        raise bad(name, f"must be from {low} to {high}")
    return value


def number(query: Mapping[str, str], name: str, default: float, *, low: float,
           high: float) -> float:
    """A decimal number of seconds in ``[low, high]``."""
    text = query.get(name)
    if text is None:
        return default
    try:
        value = float(text)
    except ValueError:
        raise bad(name, "must be a number") from None
    if not low <= value <= high:  # also refuses nan
        raise bad(name, f"must be from {low:g} to {high:g}")
    return value


def row_id(text: str, name: str = "id") -> int:
    """A path's message or queue row number."""
    if not text.isdigit() or len(text) > 18 or not 0 < int(text) < MAX_ROW_ID:
        raise ApiError(404, f"no such {name}: {text[:40]!r}")
    return int(text)


def text(query: Mapping[str, str], name: str) -> str | None:
    """A filter string (case-insensitive "contains"), bounded; None when absent or empty."""
    value = query.get(name)
    if value is None or not value.strip():
        return None
    if len(value) > MAX_FILTER or any(ord(c) < 32 for c in value):
        raise bad(name, f"must be at most {MAX_FILTER} printable characters")
    return value.strip().lower()


def when(query: Mapping[str, str], name: str) -> float | None:
    """A point in time: epoch seconds or ISO 8601 (a time without a zone is UTC)."""
    value = query.get(name)
    if value is None or not value.strip():
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            moment = datetime.datetime.fromisoformat(value)
        except ValueError:
            raise bad(name, "must be epoch seconds or an ISO 8601 time") from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=datetime.UTC)
        seconds = moment.timestamp()
    if not 0 <= seconds < 2**40:
        raise bad(name, "is out of range")
    return seconds


def choice_list(query: Mapping[str, str], name: str, allowed: set[str]) -> tuple[str, ...] | None:
    """A comma-separated list of known words (``kind=stored,attempt``)."""
    value = query.get(name)
    if value is None or not value.strip():
        return None
    items = tuple(item.strip() for item in value.split(",") if item.strip())
    unknown = [item for item in items if item not in allowed]
    if unknown or len(items) > len(allowed):
        raise bad(name, f"unknown value {unknown[0][:40]!r}" if unknown else "too many values")
    return items
