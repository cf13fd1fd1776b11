"""What the API changes: delete and purge (honouring the POP3 lock), the queue, MX faults."""

from __future__ import annotations

import asyncio
import poplib
import smtplib
import threading
import time

from http_helpers import ALICE, BOB, Api, mail, send_mx

from mta.server import Server


async def _ids(api: Api, address: str = BOB) -> list[int]:
    _, data = await api.get(f"/api/v1/mailboxes/{address}/messages")
    return [row["id"] for row in data["messages"]]


async def test_delete_one_and_purge(api: Api, bob: Server) -> None:
    for n in range(3):
        await send_mx(bob.ports["mx"], mail(f"m{n}"))
    newest, *rest = await _ids(api)
    assert await api.delete(f"/api/v1/mailboxes/{BOB}/messages/{newest}") == (200,
                                                                              {"deleted": 1})
    assert await _ids(api) == rest
    status, data = await api.delete(f"/api/v1/mailboxes/{BOB}/messages/{newest}")
    assert status == 404 and data["error"] == "not_found"
    assert await api.delete(f"/api/v1/mailboxes/{BOB}/messages") == (200, {"deleted": 2})
    assert await bob.store.count_entries(BOB) == 0


async def test_a_pop3_session_holds_the_maildrop(api: Api, bob: Server) -> None:
    await send_mx(bob.ports["mx"], mail("held"))
    (entry_id,) = await _ids(api)
    logged_in, release = threading.Event(), threading.Event()

    def pop3_session() -> None:
        client = poplib.POP3("127.0.0.1", bob.ports["pop3"], timeout=10)
        client.user(BOB)
        client.pass_("bob-pw")  # the maildrop is locked from here (RFC 1939 8)
        logged_in.set()
        release.wait(10)
        client.quit()

    session = asyncio.create_task(asyncio.to_thread(pop3_session))
    await asyncio.to_thread(logged_in.wait, 10)
    base = f"/api/v1/mailboxes/{BOB}/messages"
    for path in (f"{base}/{entry_id}", base):
        status, data = await api.delete(path)
        assert status == 409 and data["error"] == "conflict" and data["mailbox"] == BOB
    assert await _ids(api) == [entry_id]
    release.set()
    await session
    assert await api.delete(f"/api/v1/mailboxes/{BOB}/messages/{entry_id}") == (
        200, {"deleted": 1})


async def test_queue_list_flush_and_delete(api: Api, bob: Server) -> None:
    now = time.time()
    queue_id = await bob.store.enqueue(BOB, mail("out"), ["x@far.lab", "y@far.lab"],
                                       now=now + 3600)
    status, data = await api.get("/api/v1/queue")
    assert status == 200 and data["count"] == 2
    assert {r["recipient"] for r in data["rows"]} == {"x@far.lab", "y@far.lab"}
    assert all(r["queue_id"] == queue_id and r["state"] == "queued" for r in data["rows"])
    assert await api.post("/api/v1/queue/flush") == (200, {"flushed": 2})
    _, data = await api.get("/api/v1/queue")
    assert all(r["next_attempt"] <= time.time() for r in data["rows"])
    row = data["rows"][0]["id"]
    assert await api.delete(f"/api/v1/queue/{row}") == (200, {"deleted": 1})
    assert await api.delete(f"/api/v1/queue/{queue_id}") == (200, {"deleted": 1})
    status, data = await api.delete(f"/api/v1/queue/{queue_id}")
    assert status == 404 and data["error"] == "not_found"
    assert await api.get("/api/v1/queue") == (200, {"rows": [], "count": 0})


def _mx_replies(port: int, count: int) -> list[int]:
    codes = []
    for n in range(count):
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
            client.ehlo("test.lab")
            client.mail(ALICE)
            client.rcpt(BOB)
            codes.append(client.data(mail(f"try {n}"))[0])
    return codes


async def test_faults_script_the_next_mx_replies(api: Api, bob: Server) -> None:
    assert await api.get("/api/v1/faults/mx") == (200, {"replies": []})
    status, data = await api.post("/api/v1/faults/mx", json={"reply": "451", "count": 2})
    assert status == 200
    assert data == {"replies": ["451 4.3.0 temporary failure (lab fault)"] * 2}
    status, data = await api.post("/api/v1/faults/mx", json={"reply": "554 5.7.1 go away"})
    assert data["replies"][-1] == "554 5.7.1 go away"
    # "451 twice, then 554 once, then normal"
    assert await asyncio.to_thread(_mx_replies, bob.ports["mx"], 4) == [451, 451, 554, 250]
    assert await api.get("/api/v1/faults/mx") == (200, {"replies": []})
    await api.post("/api/v1/faults/mx", json={"reply": "452", "count": 3})
    assert await api.delete("/api/v1/faults/mx") == (200, {"replies": []})
    assert await asyncio.to_thread(_mx_replies, bob.ports["mx"], 1) == [250]
