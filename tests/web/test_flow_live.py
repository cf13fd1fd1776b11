"""The flow page's acceptance tests against real deliveries (every server publishes its events):
the six steps in order from the form within 5 s, the 451 switch's failed attempt and retry,
and the relay exchange's exact lines."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from web_helpers import open_page, shoot

from mta.lab import Lab
from mua.demo_web import WebDemo

STEPS = ["1", "2", "3", "4", "5", "6"]


async def flow(page: Any, web: WebDemo) -> Any:
    await open_page(page, f"{web.url}/flow")
    await page.wait_for_selector("#status[data-state=live]")
    return page


async def steps(page: Any) -> list[str]:
    return await page.eval_on_selector_all(".row.step", "nodes => nodes.map(n => n.dataset.step)")


async def send_and_fetch(page: Any) -> float:
    """Send from the form, fetch as Bob once stored; the seconds it took to step 6."""
    started = time.perf_counter()
    await page.click("#send-button")
    await page.locator(".row.note[data-lane=store]", has_text="stored").wait_for(timeout=5000)
    await page.click("#fetch-button")
    await page.locator(".row.note[data-lane=ua_to]").wait_for(timeout=5000)
    return time.perf_counter() - started


async def test_six_steps_appear_in_order_within_5_seconds(page: Any, lab: Lab, web: WebDemo,
                                                          screenshots: Path) -> None:
    await flow(page, web)
    elapsed = await send_and_fetch(page)
    assert await steps(page) == STEPS
    assert elapsed < 5, f"{elapsed:.2f} s"
    print(f"\nflow page: six steps from the form in {elapsed * 1000:.0f} ms")
    for listener in ("submission", "relay", "pop3"):
        assert await page.locator(f".row.exchange[data-hop={listener}]").count() > 3
    assert "Hi Bob," in await page.inner_text("#details")  # the rendered message (step 6)
    # the rendering comes after the whole POP3 session it needed, as it happened
    order = await page.eval_on_selector_all(
        ".row", "rows => rows.map(r => r.matches('.exchange[data-hop=pop3]') ? 'pop3'"
        " : r.matches('.note[data-lane=ua_to]') ? 'render' : '')")
    assert "render" in order and "pop3" not in order[order.index("render"):], order
    await shoot(page, screenshots / "flow-live.png")


async def test_the_451_switch_shows_the_failed_attempt_and_the_retry(page: Any, lab: Lab,
                                                                     web: WebDemo) -> None:
    await flow(page, web)
    await page.check("#fault")
    await page.click("#send-button")
    retried = page.locator(".row.note.attempt.good", has_text="delivered")
    await retried.wait_for(timeout=10_000)
    notes = await page.inner_text("#rows")
    assert "✗ attempt 1: deferred (451" in notes
    assert notes.index("✗ attempt 1: deferred") < notes.index("✓ attempt 2: delivered")
    assert await page.locator(".row.exchange.failed[data-hop=relay]").count() == 1


async def test_clicking_the_relay_exchange_shows_mail_rcpt_data_and_250(page: Any, lab: Lab,
                                                                         web: WebDemo) -> None:
    await flow(page, web)
    await page.click("#send-button")
    await page.locator(".row.note.attempt.good").wait_for(timeout=5000)
    await page.locator(".row.exchange[data-hop=relay]").first.click()
    details = await page.inner_text("#details")
    for line in ("C: MAIL FROM:<alice@alice.lab>", "C: RCPT TO:<bob@bob.lab>", "C: DATA",
                 "S: 250"):
        assert line in details, details
    assert "alice-lab-password" not in details
