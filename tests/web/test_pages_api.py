"""The pages' own endpoints with a real HTTP client (no browser): texts, config, the user-agent
actions (format, submit, fetch and render), the MIME tree and parts, replay's trail."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from flow_events import delivery
from web_helpers import ALICE, BOB, PASSWORDS, deliver

from mta.lab import Lab
from mta.texts import TEXT
from mua.demo_web import WebDemo


@pytest.fixture
async def client() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def login(address: str, password: str | None = None) -> dict[str, str]:
    return {"Authorization": aiohttp.encode_basic_auth(address, password or PASSWORDS[address])}


async def test_pages_are_public_and_locked_down(client: aiohttp.ClientSession,
                                                web: WebDemo) -> None:
    async with client.get(f"{web.url}/") as response:
        assert response.url.path == "/flow" and response.status == 200
        policy = response.headers["Content-Security-Policy"]
        assert "script-src 'self'" in policy and "object-src 'none'" in policy
    async with client.get(f"{web.url}/static/flow.js") as response:
        assert response.status == 200 and "javascript" in response.content_type
    async with client.get(f"{web.url}/static/../pages.py") as response:
        assert response.status in (403, 404)


async def test_texts_come_from_the_demo(client: aiohttp.ClientSession, web: WebDemo) -> None:
    for lang in ("en", "zh"):
        async with client.get(f"{web.url}/api/v1/texts", params={"lang": lang}) as response:
            data = await response.json()
        assert data["texts"]["s4"] == TEXT[lang]["s4"] and data["texts"]["step"]
    async with client.get(f"{web.url}/api/v1/texts", params={"lang": "xx"}) as response:
        assert response.status == 400


async def test_config_knows_the_peer_and_the_lab(client: aiohttp.ClientSession,
                                                 web: WebDemo) -> None:
    async with client.get(f"{web.url}/api/v1/pages/config") as response:
        data = await response.json()
    assert data["domains"] == ["alice.lab"]
    assert data["peers"] == [{"url": web.bob_url, "domains": ["bob.lab"]}]
    assert data["lab"]["sender"] == {"address": ALICE, "password": PASSWORDS[ALICE]}
    async with client.get(f"{web.bob_url}/api/v1/pages/config",
                          headers={"Origin": web.url}) as response:
        assert response.headers["Access-Control-Allow-Origin"] == web.url


async def test_format_send_and_fetch_as_bob(client: aiohttp.ClientSession, lab: Lab,
                                            web: WebDemo) -> None:
    fields = {"to": BOB, "subject": "Grüße", "body": "über alles\n"}
    async with client.post(f"{web.url}/api/v1/pages/format", json=fields,
                           headers=login(ALICE)) as response:
        formatted = await response.json()
    assert response.status == 200 and formatted["message_id"].endswith("@alice.lab>")
    assert "Subject: =?utf-8?" in formatted["text"]
    async with client.post(f"{web.url}/api/v1/pages/send", json={"raw": formatted["raw"]},
                           headers=login(ALICE)) as response:
        sent = await response.json()
    assert response.status == 200 and sent["reply"].startswith("250")
    await lab.wait_for_delivery(BOB, 1, timeout=10)
    async with client.post(f"{web.bob_url}/api/v1/pages/fetch", json={"keep": True},
                           headers=login(BOB)) as response:
        fetched = await response.json()
    assert fetched["downloaded"] == 1 and fetched["deleted"] == 0
    message = fetched["messages"][0]
    assert message["subject"] == "Grüße" and "über alles" in message["rendered"]
    async with client.post(f"{web.bob_url}/api/v1/pages/fetch", json={},
                           headers=login(BOB)) as response:
        again = await response.json()
    assert again["messages"] == [] and again["deleted"] == 1  # remembered, now deleted


@pytest.mark.parametrize(("path", "body", "auth", "status"), [
    ("/api/v1/pages/format", {"to": BOB}, {}, 401),          # the administrator is nobody
    ("/api/v1/pages/format", {"to": BOB}, login(ALICE, "wrong"), 401),
    ("/api/v1/pages/format", {"to": ""}, login(ALICE), 400),
    ("/api/v1/pages/format", {"to": "not an address <"}, login(ALICE), 400),
    ("/api/v1/pages/format", ["a list"], login(ALICE), 400),
    ("/api/v1/pages/send", {"raw": "%%%"}, login(ALICE), 400),
    ("/api/v1/pages/send", {"raw": base64.b64encode(b"x" * 70_000).decode()}, login(ALICE),
     413),
    ("/api/v1/pages/fetch", ["a list"], login(ALICE), 400),
])
async def test_bad_action_requests(client: aiohttp.ClientSession, web: WebDemo, path: str,
                                   body: object, auth: dict[str, str], status: int) -> None:
    async with client.post(web.url + path, json=body, headers=auth) as response:
        assert response.status == status
        assert (await response.json())["message"]


async def test_mime_tree_and_parts(client: aiohttp.ClientSession, lab: Lab,
                                   web: WebDemo) -> None:
    from test_mail_page import hostile

    await deliver(lab["bob.lab"].ports["mx"], hostile(9))
    (entry,) = await lab["bob.lab"].store.list_entries(BOB)
    base = f"{web.bob_url}/api/v1/mailboxes/{BOB}/messages/{entry.id}/parts"
    async with client.get(base, headers=login(BOB)) as response:
        parts = (await response.json())["parts"]
    assert [(p["depth"], p["type"]) for p in parts] == [
        (0, "multipart/mixed"), (1, "multipart/alternative"), (2, "text/plain"),
        (2, "multipart/related"), (3, "text/html"), (3, "image/gif"),
        (1, "application/octet-stream")]
    image = next(p for p in parts if p["content_id"] == "logo@alice.lab")
    async with client.get(f"{base}/{image['index']}", headers=login(BOB)) as response:
        assert response.headers["X-Part-Type"] == "image/gif"
        assert (await response.read()).startswith(b"GIF89a")
    for path, status in ((f"{base}/0", 404), (f"{base}/99", 404), (f"{base}/x", 404)):
        async with client.get(path, headers=login(BOB)) as response:
            assert response.status == status
    alice_path = f"{web.bob_url}/api/v1/mailboxes/{ALICE}/messages/{entry.id}/parts"
    async with client.get(alice_path, headers=login(BOB)) as response:
        assert response.status == 403


async def test_replay_gives_one_message_across_hops(client: aiohttp.ClientSession, lab: Lab,
                                                    web: WebDemo) -> None:
    for event in delivery(1, fail_once=True) + delivery(2):
        lab[event.domain].server.bus.publish(event)
    async with client.get(f"{web.url}/api/v1/pages/replay",
                          params={"message_id": "m1@alice.lab"}) as response:
        chosen = (await response.json())["events"]
    assert [e["seq"] for e in chosen] == sorted(e["seq"] for e in chosen)
    assert {e["session"] for e in chosen} == {"s1", "r1.1", "r1.2", "x1.1", "x1.2", "p1", None}
    assert [e["kind"] for e in chosen].count("attempt") == 2
    assert not [e for e in chosen if e["queue_id"] in ("QA0002", "QB0002")]
    async with client.get(f"{web.url}/api/v1/pages/replay") as response:
        assert response.status == 400


async def test_every_http_listener_serves_the_pages(client: aiohttp.ClientSession,
                                                    server_factory: Any) -> None:
    server = await server_factory(listeners={"mx": {"host": "127.0.0.1", "port": 0},
                                             "http": {"host": "127.0.0.1", "port": 0}})
    base = f"http://127.0.0.1:{server.ports['http']}"
    for page in ("/flow", "/mail", "/server"):
        async with client.get(base + page) as response:
            assert response.status == 200 and response.content_type == "text/html"
    async with client.get(f"{base}/api/v1/pages/config") as response:
        config = await response.json()
    assert config["domains"] == ["bob.lab"] and config["lab"] is None and config["peers"] == []
