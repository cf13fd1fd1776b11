"""The mail page in a real browser: hostile HTML stays inert, attachments and headers exact."""

from __future__ import annotations

import time
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from web_helpers import ALICE, BOB, PIXEL, CountingServer, deliver, log_in, open_page, shoot

from mta.lab import Lab
from mua.demo_web import WebDemo


async def read_first(page: Any) -> None:
    await page.click("#list tr")
    await page.wait_for_selector("#message:not([hidden])")


def hostile(port: int) -> EmailMessage:
    """HTML with a script that sets a global and beacons, a remote image, a cid: image."""
    message = EmailMessage()
    message["From"], message["To"] = ALICE, BOB
    message["Subject"] = "Look \x1b[31m<b>bold</b>"
    message["Message-ID"] = "<hostile@alice.lab>"
    message.set_content("the text part")
    message.add_alternative(
        "<html><head><meta http-equiv='refresh' content='0;url=http://127.0.0.1:"
        f"{port}/refresh'></head><body><p id='p'>the html part</p>"
        "<script>window.pwned = 1; document.getElementById('p').textContent = 'PWNED';"
        f"new Image().src = 'http://127.0.0.1:{port}/script-ran';</script>"
        f"<img id='remote' src='http://127.0.0.1:{port}/pixel.gif'>"
        "<img id='inline' src='cid:logo@alice.lab'></body></html>", subtype="html",
        cte="quoted-printable")
    html = message.get_payload()[1]
    html.add_related(PIXEL, maintype="image", subtype="gif", cid="<logo@alice.lab>")
    message.add_attachment(bytes(range(256)) * 3, maintype="application",
                           subtype="octet-stream", filename="data.bin")
    return message


async def test_html_is_inert_until_remote_content_is_switched_on(
        page: Any, lab: Lab, web: WebDemo, screenshots: Path) -> None:
    beacon = await CountingServer().start()
    try:
        await deliver(lab["bob.lab"].ports["mx"], hostile(beacon.port))
        await log_in(page, web.bob_url)
        await page.click("#list tr")
        frame_element = await page.wait_for_selector("#html")
        frame = await frame_element.content_frame()
        await frame.wait_for_selector("#p")
        assert await frame.inner_text("#p") == "the html part"  # the script did not run
        assert await page.evaluate("window.pwned") is None
        inline = await frame.get_attribute("#inline", "src")
        assert inline.startswith("data:image/gif;base64,")  # cid: shown inline
        assert await frame.evaluate("document.getElementById('inline').naturalWidth") == 1
        await shoot(page, screenshots / "mail.png")
        assert beacon.paths == []  # no remote load of any kind

        await page.click("#remote")
        assert await page.get_attribute("#remote", "aria-pressed") == "true"
        frame = await (await page.wait_for_selector("#html")).content_frame()
        await frame.wait_for_function(
            "document.getElementById('remote') && document.getElementById('remote').complete")
        assert "/pixel.gif" in beacon.paths
        assert "/script-ran" not in beacon.paths and "/refresh" not in beacon.paths
        assert await frame.inner_text("#p") == "the html part"
    finally:
        await beacon.close()


async def test_attachment_downloads_with_exact_bytes(page: Any, lab: Lab, web: WebDemo,
                                                     tmp_path: Path) -> None:
    await deliver(lab["bob.lab"].ports["mx"], hostile(9))
    await log_in(page, web.bob_url)
    await read_first(page)
    async with page.expect_download() as info:
        await page.click("#attachments button")
    download = await info.value
    assert download.suggested_filename == "data.bin"
    saved = tmp_path / "data.bin"
    await download.save_as(saved)
    assert saved.read_bytes() == bytes(range(256)) * 3


async def test_headers_with_escape_and_markup_show_as_text(page: Any, lab: Lab,
                                                           web: WebDemo) -> None:
    await deliver(lab["bob.lab"].ports["mx"], hostile(9))
    await log_in(page, web.bob_url)
    assert "<b>bold</b>" in await page.inner_text("#list")
    await read_first(page)
    subject = await page.inner_text("#headers")
    assert "Look \\x1b[31m<b>bold</b>" in subject  # ESC made visible, markup left as text
    assert await page.query_selector("#headers b") is None
    assert await page.query_selector("#list b") is None


async def test_raw_source_mime_tree_and_delete(page: Any, lab: Lab, web: WebDemo) -> None:
    await deliver(lab["bob.lab"].ports["mx"], hostile(9))
    await log_in(page, web.bob_url)
    await read_first(page)
    await page.click("#raw-button")
    await page.wait_for_selector("#raw:not([hidden])")
    assert "Message-ID: <hostile@alice.lab>" in await page.inner_text("#raw")
    await page.click("#tree-button")
    await page.wait_for_selector("#tree:not([hidden])")
    tree = await page.inner_text("#tree")
    for part in ("multipart/mixed", "multipart/alternative", "multipart/related",
                 "text/html", "image/gif", "<logo@alice.lab>", "“data.bin”"):
        assert part in tree
    await page.click("#delete")
    await page.wait_for_selector("#list tr", state="detached")
    assert await lab["bob.lab"].store.count_entries(BOB) == 0


async def test_compose_sends_through_the_submission_listener(page: Any, lab: Lab,
                                                             web: WebDemo) -> None:
    await log_in(page, web.url, ALICE)
    await page.click("#compose-open")
    await page.fill("#c-to", BOB)
    await page.fill("#c-subject", "from the webmail")
    await page.fill("#c-body", "typed in a browser")
    await page.click("#compose button[type=submit]")
    await page.wait_for_selector("#compose-status.ok")
    assert "250" in await page.inner_text("#compose-status")
    entries = await lab.wait_for_delivery(BOB, 1, timeout=10)
    raw = await lab["bob.lab"].store.fetch(BOB, entries[0].id)
    assert b"Subject: from the webmail" in raw and b"typed in a browser" in raw


async def test_a_wrong_password_is_refused(page: Any, web: WebDemo) -> None:
    await open_page(page, f"{web.bob_url}/mail")
    await page.fill("#address", BOB)
    await page.fill("#password", "wrong")
    await page.click("#login button[type=submit]")
    await page.wait_for_selector("#login-error:not([hidden])")
    assert await page.is_hidden("#mail")


async def test_a_thousand_messages_stay_usable(page: Any, lab: Lab, web: WebDemo) -> None:
    store = lab["bob.lab"].store
    raws = [(f"From: {ALICE}\r\nTo: {BOB}\r\nSubject: number {n}\r\n"
             f"Message-ID: <n{n}@alice.lab>\r\n\r\nbody {n}\r\n").encode() for n in range(1000)]
    for raw in raws:
        await store.deliver([BOB], raw, ALICE)
    await log_in(page, web.bob_url)
    started = time.perf_counter()
    while await page.is_visible("#more"):
        shown = await page.locator("#list tr").count()
        await page.click("#more")
        # (no wait_for_function: the page's CSP refuses the eval it needs, as it should)
        await page.wait_for_selector(f"#list tr:nth-child({shown + 1}), #more[hidden]",
                                     state="attached")
    elapsed = time.perf_counter() - started
    assert await page.locator("#list tr").count() == 1000
    timings = await page.evaluate("window.labmailMail.timings")
    fetch = sum(t["fetch"] for t in timings)
    draw = sum(t["draw"] for t in timings)
    print(f"\nmail page: 1,000 messages listed in {len(timings)} pages of 100: "
          f"{elapsed * 1000:.0f} ms with the test's clicks; in the page {fetch:.0f} ms fetching"
          f" and {draw:.0f} ms drawing (the slowest page drawn in "
          f"{max(t['draw'] for t in timings):.0f} ms)")
    assert max(t["draw"] for t in timings) < 1000
    started = time.perf_counter()
    await page.locator("#list tr").nth(999).click()
    await page.locator("#headers", has_text="number 0").wait_for()
    opened = (time.perf_counter() - started) * 1000
    print(f"mail page: the oldest of 1,000 opened in {opened:.0f} ms")
