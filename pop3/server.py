"""A thin asyncio stream server around ``pop3.protocol`` (RFC 1939 over TCP, STLS per RFC 2595).

Per connection it reads bounded lines, feeds them to a ``POP3Protocol`` and carries out what
the core asks: ask the maildrop, write replies, start TLS, close. It also owns what the core
cannot see: the idle timeout, the connection limit, the failed-login delay, and the maildrop
lock's lease, renewed every ``lock_lease / 3`` seconds while the session lives and released
when it ends however it ends (QUIT, disconnect, timeout). A session that ends without QUIT
removes nothing.

Replies are collected and written once per batch of commands: every complete command the
client has pipelined (RFC 2449 6.6) is answered in order, then the answers go out in one write
(as Dovecot does), so a reply and its message body are one ``send``, not two.
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
READ_CHUNK = 64 * 1024  # at most this much pipelined input is taken per batch
OUTPUT_BATCH = 64 * 1024  # replies waiting past this many octets are written at once
IDLE_SLACK = 0.001  # a timer may run a clock tick early: this close counts as due


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
    implicit_tls: bool = False  # RFC 8314 (port 995): TLS from the first byte, no STLS


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
    """Listen on host:port (0 picks a free port); STLS is offered when ssl_context is given,
    or with ``options.implicit_tls`` every connection starts with a TLS handshake using it.

    ``reuse_port``: other processes may listen on the same port (SO_REUSEPORT);
    ``observer``: told what each session does (``pop3.observer``)."""
    implicit = ssl_context if options.implicit_tls else None
    server = POP3Server(maildrop, options, None if implicit else ssl_context, observer)
    listening = await asyncio.start_server(
        server.handle_connection, host, port, limit=options.max_line,
        reuse_port=reuse_port or None, ssl=implicit,
        ssl_handshake_timeout=options.idle_timeout if implicit else None)
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
        self.lines: deque[bytes] = deque()  # complete command lines not yet handled
        self.partial = bytearray()  # the start of the next line
        self.overlong = False  # dropping the rest of a line already longer than max_line
        self.output: list[bytes] = []  # replies not yet written
        self.output_octets = 0
        self.loop = asyncio.get_running_loop()
        self.reading_since: float | None = None  # when the session began waiting for a line
        self.idle_timer: asyncio.TimerHandle | None = None
        timestamp = None
        if self.options.apop:  # RFC 1939 7: unique per greeting
            timestamp = f"<{os.getpid()}.{secrets.token_hex(8)}@{self.options.hostname}>"
        self.core = p.POP3Protocol(
            self.options.hostname,
            allow_plaintext_auth=self.options.allow_plaintext_auth,
            tls_available=server.ssl_context is not None,
            tls_active=self.options.implicit_tls,
            apop_timestamp=timestamp,
        )

    def watched(self) -> Observer | None:
        """The observer, when it is listening."""
        observer = self.observer
        return observer if observer is not None and observer.active else None

    async def run(self) -> None:
        self.arm_idle_timer(self.options.idle_timeout)
        if observer := self.watched():
            observer.opened(self.id, self.peer, False)
        try:
            await self.carry_out(self.core.greeting())
            await self.flush()
            while not self.core.closed and not self.lock_lost:
                if not self.lines and not await self.read_lines():
                    break
                await self.handle_line(self.lines.popleft())
                if not self.lines or self.core.closed:  # all pipelined commands answered
                    await self.flush()
        except (ConnectionError, ssl.SSLError, asyncio.IncompleteReadError) as exc:
            log.info("%s connection lost: %s", self.peer, type(exc).__name__)
        except Exception:
            log.exception("%s unexpected error in POP3 session", self.peer)
            with contextlib.suppress(Exception):
                self.write_output()  # the replies before the failure, in order
                self.writer.write(INTERNAL_ERROR)
                await self.writer.drain()
        finally:
            if self.idle_timer is not None:
                self.idle_timer.cancel()
            await self.release_lock()
            self.writer.close()
            with contextlib.suppress(Exception):
                await self.writer.wait_closed()
            if observer := self.watched():
                observer.closed(self.id, self.peer, self.core.tls_active,
                                self.core.owner)

    async def handle_line(self, raw: bytes) -> None:
        if len(raw) > self.options.max_line:
            self.trace("C", f"<{len(raw)} octets, too long>")
            self.send(p.Send(LINE_TOO_LONG, (LINE_TOO_LONG.decode().rstrip(),)))
            return
        if self.watched():
            self.trace("C", self.core.describe_client_line(raw))
        await self.carry_out(self.core.receive_line(raw))

    def end(self, line: bytes) -> None:
        """Say ``line`` and close: run() sees EOF and cleans up (no UPDATE, lock released)."""
        if not self.writer.is_closing():
            with contextlib.suppress(Exception):
                self.writer.write(line)
            self.writer.close()

    # -- input: bounded lines, every complete one the client has sent --

    async def read_lines(self) -> bool:
        """Wait until at least one complete line is in ``lines``; False at EOF (a partial
        line at EOF is ignored). An over-long line is dropped as it arrives (never buffered
        whole); a placeholder longer than max_line stands for it (RFC 2449 4: refuse the
        line, keep the session)."""
        while not self.lines:
            self.reading_since = self.loop.time()
            try:
                chunk = await self.reader.read(READ_CHUNK)
            finally:
                self.reading_since = None
            if not chunk:
                return False
            self.split_lines(chunk)
        return True

    def split_lines(self, chunk: bytes) -> None:
        limit = self.options.max_line
        data = self.partial + chunk if self.partial else chunk
        start = 0
        while (end := data.find(b"\n", start)) >= 0:
            raw = bytes(data[start:end + 1])
            if self.overlong or len(raw) > limit:
                raw = b"x" * (limit + 1)
                self.overlong = False
            self.lines.append(raw)
            start = end + 1
        self.partial = bytearray(data[start:])
        if len(self.partial) > limit:
            self.partial.clear()
            self.overlong = True

    # -- the idle timeout: one timer per session, not one per command --

    def arm_idle_timer(self, delay: float) -> None:
        self.idle_timer = self.loop.call_later(delay, self.check_idle)

    def check_idle(self) -> None:
        """RFC 1939 3: a session idle for idle_timeout is closed without UPDATE and without a
        reply. Idle means waiting for a command; the timer re-arms for the time left."""
        idle = self.options.idle_timeout
        since = self.reading_since
        if since is None:
            self.arm_idle_timer(idle)
            return
        left = since + idle - self.loop.time()
        if left > IDLE_SLACK:
            self.arm_idle_timer(left)
            return
        log.info("%s idle timeout", self.peer)
        self.idle_timer = None
        self.writer.close()  # the pending read ends at EOF; run() cleans up

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
                        await self.flush()
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
            if self.output_octets >= OUTPUT_BATCH:
                await self.flush()

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
        await self.flush()
        # RFC 2595 4: whatever the client pipelined after STLS is discarded, never run under
        # TLS: the lines already split off, the partial line, and what the stream reader
        # holds. asyncio has no public way to do the last (discard_buffered says why and what
        # it leans on). Nothing can arrive in between: start_tls() pauses reading before it
        # first yields to the loop (its own drain() returns at once, the writer was just
        # drained).
        discarded = sum(map(len, self.lines)) + len(self.partial)
        self.lines.clear()
        self.partial.clear()
        self.overlong = False
        discarded += discard_buffered(self.reader)
        if discarded:
            log.info("%s discarded %d octets pipelined after STLS", self.peer, discarded)
        await self.writer.start_tls(self.server.ssl_context)
        self.core.tls_started()

    # -- output: replies wait and go out together --

    def send(self, action: p.Send) -> None:
        self.queue_output(action.data)
        if action.body:
            self.queue_output(action.body)
        if self.watched():
            for text in action.trace:
                self.trace("S", text)

    def queue_output(self, data: bytes) -> None:
        if len(data) >= OUTPUT_BATCH:  # a big message goes out as it is: no copy to join it
            self.write_output()
            self.writer.write(data)
            return
        self.output.append(data)
        self.output_octets += len(data)

    def write_output(self) -> None:
        if self.output:
            output = self.output
            self.writer.write(output[0] if len(output) == 1 else b"".join(output))
            self.output = []
            self.output_octets = 0

    async def flush(self) -> None:
        """Write every waiting reply in one call, then wait while the client is slow."""
        self.write_output()
        await self.writer.drain()

    def trace(self, direction: str, text: str) -> None:
        if observer := self.watched():
            observer.line(self.id, self.peer, direction, text)
