"""The outbound queue's rules (step 4): when a row is retried, when it fails, how it is shown.

The rows themselves live in the store (``queue_messages`` once per message, ``queue_recipients``
once per (message, recipient) with state queued / delivered / failed, attempts, next attempt
time, last reply); ``mta.store`` is the only module that writes them. This module holds the
policy the relay worker applies after each attempt (STYLE 5):

- delivered: final;
- permanent failure: final, failed (a DSN goes to the sender);
- temporary failure: retried after ``retry_initial * retry_factor ** (attempt - 1)`` seconds,
  capped at ``retry_max``; the last retry is at the end of the message's ``lifetime``, and a
  temporary failure at or after it is final (failed, RFC 3463 status 4.4.7).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from mta.config import Queue
from mta.store import QueueRow

EXPIRED_STATUS = "4.4.7"  # RFC 3463: delivery time expired


def retry_delay(policy: Queue, attempts: int) -> float:
    """Seconds to wait after attempt number ``attempts`` (1, 2, ...) failed temporarily."""
    return min(policy.retry_initial * policy.retry_factor ** (max(attempts, 1) - 1),
               policy.retry_max)


@dataclass(frozen=True)
class Decision:
    state: str            # queued, delivered or failed
    next_attempt: float
    expired: bool = False


def decide(policy: Queue, row: QueueRow, kind: str, now: float) -> Decision:
    """What happens to ``row`` after an attempt at ``now`` whose result was ``kind``
    ("delivered", "permanent" or "temporary")."""
    if kind == "delivered":
        return Decision("delivered", now)
    if kind == "permanent":
        return Decision("failed", now)
    expires = row.created + policy.lifetime
    if now >= expires:
        return Decision("failed", now, expired=True)
    return Decision("queued", min(now + retry_delay(policy, row.attempts + 1), expires))


def _when(stamp: float, now: float) -> str:
    text = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(stamp))
    return text + (" (due)" if stamp <= now else "")


def format_rows(rows: Sequence[QueueRow], now: float | None = None) -> list[str]:
    """``mta queue list``: one line per row, newest last."""
    now = time.time() if now is None else now
    out = [f"{'#':>5}  {'queue id':<12}  {'state':<9}  {'tries':>5}  {'next attempt':<25}  "
           "sender -> recipient  [last reply]"]
    for row in rows:
        when = _when(row.next_attempt, now) if row.state == "queued" else "-"
        reply = f"  [{row.last_reply}]" if row.last_reply else ""
        out.append(f"{row.id:>5}  {row.message_id:<12}  {row.state:<9}  {row.attempts:>5}  "
                   f"{when:<25}  <{row.sender}> -> <{row.recipient}>{reply}")
    return out
