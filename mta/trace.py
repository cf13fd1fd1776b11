"""The ``--trace`` log: every protocol line of steps 3, 4 and 5, read from the event bus.

The servers publish ``ProtocolLine`` events (``mta.events``); this subscriber writes each one,
already masked, to the ``labmail.trace`` logger with the fields the CLI's formatter prints
(step, component, peer, direction "C" client or "S" server, line). ``mta serve --trace`` is
this subscriber plus a formatter; the servers themselves log nothing here.

The subscriber writes while the event is published (synchronously, in publishing order), so
the lines interleave with the servers' other log records exactly as they happen.
"""

from __future__ import annotations

import logging
import weakref

from mta.events import Bus, Event, ProtocolLine

TRACE = logging.getLogger("labmail.trace")

_FOLLOWED: weakref.WeakSet[Bus] = weakref.WeakSet()


def enabled() -> bool:
    return TRACE.isEnabledFor(logging.DEBUG)


def _log(event: Event) -> bool:
    if type(event) is ProtocolLine:
        TRACE.debug("%s %s %s: %s", event.listener, event.peer, event.direction, event.line,
                    extra={"step": event.step, "component": event.listener,
                           "peer": event.peer, "direction": event.direction,
                           "line": event.line})
    return False  # nothing is queued: the line is written now


def follow(bus: Bus) -> None:
    """Write the protocol lines published on ``bus`` to ``labmail.trace`` (once per bus).

    The bus has no callback subscribers; a subscription whose predicate writes the line and
    accepts nothing sees every event as it is published and never queues or drops one.
    """
    if bus in _FOLLOWED:
        return
    _FOLLOWED.add(bus)
    bus.subscribe(maxsize=0, predicate=_log)
