"""Benchmark servers, each run in a subprocess of its own (one process, one event loop).

    python tests/bench/servers.py noop  [--profile FILE]
    python tests/bench/servers.py mx    --dir DIR [--pop3] [--http] [--fill OWNER=N ...]
                                        [--profile FILE]

The process binds 127.0.0.1 on an ephemeral port, prints one JSON line ``{"ready": ...}`` with
its ports and pid on stdout, then serves until its stdin closes (or SIGTERM), and prints one
JSON line of final figures (messages accepted, VmHWM) before exiting. The parent never shares
a GIL with the server, so the load generator cannot steal the server's CPU.

``noop`` is aiosmtpd's own ``SMTP`` class with a handler that answers ``250`` to DATA: the
library's ceiling. ``mx`` is labmail's ``mta.server.start`` with the MX listener (and POP3 when
asked) over a fresh SQLite database, logging as ``mta serve`` does (INFO to a file).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import logging
import operator
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

HOST = "127.0.0.1"
HOSTNAME = "mx.bob.lab"
DOMAIN = "bob.lab"
PASSWORD = "bench-password"
USERS = ("bob@bob.lab", "carol@bob.lab", "dave@bob.lab")


def proc_status(pid: int | str = "self") -> dict[str, int]:
    """VmRSS / VmHWM / VmPeak of a process, in bytes (Linux /proc)."""
    out: dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                key, _, rest = line.partition(":")
                if key in ("VmRSS", "VmHWM", "VmPeak"):
                    out[key] = int(rest.split()[0]) * 1024
    except OSError:
        pass
    return out


def sample_message(index: int, size: int = 2048) -> bytes:
    """A ~``size``-octet RFC 5322 message with CRLF line ends (no line starts with '.')."""
    head = (
        f"From: Alice <alice@alice.lab>\r\nTo: Bob <bob@bob.lab>\r\n"
        f"Subject: bench message {index}\r\nMessage-ID: <{index}.bench@alice.lab>\r\n"
        f"Date: Thu, 01 Jan 2026 00:00:00 +0000\r\n\r\n"
    ).encode()
    line = b"The quick brown fox jumps over the lazy dog, again and again. 0123456789\r\n"
    body = (line * (size // len(line) + 1))[: max(size - len(head), 0)]
    cut = body.rfind(b"\r\n")
    body = body[: cut + 2] if cut > 0 else body + b"\r\n"
    return head + body


class NoopHandler:
    """Accept everything, store nothing: the cost of aiosmtpd's protocol alone."""

    def __init__(self) -> None:
        self.messages = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages += 1
        return "250 OK"


async def run_noop(args: argparse.Namespace) -> dict[str, Any]:
    from aiosmtpd.smtp import SMTP

    loop = asyncio.get_running_loop()
    handler = NoopHandler()

    def factory() -> SMTP:
        return SMTP(handler, hostname=HOSTNAME, ident="noop ESMTP", loop=loop)

    server = await loop.create_server(factory, HOST, 0, reuse_address=True, backlog=1024)
    port = server.sockets[0].getsockname()[1]
    await serve_until_stdin_closes({"smtp": port})
    server.close()
    return {"messages": handler.messages}


def mx_config(
    directory: Path,
    pop3: bool,
    max_message_size: int,
    *,
    domain: str = DOMAIN,
    submission: bool = False,
    routes: dict[str, str] | None = None,
    http: bool = False,
) -> Any:
    from mta.config import from_dict

    listeners: dict[str, Any] = {"mx": {"host": HOST, "port": 0}}
    if pop3:
        listeners["pop3"] = {"host": HOST, "port": 0}
    if submission:
        listeners["submission"] = {"host": HOST, "port": 0}
    if http:
        listeners["http"] = {"host": HOST, "port": 0}
    users = USERS if domain == DOMAIN else (f"alice@{domain}",)
    data = {
            "hostname": f"mx.{domain}",
            "domains": [domain],
            "database": "bench.db",
            "listeners": listeners,
            "accounts": [{"address": a, "password": PASSWORD} for a in users],
            "postmaster": users[0],
            "allow_plaintext_auth": True,
            "routes": routes or {},
            "limits": {
                "max_connections": 1000,
                "max_message_size": max_message_size,
                "failed_auth_delay": 0.0,
            },
        }
    (directory / "bench.toml").write_text(to_toml(data))
    return from_dict(data, str(directory / "bench.toml"), directory)


def toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    return "[" + ", ".join(toml_value(x) for x in v) + "]"


def to_toml(data: dict[str, Any]) -> str:
    """The few TOML shapes a bench config uses (scalars, lists, tables, arrays of tables)."""
    value = toml_value
    lines, tables = [], []
    for key, v in data.items():
        if isinstance(v, dict):
            tables.append((key, v))
        elif isinstance(v, list) and v and isinstance(v[0], dict):
            for item in v:
                lines.append(f"[[{key}]]")
                lines += [f"{k} = {value(x)}" for k, x in item.items()]
        else:
            lines.insert(0, f"{json.dumps(key)} = {value(v)}")
    while tables:
        name, table = tables.pop(0)
        lines.append(f"[{name}]")
        for k, x in table.items():
            if isinstance(x, dict):
                tables.append((f"{name}.{json.dumps(k)}", x))
            else:
                lines.append(f"{json.dumps(k)} = {value(x)}")
    return "\n".join(lines) + "\n"


async def fill(store: Any, owner: str, count: int) -> None:
    """Put ``count`` ~2 KB messages into ``owner``'s mailbox (group-committed in batches)."""
    chunk = 2000
    for start in range(0, count, chunk):
        await asyncio.gather(
            *(
                store.deliver([owner], sample_message(i), "alice@alice.lab")
                for i in range(start, min(start + chunk, count))
            )
        )


async def run_mx(args: argparse.Namespace) -> dict[str, Any]:
    from mta.server import start

    directory = Path(args.dir)
    if args.log != "off":
        from mta.cli import setup_logging

        setup_logging(False, False)
        # setup_logging writes to sys.stderr, which the parent points at a log file
    routes = dict(item.split("=", 1) for item in args.route)
    config = mx_config(
        directory,
        args.pop3,
        args.max_message_size,
        domain=args.domain,
        submission=args.submission,
        routes=routes,
        http=args.http,
    )
    server = await start(config, shared_ports=args.workers > 1)
    pool = None
    if args.workers > 1:  # like `mta serve` with workers = N (mta.workers)
        from mta.workers import WorkerPool

        pool = WorkerPool(directory / "bench.toml", config, server.ports, args.workers - 1)
        await pool.start()
    ports = {"smtp": server.ports["mx"]}
    for name in ("submission", "http", "pop3"):
        if getattr(args, name):
            ports[name] = server.ports[name]
    deliveries: list[tuple[float, str]] = []  # (monotonic time of the commit, entry uid)
    if args.track:
        server.store.on_delivery(
            lambda d: deliveries.extend((time.monotonic(), uid) for _, uid in d.entries)
        )
    consumer, events_seen = subscriber(server.bus) if args.subscribe else (None, None)
    from mta.memory import freeze_start_up

    freeze_start_up()  # as `mta serve` does once it is up
    started = time.perf_counter()
    for item in args.fill:
        owner, _, count = item.partition("=")
        await fill(server.store, owner, int(count))
    filled = time.perf_counter() - started
    extra = {"fill_seconds": round(filled, 3)} if args.fill else {}
    await serve_until_stdin_closes(ports, extra, lambda: {"delivered": len(deliveries)})
    if consumer is not None:
        consumer.cancel()
    if pool is not None:
        await pool.close()
    stored = await server.store.count_entries()
    stats = server.store.stats
    seen = await visible_at(server.store, deliveries)
    await server.close(grace=1.0)
    out: dict[str, Any] = {"messages": stored, "commits": stats.commits, "jobs": stats.jobs}
    if args.track:
        out["deliveries"] = seen
    if events_seen is not None:
        out["events_seen"] = dict(events_seen)
    return out


async def visible_at(store: Any, deliveries: list[tuple[float, str]]) -> dict[str, float]:
    """Message-ID -> when it became visible in the mailbox."""
    seen: dict[str, float] = {}
    for when, uid in deliveries:
        entry = await store.entry_by_uid(uid)
        if entry is not None:
            raw = await store.fetch(entry.owner, entry.id)
            seen[message_id(raw)] = when
    return seen


KIND = operator.attrgetter("kind")


def subscriber(bus: Any) -> tuple[asyncio.Task[None], collections.Counter[str]]:
    """A consumer of every event on the bus, as the HTTP event stream is (issue 12): it wakes
    for an event, lets others gather for ``BATCH_SECONDS``, then counts every one by kind."""
    subscription = bus.subscribe()
    kinds: collections.Counter[str] = collections.Counter()

    from mta.http.sse import BATCH_SECONDS

    async def consume() -> None:
        with subscription:
            async for first in subscription:
                await asyncio.sleep(BATCH_SECONDS)
                kinds[first.kind] += 1
                kinds.update(map(KIND, subscription.drain()))

    return asyncio.get_running_loop().create_task(consume()), kinds


def message_id(raw: bytes) -> str:
    head = raw.split(b"\r\n\r\n", 1)[0]
    for line in head.split(b"\r\n"):
        if line[:11].lower() == b"message-id:":
            return line[11:].strip().decode("ascii", "replace")
    return ""


async def serve_until_stdin_closes(
    ports: dict[str, int], extra: dict[str, Any] | None = None, counts: Any = None
) -> None:
    loop = asyncio.get_running_loop()
    done = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, done.set)
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    emit({"ready": True, "pid": os.getpid(), "ports": ports, **(extra or {}), **proc_status()})

    async def watch_stdin() -> None:
        while True:
            line = await reader.readline()
            if not line:
                break
            if line.strip() == b"status":
                emit(proc_status())
            elif line.strip() == b"count":
                emit(counts() if counts else {})
        done.set()

    watcher = loop.create_task(watch_stdin())
    await done.wait()
    watcher.cancel()


def emit(data: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(data) + "\n")
    sys.stdout.flush()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=["noop", "mx"])
    parser.add_argument("--dir", help="folder for the database (mx)")
    parser.add_argument("--pop3", action="store_true", help="also serve POP3 over the store")
    parser.add_argument("--domain", default=DOMAIN)
    parser.add_argument("--submission", action="store_true", help="also serve submission")
    parser.add_argument("--subscribe", action="store_true", help="consume every bus event")
    parser.add_argument("--http", action="store_true", help="also serve the HTTP API")
    parser.add_argument("--route", action="append", default=[], metavar="DOMAIN=HOST:PORT")
    parser.add_argument(
        "--track",
        action="store_true",
        help="record when each delivery commits (end-to-end latency)",
    )
    parser.add_argument(
        "--fill",
        action="append",
        default=[],
        metavar="OWNER=N",
        help="pre-fill a mailbox with N ~2 KB messages",
    )
    parser.add_argument("--max-message-size", type=int, default=10 * 1024 * 1024)
    parser.add_argument("--workers", type=int, default=1, help="mx: processes on the port")
    parser.add_argument("--log", choices=["info", "off"], default="info")
    parser.add_argument("--loop", choices=["asyncio", "uvloop"], default="asyncio")
    parser.add_argument("--profile", help="write a cProfile of the whole run to this file")
    args = parser.parse_args()
    logging.getLogger("mail.log").setLevel(logging.WARNING)
    runner = run_noop if args.kind == "noop" else run_mx
    if args.loop == "uvloop":
        import uvloop  # optional: evaluated only, not a dependency

        uvloop.install()
    if args.profile:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
        result = asyncio.run(runner(args))
        profiler.disable()
        profiler.dump_stats(args.profile)
    else:
        result = asyncio.run(runner(args))
    emit({"final": True, **result, **proc_status()})


if __name__ == "__main__":
    main()
