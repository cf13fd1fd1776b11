"""The server-side wait: at once when stored already, within 100 ms of the commit otherwise."""

from __future__ import annotations

import asyncio
import time

from http_helpers import BOB, CAROL, Api, mail, send_mx, until

from mta.server import Server

WAIT = "/api/v1/messages/wait"


async def test_an_already_stored_message_is_returned_at_once(api: Api, bob: Server) -> None:
    await send_mx(bob.ports["mx"], mail("Welcome, Bob", text="link: http://x/confirm?t=1"))
    started = time.monotonic()
    status, data = await api.get(WAIT, params={"to": BOB, "subject": "welcome",
                                               "timeout": "10"})
    assert status == 200 and time.monotonic() - started < 1.0
    assert data["waited"] == 0.0 and data["message"]["subject"] == "Welcome, Bob"


async def test_a_wait_started_before_the_send_returns_as_soon_as_stored(
        api: Api, bob: Server) -> None:
    stored_at: list[float] = []
    bob.store.on_delivery(lambda delivered: stored_at.append(time.monotonic()))
    waiter = asyncio.create_task(api.get(WAIT, params={"to": "carol", "subject": "sign-up",
                                                       "timeout": "20"}))
    await until(lambda: bob.bus.subscribers == 1)  # the wait has subscribed
    await send_mx(bob.ports["mx"], mail("other mail"))  # arrives, does not match
    await send_mx(bob.ports["mx"], mail("Your sign-up", to=CAROL), to=[CAROL])
    status, data = await waiter
    answered = time.monotonic()
    assert status == 200 and data["message"]["subject"] == "Your sign-up"
    assert data["message"]["mailbox"] == CAROL
    assert len(stored_at) == 2 and answered - stored_at[1] < 0.1
    assert bob.bus.subscribers == 0  # the wait let go of its subscription


async def test_timeout_is_408_listing_what_did_arrive(api: Api, bob: Server) -> None:
    waiter = asyncio.create_task(api.get(WAIT, params={"subject": "never", "timeout": "1"}))
    await until(lambda: bob.bus.subscribers == 1)
    await send_mx(bob.ports["mx"], mail("not it"))
    status, data = await waiter
    assert status == 408 and data["error"] == "timeout"
    assert data["message"] == "no matching message within 1 s"
    assert [row["subject"] for row in data["arrived"]] == ["not it"]


async def test_since_ignores_older_mail(api: Api, bob: Server) -> None:
    await send_mx(bob.ports["mx"], mail("ping"))
    later = str(time.time() + 0.001)
    status, data = await api.get(WAIT, params={"subject": "ping", "since": later,
                                               "timeout": "0"})
    assert status == 408 and data["arrived"] == []
