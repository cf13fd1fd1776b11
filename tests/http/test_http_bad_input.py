"""Bad input gets a 4xx with a JSON error: never a 500, never exception text."""

from __future__ import annotations

import pytest
from http_helpers import BOB, Api, mail, send_mx

from mta.server import Server

MESSAGES = f"/api/v1/mailboxes/{BOB}/messages"


@pytest.mark.parametrize(("method", "path", "status"), [
    ("GET", "/api/v1/nothing-here", 404),
    ("GET", "/api/v2/accounts", 404),
    ("PUT", "/api/v1/accounts", 405),
    ("GET", "/api/v1/mailboxes/nobody@bob.lab/messages", 404),
    ("GET", "/api/v1/mailboxes/%00%ff/messages", 404),
    ("GET", f"{MESSAGES}?limit=abc", 400),
    ("GET", f"{MESSAGES}?limit=-1", 400),
    ("GET", f"{MESSAGES}?limit=0", 400),
    ("GET", f"{MESSAGES}?limit=1e3", 400),
    ("GET", f"{MESSAGES}?limit=100000000000000000000000000", 400),
    ("GET", f"{MESSAGES}?limit=501", 400),
    ("GET", f"{MESSAGES}?cursor=xyz", 400),
    ("GET", f"{MESSAGES}?cursor=-5", 400),
    ("GET", f"{MESSAGES}?since=yesterday", 400),
    ("GET", f"{MESSAGES}?since=1e300", 400),
    ("GET", f"{MESSAGES}?subject=" + "x" * 300, 400),
    ("GET", f"{MESSAGES}?subject=a%0Ab", 400),
    ("GET", f"{MESSAGES}/abc", 404),
    ("GET", f"{MESSAGES}/-1", 404),
    ("GET", f"{MESSAGES}/99999999999999999999999", 404),
    ("GET", f"{MESSAGES}/1/attachments/x", 404),
    ("DELETE", f"{MESSAGES}/0", 404),
    ("GET", "/api/v1/messages/wait?timeout=nan", 400),
    ("GET", "/api/v1/messages/wait?timeout=-1", 400),
    ("GET", "/api/v1/messages/wait?timeout=100000", 400),
    ("GET", "/api/v1/messages/wait?timeout=0&since=never", 400),
    ("GET", "/api/v1/events?step=9", 400),
    ("GET", "/api/v1/events?kind=nonsense", 400),
    ("GET", "/api/v1/events?last_event_id=abc", 400),
    ("DELETE", "/api/v1/queue/no-such!", 404),
    ("DELETE", "/api/v1/queue/99999", 404),
])
async def test_bad_requests_get_json_errors(api: Api, bob: Server, method: str, path: str,
                                            status: int) -> None:
    await send_mx(bob.ports["mx"], mail("one"))
    got, data = await api.call(method, path)
    assert got == status, data
    assert isinstance(data, dict) and set(data) >= {"error", "message"}
    assert "Traceback" not in data["message"] and "Error(" not in data["message"]


@pytest.mark.parametrize(("kwargs", "status"), [
    ({"data": b"{not json", "headers": {"Content-Type": "application/json"}}, 400),
    ({"json": ["451"]}, 400),
    ({"json": {"reply": "250 fine"}}, 400),
    ({"json": {"reply": "451\r\nRSET"}}, 400),
    ({"json": {"reply": True}}, 400),
    ({"json": {"reply": "451", "count": 0}}, 400),
    ({"json": {"reply": "451", "count": "2"}}, 400),
    ({"json": {"reply": "451", "count": 101}}, 400),
    ({"data": b"reply=451", "headers": {"Content-Type": "text/plain"}}, 415),
    ({"json": {"reply": "451", "pad": "x" * 100_000}}, 413),
])
async def test_bad_fault_scripts(api: Api, kwargs: dict, status: int) -> None:
    got, data = await api.post("/api/v1/faults/mx", **kwargs)
    assert got == status, data
    assert data["error"] and data["message"]
    assert await api.get("/api/v1/faults/mx") == (200, {"replies": []})


async def test_too_many_scripted_replies(api: Api) -> None:
    assert (await api.post("/api/v1/faults/mx", json={"reply": "451", "count": 100}))[0] == 200
    status, data = await api.post("/api/v1/faults/mx", json={"reply": "451"})
    assert status == 409 and data["error"] == "conflict"
