"""Helpers of the browser tests: open a page, log in, mail with hostile parts, a counting server."""

from __future__ import annotations

import asyncio
import smtplib
from email.message import EmailMessage
from email.policy import SMTP
from typing import Any

from aiohttp import web

ALICE, BOB = "alice@alice.lab", "bob@bob.lab"
PASSWORDS = {ALICE: "alice-lab-password", BOB: "bob-lab-password"}  # mta.lab's defaults


async def open_page(tab: Any, url: str) -> Any:
    """Go to ``url`` and wait until the page's script says it is ready."""
    await tab.goto(url)
    await tab.wait_for_selector("body[data-ready=true]", state="attached", timeout=10_000)
    return tab


async def shoot(tab: Any, path: Any) -> None:
    """A full-page screenshot from the top (sticky lane headings where they belong)."""
    await tab.evaluate("window.scrollTo(0, 0)")
    await tab.screenshot(path=path, full_page=True)


async def log_in(tab: Any, base: str, address: str = BOB) -> Any:
    await open_page(tab, f"{base}/mail")
    await tab.fill("#address", address)
    await tab.fill("#password", PASSWORDS[address])
    await tab.click("#login button[type=submit]")
    await tab.wait_for_selector("#mail:not([hidden])")
    return tab


def _deliver(port: int, raw: bytes, to: str) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.sendmail(ALICE, [to], raw)


async def deliver(port: int, message: EmailMessage | bytes, to: str = BOB) -> None:
    """Hand a message to an MX listener with smtplib (it is stored before this returns)."""
    raw = message if isinstance(message, bytes) else message.as_bytes(policy=SMTP)
    await asyncio.to_thread(_deliver, port, raw, to)


class CountingServer:
    """A local HTTP server that counts the requests it gets (remote content, beacons)."""

    def __init__(self) -> None:
        self.paths: list[str] = []
        self.runner: web.AppRunner | None = None
        self.port = 0

    async def start(self) -> CountingServer:
        async def any_path(request: web.Request) -> web.Response:
            self.paths.append(request.path)
            return web.Response(body=PIXEL, content_type="image/gif")

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", any_path)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = self.runner.addresses[0][1]
        return self

    async def close(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


# a 1x1 transparent GIF
PIXEL = bytes.fromhex("47494638396101000100800000000000ffffff21f90401000000002c000000000100"
                      "01000002024401003b")


def _submit(port: int, raw: bytes, to: str) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.login(ALICE, PASSWORDS[ALICE])  # LAB ONLY: plain-text AUTH is allowed
        client.sendmail(ALICE, [to], raw)


async def submit(port: int, subject: str, to: str = BOB) -> None:
    """Submit a small message as Alice to a submission listener (step 3)."""
    raw = (f"From: {ALICE}\r\nTo: {to}\r\nSubject: {subject}\r\n"
           f"Message-ID: <{subject.replace(' ', '.')}@alice.lab>\r\n\r\nbody\r\n").encode()
    await asyncio.to_thread(_submit, port, raw, to)
