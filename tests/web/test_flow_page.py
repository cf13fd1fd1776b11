"""The flow page in a real browser, fed by events published on the bus by hand: headings in
two languages, exact lines on click, replay, two servers' streams merged, 200 events."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from flow_events import delivery
from web_helpers import open_page, shoot

from mta.events import Event
from mta.lab import Lab
from mua.demo_web import WebDemo


def publish(lab: Lab, events: list[Event]) -> None:
    for event in events:
        bus = lab[event.domain].server.bus
        bus.publish(event)


async def flow(page: Any, web: WebDemo, query: str = "") -> Any:
    await open_page(page, f"{web.url}/flow{query}")
    await page.wait_for_selector("#status[data-state=live]")
    return page


async def steps(page: Any) -> list[str]:
    return await page.eval_on_selector_all(".row.step", "nodes => nodes.map(n => n.dataset.step)")


async def test_steps_are_marked_and_switch_to_chinese(page: Any, lab: Lab, web: WebDemo,
                                                      screenshots: Path) -> None:
    await flow(page, web)
    publish(lab, delivery(1))
    await page.wait_for_selector(".row.note[data-lane=store]")
    await page.wait_for_selector(".row.step[data-step='5']")
    assert await steps(page) == ["3", "4", "5"]
    # POP3: the greeting, then one exchange per command (LIST's listing stays in its row)
    assert await page.locator(".row.exchange[data-hop=pop3]").count() == 1 + 7
    assert await page.inner_text(".row.step[data-step='3'] .step-title") == \
        "Step 3 of 6: submit"
    await shoot(page, screenshots / "flow-en.png")
    await page.click("[data-lang=zh]")
    await page.locator(".row.step[data-step='3'] .step-title", has_text="第 3 步").wait_for()
    heading = await page.inner_text(".row.step[data-step='4'] .step-title")
    assert heading == "第 4 步（共 6 步）：中继"
    assert (await page.inner_text(".row.note[data-lane=store]")).startswith("已存储")
    assert await page.get_attribute("[data-lang=zh]", "aria-pressed") == "true"
    await shoot(page, screenshots / "flow-zh.png")


async def test_clicking_the_relay_exchange_shows_its_lines(page: Any, lab: Lab,
                                                           web: WebDemo) -> None:
    await flow(page, web)
    publish(lab, delivery(1, fail_once=True))
    await page.wait_for_selector(".row.note[data-lane=store]")
    relay = page.locator(".row.exchange[data-hop=relay]")
    await relay.first.click()
    details = await page.inner_text("#details")
    for line in ("C: MAIL FROM:<alice@alice.lab>", "C: RCPT TO:<bob@bob.lab>", "C: DATA",
                 "S: 451 4.3.0 try later"):
        assert line in details
    await relay.last.click()
    details = await page.inner_text("#details")
    assert "S: 250 2.0.0 OK" in details
    # both ends of the conversation, drawn once: the relay's view and the MX's
    assert "mx.alice.lab relay (client side)" in details
    assert "mx.bob.lab mx (server side)" in details
    assert await relay.count() == 2 * 7  # greeting, EHLO, MAIL, RCPT, DATA, ".", QUIT: once
    notes = await page.inner_text("#rows")
    assert "✗ attempt 1: deferred (451 4.3.0 try later)" in notes
    assert "✓ attempt 2: delivered (250 2.0.0 OK)" in notes
    # keyboard: the next row takes the focus with the arrow key, Enter shows its lines
    await relay.last.focus()
    await page.keyboard.press("ArrowDown")
    await page.keyboard.press("Enter")
    assert await page.eval_on_selector(".row.selected", "n => n.previousElementSibling") \
        is not None


async def test_a_message_is_replayed_by_message_id(page: Any, lab: Lab, web: WebDemo) -> None:
    publish(lab, delivery(7) + delivery(8))  # before the page opened: only the held events
    await flow(page, web, "?pace=0")
    assert await page.locator("#rows .row").count() == 0
    await page.fill("#replay-id", "<m7@alice.lab>")
    await page.click("#replay button[type=submit]")
    await page.wait_for_selector(".row.note[data-lane=store]")
    text = await page.inner_text("#rows")
    assert "QA0007" in text and "QA0008" not in text
    assert await steps(page) == ["3", "4", "5"]


async def test_200_events_render_without_redrawing(page: Any, lab: Lab, web: WebDemo) -> None:
    await flow(page, web)
    events = [e for n in range(1, 5) for e in delivery(n, fail_once=n == 4)]
    assert len(events) >= 200
    started = time.perf_counter()
    publish(lab, events)
    last = "retrieved: UIDL u" + "0" * 30 + "4"
    await page.locator(".row.note[data-lane=store]", has_text=last).wait_for(state="attached")
    elapsed = time.perf_counter() - started
    rows = await page.locator("#rows .row").count()
    drawn = await page.evaluate("window.labmailFlow.drawn")
    assert drawn["events"] == len(events)
    print(f"\nflow page: {len(events)} events -> {rows} rows in {elapsed * 1000:.0f} ms from "
          f"publishing to the last row, {drawn['ms']:.0f} ms of it drawing")
    assert elapsed < 5 and drawn["ms"] < 1000
