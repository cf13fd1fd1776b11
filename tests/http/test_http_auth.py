"""Who may use the API: token, per-account Basic, refusals, CORS only for configured origins."""

from __future__ import annotations

import base64
import time

import aiohttp
import pytest
from http_helpers import BOB, CAROL, Api, mail, send_mx

TOKEN = "s3cret-token"


@pytest.fixture
async def locked(bob_factory, session: aiohttp.ClientSession) -> Api:
    """A listener with a token, and one message in bob's and carol's mailboxes."""
    server = await bob_factory(token=TOKEN)
    await send_mx(server.ports["mx"], mail("for bob"))
    await send_mx(server.ports["mx"], mail("for carol", to=CAROL), to=[CAROL])
    return Api(session, server.ports["http"])


def basic(address: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{address}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"},
                                     {"Authorization": f"Token {TOKEN}"},
                                     {"Authorization": "Basic !!!notbase64"},
                                     basic(BOB, "wrong-pw"), basic("nobody@bob.lab", "x")])
async def test_refused_without_the_right_credentials(locked: Api, headers: dict[str, str]
                                                     ) -> None:
    for path in ("/api/v1/accounts", f"/api/v1/mailboxes/{BOB}/messages", "/api/v1/queue"):
        status, data = await locked.get(path, headers=headers)
        assert status == 401 and data["error"] == "unauthorized", path
        assert "traceback" not in str(data).lower()


async def test_healthz_needs_nothing(locked: Api) -> None:
    assert (await locked.get("/healthz"))[0] == 200


async def test_the_token_opens_everything(locked: Api) -> None:
    admin = locked.with_headers(Authorization=f"Bearer {TOKEN}")
    status, data = await admin.get("/api/v1/accounts")
    assert status == 200 and len(data["accounts"]) == 2
    for path in (f"/api/v1/mailboxes/{CAROL}/messages", "/api/v1/queue", "/api/v1/faults/mx"):
        assert (await admin.get(path))[0] == 200, path


async def test_an_account_sees_only_its_own_mailbox(locked: Api) -> None:
    bob = locked.with_headers(**basic("BOB@bob.lab", "bob-pw"))  # logins ignore case
    assert await bob.get("/api/v1/accounts") == (200, {"accounts": [
        {"address": BOB, "messages": 1}]})
    status, data = await bob.get(f"/api/v1/mailboxes/{BOB}/messages")
    assert status == 200 and [r["subject"] for r in data["messages"]] == ["for bob"]
    entry = data["messages"][0]["id"]
    assert (await bob.get(f"/api/v1/mailboxes/{BOB}/messages/{entry}/raw"))[0] == 200
    for method, path in (("GET", f"/api/v1/mailboxes/{CAROL}/messages"),
                         ("DELETE", f"/api/v1/mailboxes/{CAROL}/messages"),
                         ("GET", "/api/v1/queue"), ("POST", "/api/v1/queue/flush"),
                         ("GET", "/api/v1/faults/mx"), ("GET", "/api/v1/events")):
        status, data = await bob.call(method, path)
        assert status == 403 and data["error"] == "forbidden", path
    status, data = await bob.get("/api/v1/messages/wait", params={"subject": "for carol",
                                                                  "timeout": "0"})
    assert status == 408 and data["arrived"] == []  # carol's mail is not bob's to wait for
    status, data = await bob.get("/api/v1/messages/wait", params={"subject": "for bob"})
    assert status == 200 and data["message"]["mailbox"] == BOB


async def test_no_cors_unless_configured(api: Api) -> None:
    async with api.session.get(api.base + "/api/v1/accounts",
                               headers={"Origin": "http://evil.example"}) as response:
        assert "Access-Control-Allow-Origin" not in response.headers
    status, _ = await api.call("OPTIONS", "/api/v1/accounts", headers={
        "Origin": "http://evil.example", "Access-Control-Request-Method": "GET"})
    assert status == 405


async def test_cors_for_configured_origins_only(bob_factory, session) -> None:
    server = await bob_factory(cors_origins=["http://app.test:3000"])
    url = f"http://127.0.0.1:{server.ports['http']}/api/v1/accounts"
    async with session.options(url, headers={"Origin": "http://app.test:3000",
                                             "Access-Control-Request-Method": "GET"}) as r:
        assert r.status == 204
        assert r.headers["Access-Control-Allow-Origin"] == "http://app.test:3000"
        assert "Authorization" in r.headers["Access-Control-Allow-Headers"]
    async with session.get(url, headers={"Origin": "http://app.test:3000"}) as r:
        assert r.headers["Access-Control-Allow-Origin"] == "http://app.test:3000"
    async with session.get(url, headers={"Origin": "http://other.test"}) as r:
        assert "Access-Control-Allow-Origin" not in r.headers


async def test_a_wrong_password_waits_like_smtp_and_pop3(server_factory, session) -> None:
    server = await server_factory(listeners={"http": {"host": "127.0.0.1", "port": 0}},
                                  limits={"failed_auth_delay": 0.3})
    api = Api(session, server.ports["http"])
    started = time.monotonic()
    status, _ = await api.get("/api/v1/accounts", headers=basic(BOB, "guess"))
    assert status == 401 and time.monotonic() - started >= 0.3
