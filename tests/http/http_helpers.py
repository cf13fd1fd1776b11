"""Helpers of the HTTP tests: a small JSON client over aiohttp, and mail to send."""

from __future__ import annotations

import asyncio
import json
import smtplib
from email.message import EmailMessage
from typing import Any

import aiohttp

ALICE, BOB, CAROL = "alice@alice.lab", "bob@bob.lab", "carol@bob.lab"


class Api:
    """A real HTTP client for one listener; every call returns (status, JSON or bytes)."""

    def __init__(self, session: aiohttp.ClientSession, port: int,
                 headers: dict[str, str] | None = None) -> None:
        self.session = session
        self.base = f"http://127.0.0.1:{port}"
        self.headers = headers or {}

    def with_headers(self, **headers: str) -> Api:
        return Api(self.session, int(self.base.rsplit(":", 1)[1]), {**self.headers, **headers})

    async def call(self, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
        headers = {**self.headers, **kwargs.pop("headers", {})}
        async with self.session.request(method, self.base + path, headers=headers,
                                        **kwargs) as response:
            body = await response.read()
            if response.content_type == "application/json":
                return response.status, await response.json()
            return response.status, body

    async def get(self, path: str, **kwargs: Any) -> tuple[int, Any]:
        return await self.call("GET", path, **kwargs)

    async def post(self, path: str, **kwargs: Any) -> tuple[int, Any]:
        return await self.call("POST", path, **kwargs)

    async def delete(self, path: str, **kwargs: Any) -> tuple[int, Any]:
        return await self.call("DELETE", path, **kwargs)


def mail(subject: str = "hello", *, sender: str = ALICE, to: str = BOB, text: str = "Hi Bob",
         html: str | None = None, attachment: tuple[str, bytes] | None = None,
         message_id: str | None = None) -> bytes:
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = sender, to, subject
    message["Message-ID"] = message_id or f"<{abs(hash((subject, to, text)))}@test.lab>"
    message.set_content(text)
    if html is not None:
        message.add_alternative(html, subtype="html")
    if attachment is not None:
        message.add_attachment(attachment[1], maintype="application", subtype="octet-stream",
                               filename=attachment[0])
    return message.as_bytes().replace(b"\n", b"\r\n")


def _send_mx(port: int, raw: bytes, sender: str, to: list[str]) -> str:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        code, text = client.ehlo("test.lab")[0], b""
        code, text = client.mail(sender)
        for rcpt in to:
            client.rcpt(rcpt)
        code, text = client.data(raw)
        return f"{code} {text.decode()}"


async def send_mx(port: int, raw: bytes, *, sender: str = ALICE,
                  to: list[str] | None = None) -> str:
    """Hand ``raw`` to an MX listener with smtplib; returns the final reply."""
    return await asyncio.to_thread(_send_mx, port, raw, sender, to or [BOB])


async def until(condition: Any, timeout: float = 5.0) -> None:
    """Yield to the loop until ``condition()`` holds (what the server does in between is
    event-driven; this only lets it run), at most ``timeout`` seconds."""
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0)


class SSE:
    """An open ``/api/v1/events`` response read event by event (id, event, data lines)."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self.response = response

    async def next(self, timeout: float = 10.0) -> dict[str, Any]:
        fields: dict[str, Any] = {}
        async with asyncio.timeout(timeout):
            while True:
                line = (await self.response.content.readline()).decode().rstrip("\r\n")
                if not line:
                    if "data" in fields:
                        fields["data"] = json.loads(fields["data"])
                        return fields
                    continue  # a comment (ping) block or a keep-alive
                if line.startswith(":"):
                    continue
                name, _, value = line.partition(": ")
                fields[name] = value if name != "data" else fields.get("data", "") + value

    async def until_kind(self, kind: str, **match: Any) -> list[dict[str, Any]]:
        """Every event read up to and including the first of ``kind`` whose data has ``match``."""
        seen = []
        while True:
            event = await self.next()
            seen.append(event)
            if event["event"] == kind and all(event["data"].get(k) == v
                                              for k, v in match.items()):
                return seen
