"""POP3 sessions (step 5) as events: ``pop3.observer.Observer`` calls become bus events.

``pop3`` imports nothing from ``mta``; its server reports to an observer, and this adapter
publishes what it hears: ``SessionOpened``/``SessionClosed`` (listener ``pop3``),
``ProtocolLine`` (already masked by the POP3 core), ``MessageRetrieved`` and
``MessageDeleted``. The retrieval and deletion events carry the row id and UIDL; POP3 lines
carry neither (the contract in ``mta.events``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mta.events import (
    Bus,
    MessageDeleted,
    MessageRetrieved,
    ProtocolLine,
    SessionClosed,
    SessionOpened,
)


class POP3Events:
    """An ``Observer`` for ``pop3.server`` publishing on ``bus`` as ``server``/``domain``."""

    def __init__(self, bus: Bus, server: str, domain: str) -> None:
        self.bus = bus
        self._where = {"server": server, "domain": domain, "step": 5}

    @property
    def active(self) -> bool:
        return self.bus.active

    def _fields(self, session: str) -> dict[str, Any]:
        return {**self._where, "session": session}

    def opened(self, session: str, peer: str, tls: bool) -> None:
        self.bus.emit(SessionOpened, {**self._where, "session": session, "listener": "pop3",
                                      "peer": peer, "tls": tls})

    def closed(self, session: str, peer: str, tls: bool, user: str | None) -> None:
        self.bus.emit(SessionClosed, {**self._where, "session": session, "listener": "pop3",
                                      "peer": peer, "tls": tls, "user": user})

    def line(self, session: str, peer: str, direction: str, text: str) -> None:
        self.bus.emit(ProtocolLine, {**self._where, "session": session, "listener": "pop3",
                                     "peer": peer, "direction": direction, "line": text})

    def retrieved(self, session: str, owner: str, entry_id: int, uid: str, size: int) -> None:
        self.bus.publish(MessageRetrieved(**self._fields(session), mailbox_id=entry_id,
                                          uidl=uid, owner=owner, size=size))

    def deleted(self, session: str, owner: str, entries: Sequence[tuple[int, str]]) -> None:
        for entry_id, uid in entries:
            self.bus.publish(MessageDeleted(**self._fields(session), mailbox_id=entry_id,
                                            uidl=uid or None, owner=owner))
