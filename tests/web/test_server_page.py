"""The server page in a real browser: the queue with flush and delete, accounts, fault script,
and the token when the listener has one."""

from __future__ import annotations

from typing import Any

from web_helpers import ALICE, open_page, submit

from mta import http as mta_http
from mta.lab import Lab
from mua.demo_web import WebDemo


async def test_queue_accounts_and_faults(page: Any, lab: Lab, web: WebDemo) -> None:
    lab["bob.lab"].faults.script(*["451 4.3.0 not now"] * 20)
    await submit(lab["alice.lab"].ports["submission"], "stuck in the queue")
    await open_page(page, f"{web.url}/server")
    row = page.locator("#queue tr", has_text="451 4.3.0 not now")
    await page.click("#flush")  # refreshes the page's view too
    await row.wait_for()
    assert "queued" in await row.inner_text()
    assert ALICE in await page.inner_text("#accounts")

    await page.fill("#fault-reply", "550")
    await page.fill("#fault-count", "2")
    await page.click("#fault-form button[type=submit]")
    await page.locator("#faults li").nth(1).wait_for()
    assert len(lab["alice.lab"].faults) == 2
    await page.click("#fault-clear")
    await page.locator("#faults li").first.wait_for(state="detached")

    await row.locator("button").click()
    await row.wait_for(state="detached")
    assert await lab["alice.lab"].store.count_queue("queued") == 0


async def test_a_configured_token_is_required(page: Any, lab: Lab) -> None:
    alice = lab["alice.lab"].server
    alice.listeners["http"] = await mta_http.start(alice, alice.bus, "127.0.0.1", 0,
                                                   mta_http.Options(token="s3cret"))
    await open_page(page, f"http://127.0.0.1:{alice.ports['http']}/server")
    await page.wait_for_selector("#status.error")
    assert "authentication required" in await page.inner_text("#status")
    await page.fill("#token", "s3cret")
    await page.click("#token-form button[type=submit]")
    await page.locator("#accounts tr", has_text=ALICE).wait_for()
    assert await page.inner_text("#status") == ""


async def test_the_flow_page_asks_for_the_token(page: Any, lab: Lab) -> None:
    alice = lab["alice.lab"].server
    alice.listeners["http"] = await mta_http.start(alice, alice.bus, "127.0.0.1", 0,
                                                   mta_http.Options(token="s3cret"))
    await page.goto(f"http://127.0.0.1:{alice.ports['http']}/flow")
    await page.wait_for_selector("#token-form:not([hidden])")
    await page.fill("#token", "s3cret")
    await page.click("#token-form button[type=submit]")
    await page.wait_for_selector("#status[data-state=live]")
