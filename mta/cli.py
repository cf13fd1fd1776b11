"""The ``mta`` command: run one domain's server and look after its accounts and mail.

``mta serve`` runs every listener the config names (steps 3, 4, 5) and refuses to start on a
database it cannot write; ``mta check`` is the container health check (greetings, a writable
database); the account and mailbox commands inspect the store without a mail
client. Every command takes ``--config FILE``. Errors print one line and exit non-zero.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import logging
import os
import signal
import sqlite3
import ssl
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any

from mta import config as config_mod
from mta import memory, workers
from mta import server as server_mod
from mta.addresses import normalise
from mta.config import IMPLICIT_TLS, Config, ConfigError
from mta.store import (
    Entry,
    MaildropLocked,
    Store,
    StoreError,
    check_writable,
    format_rows,
    why_not_writable,
)

log = logging.getLogger("labmail")

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2
# what the shell reports for a program that SIGPIPE ended (``mta ... | head``)
EXIT_BROKEN_PIPE = 128 + signal.SIGPIPE

class CommandError(Exception):
    """A failure to report to the user in one line (exit 1)."""


# -- logging ------------------------------------------------------------------------------------


class TraceFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        if hasattr(record, "direction"):
            arrow = "C:" if record.direction == "C" else "S:"
            stamp = time.strftime("%H:%M:%S", time.localtime(record.created))
            return (f"{stamp} step{record.step} {record.component:<10} {record.peer:<21} "
                    f"{arrow} {record.line}")
        return super().format(record)


def setup_logging(verbose: bool, trace: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(TraceFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("labmail")
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    root.propagate = False
    logging.getLogger("labmail.trace").setLevel(logging.DEBUG if trace else logging.WARNING)
    # aiosmtpd logs every line at INFO on "mail.log"; labmail's own trace replaces it.
    logging.getLogger("mail.log").setLevel(logging.WARNING)


# -- serve ---------------------------------------------------------------------------------------


async def _serve(config: Config, config_path: Path, worker: bool,
                 forward_events: bool = False) -> None:
    stop = asyncio.Event()
    if worker:  # one of mta.workers' processes: MX and POP3 on the shared ports
        server = await server_mod.start(config, relay=False, shared_ports=True,
                                        write_accounts=False, http=False)
    else:
        workers.check_supported(config)
        server = await server_mod.start(config, shared_ports=config.workers > 1)
    # From here on every exit path closes the server and its store: aiosqlite's threads
    # would otherwise keep the process alive in interpreter shutdown, holding its sockets.
    pool = None
    try:
        if worker:
            await workers.watch_parent(stop)
            print(workers.READY, flush=True)  # fails if the first process is gone already
            if forward_events:  # after READY: from here on standard output carries events
                await workers.forward_events(server.bus)
        else:
            pool = await _announce_and_start_workers(config, config_path, server)
        memory.freeze_start_up()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, stop.set)
            except (NotImplementedError, AttributeError, ValueError):  # Windows
                pass
        await stop.wait()
    finally:
        log.info("shutting down")
        try:
            if pool is not None:
                await pool.close()
        finally:
            await server.close()


async def _announce_and_start_workers(config: Config, config_path: Path,
                                      server: server_mod.Server) -> workers.WorkerPool | None:
    """Print the bound ports; with ``workers > 1`` start the other processes."""
    for name, port in server.ports.items():
        listener = getattr(config.listeners, name)
        print(f"mta: {config.hostname} {name} listening on {listener.host}:{port}", flush=True)
    if config.workers < 2 or not (set(workers.SHARED) & server.ports.keys()):
        return None
    pool = workers.WorkerPool(config_path, config, server.ports, config.workers - 1,
                              bus=server.bus)
    try:
        await pool.start()
    except BaseException:
        await pool.close()
        raise
    print(f"mta: {config.hostname} {pool.count} more worker process(es) on the "
          "MX and POP3 ports", flush=True)
    return pool


def refuse_public_http(config: Config) -> None:
    """The HTTP API reachable from other machines needs a token (ConfigError: exit 2)."""
    http = config.listeners.http
    if http is not None and http.token is None and not http.loopback:
        raise ConfigError(f"{config.source}: the HTTP listener on {http.host}:{http.port} is "
                          "not loopback-only: set [listeners.http] token (or "
                          "LABMAIL_LISTENERS_HTTP_TOKEN), or bind 127.0.0.1")


def cmd_serve(args: argparse.Namespace, config: Config) -> int:
    refuse_public_http(config)
    setup_logging(args.verbose, args.trace)
    try:
        asyncio.run(_serve(config, args.config_path, args.worker, args.forward_events))
    except KeyboardInterrupt:
        pass
    except OSError as exc:
        raise CommandError(f"cannot listen: {exc.strerror or exc}") from None
    except RuntimeError as exc:  # a worker process that would not start
        raise CommandError(str(exc)) from None
    except StoreError as exc:  # e.g. a database it cannot write: nothing to serve
        print(f"mta: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return EXIT_OK


# -- check ---------------------------------------------------------------------------------------


async def _greeting(host: str, port: int, timeout: float, tls: bool = False) -> str:
    context = None
    if tls:  # implicit TLS (RFC 8314): a health check asks for liveness, not identity
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection(host, port, ssl=context), timeout)
    try:
        line = await asyncio.wait_for(reader.readline(), timeout)
        return line.decode("utf-8", "replace").strip()
    finally:
        writer.close()


def _healthz(host: str, port: int, timeout: float) -> str:
    """``GET /healthz`` of the HTTP listener: "200 ok" when it and its store answer."""
    url = f"http://{'[' + host + ']' if ':' in host else host}:{port}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            status = json.loads(response.read(4096)).get("status")
            return f"{response.status} {status}"
    except urllib.error.HTTPError as exc:
        return f"{exc.code} {exc.reason}"
    except (OSError, ValueError) as exc:
        return f"no answer ({exc.__class__.__name__}: {exc})"


def cmd_check(args: argparse.Namespace, config: Config) -> int:
    expected = {"mx": "220", "submission": "220", "submissions": "220", "pop3": "+OK",
                "pop3s": "+OK", "http": "200 ok"}
    failures = 0
    checked = 0
    for name, want in expected.items():
        listener = getattr(config.listeners, name)
        if listener is None:
            continue
        checked += 1
        host = "127.0.0.1" if listener.host in ("0.0.0.0", "", "::") else listener.host
        if name == "http":
            greeting = _healthz(host, listener.port, args.timeout)
        else:
            try:
                greeting = asyncio.run(_greeting(host, listener.port, args.timeout,
                                                 tls=name in IMPLICIT_TLS))
            except (OSError, TimeoutError, ssl.SSLError) as exc:
                greeting = f"no answer ({exc.__class__.__name__}: {exc})"
        ok = greeting.startswith(want)
        failures += not ok
        print(f"{name:<10} {host}:{listener.port}  {'ok' if ok else 'FAIL'}  {greeting}")
    if not checked:
        raise CommandError("the config names no listener to check")
    ok, text = _store_health(config.database, args.timeout)
    failures += not ok
    print(f"{'store':<11} {config.database}  {'ok' if ok else 'FAIL'}  {text}")
    return EXIT_OK if not failures else EXIT_FAIL


def _store_health(path: Path, timeout: float) -> tuple[bool, str]:
    """Whether the database can be written (a server that cannot answers 451 to all)."""
    if not path.exists():
        return True, "not created yet"
    reason = why_not_writable(path)
    try:
        conn = sqlite3.connect(path, timeout=timeout, isolation_level=None)
        try:
            check_writable(conn)
        finally:
            conn.close()
    except sqlite3.Error as exc:
        return False, f"cannot write: {exc}" + (f" ({reason})" if reason else "")
    return True, "writable"


# -- accounts ------------------------------------------------------------------------------------


def _read_password(prompt: str) -> str:
    if sys.stdin.isatty():
        first = getpass.getpass(prompt)
        if getpass.getpass("again: ") != first:
            raise CommandError("the two passwords differ")
        password = first
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        raise CommandError("empty password")
    return password


def _local_address(config: Config, address: str) -> str:
    address = normalise(address)
    local, at, domain = address.rpartition("@")
    if not at or not local or domain not in config.domains:
        raise CommandError(f"{address!r} is not an address in {', '.join(config.domains)}")
    return address


async def _with_store(config: Config, fn: Callable[[Store], Any]) -> Any:
    store = await Store.open(config.database)
    try:
        return await fn(store)
    finally:
        await store.close()


def cmd_adduser(args: argparse.Namespace, config: Config) -> int:
    address = _local_address(config, args.address)

    async def run(store: Store) -> None:
        if await store.has_account(address):
            raise CommandError(f"{address} exists already (use 'mta passwd')")
        await store.set_account(address, _read_password(f"password for {address}: "))

    asyncio.run(_with_store(config, run))
    print(f"added {address}")
    return EXIT_OK


def cmd_passwd(args: argparse.Namespace, config: Config) -> int:
    address = _local_address(config, args.address)

    async def run(store: Store) -> None:
        if not await store.has_account(address):
            raise CommandError(f"no account {address}")
        await store.set_account(address, _read_password(f"new password for {address}: "))

    asyncio.run(_with_store(config, run))
    print(f"password changed for {address}")
    return EXIT_OK


def cmd_deluser(args: argparse.Namespace, config: Config) -> int:
    address = _local_address(config, args.address)

    async def run(store: Store) -> bool:
        return await store.delete_account(address)

    if not asyncio.run(_with_store(config, run)):
        raise CommandError(f"no account {address}")
    print(f"deleted {address} and its mailbox")
    return EXIT_OK


def cmd_users(args: argparse.Namespace, config: Config) -> int:
    async def run(store: Store) -> list[tuple[str, int]]:
        return [(a, await store.count_entries(a)) for a in await store.accounts()]

    for address, count in asyncio.run(_with_store(config, run)):
        print(f"{address}  {count} message{'s' if count != 1 else ''}")
    return EXIT_OK


# -- mailbox -------------------------------------------------------------------------------------


async def _purge(store: Store, address: str) -> int:
    try:  # RFC 1939 8: not while a POP3 session holds the maildrop
        return await store.delete_unless_locked(address, None)
    except MaildropLocked:
        raise CommandError(f"{address}: a POP3 session holds the maildrop; try again when it "
                           "ends") from None


def _print_entries(address: str, entries: list[Entry]) -> None:
    print(f"{'#':>4}  {'uidl':<32}  {'received':<19}  {'size':>8}  {'id':<12}  sender")
    for n, entry in enumerate(entries, 1):
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(entry.received))
        print(f"{n:>4}  {entry.uid:<32}  {when}  {entry.size:>8}  {entry.queue_id:<12}  "
              f"<{entry.sender}>")
    print(f"{len(entries)} message(s) for {address}")


def _print_message(raw: bytes, as_stored: bool) -> None:
    if as_stored:
        sys.stdout.buffer.write(raw)
        return
    msg = message_from_bytes(raw, policy=policy.default)
    for name in ("Return-Path", "Date", "From", "To", "Subject", "Message-ID"):
        if msg[name] is not None:
            print(f"{name}: {msg[name]}")
    body = msg.get_body(preferencelist=("plain", "html"))
    print()
    print(body.get_content() if body is not None else "(no text part)")


def cmd_mailbox(args: argparse.Namespace, config: Config) -> int:
    address = normalise(args.address)

    async def run(store: Store) -> Any:
        if args.action == "list":
            return await store.list_entries(address)
        if args.action == "purge":
            return await _purge(store, address)
        entries = await store.list_entries(address)
        if not 1 <= args.number <= len(entries):
            raise CommandError(f"{address} has no message {args.number} "
                               f"({len(entries)} in the mailbox)")
        return await store.fetch(address, entries[args.number - 1].id)

    result = asyncio.run(_with_store(config, run))
    if args.action == "list":
        _print_entries(address, result)
    elif args.action == "purge":
        print(f"deleted {result} message(s) from {address}")
    else:
        _print_message(result, args.raw)
    return EXIT_OK


# -- queue ---------------------------------------------------------------------------------------


def cmd_queue(args: argparse.Namespace, config: Config) -> int:
    """``mta queue list|flush|delete``: the outbound queue, read and changed through the store.

    A running server sees a flush within ``queue.idle_recheck`` seconds (it is another process).
    """
    async def run(store: Store) -> Any:
        if args.action == "list":
            return await store.queue_rows(include_final=args.all)
        if args.action == "flush":
            return await store.flush_queue(time.time())
        ident = args.id.strip()
        if not ident or not ident.isalnum():
            raise CommandError(f"{args.id!r} is not a queue row number or queue id")
        return await store.delete_queued(ident)

    result = asyncio.run(_with_store(config, run))
    if args.action == "list":
        for line in format_rows(result):
            print(line)
        print(f"{len(result)} row(s){'' if args.all else ' queued'}")
    elif args.action == "flush":
        print(f"{result} queued row(s) made due now")
    else:
        if not result:
            raise CommandError(f"no queue row or queue id {args.id}")
        print(f"deleted {result} queue row(s)")
    return EXIT_OK


# -- parser --------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mta", description="labmail: one domain's mail server")
    parser.add_argument("--config", "-c", metavar="FILE",
                        help="the server's TOML config (default: $LABMAIL_CONFIG)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("serve", help="run every listener the config names until SIGINT/SIGTERM")
    p.add_argument("--trace", action="store_true", help="log every protocol line")
    p.add_argument("--verbose", "-v", action="store_true", help="debug logging")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)  # mta.workers
    p.add_argument("--forward-events", action="store_true", help=argparse.SUPPRESS)
    p.set_defaults(run=cmd_serve)

    p = sub.add_parser("check", help="connect to each listener and expect its greeting")
    p.add_argument("--timeout", type=float, default=5.0)
    p.set_defaults(run=cmd_check)

    for name, fn, text in (("adduser", cmd_adduser, "create an account"),
                           ("passwd", cmd_passwd, "change an account's password"),
                           ("deluser", cmd_deluser, "delete an account and its mailbox")):
        p = sub.add_parser(name, help=f"{text} (password from a prompt or stdin)")
        p.add_argument("address")
        p.set_defaults(run=fn)

    p = sub.add_parser("users", help="list the accounts")
    p.set_defaults(run=cmd_users)

    p = sub.add_parser("mailbox", help="inspect mail without a mail client")
    mb = p.add_subparsers(dest="action", required=True)
    for action, text in (("list", "list a mailbox"), ("purge", "delete every message")):
        q = mb.add_parser(action, help=text)
        q.add_argument("address")
        q.set_defaults(run=cmd_mailbox)
    q = mb.add_parser("show", help="show one message")
    q.add_argument("address")
    q.add_argument("number", type=int)
    q.add_argument("--raw", action="store_true", help="the message exactly as stored")
    q.set_defaults(run=cmd_mailbox)

    p = sub.add_parser("queue", help="inspect and manage the outbound queue")
    qs = p.add_subparsers(dest="action", required=True)
    q = qs.add_parser("list", help="id, sender, recipient, attempts, next attempt, last reply")
    q.add_argument("--all", action="store_true", help="delivered and failed rows too")
    q.set_defaults(run=cmd_queue)
    q = qs.add_parser("flush", help="make every queued row due now")
    q.set_defaults(run=cmd_queue)
    q = qs.add_parser("delete", help="delete a row (its number) or a message (its queue id)")
    q.add_argument("id")
    q.set_defaults(run=cmd_queue)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    path = args.config or os.environ.get("LABMAIL_CONFIG")
    if not path:
        print("mta: no config: give --config FILE or set LABMAIL_CONFIG", file=sys.stderr)
        return EXIT_USAGE
    args.config_path = Path(path)
    try:
        config = config_mod.load(path)
    except ConfigError as exc:
        print(f"mta: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        return args.run(args, config)
    except (CommandError, StoreError, ConfigError) as exc:
        print(f"mta: {exc}", file=sys.stderr)
        return EXIT_USAGE if isinstance(exc, ConfigError) else EXIT_FAIL
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # the reader went away (| head, | grep -q): nothing left to say
        return quiet_broken_pipe()


def quiet_broken_pipe() -> int:
    """Point standard output at /dev/null and return ``EXIT_BROKEN_PIPE``.

    Python flushes stdout again at exit; into the closed pipe that would print "Exception
    ignored ... BrokenPipeError" (the recipe in the ``signal`` module's documentation).
    """
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return EXIT_BROKEN_PIPE
