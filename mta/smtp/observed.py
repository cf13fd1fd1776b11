"""What an SMTP session of the submission (step 3) or MX (step 4) listener publishes.

``LabSMTP`` mixes this in: the session opened and closed, each protocol line in both
directions (client lines masked, ``mta.events.mask``), and the end of the data as
``MessageAccepted`` or ``MessageRefused``. The lines of a transaction carry its queue id, from
``MAIL FROM`` through the reply to the data (the contract in ``mta.events``). Callers check
``bus.active`` first, so a server nobody watches builds no events.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from aiosmtpd.smtp import Session

from mta.events import (
    MessageAccepted,
    MessageRefused,
    ProtocolLine,
    SessionClosed,
    SessionOpened,
    blank,
    new_session_id,
)
from mta.message import message_id as message_id_of

if TYPE_CHECKING:
    from mta.smtp.server import LabEnvelope, ListenerState


class Observed:
    """The publishing half of a session; ``observe(state)`` first."""

    state: ListenerState
    session: Session | None
    envelope: LabEnvelope | None
    _peer: str
    reply_queue_id: str | None  # the queue id of the reply being sent after the data
    _session_id: str | None

    def observe(self, state: ListenerState) -> None:
        self.state = state
        self.reply_queue_id = None
        self._session_id = None
        self._fields: dict[str, Any] | None = None
        self._line_fields: dict[str, Any] | None = None

    @property
    def session_id(self) -> str:
        """This connection's id in events (made when the first event needs it)."""
        if self._session_id is None:
            self._session_id = new_session_id()
        return self._session_id

    def _envelope_fields(self) -> dict[str, Any]:
        """A new dict of the fields every event of this session carries (the peer is known
        once the connection is made, before the first event)."""
        if self._fields is None:
            state = self.state
            self._fields = {"server": state.hostname, "domain": state.domain,
                            "step": state.step, "session": self.session_id,
                            "listener": state.component, "peer": self._peer}
        return self._fields.copy()

    def publish_line(self, direction: str, text: str) -> None:
        queue_id = self.reply_queue_id
        if queue_id is None and self.envelope is not None:
            queue_id = self.envelope.queue_id
        # The commonest event, about fifteen a delivery: a copy of a dict that has every field
        # already (Bus.emit's time and seq too) is cheaper than building one, and the event
        # stream writes such an event's dict as it is (mta.http.sse.event_frame).
        if self._line_fields is None:
            self._line_fields = blank(ProtocolLine) | self._envelope_fields()
        fields = self._line_fields.copy()
        fields["queue_id"] = queue_id
        fields["direction"] = direction
        fields["line"] = text
        self.state.bus.emit(ProtocolLine, fields)

    def publish_opened(self, transport: asyncio.BaseTransport) -> None:
        fields = self._envelope_fields()
        fields["tls"] = transport.get_extra_info("sslcontext") is not None
        self.state.bus.emit(SessionOpened, fields)

    def publish_closed(self) -> None:
        session = self.session
        login = getattr(session.auth_data, "login", None) if session is not None else None
        user = login.decode("utf-8", "replace") if isinstance(login, bytes) else login
        fields = self._envelope_fields()
        fields["tls"] = session is not None and session.ssl is not None
        fields["user"] = user or None
        self.state.bus.emit(SessionClosed, fields)

    def publish_outcome(self, envelope: LabEnvelope, reply: str, size: int,
                        content: bytes) -> None:
        """``MessageAccepted`` for a ``250`` to the data, else ``MessageRefused``."""
        message_id = envelope.message_id
        if message_id is None:
            message_id = message_id_of(content) if content else ""
        fields = self._envelope_fields()
        fields.pop("peer")
        sender = "" if envelope.mail_from in (None, "<>") else str(envelope.mail_from)
        fields.update(queue_id=envelope.queue_id, message_id=message_id or None, sender=sender,
                      recipients=tuple(envelope.rcpt_tos), size=size)
        if reply.startswith("250"):
            fields.update(local=tuple(dict.fromkeys(envelope.owners)),
                          outbound=tuple(dict.fromkeys(envelope.remote)))
            self.state.bus.emit(MessageAccepted, fields)
        else:
            fields["reply"] = reply
            self.state.bus.emit(MessageRefused, fields)
