"""The declared events and the bus: numbering, filters, bounded subscribers, history."""

from __future__ import annotations

import asyncio
import json

import pytest

from mta import events
from mta.events import Bus, MessageAccepted, ProtocolLine, RouteDecided


def _line(text: str, **kw: object) -> ProtocolLine:
    return ProtocolLine(server="mx.bob.lab", domain="bob.lab", step=4, listener="mx",
                        peer="127.0.0.1:5000", direction="C", line=text, **kw)


def test_every_kind_round_trips_through_json() -> None:
    for cls in events.EVENT_TYPES:
        event = cls(server="s", domain="d", step=4, queue_id="ABC")
        data = json.loads(json.dumps(event.to_dict()))
        assert data["kind"] == cls.kind
        assert events.from_dict(data) == event
    assert len(events.KINDS) == len(events.EVENT_TYPES)  # kinds are unique


def test_tuples_survive_the_round_trip() -> None:
    event = MessageAccepted(recipients=("a@x", "b@y"), local=("a@x",), outbound=("b@y",))
    assert events.from_dict(json.loads(json.dumps(event.to_dict()))) == event


def test_events_are_frozen() -> None:
    event = _line("NOOP")
    with pytest.raises(AttributeError):
        event.line = "x"  # type: ignore[misc]


@pytest.mark.parametrize(("line", "masked"), [
    ("AUTH PLAIN AGFsaWNlAHNlY3JldA==", "AUTH PLAIN ****"),
    ("auth login YWxpY2U=", "auth login ****"),
    ("AUTH LOGIN", "AUTH LOGIN"),
    ("PASS secret words", "PASS ****"),
    ("APOP bob c4c9334bac560ecc979e58001b3e22fb", "APOP bob ****"),
    ("MAIL FROM:<a@b>", "MAIL FROM:<a@b>"),
])
def test_mask_hides_secrets(line: str, masked: str) -> None:
    assert events.mask(line) == masked


async def test_an_inactive_bus_builds_and_numbers_nothing() -> None:
    bus = Bus()
    assert not bus.active
    bus.publish(_line("NOOP"))
    assert bus.published == 0


async def test_subscribers_get_events_in_order_numbered() -> None:
    bus = Bus()
    with bus.subscribe() as sub:
        assert bus.active
        for text in ("EHLO x", "MAIL FROM:<>", "QUIT"):
            bus.publish(_line(text))
        got = sub.drain()
    assert [e.line for e in got] == ["EHLO x", "MAIL FROM:<>", "QUIT"]
    assert [e.seq for e in got] == [1, 2, 3]
    assert not bus.active and bus.subscribers == 0


async def test_a_stuck_subscriber_loses_events_and_never_blocks() -> None:
    bus = Bus()
    stuck = bus.subscribe(maxsize=10)
    healthy = bus.subscribe(maxsize=1000)
    for i in range(100):
        bus.publish(_line(f"NOOP {i}"))
    assert len(stuck.drain()) == 10 and stuck.dropped == 90
    assert len(healthy.drain()) == 100 and healthy.dropped == 0
    assert bus.dropped == 90


async def test_get_waits_for_the_next_event_and_times_out() -> None:
    bus = Bus()
    with bus.subscribe() as sub:
        asyncio.get_running_loop().call_soon(bus.publish, _line("DATA"))
        assert (await sub.get(timeout=1)).line == "DATA"
        with pytest.raises(TimeoutError):
            await sub.get(timeout=0.01)


async def test_closing_ends_async_iteration() -> None:
    bus = Bus()
    sub = bus.subscribe()
    bus.publish(_line("one"))
    loop = asyncio.get_running_loop()
    loop.call_soon(sub.close)
    assert [e.line async for e in sub] == ["one"]


async def test_history_is_bounded_and_replays_after_a_sequence_number() -> None:
    bus = Bus(history=5)
    assert bus.active
    for i in range(8):
        bus.publish(_line(f"L{i}"))
    assert [e.seq for e in bus.history()] == [4, 5, 6, 7, 8]
    assert bus.oldest_held == 4
    with bus.subscribe(since=6) as sub:
        bus.publish(_line("L8"))
        assert [e.seq for e in sub.drain()] == [7, 8, 9]


async def test_wait_for_finds_a_held_event_or_the_next_one() -> None:
    bus = Bus(history=10)
    bus.publish(MessageAccepted(queue_id="Q1", message_id="<m1@x>"))
    found = await bus.wait_for(lambda e: events.matches(e, message_id="m1@x"), timeout=1)
    assert found.queue_id == "Q1"
    loop = asyncio.get_running_loop()
    loop.call_soon(bus.publish, MessageAccepted(queue_id="Q2"))
    found = await bus.wait_for(lambda e: events.matches(e, queue_id="q2"), timeout=1)
    assert found.queue_id == "Q2"
    with pytest.raises(TimeoutError):
        await bus.wait_for(lambda e: False, timeout=0.01)


def test_filters() -> None:
    routed = RouteDecided(server="mx.alice.lab", domain="alice.lab", step=4, queue_id="AB12",
                          message_id="<x@y>", destination="bob.lab", how="static")
    assert events.matches(routed, kind="routed", step=4, queue_id="ab12", message_id="x@y",
                          server="alice.lab")
    assert events.matches(routed, kind=("line", "routed"), step=(3, 4))
    assert not events.matches(routed, kind="line")
    assert not events.matches(routed, step=5)
    assert not events.matches(routed, message_id="<other@y>")
    assert not events.matches(routed, server="bob.lab")
    bounce = events.BounceGenerated(queue_id="OLD", bounce_queue_id="NEW")
    assert events.matches(bounce, queue_id="NEW") and events.matches(bounce, queue_id="OLD")


def _fields(text: str, **more: object) -> dict[str, object]:
    return {"server": "mx.bob.lab", "domain": "bob.lab", "step": 4, "listener": "mx",
            "peer": "127.0.0.1:5000", "direction": "C", "line": text, **more}


async def test_emitted_events_are_held_and_read_back_as_events() -> None:
    bus = Bus(history=3)
    for n in range(5):
        bus.emit(ProtocolLine, _fields(f"NOOP {n}"))
    assert bus.published == 5 and bus.oldest_held == 3
    held = list(bus.history())
    assert [type(e) for e in held] == [ProtocolLine] * 3
    assert [(e.seq, e.line) for e in held] == [(3, "NOOP 2"), (4, "NOOP 3"), (5, "NOOP 4")]
    assert all(e.time > 0 for e in held)
    with bus.subscribe(since=4) as replay:  # a late consumer gets the held ones, then live ones
        bus.emit(ProtocolLine, _fields("QUIT"))
        assert [(e.seq, e.line) for e in replay.drain()] == [(5, "NOOP 4"), (6, "QUIT")]
    assert [e.seq for e in bus.history()] == [4, 5, 6]
    assert list(bus.history()) == list(bus.history())


def test_emit_makes_the_event_init_would_make() -> None:
    bus = Bus()
    with bus.subscribe() as subscription:
        bus.emit(ProtocolLine, _fields("NOOP", queue_id="Q1"))
        (made,) = subscription.drain()
    declared = ProtocolLine(**_fields("NOOP", queue_id="Q1"), time=made.time, seq=made.seq)
    assert made == declared and hash(made) == hash(declared) and repr(made) == repr(declared)
    assert made.to_dict() == declared.to_dict() and made.uidl is None  # a class default
    with pytest.raises(AttributeError):
        made.line = "x"  # type: ignore[misc]


async def test_emit_builds_at_once_for_a_subscriber_and_not_at_all_when_inactive() -> None:
    bus = Bus()
    bus.emit(ProtocolLine, _fields("NOOP"))
    assert bus.published == 0
    with bus.subscribe() as subscription:
        bus.emit(ProtocolLine, _fields("NOOP"))
        (event,) = subscription.drain()
    assert isinstance(event, ProtocolLine) and event.seq == 1 and event.line == "NOOP"


@pytest.mark.parametrize("line", ["MAIL FROM:<a@b>", "RCPT TO:<\udcff@x>", "Grüße"])
def test_json_lines_round_trip_as_workers_send_them(line: str) -> None:
    event = MessageAccepted(server="mx.bob.lab", recipients=(line,), seq=3)
    data = events.to_json(event)
    assert b"\n" not in data and b"\r" not in data
    assert events.from_json(data) == event


def test_an_unread_history_is_no_work_for_the_garbage_collector() -> None:
    """Events published while nobody subscribes are held as dicts of plain values, which the
    collector does not track, until the history is read (issue 13: the idle HTTP listener)."""
    import gc

    bus = Bus(history=1000)
    before = len(gc.get_objects())
    for n in range(1000):
        bus.emit(ProtocolLine, _fields(f"NOOP {n}"))
    assert len(gc.get_objects()) - before < 50
    assert [e.line for e in bus.history(since=998)] == ["NOOP 998", "NOOP 999"]
