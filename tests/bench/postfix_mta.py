"""Postfix as a same-run MX baseline: accept and deliver, from a private instance on loopback.

``PostfixMTA`` writes a ``main.cf`` and a ``master.cf`` into a temporary folder of its own
(directly in the system's temp folder: Postfix's unprivileged processes must reach it), with its
own ``queue_directory``, ``data_directory`` and log file there, one smtpd on 127.0.0.1 and a
free port, and delivery by the ``virtual`` transport to maildirs in that folder as ``nobody``
(bob.lab is ``mydestination``; its recipients are an inline table, so no Unix accounts are
needed). It runs Postfix's ``master`` directly, in the foreground, in a process group of its
own, and on the way out (errors included) stops that group and removes the folder. Nothing is
read from or written to the machine's own /etc/postfix or queue: ``master -c DIR`` makes every
daemon it starts read DIR instead. Postfix needs root to start (its daemons drop to the
``postfix`` user), so without root there is no baseline.

A message counts when its file is in the maildir: the rate is messages / time from the first
connection until the last one is delivered (polled, bounded). Everything else is Postfix's
defaults (durable queue files and maildir files, ``in_flow_delay``, logging to a file).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

HOST = "127.0.0.1"
DAEMONS = Path("/usr/lib/postfix/sbin")  # Debian's daemon_directory
STARTUP_TIMEOUT = 30.0
DELIVERY_TIMEOUT = 120.0
POLL = 0.005  # seconds between two looks at the maildir once the client is done
MESSAGES = 1000  # at most per measured run: the baseline's share of a full run stays < 60 s
CONCURRENCIES = (10, 50)  # where issue 16's ">= 2x Postfix" target is set

MAIN_CF = """\
# A private Postfix for labmail's benchmarks; nothing outside {root} is used.
compatibility_level = 3.6
daemon_directory = {daemons}
queue_directory = {root}/queue
data_directory = {root}/data
maillog_file = {root}/maillog
maillog_file_prefixes = {root}
inet_interfaces = {host}
inet_protocols = ipv4
myhostname = mx.{domain}
mydomain = {domain}
mydestination = {domain}
mynetworks = 127.0.0.0/8
alias_maps =
alias_database =
local_transport = virtual
local_recipient_maps = $virtual_mailbox_maps
virtual_mailbox_base = {root}/mail
virtual_mailbox_maps = inline:{{ {mailboxes} }}
virtual_uid_maps = static:{uid}
virtual_gid_maps = static:{gid}
smtpd_tls_security_level = none
smtp_tls_security_level = none
biff = no
"""

# Debian's master.cf without chroot (the folder is not a chroot jail) and without the services
# this set-up never uses; the smtpd listens on {host}:{port} only.
MASTER_CF = """\
{host}:{port} inet n - n - - smtpd
pickup     unix  n - n 60 1 pickup
cleanup    unix  n - n - 0 cleanup
qmgr       unix  n - n 300 1 qmgr
rewrite    unix  - - n - - trivial-rewrite
bounce     unix  - - n - 0 bounce
defer      unix  - - n - 0 bounce
trace      unix  - - n - 0 bounce
verify     unix  - - n - 1 verify
flush      unix  n - n 1000? 0 flush
proxymap   unix  - - n - - proxymap
showq      unix  n - n - - showq
error      unix  - - n - - error
retry      unix  - - n - - error
discard    unix  - - n - - discard
virtual    unix  - n n - - virtual
anvil      unix  - - n - 1 anvil
scache     unix  - - n - 1 scache
postlog    unix-dgram n - n - 1 postlogd
"""

# What `postfix check` would create (Debian's postfix-files): owner, group, mode
QUEUE_DIRS: dict[str, tuple[str | int, str | int, int]] = {
    **{name: ("postfix", "root", 0o700) for name in (
        "active", "bounce", "corrupt", "defer", "deferred", "flush", "hold", "incoming",
        "private", "saved", "trace")},
    "maildrop": ("postfix", "postdrop", 0o730),
    "public": ("postfix", "postdrop", 0o710),
    "pid": ("root", "root", 0o755),
}


def installed() -> str | None:
    """Postfix's master binary, when Postfix is installed and this process may start it (root)."""
    master = DAEMONS / "master"
    return str(master) if master.exists() and os.geteuid() == 0 else None


def free_port() -> int:
    """A loopback port free right now (master.cf names a port; Postfix cannot report one)."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def group_stats(pgid: int) -> list[list[str]]:
    """/proc/PID/stat of every process in the process group ``pgid``, as fields from the 3rd
    (the state) on: the 2nd, the command name, is in parentheses and may hold spaces."""
    found = []
    for name in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{name}/stat") as fh:
                fields = fh.read().rpartition(")")[2].split()
        except OSError:  # gone meanwhile
            continue
        if int(fields[2]) == pgid:  # the 5th field, pgrp
            found.append(fields)
    return found


def live_members(pgid: int) -> int:
    """Processes of the group ``pgid`` still running (zombies are done)."""
    return sum(fields[0] not in ("Z", "X") for fields in group_stats(pgid))


class PostfixMTA:
    """A private Postfix accepting mail for ``users`` on loopback and delivering to maildirs."""

    def __init__(self, master: str, users: Sequence[str] = ("bob@bob.lab",)) -> None:
        self.master = master
        self.users = list(users)
        self.root = Path(tempfile.mkdtemp(prefix="labmail-bench-postfix-"))
        self.port = free_port()
        self.config = self.root / "etc"
        self.proc: subprocess.Popen[bytes] | None = None
        self._write_files()

    def _write_files(self) -> None:
        self.root.chmod(0o755)  # virtual (as nobody) reaches the maildirs through it
        nobody = pwd.getpwnam("nobody")
        domain = self.users[0].rpartition("@")[2]
        mailboxes = ", ".join(f"{user}={user.partition('@')[0]}/Maildir/" for user in self.users)
        self.config.mkdir()
        (self.config / "main.cf").write_text(MAIN_CF.format(
            root=self.root, daemons=DAEMONS, host=HOST, domain=domain, mailboxes=mailboxes,
            uid=nobody.pw_uid, gid=nobody.pw_gid))
        (self.config / "master.cf").write_text(MASTER_CF.format(host=HOST, port=self.port))
        for name in ("main.cf", "master.cf"):
            # Postfix reads a file changed moments ago again, 300 ms later, until it stops
            # changing (a "hot" file, possibly half written): ~2 s at every start. These are
            # complete, so date them back
            past = time.time() - 60
            os.utime(self.config / name, (past, past))
        for path, owner, group, mode in [
            (self.root / "data", "postfix", "postfix", 0o700),
            (self.root / "mail", nobody.pw_uid, nobody.pw_gid, 0o755),
            (self.root / "queue", "root", "root", 0o755),
            *((self.root / "queue" / name, *spec) for name, spec in QUEUE_DIRS.items()),
        ]:
            path.mkdir()
            path.chmod(mode)
            shutil.chown(path, owner, group)

    def start(self) -> None:
        log = (self.root / "master.stderr").open("ab")
        # master makes itself a session leader; a session of its own from the start means
        # one killpg stops every daemon it forked, also when it dies first
        self.proc = subprocess.Popen([self.master, "-c", str(self.config)], stdout=log,
                                     stderr=log, start_new_session=True,
                                     env={**os.environ, "MAIL_CONFIG": str(self.config)})
        log.close()
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"postfix master exited; see {self.root}/maillog")
            with contextlib.suppress(OSError), socket.create_connection((HOST, self.port), 1):
                return
            time.sleep(0.05)  # bounded by the deadline: waiting for another process to bind
        self._stop_process()
        raise RuntimeError(f"postfix did not listen on {HOST}:{self.port} in time")

    def stop(self) -> None:
        self._stop_process()
        shutil.rmtree(self.root, ignore_errors=True)

    def _stop_process(self) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)  # master passes it on to its daemons
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(10)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)  # any daemon still running
        self.proc.wait(10)
        deadline = time.monotonic() + 10
        while live_members(self.proc.pid) and time.monotonic() < deadline:
            time.sleep(0.01)  # bounded: killed daemons take a moment to die
        self.proc = None

    def delivered(self) -> int:
        """Messages in the users' maildirs (``new/``: nothing reads them)."""
        count = 0
        for user in self.users:
            with contextlib.suppress(FileNotFoundError):
                count += len(os.listdir(self.maildir(user) / "new"))
        return count

    def maildir(self, user: str) -> Path:
        return self.root / "mail" / user.partition("@")[0] / "Maildir"

    def wait_delivered(self, count: int, timeout: float = DELIVERY_TIMEOUT) -> float | None:
        """Monotonic time at which ``count`` messages were delivered, or None after ``timeout``."""
        deadline = time.monotonic() + timeout
        while (now := time.monotonic()) < deadline:
            if self.delivered() >= count:
                return now
            time.sleep(POLL)  # bounded by the deadline: Postfix delivers in other processes
        return None

    def cpu_seconds(self) -> float:
        """User + system CPU of the master's process group, exited daemons included (their
        time is in the master's cutime/cstime once it reaped them)."""
        if self.proc is None:
            return 0.0
        # stat's 14th to 17th fields: utime, stime, cutime, cstime
        ticks = sum(int(x) for fields in group_stats(self.proc.pid) for x in fields[11:15])
        return ticks / os.sysconf("SC_CLK_TCK")

    def __enter__(self) -> PostfixMTA:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


Send = Callable[[int, int, int], dict[str, Any]]  # (port, messages, concurrency) -> figures


def bench_round(master: str, send: Send, concurrency: int, count: int, warmup: int,
                round_: int) -> dict[str, Any]:
    """One measured run on a fresh instance: warm up, then ``count`` messages (at most
    MESSAGES) at ``concurrency``, timed until the last one is in the maildir."""
    count = min(count, MESSAGES)
    with PostfixMTA(master) as mta:
        warm = send(mta.port, warmup, min(concurrency, warmup))
        warm_done = mta.wait_delivered(warm["sent"])
        cpu = mta.cpu_seconds()
        started = time.monotonic()
        result = send(mta.port, count, concurrency)
        done = mta.wait_delivered(warm["sent"] + count)
        cpu = mta.cpu_seconds() - cpu
        delivered = mta.delivered() - warm["sent"]
    seconds = (done or time.monotonic()) - started
    ok = not result["errors"] and not warm["errors"] and None not in (warm_done, done)
    return {
        "kind": "postfix",
        "concurrency": concurrency,
        "round": round_,
        "messages": count,
        "seconds": round(seconds, 4),
        "msg_per_s": round(count / seconds, 1) if ok else 0.0,
        "accepted_msg_per_s": round(count / result["seconds"], 1) if result["seconds"] else 0.0,
        "cpu_ms_per_msg": round(cpu * 1000 / count, 3),
        "delivered": delivered,
        "ok": ok,
        "errors": (warm["errors"] + result["errors"])[:3],
    }


def progress(run: dict[str, Any]) -> str:
    """The benchmark's progress line for one run."""
    line = (f"  mx c{run['concurrency']:<3} round {run['round']} postfix "
            f"{run['msg_per_s']:6.1f} msg/s delivered ({run['accepted_msg_per_s']:.1f} accepted), "
            f"{run['cpu_ms_per_msg']:.2f} ms CPU/msg")
    if not run["ok"]:
        line += f"  FAILED {run['errors'][:1]} delivered={run['delivered']}/{run['messages']}"
    return line


def summary(mx_runs: list[dict[str, Any]], runs: list[dict[str, Any]]
            ) -> dict[str, dict[str, Any]]:
    """Per concurrency: Postfix's median rate and CPU, labmail (one process) / Postfix."""
    out = {}
    for concurrency in sorted({r["concurrency"] for r in runs}):
        postfix = [r for r in runs if r["concurrency"] == concurrency]
        labmail = [r["msg_per_s"] for r in mx_runs
                   if r["kind"] == "mx" and r["concurrency"] == concurrency]
        rate = statistics.median(r["msg_per_s"] for r in postfix)
        pairs = [m / r["msg_per_s"] for m, r in zip(labmail, postfix, strict=True)
                 if r["msg_per_s"]]
        out[str(concurrency)] = {
            "postfix_msg_per_s": round(rate, 1),
            "ratio_postfix": round(statistics.median(labmail) / rate, 3) if rate else None,
            "ratio_postfix_per_round": [round(p, 3) for p in pairs],
            "postfix_cpu_ms_per_msg": statistics.median(r["cpu_ms_per_msg"] for r in postfix),
            "postfix_all_ok": all(r["ok"] for r in postfix),
        }
    return out
