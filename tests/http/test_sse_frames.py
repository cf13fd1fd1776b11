"""The event stream's frames (``mta.http.sse.event_frame``) are the bytes aiohttp-sse's own
``send`` writes for the same event, and their JSON is ``Event.to_dict()``, whatever the
event holds: non-ASCII text, CR and LF, undecodable octets (lone surrogates)."""

from __future__ import annotations

import asyncio
import json

from hypothesis import given, settings
from hypothesis import strategies as st

from mta import events
from mta.http.sse import BatchedEventSource, event_frame, event_json

text = st.text(st.characters(codec=None, exclude_categories=()), max_size=40)


@st.composite
def emitted(draw: st.DrawFn) -> events.Event:
    """An event as ``Bus.emit`` makes them, from a dict of some or all of its fields, or as
    its ``__init__`` does."""
    cls = draw(st.sampled_from(events.EVENT_TYPES))
    fields = {"time": draw(st.floats(0, 2e9)), "seq": draw(st.integers(1, 2**53)),
              "server": draw(text), "queue_id": draw(st.none() | text)}
    if cls is events.ProtocolLine:
        fields.update(direction=draw(st.sampled_from("CS")), line=draw(text))
    if cls is events.MessageAccepted:
        fields.update(recipients=tuple(draw(st.lists(text, max_size=3))))
    how = draw(st.sampled_from(["some fields", "every field", "__init__"]))
    if how == "__init__":
        return cls(**fields)
    if how == "every field":  # as an SMTP session's lines are made
        fields = events.blank(cls) | fields
    bus = events.Bus()
    with bus.subscribe() as subscription:
        bus.emit(cls, fields)
        (event,) = subscription.drain()
    return event


@settings(max_examples=300, deadline=None)
@given(emitted(), st.sampled_from([None, "\n", "\r\n"]))
def test_a_frame_is_what_aiohttp_sse_sends(event: events.Event, sep: str | None) -> None:
    response = BatchedEventSource(sep=sep)
    data = event_json(event)
    assert b"\r" not in data and b"\n" not in data
    sent = asyncio.run(response.framed(data.decode(), str(event.seq), event.kind))
    assert event_frame(event, response.separator) == sent
    assert json.loads(data) == json.loads(json.dumps(event.to_dict()))


def test_an_undecodable_line_is_sent_escaped() -> None:
    event = events.ProtocolLine(line="MAIL FROM:<\udcff@x>", seq=7)
    data = event_json(event)
    assert data.isascii() and json.loads(data)["line"] == "MAIL FROM:<\udcff@x>"
    assert event_frame(event, b"\r\n").startswith(b"id: 7\r\nevent: line\r\ndata: {")


def test_a_frame_with_a_lone_surrogate_is_what_aiohttp_sse_sends() -> None:
    event = events.SessionOpened(server="\ud800", seq=1)
    response = BatchedEventSource()
    sent = asyncio.run(response.framed(event_json(event).decode(), "1", event.kind))
    assert event_frame(event, response.separator) == sent
