"""``mua demo``: watch one e-mail travel through all six steps (a composition root).

It starts a two-domain lab in this process (``mta.lab``: alice.lab sends, bob.lab receives and
serves POP3) on ephemeral loopback ports with temporary SQLite files, then walks through the six
steps with the real user agent and the real servers, printing for each step what happens, why
(with the RFC it follows), and the evidence: the formatted message, the SMTP and POP3
transcripts as the servers saw them, the routing decision the relay made, the queue entry, the
SQLite row and the rendered message. It exits 0 only if the message arrived intact. Everything it
shows of the servers comes from the events they publish on the lab's bus (``mta.events``).

This module and ``mua.testing`` are the only places in ``mua`` that use ``mta``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mta.texts import TEXT
from mua import compose, fetch, render, submit
from mua.errors import MuaError
from mua.folder import open_folder
from mua.profile import Profile, profile_from_dict

if TYPE_CHECKING:
    from mta.events import Event, ProtocolLine, Subscription

ALICE, BOB = "alice@alice.lab", "bob@bob.lab"
FAULT_REPLY = "451 4.3.0 Try again later (fault injected by the demo)"

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--lang", choices=sorted(TEXT), default="en",
                        help="language of the headings and explanations")
    parser.add_argument("--pause", action="store_true", help="wait for Enter between steps")
    parser.add_argument("--subject", help="the subject of the demo message")
    parser.add_argument("--body", help="the body of the demo message")
    parser.add_argument("--attach", action="append", default=[], metavar="FILE",
                        help="attach a file (repeatable)")
    parser.add_argument("--fail-next-hop", action="store_true",
                        help="bob.lab's MX answers 451 once: watch the deferral and the retry")
    parser.add_argument("--keep-data", metavar="DIR",
                        help="keep the lab's databases and Bob's Maildir in DIR")
    parser.add_argument("--web", action="store_true",
                        help="serve the flow, mail and server pages and wait for Ctrl-C")
    parser.add_argument("--port", type=int, default=8025, metavar="N",
                        help="with --web: the HTTP port of the flow page (default 8025, 0: any)")


# -- collecting what the servers report ---------------------------------------------------------


class Collector:
    """The events the lab's servers publish while the demo runs (one bus subscription, read
    into a list); ``mark()`` says where a step begins."""

    def __init__(self, subscription: Subscription) -> None:
        self._subscription = subscription
        self.events: list[Event] = []

    def mark(self) -> int:
        self.events += self._subscription.drain()
        return len(self.events)

    def since(self, mark: int, kind: str) -> list[Any]:
        """The events of ``kind`` published since ``mark`` (the line events of a listener
        with ``kind`` "line:<listener>")."""
        self.mark()
        kind, _, listener = kind.partition(":")
        return [e for e in self.events[mark:]
                if e.kind == kind and (not listener or getattr(e, "listener", "") == listener)]


@dataclass
class Output:
    """Headings, prose and evidence: rich on a terminal, plain text when piped."""

    lang: str
    pause: bool
    console: object | None = None
    times: dict[int, float] = field(default_factory=dict)

    def t(self, key: str, **values: object) -> str:
        return TEXT[self.lang][key].format(**values)

    def heading(self, n: int) -> None:
        title = self.t("step", n=n, name=self.t(f"s{n}"))
        if self.console is not None:
            from rich.text import Text

            self.console.rule(Text(title, style="bold cyan"))  # type: ignore[attr-defined]
        else:
            print(f"\n=== {title} ===")
        self.say(self.t(f"s{n}.why"))

    def say(self, text: str) -> None:
        print(text)

    def label(self, text: str) -> None:
        if self.console is not None:
            from rich.text import Text

            self.console.print(Text(text, style="bold"))  # type: ignore[attr-defined]
        else:
            print(f"-- {text}")

    def block(self, text: str, limit: int = 60) -> None:
        lines = text.rstrip("\n").split("\n")
        if len(lines) > limit:
            lines = lines[: limit - 1] + [self.t("more", n=len(lines) - limit + 1)]
        for line in lines:
            print("    " + line)

    def transcript(self, lines: list[ProtocolLine]) -> None:
        if not lines:
            self.block(self.t("transcript.empty"))
            return
        peers = list(dict.fromkeys(line.peer for line in lines))
        for number, peer in enumerate(peers, 1):
            if len(peers) > 1:
                self.say(f"  ({self.t('connection', n=number, peer=peer)})")
            self._lines([line for line in lines if line.peer == peer])

    def _lines(self, lines: list[ProtocolLine]) -> None:
        for record in lines:
            who = "C:" if record.direction == "C" else "S:"
            line = f"    {who} {record.line}"
            if self.console is not None:
                from rich.text import Text

                style = "green" if record.direction == "C" else "yellow"
                self.console.print(Text(line, style=style),  # type: ignore[attr-defined]
                                   soft_wrap=True)
            else:
                print(line)

    def wait(self) -> None:
        if self.pause:
            print(self.t("pause"), end="", flush=True)
            try:
                input()
            except EOFError:
                print()


# -- the six steps ------------------------------------------------------------------------------


def _profile(address: str, domain: object, folder: Path) -> Profile:
    ports = domain.ports  # type: ignore[attr-defined]
    return profile_from_dict({
        "address": address,
        "name": address.partition("@")[0].capitalize(),
        # LAB ONLY: the lab's certificates are self-signed
        "smtp": {"host": "127.0.0.1", "port": ports["submission"], "verify": False},
        "pop3": {"host": "127.0.0.1", "port": ports.get("pop3", 110), "verify": False},
        "maildir": str(folder / f"{address}.Maildir"),
    }, env={})


@contextlib.contextmanager
def _timer(out: Output, n: int) -> Iterator[None]:
    """Record how long step ``n`` took (shown in the summary)."""
    start = time.perf_counter()
    yield
    out.times[n] = time.perf_counter() - start


@contextlib.contextmanager
def _work_folder(keep: str | None) -> Iterator[Path]:
    """``--keep-data DIR`` (created if missing), else a temporary folder removed at the end."""
    if keep:
        folder = Path(keep)
        folder.mkdir(parents=True, exist_ok=True)
        yield folder
        return
    with tempfile.TemporaryDirectory(prefix="labmail-demo-") as temp:
        yield Path(temp)


@dataclass
class _Demo:
    """What the steps share: the options, the output, the running lab and what it reports."""

    args: argparse.Namespace
    out: Output
    collector: Collector
    lab: Any

    def begin(self, n: int) -> None:
        self.out.wait()
        self.out.heading(n)


def _introduce(demo: _Demo) -> None:
    out, lab = demo.out, demo.lab
    out.label(out.t("title"))
    out.say(out.t("lab"))
    out.block(out.t("lab.alice", **lab["alice.lab"].ports) + "\n"
              + out.t("lab.bob", **lab["bob.lab"].ports))


def _step_compose(demo: _Demo, attachments: list[compose.Attachment]) -> tuple[str, str]:
    """Step 1: the fields of the form; returns the subject and body."""
    args, out = demo.args, demo.out
    demo.begin(1)
    subject = args.subject or out.t("subject")
    body = args.body if args.body is not None else out.t("body")
    fields = [f"From: Alice <{ALICE}>", f"To: Bob <{BOB}>", f"Subject: {subject}",
              "Body:"] + ["  " + line for line in body.rstrip("\n").split("\n")]
    fields += [f"Attachment: {a.filename} ({len(a.data)} bytes)" for a in attachments]
    out.block("\n".join(fields))
    out.times[1] = 0.0
    return subject, body


def _step_format(
    demo: _Demo, subject: str, body: str, attachments: list[compose.Attachment]
) -> tuple[EmailMessage, bytes]:
    """Step 2: the RFC 5322 message; returns it and its bytes as sent."""
    demo.begin(2)
    with _timer(demo.out, 2):
        message = compose.build_message(
            sender=ALICE, sender_name="Alice", to=[f"Bob <{BOB}>"], subject=subject,
            body=body, attachments=attachments)
    sent_bytes = compose.to_bytes(message)
    demo.out.block(sent_bytes.decode("ascii", "replace").replace("\r\n", "\n"))
    return message, sent_bytes


async def _step_submit(demo: _Demo, message: EmailMessage, alice_profile: Profile) -> int:
    """Step 3: submission to alice.lab; returns where the collected lines of steps 3-4 start."""
    out, alice, bob = demo.out, demo.lab["alice.lab"], demo.lab["bob.lab"]
    demo.begin(3)
    if demo.args.fail_next_hop:
        bob.faults.script(FAULT_REPLY)
    mark = demo.collector.mark()
    with _timer(out, 3):
        result = await asyncio.to_thread(
            submit.submit, alice_profile, alice.password(ALICE), message)
    out.label(out.t("s3.view"))
    out.transcript(demo.collector.since(mark, "line:submission"))
    out.say(f"=> {result.reply}")
    return mark


async def _step_relay(demo: _Demo, mark: int, message_id: str) -> Any:
    """Step 4: the relay to bob.lab, seen from both servers; returns the ``stored`` event."""
    from mta.lab_trace import attempt_lines, route_text
    from mta.store import format_rows

    out, lab, collector = demo.out, demo.lab, demo.collector
    demo.begin(4)
    with _timer(out, 4):
        stored = await lab.wait_for(kind="stored", message_id=message_id, server="bob.lab",
                                    timeout=30)
        await lab.settle(timeout=30)  # the relay has recorded its verdict
        out.label(out.t("s4.route"))  # the decision the relay published, not a recomputation
        routes = [e for e in collector.since(mark, "routed") if e.destination == "bob.lab"]
        out.block(route_text(routes[0]) if routes else out.t("transcript.empty"))
        out.label(out.t("s4.queue"))
        rows = [r for r in await lab.queue("alice.lab", include_final=True)
                if r.recipient == BOB]
        out.block("\n".join(format_rows(rows)))
        out.label(out.t("s4.attempts"))
        out.block("\n".join(text for event in collector.since(mark, "attempt")
                            for text in attempt_lines(event)))
        if demo.args.fail_next_hop:
            out.say(out.t("s4.deferred"))
        out.label(out.t("s4.view"))
        out.transcript(collector.since(mark, "line:mx"))
        out.label(out.t("s4.row"))
        out.block(f"table mailbox: id={stored.mailbox_id} owner={stored.owner} "
                  f"uidl={stored.uidl} size={stored.size} sender=<{stored.sender}> "
                  f"smtp id={stored.queue_id}")
    return stored


async def _step_retrieve(demo: _Demo, bob_profile: Profile) -> fetch.FetchResult:
    """Step 5: Bob's user agent fetches by POP3 into his Maildir."""
    out = demo.out
    demo.begin(5)
    mark = demo.collector.mark()
    with _timer(out, 5):
        fetched = await asyncio.to_thread(
            fetch.fetch, bob_profile, demo.lab["bob.lab"].password(BOB))
    out.label(out.t("s5.view"))
    out.transcript(demo.collector.since(mark, "line:pop3"))
    out.say(out.t("s5.saved", path=bob_profile.maildir))
    return fetched


def _step_render(demo: _Demo, bob_profile: Profile, fetched: fetch.FetchResult) -> EmailMessage:
    """Step 6: the message as Bob reads it; returns it parsed."""
    demo.begin(6)
    with _timer(demo.out, 6):
        received = (open_folder(bob_profile.maildir).get_bytes(fetched.keys[-1])
                    if fetched.keys else b"")  # none: _compare says what went wrong
        parsed = render.parse(received)
        demo.out.block(render.render_message(parsed), limit=80)
    return parsed


async def _run(
    args: argparse.Namespace, out: Output, attachments: list[compose.Attachment]
) -> int:
    from mta.lab import LAB_QUEUE, Lab  # the demo is a composition root: it may use mta

    started = time.perf_counter()
    with _work_folder(args.keep_data) as work:
        queue = dataclasses.replace(LAB_QUEUE, retry_initial=0.5)
        async with Lab.start({"alice.lab": ["alice"], "bob.lab": ["bob"]}, folder=work,
                             queue=queue) as lab:
            with lab.bus.subscribe(maxsize=100_000) as events:  # the demo's view of the lab
                demo = _Demo(args, out, Collector(events), lab)
                return await _steps(demo, attachments, work, started)


async def _steps(demo: _Demo, attachments: list[compose.Attachment], work: Path,
                 started: float) -> int:
    """The six steps in order, then the conclusion."""
    lab = demo.lab
    _introduce(demo)
    alice_profile = _profile(ALICE, lab["alice.lab"], work)
    bob_profile = _profile(BOB, lab["bob.lab"], work)
    subject, body = _step_compose(demo, attachments)
    message, sent_bytes = _step_format(demo, subject, body, attachments)
    mark = await _step_submit(demo, message, alice_profile)
    stored = await _step_relay(demo, mark, str(message["Message-ID"]))
    fetched = await _step_retrieve(demo, bob_profile)
    parsed = _step_render(demo, bob_profile, fetched)
    return _conclude(demo, message, parsed, fetched, f"{time.perf_counter() - started:.2f} s",
                     size=len(sent_bytes), stored=stored.size)


def _conclude(
    demo: _Demo, message: EmailMessage, parsed: EmailMessage, fetched: fetch.FetchResult,
    total: str, *, size: int, stored: int,
) -> int:
    """Say whether the message arrived intact (exit 1 if not), with the time per step."""
    out = demo.out
    problem = _compare(message, parsed, fetched)
    if problem:
        out.say(out.t("broken", why=problem))
        return 1
    times = ", ".join(f"{n}: {out.times[n] * 1000:.0f} ms" for n in sorted(out.times))
    out.say("")
    out.say(out.t("summary", hops=3, size=size, stored=stored, times=times, total=total))
    if demo.args.keep_data:
        out.say(out.t("kept", folder=Path(demo.args.keep_data)))
    return 0


def _compare(sent: EmailMessage, got: EmailMessage, fetched: fetch.FetchResult) -> str | None:
    """Why the received message differs from the one composed, or None if it is intact."""
    if fetched.downloaded != 1:
        return f"expected one message by POP3, got {fetched.downloaded}"
    for name in ("From", "To", "Subject", "Message-ID", "Date"):
        if str(sent[name]) != str(got[name]):
            return f"header {name} changed: {sent[name]!r} -> {got[name]!r}"
    if render.body_text(sent) != render.body_text(got):
        return "the body text changed"
    sent_parts = [(a.filename, a.payload()) for a in render.attachments(sent)]
    got_parts = [(a.filename, a.payload()) for a in render.attachments(got)]
    if sent_parts != got_parts:
        return "the attachments changed"
    return None


def run(args: argparse.Namespace) -> int:
    if args.lang == "zh" and (sys.stdout.encoding or "").lower().replace("-", "") != "utf8":
        try:
            sys.stdout.reconfigure(encoding="utf-8")  # type: ignore[union-attr]
        except (AttributeError, ValueError):
            pass
    if args.web:
        from mua import demo_web

        return asyncio.run(demo_web.serve(args, TEXT[args.lang]))
    console = None
    if sys.stdout.isatty():
        from rich.console import Console

        console = Console(highlight=False)
    out = Output(args.lang, args.pause, console)
    # mua.cli turns a MuaError (exit code included) and Ctrl-C into one line
    attachments = [compose.Attachment.from_path(p) for p in args.attach]  # exit 2 if missing
    try:
        return asyncio.run(_run(args, out, attachments))
    except TimeoutError:
        raise MuaError("demo: the message did not arrive in time") from None
