"""The relay's connection cache: one SMTP session carries several transactions to a hop."""

from __future__ import annotations

from typing import Any

from sending_helpers import BOB, assert_in_order, message, submit

from mta.clock import FakeClock
from mta.events import ProtocolLine


def mx_sessions(lines: list[ProtocolLine]) -> dict[str, list[str]]:
    """The MX listeners' lines, grouped by session."""
    sessions: dict[str, list[str]] = {}
    for r in lines:
        if r.listener == "mx":
            sessions.setdefault(r.session or "", []).append(f"{r.direction}: {r.line}")
    return sessions


async def test_messages_to_one_hop_share_a_session(lab_factory: Any, clock: FakeClock,
                                                   trace_lines) -> None:
    lab = await lab_factory(clock=clock, relay=False)
    alice, bob = lab["alice.lab"], lab["bob.lab"]
    await submit(alice.ports["submission"], [BOB], message("first"))
    assert await alice.relay.run_once() == 1
    await submit(alice.ports["submission"], [BOB], message("second"))
    assert await alice.relay.run_once() == 1
    assert await bob.store.count_entries(BOB) == 2
    sessions = mx_sessions(trace_lines)
    assert len(sessions) == 1  # one TCP connection, one TLS handshake
    [lines] = sessions.values()
    assert lines.count("C: STARTTLS") == 1
    assert sum(line.startswith("C: MAIL FROM:") for line in lines) == 2
    assert "C: QUIT" not in lines  # kept for the next message


async def test_a_session_closed_by_the_server_is_replaced_without_an_attempt(
        lab_factory: Any, clock: FakeClock, trace_lines) -> None:
    lab = await lab_factory(clock=clock, relay=False)
    alice, bob = lab["alice.lab"], lab["bob.lab"]
    await submit(alice.ports["submission"], [BOB], message("first"))
    assert await alice.relay.run_once() == 1
    # bob's MX drops every idle session (as a restart or an idle timeout would)
    for session in list(bob.server.listeners["mx"].state.sessions):
        session.transport.close()
    await submit(alice.ports["submission"], [BOB], message("second"))
    assert await alice.relay.run_once() == 1
    rows = await alice.store.queue_rows(include_final=True)
    assert [(r.state, r.attempts) for r in rows] == [("delivered", 1), ("delivered", 1)]
    assert len(mx_sessions(trace_lines)) == 2


async def test_a_refusal_ends_the_session(lab_factory: Any, clock: FakeClock,
                                          trace_lines) -> None:
    lab = await lab_factory(clock=clock, relay=False)
    alice, bob = lab["alice.lab"], lab["bob.lab"]
    bob.faults.script("451 4.3.0 try later")
    await submit(alice.ports["submission"], [BOB], message())
    assert await alice.relay.run_once() == 1
    clock.advance(3600)
    assert await alice.relay.run_once() == 1
    sessions = list(mx_sessions(trace_lines).values())
    assert len(sessions) == 2
    assert sessions[0][-2:] == ["C: QUIT", "S: 221 2.0.0 Bye"]


async def test_the_relay_traces_its_side_of_the_dialogue(lab_factory: Any, clock: FakeClock,
                                                          trace_lines) -> None:
    lab = await lab_factory(clock=clock, relay=False)
    alice = lab["alice.lab"]
    await submit(alice.ports["submission"], [BOB], message())
    assert await alice.relay.run_once() == 1
    relay = [f"{r.direction}: {r.line}" for r in trace_lines if r.listener == "relay"]
    assert all(r.step == 4 for r in trace_lines if r.listener == "relay")
    expected = ["S: 220 mx.bob.lab", "C: EHLO mx.alice.lab", "C: STARTTLS", "S: 220",
                "C: MAIL FROM:<alice@alice.lab>", "S: 250 2.1.0", "C: RCPT TO:<bob@bob.lab>",
                "C: DATA", "C: .", "S: 250 2.0.0 OK: queued as"]
    assert_in_order(relay, expected)
