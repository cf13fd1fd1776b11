"""The ``mua`` command: compose and send (steps 1-3), fetch (5), list/read/save (6).

Each subcommand is an entry in ``SUBCOMMANDS`` (name -> ``Subcommand(help, add_arguments,
run)``), so another one is registered with one line, e.g. the six-step demo::

    SUBCOMMANDS["demo"] = lazy("mua.demo", "watch a message travel through the six steps")

Errors: the user agent's own errors print ``mua: <one line>`` on stderr and exit 1, or 2 for
usage and configuration errors (argparse's own exit code); never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from mua import compose, folder, render
from mua.errors import MuaError, UsageError
from mua.profile import Profile, find_profile, get_password, load_profile


@dataclass(frozen=True)
class Subcommand:
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


def lazy(module: str, help: str) -> Subcommand:
    """A subcommand whose module (defining ``add_arguments`` and ``run``) loads on first use."""

    def add_arguments(parser: argparse.ArgumentParser) -> None:
        importlib.import_module(module).add_arguments(parser)

    def run(args: argparse.Namespace) -> int:
        return importlib.import_module(module).run(args)

    return Subcommand(help, add_arguments, run)


def profile_of(args: argparse.Namespace) -> Profile:
    """The profile named by ``--profile`` or ``MUA_PROFILE`` (for subcommand ``run`` functions)."""
    return load_profile(find_profile(getattr(args, "profile", None)))


def _is_terminal(stream: object) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


# --- send (steps 1-3) -----------------------------------------------------------------------


def _send_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--to", action="append", default=[], metavar="ADDR", help="recipient")
    p.add_argument("--cc", action="append", default=[], metavar="ADDR", help="copy recipient")
    p.add_argument(
        "--bcc", action="append", default=[], metavar="ADDR", help="blind copy (never shown)"
    )
    p.add_argument("--subject", required=True)
    body = p.add_mutually_exclusive_group()
    body.add_argument("--body", metavar="TEXT", help="the text body (default: read stdin)")
    body.add_argument("--body-file", metavar="FILE", help="read the text body from FILE")
    p.add_argument("--html", metavar="FILE", help="an HTML alternative, read from FILE")
    p.add_argument("--attach", action="append", default=[], metavar="FILE", help="attach FILE")
    p.add_argument("--reply-to", action="append", default=[], metavar="ADDR")
    p.add_argument("--priority", type=int, choices=range(1, 6), metavar="1-5",
                   help="X-Priority: 1 highest, 3 normal, 5 lowest")
    p.add_argument("--dry-run", action="store_true",
                   help="print the formatted message (step 2) instead of sending it")
    p.add_argument("--trace", action="store_true", help="show the SMTP dialogue")


def _read_text(path: str, what: str) -> str:
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise UsageError(f"cannot read {what} {path}: {e.strerror or e}") from None
    return _decode(data, f"{what} {path}")


def _decode(data: bytes, what: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise UsageError(f"{what} is not UTF-8 text") from None


def _run_send(args: argparse.Namespace) -> int:
    from mua.submit import submit

    profile = profile_of(args)
    html = _read_text(args.html, "HTML file") if args.html else None
    if args.body is not None:
        body = args.body
    elif args.body_file:
        body = _read_text(args.body_file, "body file")
    elif html is not None and _is_terminal(sys.stdin):
        body = ""  # derived from the HTML
    else:
        body = _decode(sys.stdin.buffer.read(), "standard input")
    bcc = [addr.addr_spec for addr in compose.parse_addresses("Bcc", args.bcc)]
    message = compose.build_message(
        sender=profile.address,
        sender_name=profile.name,
        to=args.to,
        cc=args.cc,
        subject=args.subject,
        body=body,
        html=html,
        attachments=[compose.Attachment.from_path(f) for f in args.attach],
        reply_to=args.reply_to,
        priority=args.priority,
    )
    if args.dry_run:
        text = compose.to_bytes(message).decode("ascii", "replace").replace("\r\n", "\n")
        sys.stdout.write(text)
        if bcc:
            print(f"mua: Bcc (envelope only): {', '.join(bcc)}", file=sys.stderr)
        return 0
    password = get_password(profile)
    with _tracing(args.trace):
        result = submit(profile, password, message, bcc=bcc)
    if result.refused:
        refused = "; ".join(f"{a}: {code} {text}" for a, (code, text) in result.refused.items())
        print(
            f"mua: {profile.smtp.peer} refused some recipients ({refused});"
            f" the message was sent to {', '.join(result.accepted)}",
            file=sys.stderr,
        )
        return 1
    print(f"sent to {', '.join(result.accepted)} ({result.reply})")
    return 0


def _tracing(enabled: bool):
    from contextlib import nullcontext

    from mua import trace

    return trace.printing() if enabled else nullcontext()


# --- fetch (step 5) -------------------------------------------------------------------------


def _fetch_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--keep", action="store_true",
                   help="leave the messages on the server (remembered by UIDL)")
    p.add_argument("--trace", action="store_true", help="show the POP3 dialogue")


PROGRESS_THRESHOLD = 10  # show a progress bar from this many messages on


def _run_fetch(args: argparse.Namespace) -> int:
    from mua.fetch import fetch

    profile = profile_of(args)
    password = get_password(profile)
    with _tracing(args.trace), _progress(enabled=_is_terminal(sys.stderr)) as progress:
        result = fetch(profile, password, keep=args.keep, progress=progress)
    where = f"into {profile.maildir}"
    # the mailbox as STAT and LIST described it before this fetch (RFC 1939 5)
    held = (f" (the server held {result.on_server} message(s),"
            f" {render.human_size(result.octets_on_server)})")
    if args.keep:
        print(f"fetched {result.downloaded} new message(s) {where}; left on the server{held}")
    else:
        print(f"fetched {result.downloaded} new message(s) {where};"
              f" {result.deleted} deleted from the server{held}")
    return 0


class _progress:
    """A rich progress bar on a terminal when there are many messages; silent otherwise."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.bar = None
        self.task = None

    def __enter__(self) -> Callable[[int, int], None]:
        return self.update

    def update(self, done: int, total: int) -> None:
        if not self.enabled or total < PROGRESS_THRESHOLD:
            return
        if self.bar is None:
            from rich.console import Console
            from rich.progress import Progress

            self.bar = Progress(console=Console(stderr=True), transient=True)
            self.bar.start()
            self.task = self.bar.add_task("fetching", total=total)
        self.bar.update(self.task, completed=done)

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()


# --- list, read, save (step 6) ------------------------------------------------------------


def _run_list(args: argparse.Namespace) -> int:
    profile = profile_of(args)
    rows = [_list_row(m) for m in folder.messages(profile.maildir)]
    if _is_terminal(sys.stdout):
        from rich.console import Console
        from rich.table import Table

        table = Table(title=f"{profile.address}: {len(rows)} message(s)")
        for name, justify in (("#", "right"), ("Date", "left"), ("From", "left"),
                              ("Subject", "left"), ("Size", "right"), ("@", "center")):
            table.add_column(name, justify=justify, overflow="ellipsis")
        for r in rows:
            table.add_row(str(r.number), r.date, r.sender, r.subject,
                          render.human_size(r.size), "@" if r.has_attachments else "")
        Console(highlight=False).print(table, markup=False)
        return 0
    print(f"{'#':>4}  {'Date':16}  {'From':24}  {'Size':>9}  @  Subject")
    for r in rows:
        print(f"{r.number:>4}  {r.date:16}  {_cut(r.sender, 24)}  "
              f"{render.human_size(r.size):>9}  {'@' if r.has_attachments else ' '}  {r.subject}")
    return 0


def _list_row(stored: folder.StoredMessage) -> render.ListRow:
    """One message's row; a message that cannot be rendered still gets its row, so one
    hostile message never hides the rest of the folder."""
    try:
        return render.list_row(stored.number, render.parse(stored.data), len(stored.data))
    except Exception as e:  # a bug met on hostile input: show it in the row, keep listing
        return render.ListRow(stored.number, "", "", f"[cannot be shown: {type(e).__name__}]",
                              len(stored.data), False)


def _cut(text: str, width: int) -> str:
    """``text`` cut and padded to ``width`` terminal cells (CJK characters take two)."""
    from rich.cells import cell_len, set_cell_size

    if cell_len(text) > width:
        text = set_cell_size(text, width - 1) + "…"
    return set_cell_size(text, width)


def _read_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("number", type=int, metavar="N", help="message number as 'mua list' shows")
    p.add_argument("--raw", action="store_true", help="show the message exactly as stored")


def _run_read(args: argparse.Namespace) -> int:
    profile = profile_of(args)
    stored = folder.get(profile.maildir, args.number)
    if args.raw:
        sys.stdout.flush()
        sys.stdout.buffer.write(stored.data)
        sys.stdout.buffer.flush()
        return 0
    text = render.render_message(render.parse(stored.data))
    if _is_terminal(sys.stdout):
        from rich.console import Console
        from rich.text import Text

        head, _, rest = text.partition("\n\n")
        out = Text()
        for line in head.split("\n"):
            name, sep, value = line.partition(": ")
            out.append(name + sep, style="bold cyan")
            out.append(value + "\n")
        out.append("\n" + rest)
        Console(highlight=False).print(out, end="")
    else:
        sys.stdout.write(text)
    return 0


def _save_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("number", type=int, metavar="N", help="message number as 'mua list' shows")
    p.add_argument("--dir", required=True, metavar="D", help="directory to write into")
    p.add_argument("--force", action="store_true", help="overwrite existing files")


def _run_save(args: argparse.Namespace) -> int:
    profile = profile_of(args)
    stored = folder.get(profile.maildir, args.number)
    found = render.attachments(render.parse(stored.data))
    if not found:
        print(f"message {args.number} has no attachments")
        return 0
    target = Path(args.dir)
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise MuaError(f"cannot create {target}: {e.strerror or e}") from None
    names = _unique_names([info.filename for info in found])
    paths = [target / name for name in names]
    if not args.force:
        existing = [str(p) for p in paths if os.path.lexists(p)]
        if existing:
            raise MuaError(f"{', '.join(existing)} already exist(s); use --force to overwrite")
    for info, path in zip(found, paths, strict=True):
        data = info.payload()
        try:
            if os.path.islink(path):
                path.unlink()  # --force replaces the link itself, never what it points to
            with open(path, "wb" if args.force else "xb") as f:
                f.write(data)
        except OSError as e:
            raise MuaError(f"cannot write {path}: {e.strerror or e}") from None
        print(f"saved {path} ({info.content_type}, {render.human_size(len(data))})")
    return 0


def _unique_names(names: Sequence[str]) -> list[str]:
    used: set[str] = set()
    result = []
    for name in names:
        candidate, n = name, 1
        stem, dot, ext = name.rpartition(".")
        if not stem:
            stem, dot, ext = name, "", ""
        while candidate.lower() in used:
            n += 1
            candidate = f"{stem} ({n}){dot}{ext}"
        used.add(candidate.lower())
        result.append(candidate)
    return result


SUBCOMMANDS: dict[str, Subcommand] = {
    "send": Subcommand("compose and submit a message (steps 1-3)", _send_arguments, _run_send),
    "fetch": Subcommand("download new mail by POP3 (step 5)", _fetch_arguments, _run_fetch),
    "list": Subcommand("list the messages in the local folder (step 6)", lambda p: None,
                       _run_list),
    "read": Subcommand("show message N (step 6)", _read_arguments, _run_read),
    "save": Subcommand("save the attachments of message N (step 6)", _save_arguments, _run_save),
    "demo": lazy("mua.demo", "watch one e-mail travel through the six steps on a local lab"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mua",
        description="labmail's user agent: compose, submit, fetch and read mail.",
        epilog="The password comes from MUA_PASSWORD, MUA_PASSWORD_FILE, the profile's"
        " password_file, or a prompt; never from the command line.",
    )
    parser.add_argument("--profile", metavar="FILE", help="account profile (default: $MUA_PROFILE)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, command in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=command.help, description=command.help)
        command.add_arguments(p)
        p.set_defaults(run=command.run)
    return parser


def _quiet_broken_pipe() -> int:
    """Point standard output at /dev/null and return 141, what the shell reports for a program
    SIGPIPE ended: Python flushes stdout again at exit, which into the closed pipe would print
    "Exception ignored ... BrokenPipeError" (the recipe in the ``signal`` module's docs)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return 128 + signal.SIGPIPE


def main(argv: Sequence[str] | None = None) -> int:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.reconfigure(errors="replace")  # type: ignore[union-attr]
        except (AttributeError, ValueError):
            pass
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help or a usage error (argparse printed it)
        return e.code if isinstance(e.code, int) else 2
    try:
        return args.run(args)
    except MuaError as e:
        print(f"mua: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("mua: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away (| head, | grep -q): nothing left to say
        return _quiet_broken_pipe()
    except Exception as e:  # a bug: still one line, unless MUA_DEBUG asks for the traceback
        if os.environ.get("MUA_DEBUG"):
            raise
        print(f"mua: internal error: {type(e).__name__}: {e} (MUA_DEBUG=1 shows details)",
              file=sys.stderr)
        return 1
