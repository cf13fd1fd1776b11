"""The relay's SMTP client (step 4): aiosmtplib, reporting each protocol line it exchanges.

The receiving server sees both directions and traces them; this is the sending server's own
view of the same hop, so ``mta serve --trace`` on the sender shows the relay dialogue too
(component ``relay``, step 4, on the ``labmail.trace`` logger). Message data is summarised
as ``<message, N octets>``; nothing secret passes here (the relay does not log in).
"""

from __future__ import annotations

from typing import Any

import aiosmtplib

from mta import trace


class TracedSMTP(aiosmtplib.SMTP):
    """``aiosmtplib.SMTP`` whose commands and replies go to the delivery trace."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.trace_peer = f"{self.hostname}:{self.port}"

    def _client(self, text: str) -> None:
        trace.line(4, "relay", self.trace_peer, "C", text)

    def _server(self, response: aiosmtplib.SMTPResponse) -> aiosmtplib.SMTPResponse:
        if trace.enabled():
            lines = response.message.split("\n")
            for i, text in enumerate(lines):
                sep = " " if i == len(lines) - 1 else "-"
                trace.line(4, "relay", self.trace_peer, "S",
                           f"{response.code}{sep}{text}".rstrip())
        return response

    async def connect(self, *args: Any, **kwargs: Any) -> aiosmtplib.SMTPResponse:
        return self._server(await super().connect(*args, **kwargs))

    async def execute_command(self, *args: bytes, **kwargs: Any) -> aiosmtplib.SMTPResponse:
        if trace.enabled():
            self._client(b" ".join(args).decode("utf-8", "replace"))
        return self._server(await super().execute_command(*args, **kwargs))

    async def starttls(self, *args: Any, **kwargs: Any) -> aiosmtplib.SMTPResponse:
        if trace.enabled():
            self._client("STARTTLS")
        return self._server(await super().starttls(*args, **kwargs))

    async def data(self, message: str | bytes, /, **kwargs: Any) -> aiosmtplib.SMTPResponse:
        if trace.enabled():
            self._client("DATA")
            self._client(f"<message, {len(message)} octets>")
            self._client(".")
        try:
            response = await super().data(message, **kwargs)
        except aiosmtplib.SMTPResponseException as exc:
            self._server(aiosmtplib.SMTPResponse(exc.code, exc.message))
            raise
        return self._server(response)
