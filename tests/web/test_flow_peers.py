"""Two servers in two "processes" (two labs, two buses, two HTTP listeners): the flow page on
alice.lab's listener follows bob.lab's stream too (``?peer=``, CORS) and merges them by time."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from flow_events import delivery
from web_helpers import open_page

from mta import http as mta_http
from mta.http.pages import PageOptions
from mta.lab import Lab


@pytest.fixture
async def two() -> AsyncIterator[tuple[Lab, Lab, str, str]]:
    async with Lab.start({"alice.lab": ["alice"]}) as alice_lab, \
            Lab.start({"bob.lab": ["bob"]}) as bob_lab:
        alice, bob = alice_lab["alice.lab"].server, bob_lab["bob.lab"].server
        assert alice.bus is not bob.bus
        alice.listeners["http"] = await mta_http.start(alice, alice.bus, "127.0.0.1", 0,
                                                       pages=PageOptions())
        url = f"http://127.0.0.1:{alice.ports['http']}"
        bob.listeners["http"] = await mta_http.start(
            bob, bob.bus, "127.0.0.1", 0, mta_http.Options(cors_origins=(url,)))
        yield alice_lab, bob_lab, url, f"http://127.0.0.1:{bob.ports['http']}"


async def test_the_page_merges_both_servers_streams(page: Any, two: tuple[Lab, Lab, str, str]
                                                    ) -> None:
    alice_lab, bob_lab, url, bob_url = two
    await open_page(page, f"{url}/flow?peer={bob_url}")
    await page.wait_for_selector("#status[data-state=live]")
    events = delivery(1)
    for event in events:  # each server publishes its own part on its own bus
        lab = alice_lab if event.domain == "alice.lab" else bob_lab
        lab[event.domain].server.bus.publish(event)
    await page.locator(".row.note[data-lane=store]", has_text="retrieved").wait_for()
    kinds = await page.eval_on_selector_all(
        "#rows .row", "rows => rows.map(r => r.dataset.step || r.dataset.lane || "
                      "r.dataset.listener)")
    assert kinds.index("3") < kinds.index("submission") < kinds.index("relay") \
        < kinds.index("store") < kinds.index("5") < kinds.index("pop3")
    assert [k for k in kinds if k in ("3", "4", "5")] == ["3", "4", "5"]
    headings = await page.inner_text("#lanes")
    assert "alice.lab" in headings and "bob.lab" in headings


async def test_a_peer_that_does_not_allow_our_origin_is_reported(
        page: Any, two: tuple[Lab, Lab, str, str]) -> None:
    alice_lab, _, url, _ = two
    other = Lab.start({"carol.lab": ["carol"]})
    async with other as carol_lab:
        carol = carol_lab["carol.lab"].server
        carol.listeners["http"] = await mta_http.start(carol, carol.bus, "127.0.0.1", 0)
        await open_page(page, f"{url}/flow?peer=http://127.0.0.1:{carol.ports['http']}")
        await page.wait_for_selector("#message.error")
        assert await page.inner_text("#status") != "live"
