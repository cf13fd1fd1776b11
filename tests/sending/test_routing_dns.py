"""Step 4's next hop found by DNS: a real dnsmasq on loopback, dnspython pointed at it."""

from __future__ import annotations

import asyncio
import shutil
import socket
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import pytest
from sending_helpers import mailbox, message, submit

from mta.clock import FakeClock
from mta.config import Config
from mta.lab import Lab
from mta.relay import RelayWorker
from mta.routing import Hop, RouteError, Router

ALICE = "alice@alice.test"
ALICE_PW = "alice-lab-password"

RECORDS = [
    "--local=/test/",                      # answer *.test from here: unknown names NXDOMAIN
    "--mx-host=bob.test,mx1.bob.test,10",  # lowest preference first ...
    "--mx-host=bob.test,mx2.bob.test,20",  # ... then the next
    "--host-record=mx1.bob.test,127.0.0.2",  # nothing listens there: refused
    "--host-record=mx2.bob.test,127.0.0.1",
    "--host-record=arec.test,127.0.0.1",   # no MX: the A record is the implicit MX
    "--dns-rr=null.test,15,000000",        # RFC 7505 null MX: preference 0, exchange "."
]


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def _start_dnsmasq(binary: str) -> tuple[asyncio.subprocess.Process, int, str]:
    """One try at starting dnsmasq: (process or exited process, port, its last words)."""
    port, dead = free_udp_port(), free_udp_port()
    process = await asyncio.create_subprocess_exec(
        binary, "--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv", "--no-hosts",
        f"--port={port}", "--listen-address=127.0.0.1", "--bind-interfaces",
        "--log-facility=-", "--user=", *RECORDS,
        # servfail.test is forwarded to a server that never answers: the lookup times out
        f"--server=/servfail.test/127.0.0.1#{dead}",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    assert process.stderr is not None
    said = ""
    async with asyncio.timeout(10):
        while True:  # bounded by the timeout: wait for "started", or the exit
            line = (await process.stderr.readline()).decode(errors="replace")
            said += line
            if not line or "started" in line:
                break
    if not line:
        await process.wait()
    return process, port, said


@pytest.fixture
async def dnsmasq(need_tool) -> AsyncIterator[int]:
    """dnsmasq on 127.0.0.1:<random port>; yields the port, killed at teardown."""
    binary = shutil.which("dnsmasq") or "/usr/sbin/dnsmasq"
    need_tool(shutil.which(binary) is not None,
              "dnsmasq is not installed (Debian package dnsmasq-base)")
    for _ in range(3):  # the port was free when chosen; someone may take it before dnsmasq
        process, port, said = await _start_dnsmasq(binary)
        if process.returncode is None:
            break
    else:
        pytest.fail(f"dnsmasq exited {process.returncode}: {said.strip()}")
    assert process.stderr is not None
    drain = asyncio.ensure_future(process.stderr.read())
    try:
        yield port
    finally:
        process.kill()
        await process.wait()
        drain.cancel()


def with_arec(config: Config) -> Config:
    if config.domains == ("bob.test",):  # bob's server also serves arec.test
        return replace(config, domains=("bob.test", "arec.test"))
    return config


@pytest.fixture
async def dns_lab(lab_factory: Any, clock: FakeClock) -> Lab:
    return await lab_factory({"alice.test": ["alice"], "bob.test": ["bob", "ann@arec.test"]},
                             clock=clock, relay=False, configure=with_arec)


def dns_worker(lab: Lab, dns_port: int) -> RelayWorker:
    """alice.test's relay worker with no static routes: DNS decides, port = bob's MX."""
    alice = lab["alice.test"]
    relay = replace(alice.config.relay, nameservers=(f"127.0.0.1:{dns_port}",),
                    port=lab["bob.test"].ports["mx"], dns_timeout=1.0)
    config = replace(alice.config, routes={}, relay=relay)
    return RelayWorker(config, alice.store, lab.clock)


async def test_mx_lowest_preference_first_then_the_next(dns_lab: Lab, dnsmasq: int) -> None:
    worker = dns_worker(dns_lab, dnsmasq)
    port = dns_lab["bob.test"].ports["mx"]
    hops = await worker.router.route("bob.test")
    assert hops == [Hop("127.0.0.2", port, "mx1.bob.test", 10),
                    Hop("127.0.0.1", port, "mx2.bob.test", 20)]
    await submit(dns_lab["alice.test"].ports["submission"], ["bob@bob.test"],
                 message(sender=ALICE, to="bob@bob.test"), user=ALICE, password=ALICE_PW)
    assert await worker.run_once() == 1  # mx1 refuses the connection, mx2 takes it
    [row] = await dns_lab["alice.test"].store.queue_rows(include_final=True)
    assert (row.state, row.attempts) == ("delivered", 1)
    assert await dns_lab["bob.test"].store.count_entries("bob@bob.test") == 1


async def test_no_mx_uses_the_a_record(dns_lab: Lab, dnsmasq: int) -> None:
    worker = dns_worker(dns_lab, dnsmasq)
    port = dns_lab["bob.test"].ports["mx"]
    assert await worker.router.route("arec.test") == [Hop("127.0.0.1", port, "arec.test")]
    await submit(dns_lab["alice.test"].ports["submission"], ["ann@arec.test"],
                 message(sender=ALICE, to="ann@arec.test"), user=ALICE, password=ALICE_PW)
    assert await worker.run_once() == 1
    assert await dns_lab["bob.test"].store.count_entries("ann@arec.test") == 1


@pytest.mark.parametrize(("domain", "status", "text"), [
    ("nx.test", "5.1.2", "NXDOMAIN"),
    ("null.test", "5.1.10", "null MX"),
])
async def test_nxdomain_and_null_mx_bounce_at_once(dns_lab: Lab, dnsmasq: int, domain: str,
                                                   status: str, text: str) -> None:
    worker = dns_worker(dns_lab, dnsmasq)
    with pytest.raises(RouteError) as info:
        await worker.router.route(domain)
    assert info.value.permanent and info.value.status == status
    alice = dns_lab["alice.test"]
    await submit(alice.ports["submission"], [f"someone@{domain}"],
                 message(sender=ALICE, to=f"someone@{domain}"), user=ALICE, password=ALICE_PW)
    assert await worker.run_once() == 1
    [row] = await alice.store.queue_rows(include_final=True)
    assert (row.state, row.attempts) == ("failed", 1)
    [bounce] = await mailbox(alice.store, ALICE)
    assert f"Status: {status}".encode() in bounce
    assert f"someone@{domain}".encode() in bounce and text.encode() in bounce


async def test_servfail_or_timeout_is_retried(dns_lab: Lab, dnsmasq: int,
                                              clock: FakeClock) -> None:
    worker = dns_worker(dns_lab, dnsmasq)
    alice = dns_lab["alice.test"]
    await submit(alice.ports["submission"], ["someone@servfail.test"],
                 message(sender=ALICE, to="someone@servfail.test"), user=ALICE,
                 password=ALICE_PW)
    assert await worker.run_once() == 1
    [row] = await alice.store.queue_rows()
    assert (row.state, row.attempts) == ("queued", 1)
    assert row.next_attempt == clock.now() + alice.config.queue.retry_initial
    assert "DNS" in (row.last_reply or "")
    assert await alice.store.count_entries() == 0  # no DSN


async def test_static_route_wins_over_dns(dns_lab: Lab) -> None:
    # no DNS server listens on the configured nameserver: a static route must not ask it
    worker = dns_worker(dns_lab, free_udp_port())
    config = replace(worker.config, routes={"bob.test": ("relay.example", 2525),
                                            "*": ("smarthost.example", 25)})
    router = Router(config)
    assert await router.route("BOB.test") == [Hop("relay.example", 2525, "relay.example")]
    assert await router.route("nx.test") == [Hop("smarthost.example", 25, "smarthost.example")]
