"""The mailbox API against a real server: accounts, listing, one message, raw, attachments."""

from __future__ import annotations

import pytest
from http_helpers import BOB, CAROL, Api, mail, send_mx

from mta.server import Server


async def test_healthz_and_accounts(api: Api, bob: Server) -> None:
    assert await api.get("/healthz") == (200, {"status": "ok", "hostname": "mx.bob.lab"})
    await send_mx(bob.ports["mx"], mail("one"))
    status, data = await api.get("/api/v1/accounts")
    assert status == 200
    assert data == {"accounts": [{"address": BOB, "messages": 1},
                                 {"address": CAROL, "messages": 0}]}


async def test_listing_is_newest_first_with_every_field(api: Api, bob: Server) -> None:
    for n in range(3):
        await send_mx(bob.ports["mx"], mail(f"number {n}", attachment=("a.txt", b"x") if n
                                            else None))
    status, data = await api.get(f"/api/v1/mailboxes/{BOB}/messages")
    assert status == 200 and data["next_cursor"] is None
    rows = data["messages"]
    assert [r["subject"] for r in rows] == ["number 2", "number 1", "number 0"]
    first = rows[0]
    assert first["mailbox"] == BOB and first["envelope"] == {"sender": "alice@alice.lab",
                                                             "recipients": [BOB]}
    assert first["from"] == "alice@alice.lab" and first["to"] == BOB
    assert first["message_id"].endswith("@test.lab>") and len(first["uidl"]) == 32
    assert first["size"] > 0 and first["stored"].endswith("Z") and first["queue_id"]
    assert [r["attachment_count"] for r in rows] == [1, 1, 0]


async def test_filters_limit_and_cursor(api: Api, bob: Server) -> None:
    for n in range(7):
        to = CAROL if n % 2 else BOB
        await send_mx(bob.ports["mx"], mail(f"Report {n}", to=to), to=[BOB])
    base = f"/api/v1/mailboxes/{BOB}/messages"
    _, page1 = await api.get(base, params={"limit": "3"})
    _, page2 = await api.get(base, params={"limit": "3", "cursor": page1["next_cursor"]})
    _, page3 = await api.get(base, params={"limit": "3", "cursor": page2["next_cursor"]})
    subjects = [r["subject"] for p in (page1, page2, page3) for r in p["messages"]]
    assert subjects == [f"Report {n}" for n in range(6, -1, -1)]
    assert page3["next_cursor"] is None
    _, data = await api.get(base, params={"to": "CAROL@", "subject": "report"})
    assert [r["subject"] for r in data["messages"]] == ["Report 5", "Report 3", "Report 1"]
    _, data = await api.get(base, params={"subject": "report 4", "from": "alice"})
    assert [r["subject"] for r in data["messages"]] == ["Report 4"]
    _, data = await api.get(base, params={"since": "2999-01-01T00:00:00"})
    assert data["messages"] == []
    _, data = await api.get(base, params={"since": "0", "limit": "1"})
    assert [r["subject"] for r in data["messages"]] == ["Report 6"]


async def test_one_message_parsed_raw_and_attachment(api: Api, bob: Server) -> None:
    raw = mail("Grüße", text="plain body", html="<p>html body</p>",
               attachment=("../../etc/pass\"wd résumé.pdf", b"%PDF-1.4 data"))
    await send_mx(bob.ports["mx"], raw)
    _, listing = await api.get(f"/api/v1/mailboxes/{BOB}/messages")
    entry_id = listing["messages"][0]["id"]
    base = f"/api/v1/mailboxes/{BOB}/messages/{entry_id}"
    status, data = await api.get(base)
    assert status == 200
    assert data["subject"] == "Grüße" and data["text"] == "plain body\n"
    assert data["html"] == "<p>html body</p>\n" and data["truncated"] is False
    assert data["attachments"] == [{"index": 0, "name": "../../etc/pass\"wd résumé.pdf",
                                    "type": "application/octet-stream", "size": 13}]
    names = [h["name"] for h in data["headers"]]
    assert names[:2] == ["Return-Path", "Received"] and "Subject" in names
    kinds = [e["kind"] for e in data["trace"]]  # the bus's held events of this message
    assert kinds[0] == "line" and {"stored", "accepted"} <= set(kinds)
    status, stored = await api.get(f"{base}/raw")
    assert status == 200 and stored == await bob.store.fetch(BOB, entry_id)
    assert stored.endswith(raw)  # exactly what the MX received, after the trace headers
    async with api.session.get(api.base + f"{base}/attachments/0") as response:
        assert response.status == 200 and await response.read() == b"%PDF-1.4 data"
        disposition = response.headers["Content-Disposition"]
        assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert disposition == ('attachment; filename="pass_wd r_sum_.pdf"; '
                           "filename*=UTF-8''pass_wd%20r%C3%A9sum%C3%A9.pdf")


@pytest.mark.parametrize("suffix", ["", "/raw", "/attachments/0"])
async def test_unknown_message_is_404(api: Api, bob: Server, suffix: str) -> None:
    await send_mx(bob.ports["mx"], mail("x"), to=[CAROL])
    _, carol = await api.get(f"/api/v1/mailboxes/{CAROL}/messages")
    other = carol["messages"][0]["id"]  # exists, but in carol's mailbox
    for entry_id in (other, 999999):
        status, data = await api.get(f"/api/v1/mailboxes/{BOB}/messages/{entry_id}{suffix}")
        assert status == 404 and data["error"] == "not_found"


async def test_listing_rows_stay_small_whatever_the_headers_hold(api: Api, bob: Server) -> None:
    long_subject = "word " * 2000  # folded by the email package, 10,000 characters
    await send_mx(bob.ports["mx"], mail(long_subject.strip()))
    _, data = await api.get(f"/api/v1/mailboxes/{BOB}/messages")
    (row,) = data["messages"]
    assert len(row["subject"]) == 998 and row["subject"].startswith("word word")
    status, whole = await api.get(f"/api/v1/mailboxes/{BOB}/messages/{row['id']}")
    assert status == 200 and whole["subject"] == row["subject"]
    assert any(len(h["value"]) > 9000 for h in whole["headers"] if h["name"] == "Subject")
