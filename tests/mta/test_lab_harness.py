"""``mta.lab``'s harness API without a delivery: waiting on the bus, accounts, the clock."""

from __future__ import annotations

import asyncio

import pytest

from mta.clock import FakeClock
from mta.events import MessageAccepted, RouteDecided
from mta.lab import Lab


async def test_wait_for_takes_filters_and_a_predicate_and_sees_held_events(tmp_path) -> None:
    async with Lab.start({"alice.lab": ["alice"]}, folder=tmp_path, tls="off") as lab:
        lab.bus.publish(MessageAccepted(server="mx.alice.lab", queue_id="Q1", message_id="<a@x>"))
        held = await lab.wait_for(kind="accepted", message_id="a@x", timeout=1)
        assert held.queue_id == "Q1"

        loop = asyncio.get_running_loop()
        loop.call_soon(lab.bus.publish, RouteDecided(server="mx.alice.lab", queue_id="Q2",
                                                     destination="bob.lab", how="static"))
        routed = await lab.wait_for(lambda e: getattr(e, "how", "") == "static",
                                    queue_id="q2", timeout=1)
        assert routed.kind == "routed"
        with pytest.raises(TimeoutError):
            await lab.wait_for(kind="stored", timeout=0.05)


async def test_accounts_mailboxes_settle_and_the_clock(tmp_path) -> None:
    async with Lab.start({"alice.lab": ["alice"]}, folder=tmp_path, tls="off") as lab:
        assert await lab.add_account("Carol@alice.lab") == "carol-lab-password"
        assert lab["alice.lab"].password("carol") == "carol-lab-password"
        assert await lab.messages("carol@alice.lab") == []
        await lab.settle(timeout=1)  # nothing queued, nothing in flight
        assert await lab.queue() == []
        assert (await lab.report()).endswith("still queued:\n  (nothing)")
        with pytest.raises(TypeError, match="FakeClock"):
            await lab.advance(1)
        with pytest.raises(KeyError, match="not a lab domain"):
            await lab.messages("x@elsewhere.example")


async def test_advance_moves_a_fake_clock_to_the_target(tmp_path) -> None:
    clock = FakeClock(1000.0)
    async with Lab.start({"alice.lab": ["alice"]}, folder=tmp_path, tls="off", clock=clock,
                         relay=False) as lab:
        assert await lab.advance(30) == 0  # nothing due
        assert clock.now() == 1030.0
