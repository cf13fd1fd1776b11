"""``mua demo``: watch one e-mail travel through all six steps (a composition root).

It starts a two-domain lab in this process (``mta.lab``: alice.lab sends, bob.lab receives and
serves POP3) on ephemeral loopback ports with temporary SQLite files, then walks through the six
steps with the real user agent and the real servers, printing for each step what happens, why
(with the RFC it follows), and the evidence: the formatted message, the SMTP and POP3
transcripts as the servers saw them, the routing decision, the queue entry, the SQLite row and
the rendered message. It exits 0 only if the message arrived intact.

This module and ``mua.testing`` are the only places in ``mua`` that use ``mta``.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path

from mua import compose, fetch, render, submit
from mua.errors import MuaError
from mua.folder import open_folder
from mua.profile import Profile, profile_from_dict

ALICE, BOB = "alice@alice.lab", "bob@bob.lab"
FAULT_REPLY = "451 4.3.0 Try again later (fault injected by the demo)"

TEXT: dict[str, dict[str, str]] = {
    "en": {
        "title": "labmail: one e-mail, six steps",
        "lab": "Starting two mail domains in this process, on 127.0.0.1 with temporary SQLite "
               "databases:",
        "lab.alice": "alice.lab (the sender's server): submission {submission}, MX {mx}",
        "lab.bob": "bob.lab (the recipient's server): MX {mx}, POP3 {pop3}",
        "step": "Step {n} of 6: {name}",
        "s1": "compose", "s2": "format", "s3": "submit", "s4": "relay", "s5": "retrieve",
        "s6": "render",
        "s1.why": "Alice fills in who the mail is from and to, a subject, a body and any "
                  "attachments. Nothing has been sent yet: these are just the fields of a form.",
        "s2.why": "The user agent turns the form into an Internet message (RFC 5322): header "
                  "fields, a blank line, the body. Non-ASCII text is encoded (RFC 2047 words, "
                  "RFC 2231 file names) and MIME (RFC 2045) describes the parts.",
        "s3.why": "The user agent submits the message by SMTP to Alice's own server on the "
                  "submission port (RFC 6409): EHLO, STARTTLS (RFC 3207), AUTH (RFC 4954), then "
                  "the envelope (MAIL FROM, RCPT TO) and DATA, ended by a lone '.'. The server "
                  "answers 250 only after the message is safely in its queue.",
        "s3.view": "SMTP dialogue, as alice.lab's submission server saw it",
        "s4.why": "alice.lab does not hold bob.lab's mail, so it relays: it looks up the next "
                  "hop (a static route here; on the Internet a DNS MX record, RFC 5321 section "
                  "5), connects to bob.lab's MX server and repeats the SMTP transaction. bob.lab "
                  "adds a Received: header and stores the message in SQLite before it says 250.",
        "s4.route": "routing decision",
        "s4.queue": "queue entry at alice.lab",
        "s4.attempts": "delivery attempts",
        "s4.view": "SMTP dialogue, as bob.lab's MX server saw it",
        "s4.row": "row written into bob.lab's SQLite store",
        "s4.deferred": "bob.lab answered 451 (a temporary failure): alice.lab keeps the message "
                       "queued and tries again after a backoff delay.",
        "s5.why": "Bob's user agent connects to bob.lab's POP3 server (RFC 1939), logs in, asks "
                  "how much mail there is (STAT, LIST, UIDL), downloads it (RETR), marks it "
                  "deleted (DELE) and commits with QUIT.",
        "s5.view": "POP3 dialogue, as bob.lab's POP3 server saw it",
        "s5.saved": "saved in Bob's local Maildir: {path}",
        "s6.why": "Bob's user agent decodes the message for a person: header fields with their "
                  "RFC 2047 words decoded, the text part, and the list of attachments.",
        "summary": "Delivered intact: {hops} hops (submission, relay, POP3), {size} bytes "
                   "composed, {stored} bytes stored at bob.lab; time per step: {times}; "
                   "total {total}.",
        "broken": "The message did NOT arrive intact: {why}",
        "pause": "[press Enter for the next step]",
        "kept": "Databases kept in {folder}",
        "subject": "Hello from Alice",
        "body": "Hi Bob,\n\nthis message went through all six steps of e-mail delivery.\n\n"
                "Alice\n",
        "more": "... {n} more lines",
        "transcript.empty": "(no lines recorded)",
        "connection": "connection {n}, from {peer}",
    },
    "zh": {
        "title": "labmail：一封电子邮件的六个步骤",
        "lab": "在本进程中启动两个邮件域，监听 127.0.0.1，使用临时 SQLite 数据库：",
        "lab.alice": "alice.lab（发件方服务器）：提交端口 {submission}，MX 端口 {mx}",
        "lab.bob": "bob.lab（收件方服务器）：MX 端口 {mx}，POP3 端口 {pop3}",
        "step": "第 {n} 步（共 6 步）：{name}",
        "s1": "撰写", "s2": "格式化", "s3": "提交", "s4": "中继", "s5": "收取", "s6": "显示",
        "s1.why": "Alice 填写发件人、收件人、主题、正文和附件。"
                  "此时还没有发送任何东西：这些只是表单里的字段。",
        "s2.why": "用户代理把表单变成一封互联网邮件（RFC 5322）：首部字段、一个空行、正文。"
                  "非 ASCII 文字会被编码（RFC 2047 编码字、RFC 2231 文件名），MIME（RFC 2045）"
                  "描述各个部分。",
        "s3.why": "用户代理通过 SMTP 把邮件提交给 Alice 自己的服务器的提交端口（RFC 6409）：EHLO、"
                  "STARTTLS（RFC 3207）、AUTH（RFC 4954），然后是信封（MAIL FROM、RCPT TO）"
                  "和 DATA，"
                  "以单独一行的“.”结束。服务器只有在邮件安全进入队列之后才回答 250。",
        "s3.view": "SMTP 对话（alice.lab 提交服务器所见）",
        "s4.why": "alice.lab 并不保存 bob.lab 的邮件，所以它要中继：先查找下一跳（这里是静态路由；"
                  "在互联网上是 DNS MX 记录，RFC 5321 第 5 节），再连接 bob.lab 的 MX 服务器，"
                  "重复一次 SMTP "
                  "事务。bob.lab 添加 Received: 首部，并在回答 250 之前把邮件存入 SQLite。",
        "s4.route": "路由决定",
        "s4.queue": "alice.lab 的队列记录",
        "s4.attempts": "投递尝试",
        "s4.view": "SMTP 对话（bob.lab 的 MX 服务器所见）",
        "s4.row": "写入 bob.lab SQLite 存储的记录",
        "s4.deferred": "bob.lab 回答 451（暂时失败）："
                       "alice.lab 把邮件留在队列中，退避一段时间后重试。",
        "s5.why": "Bob 的用户代理连接 bob.lab 的 POP3 服务器（RFC 1939），登录，询问有多少邮件"
                  "（STAT、LIST、UIDL），下载（RETR），标记删除（DELE），最后用 QUIT 提交。",
        "s5.view": "POP3 对话（bob.lab 的 POP3 服务器所见）",
        "s5.saved": "已保存到 Bob 的本地 Maildir：{path}",
        "s6.why": "Bob 的用户代理把邮件解码给人看："
                  "解码 RFC 2047 编码字后的首部字段、正文部分和附件列表。",
        "summary": "完整送达：经过 {hops} 跳（提交、中继、POP3），"
                   "撰写 {size} 字节，bob.lab 存储 {stored} 字节；"
                   "各步用时：{times}；共 {total}。",
        "broken": "邮件没有完整送达：{why}",
        "pause": "[按回车键继续下一步]",
        "kept": "数据库保存在 {folder}",
        "subject": "来自 Alice 的问候",
        "body": "Bob 你好，\n\n这封邮件走完了电子邮件投递的全部六个步骤。\n\nAlice\n",
        "more": "…… 还有 {n} 行",
        "transcript.empty": "（没有记录到任何行）",
        "connection": "第 {n} 个连接，来自 {peer}",
    },
}


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


class Collector(logging.Handler):
    """Keeps the trace records (labmail.trace) and the relay's log lines of this demo."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def mark(self) -> int:
        return len(self.records)

    def lines(self, since: int, component: str) -> list[logging.LogRecord]:
        return [r for r in self.records[since:]
                if getattr(r, "component", None) == component and hasattr(r, "direction")]

    def relay(self, since: int) -> list[str]:
        return [r.getMessage() for r in self.records[since:] if r.name == "labmail.relay"]


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

    def transcript(self, records: list[logging.LogRecord]) -> None:
        if not records:
            self.block(self.t("transcript.empty"))
            return
        peers = list(dict.fromkeys(record.peer for record in records))
        for number, peer in enumerate(peers, 1):
            if len(peers) > 1:
                self.say(f"  ({self.t('connection', n=number, peer=peer)})")
            self._lines([r for r in records if r.peer == peer])

    def _lines(self, records: list[logging.LogRecord]) -> None:
        for record in records:
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


async def _timed(out: Output, n: int, fn: Callable[[], object]) -> object:
    start = time.perf_counter()
    result = fn()
    if asyncio.iscoroutine(result):
        result = await result
    out.times[n] = time.perf_counter() - start
    return result


async def _run(
    args: argparse.Namespace, out: Output, attachments: list[compose.Attachment]
) -> int:
    from mta.lab import LAB_QUEUE, Lab  # the demo is a composition root: it may use mta
    from mta.routing import Router

    collector = Collector()
    trace_logger = logging.getLogger("labmail.trace")
    relay_logger = logging.getLogger("labmail.relay")
    old = (trace_logger.level, relay_logger.level)
    trace_logger.setLevel(logging.DEBUG)
    relay_logger.setLevel(logging.INFO)
    trace_logger.addHandler(collector)
    relay_logger.addHandler(collector)
    folder = Path(args.keep_data) if args.keep_data else None
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
    temp = tempfile.TemporaryDirectory(prefix="labmail-demo-") if folder is None else None
    work = folder or Path(temp.name)  # type: ignore[union-attr]
    started = time.perf_counter()
    try:
        queue = dataclasses.replace(LAB_QUEUE, retry_initial=0.5)
        async with Lab.start({"alice.lab": ["alice"], "bob.lab": ["bob"]}, folder=work,
                             queue=queue) as lab:
            alice, bob = lab["alice.lab"], lab["bob.lab"]
            out.label(out.t("title"))
            out.say(out.t("lab"))
            out.block(out.t("lab.alice", **alice.ports) + "\n" + out.t("lab.bob", **bob.ports))
            alice_profile = _profile(ALICE, alice, work)
            bob_profile = _profile(BOB, bob, work)

            # step 1: compose
            out.wait()
            out.heading(1)
            subject = args.subject or out.t("subject")
            body = args.body if args.body is not None else out.t("body")
            fields = [f"From: Alice <{ALICE}>", f"To: Bob <{BOB}>", f"Subject: {subject}",
                      "Body:"] + ["  " + line for line in body.rstrip("\n").split("\n")]
            fields += [f"Attachment: {a.filename} ({len(a.data)} bytes)" for a in attachments]
            out.block("\n".join(fields))
            out.times[1] = 0.0

            # step 2: format
            out.wait()
            out.heading(2)
            message: EmailMessage = await _timed(out, 2, lambda: compose.build_message(
                sender=ALICE, sender_name="Alice", to=[f"Bob <{BOB}>"], subject=subject,
                body=body, attachments=attachments))  # type: ignore[assignment]
            sent_bytes = compose.to_bytes(message)
            out.block(sent_bytes.decode("ascii", "replace").replace("\r\n", "\n"))

            # step 3: submit
            out.wait()
            out.heading(3)
            if args.fail_next_hop:
                bob.faults.script(FAULT_REPLY)
            mark = collector.mark()
            result = await _timed(out, 3, lambda: asyncio.to_thread(
                submit.submit, alice_profile, alice.password(ALICE), message))
            out.label(out.t("s3.view"))
            out.transcript(collector.lines(mark, "submission"))
            out.say(f"=> {result.reply}")  # type: ignore[attr-defined]

            # step 4: relay
            out.wait()
            out.heading(4)
            t4 = time.perf_counter()
            entries = await lab.wait_for_delivery(BOB, 1, timeout=30)
            await lab.wait_for_queue_empty("alice.lab", timeout=30)
            hops = await Router(alice.config).route("bob.lab")
            out.label(out.t("s4.route"))
            route = alice.config.routes.get("bob.lab")
            source = "static route" if route else "DNS MX"
            out.block(f"bob.lab -> {', '.join(f'{h.host}:{h.port}' for h in hops)}  ({source})")
            out.label(out.t("s4.queue"))
            rows = [r for r in await alice.store.queue_rows(include_final=True)
                    if r.recipient == BOB]
            out.block("\n".join(
                f"queue id {r.message_id}  from <{r.sender}>  to <{r.recipient}>  "
                f"state {r.state}  attempts {r.attempts}  last reply: {r.last_reply}"
                for r in rows))
            out.label(out.t("s4.attempts"))
            out.block("\n".join(collector.relay(mark)))
            if args.fail_next_hop:
                out.say(out.t("s4.deferred"))
            out.label(out.t("s4.view"))
            out.transcript(collector.lines(mark, "mx"))
            out.label(out.t("s4.row"))
            entry = entries[-1]
            out.block(f"table mailbox: id={entry.id} owner={entry.owner} uidl={entry.uid} "
                      f"size={entry.size} sender=<{entry.sender}> smtp id={entry.txn_id}")
            out.times[4] = time.perf_counter() - t4

            # step 5: retrieve
            out.wait()
            out.heading(5)
            mark = collector.mark()
            fetched: fetch.FetchResult = await _timed(out, 5, lambda: asyncio.to_thread(
                fetch.fetch, bob_profile, bob.password(BOB)))  # type: ignore[assignment]
            out.label(out.t("s5.view"))
            out.transcript(collector.lines(mark, "pop3"))
            out.say(out.t("s5.saved", path=bob_profile.maildir))

            # step 6: render
            out.wait()
            out.heading(6)
            t6 = time.perf_counter()
            received = (open_folder(bob_profile.maildir).get_bytes(fetched.keys[-1])
                        if fetched.keys else b"")  # none: _compare says what went wrong
            parsed = render.parse(received)
            out.block(render.render_message(parsed), limit=80)
            out.times[6] = time.perf_counter() - t6

            problem = _compare(message, parsed, fetched)
            total = time.perf_counter() - started
            if problem:
                out.say(out.t("broken", why=problem))
                return 1
            times = ", ".join(f"{n}: {out.times[n] * 1000:.0f} ms" for n in sorted(out.times))
            out.say("")
            out.say(out.t("summary", hops=3, size=len(sent_bytes), stored=entry.size,
                          times=times, total=f"{total:.2f} s"))
            if folder is not None:
                out.say(out.t("kept", folder=folder))
            return 0
    finally:
        trace_logger.removeHandler(collector)
        relay_logger.removeHandler(collector)
        trace_logger.setLevel(old[0])
        relay_logger.setLevel(old[1])
        if temp is not None:
            temp.cleanup()


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
