"""Dovecot as a same-run POP3 baseline: a private instance on loopback (Debian: dovecot-pop3d).

``DovecotPOP3`` writes a config file, a passwd-file and a maildir holding the same messages as
labmail's benchmark mailbox into a temporary folder of its own (directly in the system's temp
folder: Dovecot's unprivileged processes must reach it), starts ``dovecot -F -c FILE`` in a
process group of its own and, on the way out, stops it (and every child it started) and
removes the folder. Nothing is read
from or written to the machine's own Dovecot set-up: ``base_dir``, ``state_dir`` and the logs
all live in that folder, the listener is 127.0.0.1 only, plain-text logins are allowed only
there, and TLS is off.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

HOST = "127.0.0.1"
STARTUP_TIMEOUT = 30.0

CONFIG = """\
# A private Dovecot for labmail's benchmarks; nothing outside {root} is used.
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
info_log_path = {root}/dovecot.log
protocols = pop3
listen = {host}
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain
mail_location = maildir:~/Maildir
first_valid_uid = {uid}
first_valid_gid = {gid}
{users}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/passwd
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={root}/home/%u
}}
service pop3-login {{
  inet_listener pop3 {{
    address = {host}
    port = {port}
  }}
  inet_listener pop3s {{
    port = 0
  }}
}}
"""


def installed() -> str | None:
    """The dovecot binary, when Dovecot's POP3 server is installed."""
    binary = shutil.which("dovecot") or ("/usr/sbin/dovecot" if Path("/usr/sbin/dovecot").exists()
                                         else None)
    if binary and Path("/usr/lib/dovecot/pop3").exists():
        return binary
    return None


def free_port() -> int:
    """A loopback port free right now (Dovecot cannot bind port 0 and report it back)."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def to_maildir_line_ends(raw: bytes) -> bytes:
    """Maildir files keep LF line ends; Dovecot sends them as CRLF (RFC 1939 3)."""
    return raw.replace(b"\r\n", b"\n")


class DovecotPOP3:
    """A private Dovecot serving POP3 for ``users`` (all with ``password``) on loopback."""

    def __init__(self, binary: str, users: dict[str, Sequence[bytes]], password: str) -> None:
        self.binary = binary
        self.root = Path(tempfile.mkdtemp(prefix="labmail-bench-dovecot-"))
        self.port = free_port()
        self.config = self.root / "dovecot.conf"
        self.proc: subprocess.Popen[bytes] | None = None
        self._write_files(users, password)

    def _write_files(self, users: dict[str, Sequence[bytes]], password: str) -> None:
        uid, gid = os.getuid(), os.getgid()
        names = ""
        if uid == 0:  # Dovecot never reads mail as root: the mail user is nobody
            nobody = pwd.getpwnam("nobody")
            uid, gid = nobody.pw_uid, nobody.pw_gid
        else:  # Dovecot's own processes run as the one user there is
            names = ("default_login_user = {0}\ndefault_internal_user = {0}\n"
                     "default_internal_group = {1}\n".format(pwd.getpwuid(uid).pw_name, gid))
        self.root.chmod(0o755)  # the login processes (dovenull) reach base_dir through it
        self.config.write_text(CONFIG.format(root=self.root, host=HOST, port=self.port, uid=uid,
                                             gid=gid, users=names))
        lines = [f"{user}:{{PLAIN}}{password}::::::" for user in users]
        (self.root / "passwd").write_text("\n".join(lines) + "\n")
        for user, messages in users.items():
            cur = self.root / "home" / user / "Maildir" / "cur"
            for sub in ("cur", "new", "tmp"):
                (cur.parent / sub).mkdir(parents=True, exist_ok=True)
            for index, raw in enumerate(messages):
                # S= file size, W= size with CRLF line ends: what Dovecot's own delivery
                # writes, so LIST needs no file reads on either side
                stored = to_maildir_line_ends(raw)
                name = f"{1_700_000_000 + index}.M{index}P1.bench,S={len(stored)},W={len(raw)}:2,S"
                (cur / name).write_bytes(stored)
        if os.getuid() != uid:
            for path in [self.root / "home", *(self.root / "home").rglob("*")]:
                os.chown(path, uid, gid)

    def start(self) -> None:
        log = (self.root / "dovecot.stderr").open("ab")
        self.proc = subprocess.Popen([self.binary, "-F", "-c", str(self.config)],
                                     stdout=log, stderr=log, start_new_session=True)
        log.close()
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"dovecot exited; see {self.root}/dovecot.log")
            with contextlib.suppress(OSError), socket.create_connection((HOST, self.port), 1):
                return
            time.sleep(0.05)  # bounded by the deadline: waiting for another process to bind
        self._stop_process()
        raise RuntimeError(f"dovecot did not listen on {HOST}:{self.port} in time")

    def stop(self) -> None:
        self._stop_process()
        shutil.rmtree(self.root, ignore_errors=True)

    def _stop_process(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self.proc = None

    def __enter__(self) -> DovecotPOP3:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
