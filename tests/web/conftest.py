"""Fixtures of the browser tests: Debian's Chromium driven by Playwright, and a running lab.

Chromium is the system's (``/usr/bin/chromium``, Debian's ``chromium`` package) launched through
``executable_path``: Playwright never downloads a browser here. Without it the tests skip, or
fail under TESTS_REQUIRE_TOOLS=1 (CI). Screenshots go to ``$LABMAIL_SCREENSHOTS`` (default
``tests/web/screenshots/``, ignored by git) for CI to keep.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from mta.lab import LAB_QUEUE, Lab
from mua.demo_web import WebDemo, start_web

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
VIEWPORT = {"width": 1600, "height": 1000}


@pytest.fixture
async def browser(need_tool: Callable[[bool, str], None]) -> AsyncIterator[Any]:
    need_tool(CHROMIUM.exists() or shutil.which("chromium") is not None,
              "Debian's chromium is not installed")
    try:
        from playwright.async_api import async_playwright
    except ImportError:  # pragma: no cover - the test extra installs it
        need_tool(False, "playwright (the test extra) is not installed")
        raise
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=str(CHROMIUM if CHROMIUM.exists() else shutil.which("chromium")),
            args=CHROMIUM_ARGS)
        yield launched
        await launched.close()


@pytest.fixture
async def page(browser: Any) -> AsyncIterator[Any]:
    """A fresh page; JavaScript errors on it fail the test."""
    context = await browser.new_context(viewport=VIEWPORT, accept_downloads=True)
    tab = await context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda error: errors.append(str(error)))
    yield tab
    await context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


@pytest.fixture
def screenshots() -> Path:
    folder = Path(os.environ.get("LABMAIL_SCREENSHOTS") or Path(__file__).with_name("screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
async def lab() -> AsyncIterator[Lab]:
    """The demo's two domains (alice.lab sends, bob.lab receives), lab-speed retries."""
    queue = dataclasses.replace(LAB_QUEUE, retry_initial=0.3)
    async with Lab.start({"alice.lab": ["alice"], "bob.lab": ["bob"]}, queue=queue) as running:
        yield running


@pytest.fixture
async def web(lab: Lab) -> WebDemo:
    """The pages on both domains' HTTP listeners, as ``mua demo --web`` serves them."""
    return await start_web(lab, subject="Hello from Alice", body="Hi Bob,\n")

