"""The POP3 core with no sockets: lines in, bytes and effects out (table-driven)."""

from __future__ import annotations

import base64
import hashlib
import subprocess
import sys
from dataclasses import dataclass, field

import pytest

from pop3 import protocol as p
from pop3 import sasl
from pop3.protocol import (
    ALLOWED,
    AUTHORIZATION,
    TRANSACTION,
    UPDATE,
    POP3Protocol,
    ProtocolUsageError,
    dot_stuff,
    top_of,
)

M1 = b"Subject: a\r\n\r\nhello\r\n"
M2 = b"Subject: b\r\n\r\n.dot\r\nline2\r\n.\r\n"
M3 = b"X: y\r\n\r\nbye\r\nsecond\r\n"
TOTAL = len(M1) + len(M2) + len(M3)
TS = "<1896.697170952@pop.bob.lab>"


@dataclass(frozen=True)
class E:
    id: int
    uid: str
    size: int


@dataclass
class FakeDrop:
    """Answers the core's requests synchronously, like a maildrop would."""

    accounts: dict[str, str] = field(default_factory=lambda: {"bob@bob.lab": "pw x"})
    apop: dict[str, str] = field(default_factory=lambda: {"bob@bob.lab": "tanstaaf"})
    locked: bool = False
    bodies: dict[int, bytes] = field(default_factory=lambda: {10: M1, 11: M2, 12: M3})
    fail: set[type] = field(default_factory=set)
    deleted: list[tuple[int, ...]] = field(default_factory=list)

    def answer(self, request: p.Request) -> object:
        if type(request) in self.fail:
            raise RuntimeError("boom")
        match request:
            case p.Authenticate(login=login, password=password):
                ok = self.accounts.get(login.lower()) == password
                return login.lower() if ok else None
            case p.GetApopSecret(login=login):
                secret = self.apop.get(login.lower())
                return None if secret is None else (login.lower(), secret)
            case p.Lock():
                return not self.locked
            case p.ListEntries():
                return [E(i, f"uid-{i}", len(b)) for i, b in self.bodies.items()]
            case p.Fetch(entry_id=entry_id):
                return self.bodies.get(entry_id)
            case p.Delete(entry_ids=ids):
                self.deleted.append(ids)
                return None
        raise AssertionError(request)


@dataclass
class Run:
    out: bytes
    effects: list[p.Action]


def feed(core: POP3Protocol, raw: bytes, drop: FakeDrop) -> Run:
    """Feed one line, answer every request, return the bytes written and the other effects."""
    out, effects = b"", []
    queue = list(core.receive_line(raw))
    while queue:
        action = queue.pop(0)
        if isinstance(action, p.Send):
            out += action.data + action.body
        elif isinstance(action, p.Request):
            effects.append(action)
            try:
                result = drop.answer(action)
            except RuntimeError:
                queue += core.fail(action)
            else:
                queue += core.complete(action, result)
        else:
            effects.append(action)
    return Run(out, effects)


def make(state: str, drop: FakeDrop | None = None) -> tuple[POP3Protocol, FakeDrop]:
    """A core in a named state: 'auth' (plaintext allowed, APOP on), 'strict' (plaintext
    refused, TLS offered), 'tls' (after STLS), 'txn' (logged in), 'update' (QUIT in progress),
    'closed' (after QUIT)."""
    drop = drop or FakeDrop()
    if state == "strict":
        return POP3Protocol("pop.bob.lab", tls_available=True), drop
    if state == "tls":
        core = POP3Protocol("pop.bob.lab", tls_available=True)
        core.tls_started()
        return core, drop
    core = POP3Protocol("pop.bob.lab", allow_plaintext_auth=True, apop_timestamp=TS)
    if state in ("txn", "update", "closed"):
        feed(core, b"USER bob@bob.lab\r\n", drop)
        assert feed(core, b"PASS pw x\r\n", drop).out.startswith(b"+OK")
    if state == "update":
        feed(core, b"DELE 1\r\n", drop)
        drop.fail.add(p.Delete)
        core.receive_line(b"QUIT\r\n")  # Delete outstanding
        assert core.state is UPDATE
    if state == "closed":
        feed(core, b"QUIT\r\n", drop)
    return core, drop


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def digest(secret: str) -> str:
    return hashlib.md5((TS + secret).encode()).hexdigest()


OK_LOGIN = f"+OK maildrop has 3 messages ({TOTAL} octets)\r\n".encode()
STUFFED_M2 = b"Subject: b\r\n\r\n..dot\r\nline2\r\n..\r\n.\r\n"
FAREWELL = b"+OK pop.bob.lab labmail POP3 server signing off"
AUTH_ERR = b"-ERR [AUTH] invalid login or password\r\n"
PLAIN_OFF = b"-ERR plaintext authentication disabled, use STLS first\r\n"
WRONG = b"-ERR command not valid in this state\r\n"
SYNTAX = b"-ERR syntax error\r\n"
NO_SUCH = b"-ERR no such message, only 3 messages in maildrop\r\n"
SYS_TEMP = b"-ERR [SYS/TEMP] internal error\r\n"
UIDL_HEAD = b"+OK unique-id listing follows\r\n"
PLAIN_BOB = base64.b64encode(b"\0bob@bob.lab\0pw x")

# (state, lines fed in order, bytes expected from the last line)
TABLE: list[tuple[str, list[bytes], bytes]] = [
    # AUTHORIZATION: USER/PASS
    ("auth", [b"USER bob@bob.lab"], b"+OK send PASS\r\n"),
    ("auth", [b"USER"], SYNTAX),
    ("auth", [b"USER a b"], SYNTAX),
    ("auth", [b"PASS pw x"], b"-ERR USER first\r\n"),
    ("auth", [b"USER bob@bob.lab", b"PASS pw x"], OK_LOGIN),
    ("auth", [b"user BOB@Bob.Lab", b"pass pw x"], OK_LOGIN),
    ("auth", [b"USER bob@bob.lab", b"PASS"], SYNTAX),
    ("auth", [b"USER bob@bob.lab", b"PASS wrong"], AUTH_ERR),
    ("auth", [b"USER nobody@bob.lab", b"PASS pw x"], AUTH_ERR),
    ("auth", [b"USER bob@bob.lab", b"CAPA", b"PASS pw x"], b"-ERR USER first\r\n"),
    ("auth", [b"USER bob@bob.lab", b"PASS wrong", b"PASS pw x"], b"-ERR USER first\r\n"),
    ("strict", [b"USER bob@bob.lab"], PLAIN_OFF),
    ("strict", [b"PASS pw x"], PLAIN_OFF),
    ("tls", [b"USER bob@bob.lab", b"PASS pw x"], OK_LOGIN),
    # APOP (RFC 1939 7)
    ("auth", [f"APOP bob@bob.lab {digest('tanstaaf')}".encode()], OK_LOGIN),
    ("auth", [f"APOP BOB@bob.lab {digest('tanstaaf').upper()}".encode()], OK_LOGIN),
    ("auth", [f"APOP bob@bob.lab {digest('wrong')}".encode()], AUTH_ERR),
    ("auth", [f"APOP carol@bob.lab {digest('tanstaaf')}".encode()], AUTH_ERR),
    ("auth", [b"APOP bob@bob.lab"], SYNTAX),
    ("strict", [f"APOP bob@bob.lab {digest('tanstaaf')}".encode()], b"-ERR APOP not available\r\n"),
    # AUTH PLAIN (RFC 5034, RFC 4616)
    ("auth", [b"AUTH PLAIN " + PLAIN_BOB], OK_LOGIN),
    ("auth", [b"AUTH plain " + b64("bob@bob.lab\0bob@bob.lab\0pw x").encode()], OK_LOGIN),
    ("auth", [b"AUTH PLAIN " + b64("carol@bob.lab\0bob@bob.lab\0pw x").encode()], AUTH_ERR),
    ("auth", [b"AUTH PLAIN " + b64("\0bob@bob.lab\0nope").encode()], AUTH_ERR),
    ("auth", [f"AUTH PLAIN {b64('no nuls')}".encode()], AUTH_ERR),
    ("auth", [b"AUTH PLAIN ="], AUTH_ERR),
    ("auth", [b"AUTH PLAIN !!!"], b"-ERR invalid base64\r\n"),
    ("auth", [b"AUTH PLAIN"], b"+ \r\n"),
    ("auth", [b"AUTH PLAIN", PLAIN_BOB], OK_LOGIN),
    ("auth", [b"AUTH PLAIN", b"*"], b"-ERR authentication cancelled\r\n"),
    ("auth", [b"AUTH PLAIN", b"%%%"], b"-ERR invalid base64\r\n"),
    ("auth", [b"AUTH PLAIN", b"*", b"STAT"], WRONG),
    ("auth", [b"AUTH CRAM-MD5"], b"-ERR unsupported SASL mechanism\r\n"),
    ("auth", [b"AUTH"], SYNTAX),
    ("auth", [b"AUTH PLAIN a b"], SYNTAX),
    ("strict", [b"AUTH PLAIN"], PLAIN_OFF),
    ("tls", [b"AUTH PLAIN", PLAIN_BOB], OK_LOGIN),
    # STLS (RFC 2595)
    ("auth", [b"STLS"], b"-ERR STLS not available\r\n"),
    ("strict", [b"STLS"], b"+OK begin TLS negotiation\r\n"),
    ("strict", [b"STLS now"], SYNTAX),
    ("tls", [b"STLS"], b"-ERR command not permitted when TLS active\r\n"),
    # CAPA (RFC 2449)
    ("auth", [b"CAPA"], b"+OK capability list follows\r\nTOP\r\nUIDL\r\nRESP-CODES\r\n"
        b"AUTH-RESP-CODE\r\nPIPELINING\r\nUSER\r\nSASL PLAIN\r\nIMPLEMENTATION labmail\r\n.\r\n"),
    ("strict", [b"CAPA"], b"+OK capability list follows\r\nTOP\r\nUIDL\r\nRESP-CODES\r\n"
        b"AUTH-RESP-CODE\r\nPIPELINING\r\nSTLS\r\nIMPLEMENTATION labmail\r\n.\r\n"),
    ("tls", [b"CAPA"], b"+OK capability list follows\r\nTOP\r\nUIDL\r\nRESP-CODES\r\n"
        b"AUTH-RESP-CODE\r\nPIPELINING\r\nUSER\r\nSASL PLAIN\r\nIMPLEMENTATION labmail\r\n.\r\n"),
    ("txn", [b"CAPA"], b"+OK capability list follows\r\nTOP\r\nUIDL\r\nRESP-CODES\r\n"
        b"AUTH-RESP-CODE\r\nPIPELINING\r\nIMPLEMENTATION labmail\r\n.\r\n"),
    ("auth", [b"CAPA x"], SYNTAX),
    # QUIT
    ("auth", [b"QUIT"], FAREWELL + b"\r\n"),
    ("auth", [b"QUIT now"], SYNTAX),
    ("txn", [b"QUIT"], FAREWELL + b"\r\n"),
    ("txn", [b"DELE 2", b"QUIT"], FAREWELL + b" (1 messages deleted)\r\n"),
    # STAT, LIST, UIDL
    ("txn", [b"STAT"], f"+OK 3 {TOTAL}\r\n".encode()),
    ("txn", [b"STAT 1"], SYNTAX),
    ("txn", [b"LIST"], f"+OK 3 messages ({TOTAL} octets)\r\n1 {len(M1)}\r\n2 {len(M2)}\r\n"
        f"3 {len(M3)}\r\n.\r\n".encode()),
    ("txn", [b"LIST 2"], f"+OK 2 {len(M2)}\r\n".encode()),
    ("txn", [b"list 3"], f"+OK 3 {len(M3)}\r\n".encode()),
    ("txn", [b"LIST 0"], NO_SUCH),
    ("txn", [b"LIST 4"], NO_SUCH),
    ("txn", [b"LIST 99999999999"], b"-ERR invalid message number\r\n"),
    ("txn", [b"LIST -1"], b"-ERR invalid message number\r\n"),
    ("txn", [b"LIST x"], b"-ERR invalid message number\r\n"),
    ("txn", [b"LIST \xd9\xa1"], b"-ERR invalid message number\r\n"),
    ("txn", [b"LIST 1 2"], SYNTAX),
    ("txn", [b"UIDL"], UIDL_HEAD + b"1 uid-10\r\n2 uid-11\r\n3 uid-12\r\n.\r\n"),
    ("txn", [b"UIDL 3"], b"+OK 3 uid-12\r\n"),
    ("txn", [b"UIDL 4"], NO_SUCH),
    ("txn", [b"UIDL 1 2"], SYNTAX),
    # RETR, TOP
    ("txn", [b"RETR 1"], f"+OK {len(M1)} octets\r\n".encode() + M1 + b".\r\n"),
    ("txn", [b"RETR 2"], f"+OK {len(M2)} octets\r\n".encode() + STUFFED_M2),
    ("txn", [b"RETR"], SYNTAX),
    ("txn", [b"RETR 1 2"], SYNTAX),
    ("txn", [b"RETR 9"], NO_SUCH),
    ("txn", [b"TOP 3 0"], b"+OK top of message follows\r\nX: y\r\n\r\n.\r\n"),
    ("txn", [b"TOP 3 1"], b"+OK top of message follows\r\nX: y\r\n\r\nbye\r\n.\r\n"),
    ("txn", [b"TOP 3 99"], b"+OK top of message follows\r\n" + M3 + b".\r\n"),
    ("txn", [b"TOP 2 1"], b"+OK top of message follows\r\nSubject: b\r\n\r\n..dot\r\n.\r\n"),
    ("txn", [b"TOP 3"], SYNTAX),
    ("txn", [b"TOP 3 x"], b"-ERR invalid number of lines\r\n"),
    ("txn", [b"TOP 3 -1"], b"-ERR invalid number of lines\r\n"),
    ("txn", [b"TOP 4 1"], NO_SUCH),
    # DELE, RSET, NOOP: deleted messages vanish at once (RFC 1939 5)
    ("txn", [b"DELE 2"], b"+OK message 2 deleted\r\n"),
    ("txn", [b"DELE 2", b"DELE 2"], b"-ERR message 2 already deleted\r\n"),
    ("txn", [b"DELE 2", b"RETR 2"], b"-ERR message 2 already deleted\r\n"),
    ("txn", [b"DELE 2", b"TOP 2 0"], b"-ERR message 2 already deleted\r\n"),
    ("txn", [b"DELE 2", b"LIST 2"], b"-ERR message 2 already deleted\r\n"),
    ("txn", [b"DELE 2", b"UIDL 2"], b"-ERR message 2 already deleted\r\n"),
    ("txn", [b"DELE 2", b"STAT"], f"+OK 2 {len(M1) + len(M3)}\r\n".encode()),
    ("txn", [b"DELE 2", b"LIST"], f"+OK 2 messages ({len(M1) + len(M3)} octets)\r\n"
        f"1 {len(M1)}\r\n3 {len(M3)}\r\n.\r\n".encode()),
    ("txn", [b"DELE 2", b"UIDL"], UIDL_HEAD + b"1 uid-10\r\n3 uid-12\r\n.\r\n"),
    ("txn", [b"DELE 0"], NO_SUCH),
    ("txn", [b"DELE"], SYNTAX),
    ("txn", [b"DELE 1", b"DELE 3", b"RSET"], OK_LOGIN),
    ("txn", [b"DELE 1", b"RSET", b"LIST 1"], f"+OK 1 {len(M1)}\r\n".encode()),
    ("txn", [b"RSET x"], SYNTAX),
    ("txn", [b"NOOP"], b"+OK\r\n"),
    ("txn", [b"NOOP x"], SYNTAX),
    # unknown, malformed, and line endings
    ("auth", [b"HELO"], b"-ERR unknown command\r\n"),
    ("txn", [b"XTND XMIT"], b"-ERR unknown command\r\n"),
    ("txn", [b""], b"-ERR unknown command\r\n"),
    ("txn", [b"\xff\xfe"], b"-ERR command is not valid UTF-8\r\n"),
    ("txn", [b"ST\xc3\x84T"], b"-ERR unknown command\r\n"),
    ("txn", [b"stat\n"], f"+OK 3 {TOTAL}\r\n".encode()),
    ("txn", [b"STAT\r\n"], f"+OK 3 {TOTAL}\r\n".encode()),
]


@pytest.mark.parametrize(("state", "lines", "expected"), TABLE)
def test_table(state: str, lines: list[bytes], expected: bytes) -> None:
    core, drop = make(state)
    run = None
    for raw in lines:
        run = feed(core, raw if raw.endswith(b"\n") else raw + b"\r\n", drop)
    assert run is not None
    assert run.out == expected


STATES = {"auth": AUTHORIZATION, "strict": AUTHORIZATION, "tls": AUTHORIZATION, "txn": TRANSACTION}
ARGS = {"RETR": " 1", "DELE": " 1", "TOP": " 1 0", "APOP": " a b", "USER": " a", "PASS": " a",
        "AUTH": " PLAIN ="}


@pytest.mark.parametrize("state", sorted(STATES))
@pytest.mark.parametrize("verb", sorted(ALLOWED))
def test_every_command_in_every_state(state: str, verb: str) -> None:
    core, drop = make(state)
    run = feed(core, f"{verb}{ARGS.get(verb, '')}\r\n".encode(), drop)
    assert run.out.startswith((b"+OK", b"-ERR", b"+ "))
    if STATES[state] not in ALLOWED[verb]:
        assert run.out == WRONG


@pytest.mark.parametrize("verb", sorted(ALLOWED))
def test_nothing_is_answered_after_quit(verb: str) -> None:
    core, drop = make("closed")
    assert core.closed
    assert core.receive_line(f"{verb}\r\n".encode()) == []


def test_update_state_takes_no_lines_until_delete_answers() -> None:
    core, _ = make("update")
    with pytest.raises(ProtocolUsageError):
        core.receive_line(b"NOOP\r\n")


def test_login_asks_authenticate_lock_list_in_order() -> None:
    core, drop = make("auth")
    feed(core, b"USER Bob@Bob.Lab\r\n", drop)
    run = feed(core, b"PASS pw x\r\n", drop)
    assert run.effects == [
        p.Authenticate("Bob@Bob.Lab", "pw x"),
        p.Lock("bob@bob.lab"),
        p.ListEntries("bob@bob.lab"),
        p.LoggedIn("bob@bob.lab"),
    ]
    assert core.state is TRANSACTION and core.owner == "bob@bob.lab"
    assert "pw x" not in repr(p.Authenticate("x", "pw x"))


def test_failed_login_reports_auth_failed_before_the_reply() -> None:
    core, drop = make("auth")
    feed(core, b"USER bob@bob.lab\r\n", drop)
    actions = core.receive_line(b"PASS bad\r\n")
    actions = core.complete(actions[-1], None)  # type: ignore[arg-type]
    assert actions == [p.AuthFailed("bob@bob.lab"), p.line(AUTH_ERR.decode().rstrip())]
    assert core.state is AUTHORIZATION


def test_locked_maildrop_answers_in_use() -> None:
    core, drop = make("auth", FakeDrop(locked=True))
    feed(core, b"USER bob@bob.lab\r\n", drop)
    run = feed(core, b"PASS pw x\r\n", drop)
    assert run.out == b"-ERR [IN-USE] maildrop is locked by another session\r\n"
    assert core.state is AUTHORIZATION


@pytest.mark.parametrize("failing", [p.Authenticate, p.Lock])
def test_maildrop_failure_during_login_is_sys_temp(failing: type) -> None:
    drop = FakeDrop()
    drop.fail.add(failing)
    core, _ = make("auth", drop)
    feed(core, b"USER bob@bob.lab\r\n", drop)
    assert feed(core, b"PASS pw x\r\n", drop).out == SYS_TEMP
    assert core.state is AUTHORIZATION


def test_apop_failure_is_sys_temp() -> None:
    drop = FakeDrop()
    drop.fail.add(p.GetApopSecret)
    core, _ = make("auth", drop)
    assert feed(core, f"APOP bob@bob.lab {digest('x')}\r\n".encode(), drop).out == SYS_TEMP


def test_listing_failure_unlocks_and_stays_in_authorization() -> None:
    drop = FakeDrop()
    drop.fail.add(p.ListEntries)
    core, _ = make("auth", drop)
    feed(core, b"USER bob@bob.lab\r\n", drop)
    run = feed(core, b"PASS pw x\r\n", drop)
    assert run.out == SYS_TEMP
    assert p.Unlock("bob@bob.lab") in run.effects
    assert core.state is AUTHORIZATION


def test_fetch_failure_and_vanished_message() -> None:
    core, drop = make("txn")
    drop.fail.add(p.Fetch)
    assert feed(core, b"RETR 1\r\n", drop).out == SYS_TEMP
    drop.fail.clear()
    del drop.bodies[10]
    assert feed(core, b"RETR 1\r\n", drop).out == b"-ERR message 1 is no longer available\r\n"
    assert core.state is TRANSACTION


def test_quit_deletes_marked_messages_in_one_request() -> None:
    core, drop = make("txn")
    feed(core, b"DELE 3\r\n", drop)
    feed(core, b"DELE 1\r\n", drop)
    run = feed(core, b"QUIT\r\n", drop)
    assert drop.deleted == [(10, 12)]
    assert run.effects == [p.Delete("bob@bob.lab", (10, 12)), p.Close()]
    assert core.closed


def test_quit_without_deletions_asks_nothing() -> None:
    core, drop = make("txn")
    feed(core, b"DELE 1\r\n", drop)
    feed(core, b"RSET\r\n", drop)
    run = feed(core, b"QUIT\r\n", drop)
    assert drop.deleted == [] and run.effects == [p.Close()]


def test_failed_update_answers_sys_temp_and_closes() -> None:
    core, drop = make("txn")
    feed(core, b"DELE 1\r\n", drop)
    drop.fail.add(p.Delete)
    run = feed(core, b"QUIT\r\n", drop)
    assert run.out == b"-ERR [SYS/TEMP] internal error, no messages removed\r\n"
    assert run.effects[-1] == p.Close()


def test_snapshot_is_taken_at_login() -> None:
    core, drop = make("txn")
    drop.bodies[13] = b"new\r\n"
    assert feed(core, b"STAT\r\n", drop).out == f"+OK 3 {TOTAL}\r\n".encode()


def test_stls_asks_for_tls_and_tls_started_resets_user() -> None:
    core = POP3Protocol("h", tls_available=True, allow_plaintext_auth=True)
    core.receive_line(b"USER bob@bob.lab\r\n")
    assert core.receive_line(b"STLS\r\n")[-1] == p.StartTLS()
    core.tls_started()
    assert core.receive_line(b"PASS pw x\r\n") == [p.line("-ERR USER first")]


def test_greeting_has_a_timestamp_only_with_apop() -> None:
    assert make("auth")[0].greeting() == [p.line(f"+OK pop.bob.lab labmail POP3 server ready {TS}")]
    assert make("strict")[0].greeting() == [p.line("+OK pop.bob.lab labmail POP3 server ready")]


def test_retr_trace_is_a_summary() -> None:
    core, drop = make("txn")
    actions = core.receive_line(b"RETR 2\r\n")
    send = core.complete(actions[-1], M2)[0]  # type: ignore[arg-type]
    assert isinstance(send, p.Send)
    assert send.trace == (f"+OK {len(M2)} octets", f"<{len(M2)} octets>")


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        (b"PASS my secret\r\n", "PASS ****"),
        (b"pass x\r\n", "pass ****"),
        (b"AUTH PLAIN AGJvYgBwdw==\r\n", "AUTH PLAIN ****"),
        (b"AUTH PLAIN\r\n", "AUTH PLAIN"),
        (b"APOP bob@bob.lab c4c9334bac560ecc979e58001b3e22fb\r\n", "APOP bob@bob.lab ****"),
        (b"USER bob@bob.lab\r\n", "USER bob@bob.lab"),
        (b"RETR 1\r\n", "RETR 1"),
    ],
)
def test_trace_masks_secrets(raw: bytes, shown: str) -> None:
    assert make("auth")[0].describe_client_line(raw) == shown


def test_trace_masks_sasl_continuation() -> None:
    core, drop = make("auth")
    feed(core, b"AUTH PLAIN\r\n", drop)
    assert core.describe_client_line(b"AGJvYgBwdw==\r\n") == "****"


def test_complete_checks_the_request() -> None:
    core, _ = make("txn")
    with pytest.raises(ProtocolUsageError):
        core.complete(p.Fetch("bob@bob.lab", 10), b"")


@pytest.mark.parametrize(
    ("raw", "stuffed"),
    [
        (b"", b".\r\n"),
        (b"a\r\n", b"a\r\n.\r\n"),
        (b"a", b"a\r\n.\r\n"),
        (b".\r\n", b"..\r\n.\r\n"),
        (b"a\r\n.b\r\n..\r\n", b"a\r\n..b\r\n...\r\n.\r\n"),
    ],
)
def test_dot_stuff(raw: bytes, stuffed: bytes) -> None:
    assert dot_stuff(raw) == stuffed


@pytest.mark.parametrize(
    ("raw", "n", "top"),
    [
        (b"H: 1\r\n\r\nb1\r\nb2\r\n", 0, b"H: 1\r\n\r\n"),
        (b"H: 1\r\n\r\nb1\r\nb2\r\n", 1, b"H: 1\r\n\r\nb1\r\n"),
        (b"H: 1\r\n\r\nb1\r\nb2\r\n", 5, b"H: 1\r\n\r\nb1\r\nb2\r\n"),
        (b"H: 1\r\n", 3, b"H: 1\r\n"),
        (b"\r\nbody\r\n", 0, b"\r\n"),
    ],
)
def test_top_of(raw: bytes, n: int, top: bytes) -> None:
    assert top_of(raw, n) == top


def test_the_core_does_no_io() -> None:
    """pop3.protocol and the modules it is made of load neither asyncio nor sqlite."""
    code = ("import sys, pop3.protocol; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "{'asyncio', 'sqlite3', '_sqlite3', 'aiosqlite', 'socket', 'ssl'}))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, timeout=60)
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        (b"\0bob@bob.lab\0pw x", ("bob@bob.lab", "pw x")),
        (b"Bob@bob.lab\0bob@BOB.lab\0pw", ("bob@BOB.lab", "pw")),  # authzid = authcid
        (b"carol@bob.lab\0bob@bob.lab\0pw", ("bob@bob.lab", None)),  # someone else: refused
        (b"\0\0pw", ("", None)),
        (b"bob@bob.lab\0pw", ("", None)),  # two parts
        (b"\0bob\xff\0pw", ("", None)),  # not UTF-8
    ],
)
def test_sasl_plain_responses(response: bytes, expected: tuple[str, str | None]) -> None:
    assert sasl.decode_plain(base64.b64encode(response).decode()) == expected


@pytest.mark.parametrize("response", ["not base64!", "YWJj\u00e9", "YWJjZA"])
def test_sasl_plain_refuses_what_is_not_base64(response: str) -> None:
    with pytest.raises(sasl.NotBase64):
        sasl.decode_plain(response)
