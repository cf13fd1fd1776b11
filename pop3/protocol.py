"""The POP3 protocol core, without I/O (RFC 1939, 2449 CAPA, 3206 codes, 5034 SASL, 2595 STLS).

A ``POP3Protocol`` is one session. Its I/O layer feeds it command lines with ``receive_line`` and
gets back a list of actions to carry out in order (``pop3.actions`` says what each means); a
request among them is answered with ``complete(request, result)`` or ``fail(request)``. The
session has one ``cmd_VERB`` method per command, found by name once the ``pop3.states.ALLOWED``
table lets the command run in the current state; replies are built by ``pop3.replies`` and AUTH
PLAIN is read by ``pop3.sasl``. This module re-exports what an I/O layer or a test needs from
those modules, so ``from pop3 import protocol as p`` is the whole vocabulary.

This module imports neither asyncio nor sqlite; ``hashlib`` is here only for APOP's MD5.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pop3 import sasl
from pop3.actions import (
    Action,
    Authenticate,
    AuthFailed,
    Close,
    Delete,
    Fetch,
    GetApopSecret,
    ListEntries,
    Lock,
    LoggedIn,
    ProtocolUsageError,
    Request,
    Send,
    StartTLS,
    Unlock,
)
from pop3.replies import (
    AUTH_FAILED,
    BAD_ENCODING,
    CONTINUE,
    IN_USE,
    NO_SUCH_MESSAGE,
    PLAINTEXT_DISABLED,
    SYNTAX,
    SYS_TEMP,
    UNKNOWN_COMMAND,
    WRONG_STATE,
    dot_stuff,
    line,
    multiline,
    top_of,
)
from pop3.states import ALLOWED, AUTHORIZATION, TRANSACTION, UPDATE, State

__all__ = [
    "ALLOWED", "AUTHORIZATION", "TRANSACTION", "UPDATE", "State",
    "Action", "Request", "Send", "AuthFailed", "LoggedIn", "Unlock", "StartTLS", "Close",
    "Authenticate", "GetApopSecret", "Lock", "ListEntries", "Fetch", "Delete",
    "ProtocolUsageError", "POP3Protocol", "line", "multiline", "dot_stuff", "top_of",
]

IMPLEMENTATION = "labmail"
MASK = "****"  # what the trace shows instead of a secret


def _message_number(arg: str) -> int | None:
    if arg.isascii() and arg.isdigit() and len(arg) <= 10:
        return int(arg)
    return None


def _strip_eol(raw: bytes) -> bytes:
    if raw.endswith(b"\r\n"):
        return raw[:-2]
    if raw.endswith(b"\n"):
        return raw[:-1]
    return raw


@dataclass(slots=True)
class _Pending:
    request: Request
    on_result: Callable[[Any], list[Action]]
    on_failure: Callable[[], list[Action]]


# ---- the session -----------------------------------------------------------------------------


class POP3Protocol:
    """One POP3 session as a state machine: lines in, actions out."""

    def __init__(
        self,
        hostname: str,
        *,
        allow_plaintext_auth: bool = False,
        tls_available: bool = False,
        tls_active: bool = False,
        apop_timestamp: str | None = None,
    ) -> None:
        self.hostname = hostname
        self.allow_plaintext_auth = allow_plaintext_auth
        self.tls_available = tls_available
        self.tls_active = tls_active
        self.apop_timestamp = apop_timestamp  # e.g. "<1896.697170952@host>"; None: APOP off
        self.state = AUTHORIZATION
        self.closed = False
        self.owner: str | None = None
        self._user: str | None = None  # login named by USER, waiting for PASS
        self._sasl: str | None = None  # mechanism waiting for a continuation line
        self._pending: _Pending | None = None
        # The snapshot taken at login, as parallel lists (one object per message is the
        # dearest part of a big mailbox's login): message n is index n - 1 of each.
        self._ids: list[int] = []
        self._uids: list[str] = []
        self._sizes: list[int] = []
        self._octets = 0  # sum of _sizes
        self._deleted: set[int] = set()  # 0-based indexes into the lists
        self._deleted_octets = 0

    # -- the I/O layer's interface --

    def greeting(self) -> list[Action]:
        text = f"+OK {self.hostname} {IMPLEMENTATION} POP3 server ready"
        if self.apop_timestamp is not None:
            text += f" {self.apop_timestamp}"  # RFC 1939 7
        return [line(text)]

    @property
    def pending(self) -> Request | None:
        return self._pending.request if self._pending else None

    @property
    def plaintext_auth_allowed(self) -> bool:
        return self.allow_plaintext_auth or self.tls_active

    def receive_line(self, raw: bytes) -> list[Action]:
        """Handle one line (with or without its CRLF)."""
        if self._pending is not None:
            raise ProtocolUsageError(f"request {self._pending.request!r} is outstanding")
        if self.closed or self.state is UPDATE:
            return []
        try:
            text = _strip_eol(raw).decode("utf-8")
        except UnicodeDecodeError:
            self._sasl = None
            return [line(BAD_ENCODING)]
        if self._sasl is not None:
            self._sasl = None
            return self._sasl_response(text)
        keyword, _, rest = text.partition(" ")
        verb = keyword.upper() if keyword.isascii() else ""
        allowed = ALLOWED.get(verb)
        if allowed is None:
            self._user = None
            return [line(UNKNOWN_COMMAND)]
        if self.state not in allowed:
            return [line(WRONG_STATE)]
        if verb != "PASS":
            self._user = None  # RFC 1939 7: PASS only immediately after USER
        handler: Callable[[str], list[Action]] = getattr(self, f"cmd_{verb}")
        return handler(rest)

    def complete(self, request: Request, result: object) -> list[Action]:
        """Hand back the maildrop's answer to the outstanding request."""
        pending = self._take(request)
        return pending.on_result(result)

    def fail(self, request: Request) -> list[Action]:
        """The maildrop raised while serving the outstanding request."""
        pending = self._take(request)
        return pending.on_failure()

    def tls_started(self) -> None:
        """TLS is up (RFC 2595 4: forget anything learned before it)."""
        self.tls_active = True
        self._user = None
        self._sasl = None

    def describe_client_line(self, raw: bytes) -> str:
        """The client line as the trace should show it, with secrets masked."""
        text = _strip_eol(raw).decode("utf-8", "replace")
        if self._sasl is not None:
            return MASK
        keyword, sep, rest = text.partition(" ")
        verb = keyword.upper()
        if verb == "PASS" and sep:
            return f"{keyword} {MASK}"
        args = rest.split()
        if verb == "AUTH" and len(args) > 1:
            return f"{keyword} {args[0]} {MASK}"
        if verb == "APOP" and len(args) > 1:
            return f"{keyword} {args[0]} {MASK}"
        return text

    # -- AUTHORIZATION --

    def cmd_USER(self, rest: str) -> list[Action]:
        if not self.plaintext_auth_allowed:
            return [line(PLAINTEXT_DISABLED)]
        args = rest.split()
        if len(args) != 1:
            return [line(SYNTAX)]
        self._user = args[0]
        return [line("+OK send PASS")]

    def cmd_PASS(self, rest: str) -> list[Action]:
        if not self.plaintext_auth_allowed:
            return [line(PLAINTEXT_DISABLED)]
        login, self._user = self._user, None
        if login is None:
            return [line("-ERR USER first")]
        if not rest:
            return [line(SYNTAX)]
        return self._authenticate(login, rest)  # the rest of the line: spaces are allowed

    def cmd_APOP(self, rest: str) -> list[Action]:
        timestamp = self.apop_timestamp
        if timestamp is None:
            return [line("-ERR APOP not available")]
        args = rest.split()
        if len(args) != 2:
            return [line(SYNTAX)]
        login, digest = args

        def on_secret(result: object) -> list[Action]:
            if result is None:
                return [AuthFailed(login), line(AUTH_FAILED)]
            owner, secret = result  # type: ignore[misc]
            expected = hashlib.md5((timestamp + secret).encode("utf-8")).hexdigest()
            if not hmac.compare_digest(expected.encode(), digest.lower().encode("utf-8")):
                return [AuthFailed(login), line(AUTH_FAILED)]
            return self._lock(str(owner))

        return self._request(GetApopSecret(login), on_secret, self._auth_unavailable)

    def cmd_AUTH(self, rest: str) -> list[Action]:
        args = rest.split()
        if not args or len(args) > 2:
            return [line(SYNTAX)]
        if args[0].upper() != sasl.MECHANISM:
            return [line("-ERR unsupported SASL mechanism")]
        if not self.plaintext_auth_allowed:
            return [line(PLAINTEXT_DISABLED)]
        if len(args) == 2:  # RFC 5034 4: initial response; "=" is an empty one
            return self._sasl_plain("" if args[1] == sasl.EMPTY_RESPONSE else args[1])
        self._sasl = sasl.MECHANISM
        return [line(CONTINUE)]

    def _sasl_response(self, text: str) -> list[Action]:
        if text == sasl.CANCEL:  # RFC 5034 4: the client cancels
            return [line("-ERR authentication cancelled")]
        return self._sasl_plain(text)

    def _sasl_plain(self, response: str) -> list[Action]:
        try:
            authcid, password = sasl.decode_plain(response)
        except sasl.NotBase64:
            return [line("-ERR invalid base64")]
        if password is None:
            return [AuthFailed(authcid), line(AUTH_FAILED)]  # RFC 4616 2
        return self._authenticate(authcid, password)

    def _authenticate(self, login: str, password: str) -> list[Action]:
        def on_owner(owner: object) -> list[Action]:
            if owner is None:
                return [AuthFailed(login), line(AUTH_FAILED)]
            return self._lock(str(owner))

        return self._request(Authenticate(login, password), on_owner, self._auth_unavailable)

    def _auth_unavailable(self) -> list[Action]:
        return [line(SYS_TEMP)]

    def _lock(self, owner: str) -> list[Action]:
        def on_lock(ok: object) -> list[Action]:
            if not ok:
                return [line(IN_USE)]  # RFC 1939 8, RFC 2449 8.1.2
            return self._request(
                ListEntries(owner), on_entries, lambda: [Unlock(owner), line(SYS_TEMP)]
            )

        def on_entries(entries: object) -> list[Action]:
            assert isinstance(entries, Sequence)
            self._ids = [int(e.id) for e in entries]
            self._uids = [str(e.uid) for e in entries]
            self._sizes = [int(e.size) for e in entries]
            self._octets = sum(self._sizes)
            self._deleted = set()
            self._deleted_octets = 0
            self.owner = owner
            self.state = TRANSACTION
            count, octets = self._totals()
            return [LoggedIn(owner), line(f"+OK maildrop has {count} messages ({octets} octets)")]

        return self._request(Lock(owner), on_lock, self._auth_unavailable)

    def cmd_STLS(self, rest: str) -> list[Action]:
        if rest.strip():
            return [line(SYNTAX)]
        if self.tls_active:
            return [line("-ERR command not permitted when TLS active")]  # RFC 2595 4
        if not self.tls_available:
            return [line("-ERR STLS not available")]
        return [line("+OK begin TLS negotiation"), StartTLS()]

    # -- both states --

    def cmd_CAPA(self, rest: str) -> list[Action]:
        if rest.strip():
            return [line(SYNTAX)]
        caps = ["TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING"]
        if self.state is AUTHORIZATION:
            if self.plaintext_auth_allowed:
                caps += ["USER", f"SASL {sasl.MECHANISM}"]
            if self.tls_available and not self.tls_active:
                caps.append("STLS")
        caps.append(f"IMPLEMENTATION {IMPLEMENTATION}")
        return [multiline("+OK capability list follows", caps)]

    def cmd_QUIT(self, rest: str) -> list[Action]:
        if rest.strip():
            return [line(SYNTAX)]
        farewell = f"+OK {self.hostname} {IMPLEMENTATION} POP3 server signing off"
        if self.state is AUTHORIZATION:
            self.closed = True
            return [line(farewell), Close()]
        self.state = UPDATE  # RFC 1939 6
        owner = self.owner
        assert owner is not None
        ids = tuple(self._ids[i] for i in sorted(self._deleted))
        if not ids:
            self.closed = True
            return [line(farewell), Close()]

        def on_deleted(_: object) -> list[Action]:
            self.closed = True
            return [line(f"{farewell} ({len(ids)} messages deleted)"), Close()]

        def on_failure() -> list[Action]:
            self.closed = True
            return [line("-ERR [SYS/TEMP] internal error, no messages removed"), Close()]

        return self._request(Delete(owner, ids), on_deleted, on_failure)

    # -- TRANSACTION --

    def cmd_STAT(self, rest: str) -> list[Action]:
        if rest.strip():
            return [line(SYNTAX)]
        count, octets = self._totals()
        return [line(f"+OK {count} {octets}")]

    def cmd_LIST(self, rest: str) -> list[Action]:
        args = rest.split()
        if len(args) > 1:
            return [line(SYNTAX)]
        if args:
            found = self._lookup(args[0])
            if isinstance(found, Send):
                return [found]
            return [line(f"+OK {found} {self._sizes[found - 1]}")]
        count, octets = self._totals()
        scan = [f"{n} {self._sizes[n - 1]}" for n in self._visible()]
        return [multiline(f"+OK {count} messages ({octets} octets)", scan)]

    def cmd_UIDL(self, rest: str) -> list[Action]:
        args = rest.split()
        if len(args) > 1:
            return [line(SYNTAX)]
        if args:
            found = self._lookup(args[0])
            if isinstance(found, Send):
                return [found]
            return [line(f"+OK {found} {self._uids[found - 1]}")]
        listing = [f"{n} {self._uids[n - 1]}" for n in self._visible()]
        return [multiline("+OK unique-id listing follows", listing)]

    def cmd_RETR(self, rest: str) -> list[Action]:
        args = rest.split()
        if len(args) != 1:
            return [line(SYNTAX)]
        return self._fetch(args[0], None)

    def cmd_TOP(self, rest: str) -> list[Action]:
        args = rest.split()
        if len(args) != 2:
            return [line(SYNTAX)]
        lines = _message_number(args[1])
        if lines is None:
            return [line("-ERR invalid number of lines")]
        return self._fetch(args[0], lines)

    def cmd_DELE(self, rest: str) -> list[Action]:
        args = rest.split()
        if len(args) != 1:
            return [line(SYNTAX)]
        found = self._lookup(args[0])
        if isinstance(found, Send):
            return [found]
        self._deleted.add(found - 1)
        self._deleted_octets += self._sizes[found - 1]
        return [line(f"+OK message {found} deleted")]

    def cmd_NOOP(self, rest: str) -> list[Action]:
        if rest.strip():
            return [line(SYNTAX)]
        return [line("+OK")]

    def cmd_RSET(self, rest: str) -> list[Action]:
        if rest.strip():
            return [line(SYNTAX)]
        self._deleted.clear()
        self._deleted_octets = 0
        count, octets = self._totals()
        return [line(f"+OK maildrop has {count} messages ({octets} octets)")]

    # -- internals --

    def _fetch(self, arg: str, top_lines: int | None) -> list[Action]:
        found = self._lookup(arg)
        if isinstance(found, Send):
            return [found]
        number = found
        size = self._sizes[number - 1]
        assert self.owner is not None

        def on_raw(raw: object) -> list[Action]:
            if raw is None:
                return [line(f"-ERR message {number} is no longer available")]
            assert isinstance(raw, bytes)
            if top_lines is not None:
                raw = top_of(raw, top_lines)
                status = "+OK top of message follows"
            else:
                status = f"+OK {size} octets"
            body = dot_stuff(raw)
            return [Send(status.encode() + b"\r\n", (status, f"<{len(raw)} octets>"), body)]

        fetch = Fetch(self.owner, self._ids[number - 1])
        return self._request(fetch, on_raw, lambda: [line(SYS_TEMP)])

    def _lookup(self, arg: str) -> int | Send:
        """The message number ``arg`` names, or the reply refusing it."""
        number = _message_number(arg)
        if number is None:
            return line("-ERR invalid message number")
        if not 1 <= number <= len(self._ids):
            return line(f"{NO_SUCH_MESSAGE}, only {len(self._ids)} messages in maildrop")
        if number - 1 in self._deleted:
            return line(f"-ERR message {number} already deleted")
        return number

    def _visible(self) -> range | list[int]:
        """The numbers of the messages not marked deleted (RFC 1939 5: LIST skips them)."""
        numbers = range(1, len(self._ids) + 1)
        if not self._deleted:
            return numbers
        return [n for n in numbers if n - 1 not in self._deleted]

    def _totals(self) -> tuple[int, int]:
        return len(self._ids) - len(self._deleted), self._octets - self._deleted_octets

    def _request(
        self,
        request: Request,
        on_result: Callable[[Any], list[Action]],
        on_failure: Callable[[], list[Action]],
    ) -> list[Action]:
        self._pending = _Pending(request, on_result, on_failure)
        return [request]

    def _take(self, request: Request) -> _Pending:
        pending = self._pending
        if pending is None or pending.request is not request:
            raise ProtocolUsageError(f"{request!r} is not the outstanding request")
        self._pending = None
        return pending
