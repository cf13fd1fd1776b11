"""Property: no command line or sequence of lines makes the core raise or reply off-protocol."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pop3 import protocol as p
from pop3.protocol import POP3Protocol

VERBS = sorted(p.ALLOWED) + ["XTND", "HELO", ""]
BODIES = [b"", b"a", b".\r\n", b"H: v\r\n\r\n.x\r\n..\r\nend\r\n", b"\r\n\r\n"]


@st.composite
def command_lines(draw: st.DrawFn) -> bytes:
    """Mostly plausible commands with random arguments, sometimes raw random bytes."""
    if draw(st.integers(0, 4)) == 0:
        return draw(st.binary(max_size=300))
    verb = draw(st.sampled_from(VERBS))
    verb = draw(st.sampled_from([verb, verb.lower(), verb.title()]))
    args = draw(
        st.lists(
            st.one_of(
                st.integers(-2, 6).map(str),
                st.sampled_from(["PLAIN", "*", "=", "AGJvYgBwdw==", "bob@bob.lab", "pw"]),
                st.text(max_size=12),
            ),
            max_size=3,
        )
    )
    text = " ".join([verb, *args])
    ending = draw(st.sampled_from(["\r\n", "\n", ""]))
    return (text + ending).encode("utf-8", "surrogatepass")


@st.composite
def answers(draw: st.DrawFn, request: p.Request) -> object:
    """A well-typed maildrop answer to a request, or an exception marker."""
    if draw(st.integers(0, 9)) == 0:
        return RuntimeError
    match request:
        case p.Authenticate(login=login) | p.GetApopSecret(login=login):
            owner = draw(st.sampled_from([None, login.lower()]))
            if isinstance(request, p.GetApopSecret) and owner is not None:
                return (owner, draw(st.sampled_from(["tanstaaf", ""])))
            return owner
        case p.Lock():
            return draw(st.booleans())
        case p.ListEntries():
            sizes = draw(st.lists(st.integers(0, 10_000), max_size=5))
            return [Entry(i + 1, f"u{i}", size) for i, size in enumerate(sizes)]
        case p.Fetch():
            return draw(st.sampled_from([None, *BODIES]))
    return None


class Entry:
    def __init__(self, id: int, uid: str, size: int) -> None:
        self.id, self.uid, self.size = id, uid, size


def check(send: p.Send) -> None:
    assert send.data.startswith((b"+OK", b"-ERR", b"+ ")), send
    assert send.data.endswith(b"\r\n")
    if send.body:
        assert send.body.endswith(b"\r\n.\r\n") or send.body == b".\r\n"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    plaintext=st.booleans(),
    tls=st.booleans(),
    apop=st.booleans(),
    data=st.data(),
)
def test_random_sessions_never_raise_or_reply_off_protocol(
    plaintext: bool, tls: bool, apop: bool, data: st.DataObject
) -> None:
    core = POP3Protocol(
        "pop.bob.lab",
        allow_plaintext_auth=plaintext,
        tls_available=tls,
        apop_timestamp="<1.2@pop.bob.lab>" if apop else None,
    )
    for action in core.greeting():
        assert isinstance(action, p.Send)
        check(action)
    lines = data.draw(st.lists(command_lines(), max_size=25))
    for raw in lines:
        core.describe_client_line(raw)
        queue = list(core.receive_line(raw))
        for _ in range(10):  # a line needs at most authenticate, lock, list
            if not queue:
                break
            action = queue.pop(0)
            if isinstance(action, p.Send):
                check(action)
            elif isinstance(action, p.StartTLS):
                core.tls_started()
            elif isinstance(action, p.Request):
                assert not queue, "a request is always the last action"
                answer = data.draw(answers(action))
                if answer is RuntimeError:
                    queue += core.fail(action)
                else:
                    queue += core.complete(action, answer)
        assert not queue
        assert core.pending is None
