"""What a POP3 session reports to whoever watches it (step 5); typing only, no imports from mta.

``pop3.server`` calls an ``Observer`` (when given one) as things happen: a session opened and
closed, each protocol line (client lines with secrets masked, as ``describe_client_line``
gives them), a message read with RETR or TOP, and messages removed at UPDATE. ``mta`` adapts
these calls to its events. Calls are made only while ``active`` is true, so a server nobody
watches builds nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol


class Observer(Protocol):
    @property
    def active(self) -> bool: ...

    def opened(self, session: str, peer: str, tls: bool) -> None: ...

    def closed(self, session: str, peer: str, tls: bool, user: str | None) -> None: ...

    def line(self, session: str, peer: str, direction: str, text: str) -> None: ...

    def retrieved(self, session: str, owner: str, entry_id: int, uid: str, size: int
                  ) -> None: ...

    def deleted(self, session: str, owner: str, entries: Sequence[tuple[int, str]]) -> None:
        """``entries``: (entry id, UIDL) of each message removed."""
