"""The outbound queue's retry policy (step 4): after an attempt, is a row retried, and when?

The rows themselves live in the store (``mta.store.queue``, the only code that writes them).
This module holds the policy the relay worker applies after each attempt (STYLE 5):

- delivered: final;
- permanent failure: final, failed (a DSN goes to the sender);
- temporary failure: retried after ``retry_initial * retry_factor ** (attempt - 1)`` seconds,
  capped at ``retry_max``; the last retry is at the end of the message's ``lifetime``, and a
  temporary failure at or after it is final (failed, RFC 3463 status 4.4.7).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from mta.config import Queue
from mta.store import QueueRow, QueueState

EXPIRED_STATUS = "4.4.7"  # RFC 3463: delivery time expired


class AttemptKind(StrEnum):
    """What one delivery attempt to one recipient came to (2xx, 5xx, anything else)."""

    DELIVERED = "delivered"
    TEMPORARY = "temporary"
    PERMANENT = "permanent"


def retry_delay(policy: Queue, attempts: int) -> float:
    """Seconds to wait after attempt number ``attempts`` (1, 2, ...) failed temporarily."""
    return min(policy.retry_initial * policy.retry_factor ** (max(attempts, 1) - 1),
               policy.retry_max)


@dataclass(frozen=True)
class Decision:
    state: QueueState
    next_attempt: float
    expired: bool = False


def decide(policy: Queue, row: QueueRow, kind: AttemptKind, now: float) -> Decision:
    """What happens to ``row`` after an attempt at ``now`` whose result was ``kind``."""
    if kind == AttemptKind.DELIVERED:
        return Decision(QueueState.DELIVERED, now)
    if kind == AttemptKind.PERMANENT:
        return Decision(QueueState.FAILED, now)
    expires = row.created + policy.lifetime
    if now >= expires:
        return Decision(QueueState.FAILED, now, expired=True)
    return Decision(QueueState.QUEUED,
                    min(now + retry_delay(policy, row.attempts + 1), expires))
