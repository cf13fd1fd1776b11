"""Real servers on loopback ephemeral ports for the user agent's tests.

The user agent is a blocking client, so each server runs on an asyncio loop in a background
thread. ``SMTPFixture`` is aiosmtpd with an authenticating, recording handler (STARTTLS with a
trustme certificate, or implicit TLS). ``POP3Fixture`` is a small RFC 1939 server (CAPA, STLS,
USER/PASS, AUTH PLAIN, STAT, LIST, UIDL, RETR, DELE, RSET, NOOP, QUIT with byte-stuffing) that
can drop the connection after N RETRs to test interrupted fetches.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import ssl
import threading
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword


class LoopThread:
    """An asyncio event loop running in a daemon thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, Any], timeout: float = 10) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


# --- SMTP -----------------------------------------------------------------------------------


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    content: bytes
    login: str | None


class RecordingHandler:
    def __init__(self, refuse_rcpt: set[str], refuse_sender: set[str]) -> None:
        self.messages: list[Received] = []
        self.refuse_rcpt = refuse_rcpt
        self.refuse_sender = refuse_sender
        self.on_message = None  # optional callable(Received)

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        if address in self.refuse_sender:
            return "553 5.7.1 sender not owned by the authenticated user"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 2.1.0 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address in self.refuse_rcpt:
            return "550 5.1.1 no such user here"
        envelope.rcpt_tos.append(address)  # the hook owns the append
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope):
        login = session.auth_data.login.decode() if session.auth_data else None
        received = Received(envelope.mail_from, list(envelope.rcpt_tos), envelope.content, login)
        self.messages.append(received)
        if self.on_message:
            self.on_message(received)
        return f"250 2.0.0 OK queued as Q{len(self.messages)}"


class SMTPFixture:
    def __init__(
        self,
        loop: LoopThread,
        *,
        users: dict[str, str],
        tls_context: ssl.SSLContext | None = None,
        starttls: bool = True,
        implicit_tls: bool = False,
        refuse_rcpt: set[str] = frozenset(),
        refuse_sender: set[str] = frozenset(),
    ) -> None:
        self.loop = loop
        self.users = users
        self.handler = RecordingHandler(set(refuse_rcpt), set(refuse_sender))
        self.connections = 0

        def authenticator(server, session, envelope, mechanism, auth_data):
            if not isinstance(auth_data, LoginPassword):
                return AuthResult(success=False, handled=False)
            login, password = auth_data.login.decode(), auth_data.password.decode()
            ok = self.users.get(login) == password
            return AuthResult(success=ok, handled=False, auth_data=auth_data)

        def factory():
            self.connections += 1
            return SMTP(
                self.handler,
                hostname="smtp.test",
                tls_context=tls_context if starttls and not implicit_tls else None,
                authenticator=authenticator,
                auth_require_tls=bool(tls_context and starttls and not implicit_tls),
            )

        async def start():
            return await asyncio.get_running_loop().create_server(
                factory, "127.0.0.1", 0, ssl=tls_context if implicit_tls else None
            )

        self.server = loop.run(start())
        self.port = self.server.sockets[0].getsockname()[1]

    @property
    def messages(self) -> list[Received]:
        return self.handler.messages

    def close(self) -> None:
        async def stop():
            self.server.close()

        self.loop.run(stop())


# --- POP3 -----------------------------------------------------------------------------------

_uid_counter = itertools.count(1)


@dataclass
class Mailbox:
    """One maildrop: (uid, bytes with CRLF line ends) in order; deletions applied at QUIT."""

    messages: list[tuple[str, bytes]] = field(default_factory=list)

    def add(self, data: bytes) -> str:
        data = data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
        if not data.endswith(b"\r\n"):
            data += b"\r\n"
        uid = f"uid{next(_uid_counter)}"
        self.messages.append((uid, data))
        return uid


class POP3Fixture:
    def __init__(
        self,
        loop: LoopThread,
        *,
        users: dict[str, str],
        tls_context: ssl.SSLContext | None = None,
        drop_after_retr: int | None = None,
        user_command: bool = True,
    ) -> None:
        self.loop = loop
        self.users = users
        self.tls_context = tls_context
        self.drop_after_retr = drop_after_retr
        self.user_command = user_command
        self.mailboxes: dict[str, Mailbox] = {u: Mailbox() for u in users}
        self.retr_count = 0
        self.commands: list[str] = []

        async def start():
            return await asyncio.start_server(self._session, "127.0.0.1", 0, limit=4096)

        self.server = loop.run(start())
        self.port = self.server.sockets[0].getsockname()[1]

    def mailbox(self, user: str) -> Mailbox:
        return self.mailboxes[user]

    def close(self) -> None:
        async def stop():
            self.server.close()

        self.loop.run(stop())

    def _capa(self, tls: bool) -> list[str]:
        caps = ["UIDL", "SASL PLAIN"]
        if self.user_command:
            caps.insert(0, "USER")
        if self.tls_context and not tls:
            caps.append("STLS")
        return caps

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        async def send(line: str) -> None:
            writer.write(line.encode() + b"\r\n")
            await writer.drain()

        tls = False
        user = None
        box: Mailbox | None = None
        deleted: set[int] = set()
        try:
            await send("+OK fixture POP3 ready")
            while True:
                raw = await reader.readline()
                if not raw:
                    return  # dropped: nothing is committed (RFC 1939 6)
                line = raw.decode("utf-8", "replace").rstrip("\r\n")
                verb, _, arg = line.partition(" ")
                verb = verb.upper()
                self.commands.append(verb)
                if verb == "CAPA":
                    await send("+OK capability list follows")
                    for cap in self._capa(tls):
                        await send(cap)
                    await send(".")
                elif verb == "STLS" and box is None and self.tls_context and not tls:
                    await send("+OK begin TLS")
                    await writer.start_tls(self.tls_context)
                    tls = True
                elif verb == "USER" and box is None and self.user_command:
                    user = arg
                    await send("+OK send PASS")
                elif verb == "PASS" and box is None and user is not None:
                    if self.users.get(user) == arg:
                        box = self.mailboxes[user]
                        await send("+OK maildrop locked and ready")
                    else:
                        user = None
                        await send("-ERR [AUTH] invalid user name or password")
                elif verb == "AUTH" and box is None and arg.upper().startswith("PLAIN "):
                    try:
                        _, login, password = (
                            base64.b64decode(arg.split(" ", 1)[1]).decode().split("\0")
                        )
                    except ValueError:
                        await send("-ERR bad AUTH data")
                        continue
                    if self.users.get(login) == password:
                        box = self.mailboxes[login]
                        await send("+OK authenticated")
                    else:
                        await send("-ERR [AUTH] authentication failed")
                elif verb == "QUIT":
                    if box is not None:
                        box.messages[:] = [
                            m for i, m in enumerate(box.messages, 1) if i not in deleted
                        ]
                    await send("+OK bye")
                    return
                elif box is None:
                    await send("-ERR not in TRANSACTION state")
                else:
                    await self._transaction(verb, arg, box, deleted, send, writer)
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            return
        finally:
            writer.close()

    async def _transaction(self, verb, arg, box, deleted, send, writer):
        live = [(i, m) for i, m in enumerate(box.messages, 1) if i not in deleted]
        if verb == "STAT":
            await send(f"+OK {len(live)} {sum(len(m[1]) for _, m in live)}")
        elif verb in ("LIST", "UIDL") and not arg:
            await send("+OK")
            for i, (uid, data) in live:
                await send(f"{i} {len(data) if verb == 'LIST' else uid}")
            await send(".")
        elif verb in ("RETR", "DELE", "LIST", "UIDL"):
            n = int(arg) if arg.isdigit() else 0
            if not 1 <= n <= len(box.messages) or n in deleted:
                await send("-ERR no such message")
            elif verb == "DELE":
                deleted.add(n)
                await send(f"+OK message {n} deleted")
            elif verb == "LIST":
                await send(f"+OK {n} {len(box.messages[n - 1][1])}")
            elif verb == "UIDL":
                await send(f"+OK {n} {box.messages[n - 1][0]}")
            else:
                if self.drop_after_retr is not None and self.retr_count >= self.drop_after_retr:
                    writer.transport.abort()
                    raise ConnectionError("fixture drops the connection")
                self.retr_count += 1
                data = box.messages[n - 1][1]
                writer.write(f"+OK {len(data)} octets\r\n".encode())
                for msg_line in data.split(b"\r\n")[:-1]:
                    if msg_line.startswith(b"."):
                        msg_line = b"." + msg_line  # RFC 1939 3: byte-stuffing
                    writer.write(msg_line + b"\r\n")
                writer.write(b".\r\n")
                await writer.drain()
        elif verb == "NOOP":
            await send("+OK")
        elif verb == "RSET":
            deleted.clear()
            await send("+OK")
        else:
            await send("-ERR unknown command")
