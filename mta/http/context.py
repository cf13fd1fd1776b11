"""What every HTTP handler reaches: the running server's store, faults and event bus.

Kept in the aiohttp application under one typed key (``CONTEXT``), so handlers never import
the server module and the app can be built around any running ``mta.server.Server``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from aiohttp import web

from mta.events import Bus, Event, Subscription
from mta.http.errors import ApiError

if TYPE_CHECKING:
    from mta.server import Server
    from mta.store import Store

# Events held for Last-Event-ID resume and message traces (bounded: newest kept).
HISTORY = 10_000
# At most this many event streams and waits at once; more get 503.
MAX_STREAMS = 100


@dataclass(frozen=True)
class Options:
    """The listener's settings (``[listeners.http]``)."""

    token: str | None = None
    cors_origins: tuple[str, ...] = ()
    history: int = HISTORY
    max_streams: int = MAX_STREAMS


@dataclass
class Context:
    server: Server
    bus: Bus
    options: Options
    # Open subscriptions of event streams and waits: closed at shutdown so they end at once.
    subscriptions: set[Subscription] = field(default_factory=set)

    @property
    def store(self) -> Store:
        return self.server.store

    def subscribe(self, predicate: Callable[[Event], bool] | None = None,
                  since: int | None = None) -> Subscription:
        """A bus subscription for one stream or wait (``503`` beyond ``max_streams``)."""
        if len(self.subscriptions) >= self.options.max_streams:
            raise ApiError(503, "too many open event streams and waits; try again later")
        subscription = self.bus.subscribe(predicate=predicate, since=since)
        self.subscriptions.add(subscription)
        return subscription

    def release(self, subscription: Subscription) -> None:
        subscription.close()
        self.subscriptions.discard(subscription)

    def close_all(self) -> None:
        for subscription in list(self.subscriptions):
            self.release(subscription)


CONTEXT = web.AppKey("labmail", Context)
