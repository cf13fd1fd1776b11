"""A thin asyncio stream server around ``pop3.protocol`` (RFC 1939 over TCP, STLS per RFC 2595).

Per connection it reads bounded lines, feeds them to a ``POP3Protocol`` and carries out what
the core asks: ask the maildrop, write replies, start TLS, close. It also owns what the core
cannot see: the idle timeout, the connection limit, the failed-login delay, and the maildrop
lock's lease, renewed every ``lock_lease / 3`` seconds while the session lives and released
when it ends however it ends (QUIT, disconnect, timeout). A session that ends without QUIT
removes nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import ssl
from collections import deque
from dataclasses import dataclass
from typing import Any

from pop3 import protocol as p
from pop3.failures import FailedLogins
from pop3.maildrop import Maildrop
from pop3.observer import Observer
from pop3.readahead import ReadAhead

log = logging.getLogger("labmail.pop3")

TOO_MANY_CONNECTIONS = b"-ERR [SYS/TEMP] too many connections\r\n"
LINE_TOO_LONG = b"-ERR line too long\r\n"
INTERNAL_ERROR = b"-ERR [SYS/TEMP] internal error\r\n"
SHUTTING_DOWN = b"-ERR [SYS/TEMP] server shutting down, try again later\r\n"


@dataclass(frozen=True)
class POP3Options:
    hostname: str
    allow_plaintext_auth: bool = False  # USER/PASS and AUTH PLAIN without TLS (labs only)
    apop: bool = False  # APOP for accounts the maildrop enables it for (lab-only)
    idle_timeout: float = 600  # RFC 1939 3: at least 10 minutes
    max_connections: int = 100
    lock_lease: float = 60
    failed_auth_delay: float = 1.0  # base; doubles with each failure from one address
    max_line: int = 255  # RFC 2449 4, including CRLF


def discard_buffered(reader: asyncio.StreamReader) -> int:
    """Drop what ``reader`` has received but nobody has read yet; return how many octets.

    asyncio has no public way to do this: every StreamReader method that reads waits for data
    when its buffer is short, and none tells how much is buffered (python/cpython#118642 asked
    for one; none was added), so this clears the private ``_buffer``, a bytearray in every
    CPython since 3.11 (``requires-python``). It is read directly, not with a getattr default:
    were it renamed, STLS ends in an internal error instead of silently running pipelined
    commands under TLS, and a test in ``tests/pop3/test_pop3_server.py`` names what went away.
    With python/cpython#142352, ``StreamWriter.start_tls`` hands whatever is still buffered to
    TLS as handshake data: one more reason to clear it first.
    """
    buffered: bytearray = reader._buffer
    count = len(buffered)
    buffered.clear()
    return count


async def start_server(
    maildrop: Maildrop,
    host: str,
    port: int,
    options: POP3Options,
    ssl_context: ssl.SSLContext | None = None,
    *,
    reuse_port: bool = False,
    observer: Observer | None = None,
) -> POP3Listener:
    """Listen on host:port (0 picks a free port); STLS is offered when ssl_context is given.

    ``reuse_port``: other processes may listen on the same port (SO_REUSEPORT);
    ``observer``: told what each session does (``pop3.observer``)."""
    server = POP3Server(maildrop, options, ssl_context, observer)
    listening = await asyncio.start_server(server.handle_connection, host, port,
                                           limit=options.max_line, reuse_port=reuse_port or None)
    return POP3Listener(listening, server)


class POP3Listener:
    """A listening POP3 server: like ``asyncio.Server`` (``sockets``, ``close``,
    ``wait_closed``), but closing it also ends the sessions, each releasing its maildrop lock
    without UPDATE (RFC 1939 6: nothing marked is removed), before the maildrop goes away."""

    def __init__(self, listening: asyncio.Server, server: POP3Server) -> None:
        self.listening = listening
        self.server = server

    @property
    def sockets(self) -> tuple[Any, ...]:
        return tuple(self.listening.sockets)

    def close(self) -> None:
        self.listening.close()
        self.server.end_sessions()

    async def wait_closed(self, grace: float = 5.0) -> None:
        await self.server.wait_sessions_ended(grace)
        await self.listening.wait_closed()


class POP3Server:
    """State shared by all sessions: the live sessions and failed logins per address."""

    def __init__(
        self, maildrop: Maildrop, options: POP3Options, ssl_context: ssl.SSLContext | None,
        observer: Observer | None = None,
    ) -> None:
        self.maildrop = maildrop
        self.observer = observer
        self.options = options
        self.ssl_context = ssl_context
        self.failed_logins = FailedLogins(options.failed_auth_delay)
        self.sessions: set[Session] = set()
        self.no_sessions = asyncio.Event()
        self.no_sessions.set()

    def end_sessions(self) -> None:
        """Tell every session the server is going away and close its connection."""
        for session in list(self.sessions):
            session.end(SHUTTING_DOWN)

    async def wait_sessions_ended(self, grace: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.no_sessions.wait(), grace)

    async def handle_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        if len(self.sessions) >= self.options.max_connections:
            writer.write(TOO_MANY_CONNECTIONS)
            with contextlib.suppress(ConnectionError):
                await writer.drain()
            writer.close()
            return
        session = Session(self, reader, writer)
        self.sessions.add(session)
        self.no_sessions.clear()
        try:
            await session.run()
        except asyncio.CancelledError:
            # Server shutdown: the session has cleaned up (finally). Ending the task normally
            # keeps Python 3.11's stream callback from logging the cancellation as an error.
            pass
        finally:
            self.sessions.discard(session)
            if not self.sessions:
                self.no_sessions.set()



class Session:
    """One connection: bounded reads, the core's actions, the lock's lease."""

    def __init__(
        self, server: POP3Server, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.server = server
        self.options = server.options
        self.maildrop = ReadAhead(server.maildrop)  # RETR reads the next messages along
        self.reader = reader
        self.writer = writer
        peer = writer.get_extra_info("peername") or ("?", 0)
        self.address = str(peer[0])
        self.peer = f"[{peer[0]}]:{peer[1]}" if ":" in self.address else f"{peer[0]}:{peer[1]}"
        self.holder = f"{self.options.hostname}:{os.getpid()}:{secrets.token_hex(8)}"
        self.locked: str | None = None
        self.lock_lost = False
        self.renewer: asyncio.Task[None] | None = None
        self.observer = server.observer
        self.id = secrets.token_hex(5)
        self.listing: dict[int, tuple[str, int]] = {}  # entry id -> (UIDL, size), for events
        timestamp = None
        if self.options.apop:  # RFC 1939 7: unique per greeting
            timestamp = f"<{os.getpid()}.{secrets.token_hex(8)}@{self.options.hostname}>"
        self.core = p.POP3Protocol(
            self.options.hostname,
            allow_plaintext_auth=self.options.allow_plaintext_auth,
            tls_available=server.ssl_context is not None,
            apop_timestamp=timestamp,
        )

    def watched(self) -> Observer | None:
        """The observer, when it is listening."""
        observer = self.observer
        return observer if observer is not None and observer.active else None

    async def run(self) -> None:
        if observer := self.watched():
            observer.opened(self.id, self.peer, False)
        try:
            await self.carry_out(self.core.greeting())
            while not self.core.closed and not self.lock_lost:
                try:
                    async with asyncio.timeout(self.options.idle_timeout):
                        raw = await self.read_line()
                except TimeoutError:  # RFC 1939 3: close without UPDATE, no reply
                    log.info("%s idle timeout", self.peer)
                    break
                if raw is None:
                    break
                if len(raw) > self.options.max_line:
                    self.trace("C", f"<{len(raw)} octets, too long>")
                    self.send(p.Send(LINE_TOO_LONG, (LINE_TOO_LONG.decode().rstrip(),)))
                    await self.writer.drain()
                    continue
                if self.watched():
                    self.trace("C", self.core.describe_client_line(raw))
                await self.carry_out(self.core.receive_line(raw))
        except (ConnectionError, ssl.SSLError, asyncio.IncompleteReadError) as exc:
            log.info("%s connection lost: %s", self.peer, type(exc).__name__)
        except Exception:
            log.exception("%s unexpected error in POP3 session", self.peer)
            with contextlib.suppress(Exception):
                self.writer.write(INTERNAL_ERROR)
                await self.writer.drain()
        finally:
            await self.release_lock()
            self.writer.close()
            with contextlib.suppress(Exception):
                await self.writer.wait_closed()
            if observer := self.watched():
                observer.closed(self.id, self.peer, self.core.tls_active,
                                self.core.owner)

    def end(self, line: bytes) -> None:
        """Say ``line`` and close: run() sees EOF and cleans up (no UPDATE, lock released)."""
        if not self.writer.is_closing():
            with contextlib.suppress(Exception):
                self.writer.write(line)
            self.writer.close()

    async def read_line(self) -> bytes | None:
        """A line with its LF, or None at EOF. An over-long line is read and dropped piecemeal
        (never buffered whole); a placeholder longer than max_line stands for it."""
        try:
            return await self.reader.readuntil(b"\n")
        except asyncio.IncompleteReadError:
            return None  # EOF, possibly inside a partial line: ignore it
        except asyncio.LimitOverrunError as exc:
            consumed = exc.consumed
        while True:  # RFC 2449 4: refuse the line, keep the session
            await self.reader.readexactly(consumed)
            try:
                await self.reader.readuntil(b"\n")
                return b"x" * (self.options.max_line + 1)
            except asyncio.IncompleteReadError:
                return None
            except asyncio.LimitOverrunError as exc:
                consumed = exc.consumed

    async def carry_out(self, actions: list[p.Action]) -> None:
        queue = deque(actions)
        while queue:
            action = queue.popleft()
            match action:
                case p.Send():
                    self.send(action)
                case p.AuthFailed():
                    delay = self.server.failed_logins.failed(self.address, action.login)
                    log.info("%s failed login for %r", self.peer, action.login)
                    if delay > 0:
                        await self.writer.drain()
                        await asyncio.sleep(delay)
                case p.LoggedIn():
                    # only this account's failures: owning one account must not reset the
                    # delay for guessing others from the same address (issue 17 item 10)
                    self.server.failed_logins.succeeded(self.address, action.owner)
                    log.info("%s logged in as %s", self.peer, action.owner)
                case p.Unlock():
                    await self.release_lock()
                case p.StartTLS():
                    await self.start_tls()
                case p.Close():
                    pass  # run() sees core.closed
                case _:
                    queue.extend(await self.ask_maildrop(action))
        await self.writer.drain()

    async def ask_maildrop(self, request: p.Request) -> list[p.Action]:
        try:
            result = await self.perform(request)
        except Exception:
            log.exception("%s maildrop failed on %s", self.peer, type(request).__name__)
            return self.core.fail(request)
        return self.core.complete(request, result)

    async def perform(self, request: p.Request) -> object:
        md, lease = self.maildrop, self.options.lock_lease
        match request:
            case p.Authenticate(login=login, password=password):
                return await md.authenticate(login, password)
            case p.GetApopSecret(login=login):
                return await md.apop_secret(login)
            case p.Lock(owner=owner):
                ok = await md.lock(owner, self.holder, lease)
                if ok:
                    self.locked = owner
                    self.renewer = asyncio.create_task(self.renew_lock(owner))
                return ok
            case p.ListEntries(owner=owner):
                entries = await md.list_entries(owner)
                self.listing = {e.id: (e.uid, e.size) for e in entries}
                return entries
            case p.Fetch(owner=owner, entry_id=entry_id):
                return await self.fetch(owner, entry_id)
            case p.Delete(owner=owner, entry_ids=ids):
                if self.lock_lost or self.locked != owner:
                    raise RuntimeError("maildrop lock lost before UPDATE")
                await md.delete(owner, ids)
                if observer := self.watched():
                    observer.deleted(self.id, owner,
                                     [(i, self.listing.get(i, ("", 0))[0]) for i in ids])
                return None
        raise TypeError(f"unknown request {request!r}")

    async def fetch(self, owner: str, entry_id: int) -> bytes | None:
        """RETR and TOP's message (None if it is gone), reported to the observer."""
        try:
            raw = await self.maildrop.fetch(owner, entry_id)
        except KeyError:
            return None
        if (observer := self.watched()) and entry_id in self.listing:
            uid, size = self.listing[entry_id]
            observer.retrieved(self.id, owner, entry_id, uid, size)
        return raw

    async def renew_lock(self, owner: str) -> None:
        lease = self.options.lock_lease
        while True:
            await asyncio.sleep(lease / 3)
            try:
                ok = await self.maildrop.renew_lock(owner, self.holder, lease)
            except Exception:  # a busy database: try again; the lease outlives two misses
                log.exception("%s could not renew the maildrop lock", self.peer)
                continue
            if not ok:
                log.warning("%s lost the maildrop lock of %s; closing", self.peer, owner)
                self.lock_lost = True
                self.writer.close()
                return

    async def release_lock(self) -> None:
        self.maildrop.forget()
        if self.renewer is not None:
            self.renewer.cancel()
            self.renewer = None
        owner, self.locked = self.locked, None
        if owner is not None:
            try:
                await self.maildrop.unlock(owner, self.holder)
            except Exception:  # the lease will expire on its own
                log.exception("%s could not release the maildrop lock", self.peer)

    async def start_tls(self) -> None:
        assert self.server.ssl_context is not None
        await self.writer.drain()
        # RFC 2595 4: whatever the client pipelined after STLS is discarded, never run under
        # TLS. asyncio has no public way to do it (discard_buffered says why and what it leans
        # on). Nothing can arrive in between: start_tls() pauses reading before it first yields
        # to the loop (its own drain() returns at once, the writer was just drained).
        discarded = discard_buffered(self.reader)
        if discarded:
            log.info("%s discarded %d octets pipelined after STLS", self.peer, discarded)
        await self.writer.start_tls(self.server.ssl_context)
        self.core.tls_started()

    def send(self, action: p.Send) -> None:
        self.writer.write(action.data)
        if action.body:
            self.writer.write(action.body)
        if self.watched():
            for text in action.trace:
                self.trace("S", text)

    def trace(self, direction: str, text: str) -> None:
        if observer := self.watched():
            observer.line(self.id, self.peer, direction, text)
