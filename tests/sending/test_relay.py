"""Step 4: the queue and the relay worker, driven with a fake clock and ``run_once``."""

from __future__ import annotations

import asyncio
import socket
import ssl
from dataclasses import replace
from typing import Any

from aiosmtpd.smtp import SMTP
from sending_helpers import ALICE, BOB, body_of, headers_named, mailbox, message, parse, submit

from mta import dsn, retry_policy
from mta.clock import FakeClock
from mta.config import TLS, Queue
from mta.lab import Lab
from mta.retry_policy import AttemptKind, Decision
from mta.store import QueueRow, QueueState

SLOW = Queue(retry_initial=60.0, retry_factor=3.0, retry_max=300.0, lifetime=3600.0)


def closed_port() -> int:
    """A loopback port nobody listens on (connections are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def report_fields(raw: bytes) -> dict[str, str]:
    """The message/delivery-status fields of a DSN (per-recipient blocks merged)."""
    msg = parse(raw)
    assert msg.get_content_type() == "multipart/report"
    assert msg.get_param("report-type") == "delivery-status"
    part = next(p for p in msg.iter_parts() if p.get_content_type() == "message/delivery-status")
    text = part.as_bytes().decode()
    text = text.split("\n\n", 1)[1] if text.startswith("Content-Type") else text
    fields: dict[str, str] = {}
    for line in text.replace("\r\n", "\n").split("\n"):
        name, sep, value = line.partition(":")
        if sep and not line.startswith((" ", "\t")):
            fields.setdefault(name.strip(), value.strip())
    return fields


async def only_row(lab: Lab, domain: str = "alice.lab") -> QueueRow:
    [row] = await lab[domain].store.queue_rows(include_final=True)
    return row


async def test_451_451_250_delivered_on_the_third_attempt(lab_factory: Any,
                                                          clock: FakeClock) -> None:
    lab = await lab_factory(clock=clock, relay=False, queue=SLOW)
    alice, bob = lab["alice.lab"], lab["bob.lab"]
    bob.faults.script("451 4.3.0 try later", "451 4.3.0 try later")
    await submit(alice.ports["submission"], [BOB], message())
    t0 = clock.now()

    assert await alice.relay.run_once() == 1
    row = await only_row(lab)
    assert (row.state, row.attempts, row.next_attempt) == ("queued", 1, t0 + 60)
    assert row.last_reply == "451 4.3.0 try later"
    assert await alice.relay.run_once() == 0  # not due yet
    clock.advance(59.9)
    assert await alice.relay.run_once() == 0

    clock.set(t0 + 60)
    assert await alice.relay.run_once() == 1
    row = await only_row(lab)
    assert (row.state, row.attempts, row.next_attempt) == ("queued", 2, t0 + 60 + 180)

    clock.set(row.next_attempt)
    assert await alice.relay.run_once() == 1
    row = await only_row(lab)
    assert (row.state, row.attempts) == ("delivered", 3)
    assert row.last_reply.startswith("250 2.0.0")
    assert await bob.store.count_entries(BOB) == 1
    assert await alice.store.count_entries(ALICE) == 0  # no DSN
    assert await alice.store.queued_message(row.queue_id) is None  # body dropped when final


def test_backoff_policy_is_initial_times_factor_capped() -> None:
    delays = [retry_policy.retry_delay(SLOW, n) for n in range(1, 6)]
    assert delays == [60, 180, 300, 300, 300]
    row = QueueRow(1, "Q", ALICE, BOB, "bob.lab", QueueState.QUEUED, 0, 0.0, None, 1000.0)
    decide, temporary = retry_policy.decide, AttemptKind.TEMPORARY
    assert decide(SLOW, row, temporary, 1000.0) == Decision(QueueState.QUEUED, 1060.0)
    late = replace(row, attempts=7)
    assert decide(SLOW, late, temporary, 4500.0).next_attempt == 4600.0  # lifetime end
    assert decide(SLOW, late, temporary, 4600.0) == Decision(QueueState.FAILED, 4600.0,
                                                             expired=True)
    assert decide(SLOW, row, AttemptKind.PERMANENT, 1001.0).state is QueueState.FAILED


async def test_550_bounces_one_dsn_to_the_local_sender(manual_lab: Lab) -> None:
    alice = manual_lab["alice.lab"]
    raw = message(to="nobody@bob.lab, bob@bob.lab")
    await submit(alice.ports["submission"], ["nobody@bob.lab", BOB], raw)
    assert await alice.relay.run_once() == 2
    rows = {r.recipient: r for r in await alice.store.queue_rows(include_final=True)}
    assert rows[BOB].state == "delivered"
    assert rows["nobody@bob.lab"].state == "failed"
    assert await alice.relay.run_once() == 0
    [bounce] = await mailbox(alice.store, ALICE)
    assert bounce.startswith(b"Return-Path: <>\r\n")
    msg = parse(bounce)
    assert msg["From"] == "Mail Delivery System <MAILER-DAEMON@alice.lab>"
    fields = report_fields(bounce)
    assert fields["Final-Recipient"] == "rfc822; nobody@bob.lab"
    assert fields["Action"] == "failed"
    assert fields["Status"] == "5.1.1"
    assert fields["Diagnostic-Code"] == "smtp; 550 5.1.1 <nobody@bob.lab>: no such user here"
    assert fields["Remote-MTA"] == "dns; 127.0.0.1"
    assert "bob@bob.lab" not in fields.values()  # only the failed recipient is reported
    headers = next(p for p in msg.iter_parts()
                   if p.get_content_type() == "text/rfc822-headers")
    assert b"Subject: hello" in headers.get_payload(decode=True)
    assert b"Hello Bob" not in bounce  # headers only, not the body
    assert await manual_lab["bob.lab"].store.count_entries(BOB) == 1


async def test_550_at_end_of_data_bounces_every_recipient(manual_lab: Lab) -> None:
    alice, bob = manual_lab["alice.lab"], manual_lab["bob.lab"]
    bob.faults.script("554 5.7.1 message refused by policy")
    await submit(alice.ports["submission"], [BOB], message())
    await alice.relay.run_once()
    [bounce] = await mailbox(alice.store, ALICE)
    fields = report_fields(bounce)
    assert fields["Diagnostic-Code"] == "smtp; 554 5.7.1 message refused by policy"
    assert fields["Status"] == "5.7.1"


async def test_null_sender_failure_makes_no_dsn(manual_lab: Lab, clock: FakeClock) -> None:
    alice = manual_lab["alice.lab"]
    await alice.store.enqueue("", message(sender="MAILER-DAEMON@alice.lab"),
                              ["nobody@bob.lab"], now=clock.now())
    assert await alice.relay.run_once() == 1
    row = await only_row(manual_lab)
    assert row.state == "failed" and row.last_reply.startswith("550 5.1.1")
    assert await alice.store.count_entries() == 0  # no mailbox got a DSN
    assert await alice.store.count_queue() == 1     # and none was queued


async def test_next_hop_down_until_the_lifetime_ends(lab_factory: Any, clock: FakeClock) -> None:
    lab = await lab_factory(clock=clock, relay=False, queue=SLOW,
                            routes={"bob.lab": ("127.0.0.1", closed_port())})
    alice = lab["alice.lab"]
    await submit(alice.ports["submission"], [BOB], message())
    created = clock.now()
    times = []
    for _ in range(50):  # bounded
        times.append(clock.now() - created)
        assert await alice.relay.run_once() == 1
        row = await only_row(lab)
        if row.state != "queued":
            break
        clock.set(row.next_attempt)
    assert times == [0, 60, 240, 540, 840, 1140, 1440, 1740, 2040, 2340, 2640, 2940, 3240,
                     3540, 3600]
    assert (row.state, row.attempts) == ("failed", len(times))
    assert await alice.relay.run_once() == 0  # final: never tried again
    clock.advance(10 * 3600)
    assert await alice.relay.run_once() == 0
    [bounce] = await mailbox(alice.store, ALICE)
    fields = report_fields(bounce)
    assert fields["Action"] == "failed"
    assert fields["Status"] == "4.4.7"
    assert fields["Diagnostic-Code"].startswith("X-labmail; connect to 127.0.0.1")


async def test_dsn_to_a_remote_sender_is_queued_and_relayed(lab_factory: Any,
                                                            clock: FakeClock) -> None:
    lab = await lab_factory({"alice.lab": ["alice"], "bob.lab": ["bob"],
                             "carol.lab": ["carol"]}, clock=clock, relay=False)
    alice = lab["alice.lab"]
    # as if alice.lab were carol's smarthost (submission itself only takes own addresses)
    await alice.store.enqueue("carol@carol.lab", message(sender="carol@carol.lab"),
                              ["nobody@bob.lab"], now=clock.now())
    assert await alice.relay.run_once() == 1  # 550, DSN queued for carol
    rows = await alice.store.queue_rows()
    assert [(r.sender, r.recipient) for r in rows] == [("", "carol@carol.lab")]
    assert await alice.relay.run_once() == 1  # the DSN itself
    [bounce] = await mailbox(lab["carol.lab"].store, "carol@carol.lab")
    assert bounce.startswith(b"Return-Path: <>\r\n")
    assert report_fields(bounce)["Final-Recipient"] == "rfc822; nobody@bob.lab"


async def test_recipients_of_one_domain_share_one_transaction(lab_factory: Any,
                                                              clock: FakeClock) -> None:
    lab = await lab_factory({"alice.lab": ["alice"], "bob.lab": ["bob", "bert"]},
                            clock=clock, relay=False)
    alice, bob = lab["alice.lab"], lab["bob.lab"]
    raw = message()
    await submit(alice.ports["submission"], [BOB, "bert@bob.lab"], raw)
    assert await alice.relay.run_once() == 2
    [to_bob] = await bob.store.list_entries(BOB)
    [to_bert] = await bob.store.list_entries("bert@bob.lab")
    assert to_bob.queue_id == to_bert.queue_id  # one SMTP transaction at bob's MX
    stored = await bob.store.fetch(BOB, to_bob.id)
    assert body_of(stored) == body_of(raw)
    assert "for <" not in headers_named(stored, "Received")[0]  # two recipients


async def test_worker_started_later_resumes_the_queue(manual_lab: Lab, clock: FakeClock) -> None:
    alice = manual_lab["alice.lab"]
    await submit(alice.ports["submission"], [BOB], message())
    assert not alice.relay.running
    alice.relay.start()
    await manual_lab.wait_for_delivery(BOB, 1, timeout=10)
    await manual_lab.wait_for_queue_empty("alice.lab")


async def test_new_mail_wakes_the_worker_at_once(lab_factory: Any) -> None:
    idle = Queue(retry_initial=1, retry_factor=2, retry_max=10, lifetime=60, idle_recheck=600)
    lab = await lab_factory(queue=idle)
    alice = lab["alice.lab"]
    runs = alice.relay.runs
    await submit(alice.ports["submission"], [BOB], message())
    await lab.wait_for_delivery(BOB, 1, timeout=5)  # far less than the 600 s recheck
    assert alice.relay.runs > runs


async def test_relay_uses_opportunistic_tls(manual_lab: Lab) -> None:
    alice, bob = manual_lab["alice.lab"], manual_lab["bob.lab"]
    await submit(alice.ports["submission"], [BOB], message())
    await alice.relay.run_once()
    [stored] = await mailbox(bob.store, BOB)
    received = headers_named(stored, "Received")
    assert "from mx.alice.lab" in received[0] and "with ESMTPS " in received[0]


async def test_verified_tls_defers_an_untrusted_next_hop(lab_factory: Any,
                                                         clock: FakeClock) -> None:
    def verify(config: Any) -> Any:
        return replace(config, relay=replace(config.relay, verify_tls=True))

    lab = await lab_factory(clock=clock, relay=False, configure=verify)
    alice = lab["alice.lab"]
    await submit(alice.ports["submission"], [BOB], message())
    await alice.relay.run_once()
    row = await only_row(lab)
    assert (row.state, row.attempts) == ("queued", 1)
    assert "TLS with" in row.last_reply and "CERTIFICATE_VERIFY_FAILED" in row.last_reply
    assert await lab["bob.lab"].store.count_entries(BOB) == 0


class _BrokenTLS(SMTP):
    """Offers STARTTLS, then cannot do it (a real misconfiguration)."""

    async def smtp_STARTTLS(self, arg: str) -> None:
        await self.push("454 4.7.0 TLS not available due to temporary reason")


class _Recorder:
    def __init__(self) -> None:
        self.got: list[tuple[str, list[str], bytes, bool]] = []
        self.arrived = asyncio.Event()

    async def handle_DATA(self, server: SMTP, session: Any, envelope: Any) -> str:
        self.got.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content,
                         session.ssl is not None))
        self.arrived.set()
        return "250 2.0.0 OK"


async def test_failed_starttls_falls_back_to_plain_text(lab_factory: Any, clock: FakeClock,
                                                        ca: Any) -> None:
    loop = asyncio.get_running_loop()
    recorder = _Recorder()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    server = await loop.create_server(
        lambda: _BrokenTLS(recorder, tls_context=context, decode_data=False), "127.0.0.1", 0)
    try:
        port = server.sockets[0].getsockname()[1]
        lab = await lab_factory(clock=clock, relay=False,
                                routes={"elsewhere.example": ("127.0.0.1", port)})
        alice = lab["alice.lab"]
        raw = message(to="someone@elsewhere.example")
        await submit(alice.ports["submission"], ["someone@elsewhere.example"], raw)
        await alice.relay.run_once()
        assert (await only_row(lab)).state == "delivered"
        [(sender, rcpts, content, tls)] = recorder.got
        assert (sender, rcpts, tls) == (ALICE, ["someone@elsewhere.example"], False)
        assert body_of(content) == body_of(raw)
    finally:
        server.close()
        await server.wait_closed()


def test_status_of_replies() -> None:
    assert dsn.status_of("550 5.1.1 no such user") == "5.1.1"
    assert dsn.status_of("550 no such user") == "5.0.0"
    assert dsn.status_of("451 4.3.0 later") == "4.3.0"
    assert dsn.status_of("550 4.3.0 inconsistent") == "5.0.0"


async def test_verified_tls_with_a_configured_ca_file(lab_factory: Any, clock: FakeClock,
                                                      ca: Any, cert_files: Any,
                                                      tmp_path: Any) -> None:
    cert, key = cert_files
    ca.cert_pem.write_to_path(tmp_path / "ca.pem")

    def configure(config: Any) -> Any:
        if config.domains == ("bob.lab",):  # bob's MX presents a certificate from the CA
            return replace(config, tls=TLS("files", cert, key))
        return replace(config, relay=replace(config.relay, verify_tls=True,
                                             ca_file=str(tmp_path / "ca.pem")))

    lab = await lab_factory(clock=clock, relay=False, configure=configure)
    alice = lab["alice.lab"]
    await submit(alice.ports["submission"], [BOB], message())
    await alice.relay.run_once()
    row = await only_row(lab)
    assert (row.state, row.attempts) == ("delivered", 1), row.last_reply
    (entry,) = await lab["bob.lab"].store.list_entries(BOB)
    raw = await lab["bob.lab"].store.fetch(BOB, entry.id)
    assert b"with ESMTPS id" in raw


async def test_the_lab_routes_the_relay_without_replacing_the_servers_config(
        manual_lab: Lab) -> None:
    alice, bob = manual_lab["alice.lab"], manual_lab["bob.lab"]
    route = ("127.0.0.1", bob.ports["mx"])
    assert alice.relay.config.routes == {"bob.lab": route}
    assert alice.config.routes == {"bob.lab": route}  # the lab's view: the relay's config
    # the listeners' handlers keep the config they started with; nothing replaced it
    assert alice.server.config.routes == {}
    assert alice.server.config.listeners.mx is not None
    assert alice.server.config.listeners.mx.port == 0
    assert alice.ports["mx"] == alice.server.listeners["mx"].port != 0


async def test_mail_queued_while_an_attempt_hangs_goes_out_at_once(lab_factory: Any) -> None:
    """The worker's loop does not wait for earlier attempts: a next hop that greets and then
    says nothing holds its own message, not the ones queued after it."""
    loop = asyncio.get_running_loop()
    greeted = asyncio.Event()
    held: list[asyncio.BaseTransport] = []

    class Silent(asyncio.Protocol):
        def connection_made(self, transport: Any) -> None:
            transport.write(b"220 slow.example ESMTP\r\n")
            held.append(transport)
            greeted.set()

    server = await loop.create_server(Silent, "127.0.0.1", 0)
    try:
        port = server.sockets[0].getsockname()[1]
        lab = await lab_factory(routes={"slow.example": ("127.0.0.1", port)})
        alice = lab["alice.lab"]
        await submit(alice.ports["submission"], ["someone@slow.example"], message(
            to="someone@slow.example"))
        await asyncio.wait_for(greeted.wait(), 5)
        await submit(alice.ports["submission"], [BOB], message())
        await lab.wait_for_delivery(BOB, 1, timeout=5)  # the EHLO to slow.example still waits
        assert alice.relay.busy
        [slow] = [r for r in await alice.store.queue_rows() if r.domain == "slow.example"]
        assert slow.attempts == 0
    finally:
        for transport in held:  # the hanging attempt ends (deferred) before the lab closes
            transport.close()
        server.close()
