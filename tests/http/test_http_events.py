"""The event stream: Server-Sent Events of the bus, filtered, resumable with Last-Event-ID."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
import pytest
from http_helpers import BOB, SSE, mail, send_mx, until

from mta.events import ProtocolLine
from mta.http.context import HISTORY
from mta.lab import Lab
from mta.server import Server
from tests.sending.sending_helpers import submit


@asynccontextmanager
async def events(session: aiohttp.ClientSession, port: int, query: str = "",
                 headers: dict[str, str] | None = None) -> AsyncIterator[SSE]:
    async with session.get(f"http://127.0.0.1:{port}/api/v1/events{query}",
                           headers=headers or {}) as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == "text/event-stream"
        yield SSE(response)


@pytest.fixture
async def lab(tmp_path) -> AsyncIterator[Lab]:
    async with Lab.start({"alice.lab": ["alice"], "bob.lab": ["bob"]}, folder=tmp_path,
                         tls="off", http=True) as lab:
        yield lab


async def test_alice_to_bob_seen_in_both_streams_in_order(lab: Lab, session) -> None:
    async with events(session, lab["bob.lab"].ports["http"]) as bob_stream, \
            events(session, lab["alice.lab"].ports["http"]) as alice_stream:
        await until(lambda: lab.bus.subscribers == 2)
        raw = mail("through the lab", message_id="<hop-test@alice.lab>")
        await submit(lab["alice.lab"].ports["submission"], [BOB], raw)
        for stream in (bob_stream, alice_stream):
            seen = await stream.until_kind("stored", owner=BOB)
            ids = [int(e["id"]) for e in seen]
            assert ids == sorted(ids) and len(set(ids)) == len(ids)  # bus order, no repeats
            stored = seen[-1]["data"]
            assert stored["server"] == "mx.bob.lab" and stored["step"] == 4
            assert stored["message_id"] == "<hop-test@alice.lab>" and stored["uidl"]
            hops = [e["data"] for e in seen if e["data"]["message_id"] == stored["message_id"]]
            # every hop that published about this message, in the order it happened
            assert [h["seq"] for h in hops] == sorted(h["seq"] for h in hops)
            seen += await stream.until_kind("attempt", outcome="delivered")
            _assert_every_hop_in_order([e["data"] for e in seen], "<hop-test@alice.lab>")


def _assert_every_hop_in_order(data: list[dict], message_id: str) -> None:
    """Submission (step 3), then the relay's routing, its SMTP lines to bob.lab's MX and the
    MX's own view of them, bob.lab's stored row, and the relay's attempt (step 4)."""
    accepted = {d["server"]: d for d in data
                if d["kind"] == "accepted" and d["message_id"] == message_id}
    submitted, received = accepted["mx.alice.lab"], accepted["mx.bob.lab"]

    def first(**match: object) -> int:
        return next(d["seq"] for d in data if all(d.get(k) == v for k, v in match.items()))

    order = [
        first(kind="line", server="mx.alice.lab", listener="submission", direction="C"),
        submitted["seq"],
        first(kind="routed", queue_id=submitted["queue_id"]),
        first(kind="line", listener="relay", queue_id=submitted["queue_id"], direction="C"),
        first(kind="line", listener="mx", queue_id=received["queue_id"], direction="C"),
        first(kind="stored", message_id=message_id),
        first(kind="attempt", queue_id=submitted["queue_id"], outcome="delivered"),
    ]
    assert order == sorted(order), order
    assert submitted["listener"] == "submission" and received["listener"] == "mx"
    assert submitted["step"] == 3 and received["step"] == 4


async def test_filters_and_last_event_id_resume(bob: Server, session) -> None:
    port = bob.ports["http"]
    for n in range(3):
        bob.bus.publish(ProtocolLine(server="mx.bob.lab", step=4, line=f"NOOP {n}",
                                     queue_id="Q1" if n == 1 else None))
    async with events(session, port, "?last_event_id=0&kind=line&queue_id=q1") as stream:
        first = await stream.next()
        assert first["event"] == "line" and first["data"]["line"] == "NOOP 1"
    async with events(session, port, headers={"Last-Event-ID": first["id"]}) as stream:
        assert (await stream.next())["data"]["line"] == "NOOP 2"
        await send_mx(bob.ports["mx"], mail("live"))
        kinds = []
        while not kinds or kinds[-1] != "stored":  # the MX session's events come first
            live = await stream.next()
            kinds.append(live["event"])
            assert len(kinds) < 100
        assert kinds[0] == "session_opened" and "accepted" in kinds or kinds[-2] == "line"
        assert live["data"]["owner"] == BOB
    async with events(session, port, "?last_event_id=0&step=4&kind=stored") as stream:
        assert (await stream.next())["id"] == live["id"]  # resumed from the held history


async def test_an_id_older_than_the_buffer_is_told_as_a_gap(bob: Server, session) -> None:
    held = HISTORY + 2
    for n in range(held):
        bob.bus.publish(ProtocolLine(server="mx.bob.lab", step=4, line=f"NOOP {n}"))
    async with events(session, bob.ports["http"], headers={"Last-Event-ID": "1"}) as stream:
        gap = await stream.next()
        assert gap["event"] == "gap" and gap["data"] == {"after": 1, "oldest_held": 3}
        first = await stream.next()
        assert first["id"] == "3" and first["data"]["line"] == "NOOP 2"


async def test_closing_the_server_ends_open_streams(bob_factory, session) -> None:
    server = await bob_factory()
    async with events(session, server.ports["http"]) as stream:
        await until(lambda: server.bus.subscribers == 1)
        await server.close(grace=0)
        assert await stream.response.content.read() == b""  # ended, not hung
    assert server.bus.subscribers == 0
