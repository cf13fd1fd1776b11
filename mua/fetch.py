"""Step 5: retrieve mail by POP3 (RFC 1939) into a local Maildir.

The session is: greeting, CAPA (RFC 2449), STLS when offered or required (RFC 2595), CAPA again,
USER/PASS (or AUTH PLAIN, RFC 5034, when USER is not offered), STAT, UIDL, then RETR for each new
message and QUIT, spoken by stdlib ``poplib``; every line is traced through ``mua.trace``.

Safety rules, so that a dropped connection never loses or duplicates mail:
- each message is written to the Maildir's ``tmp/``, fsynced and renamed into ``new/`` (the
  Maildir delivery protocol) before anything else happens to it;
- its UIDL is then recorded (fsynced) in a small memory file next to the messages
  (``labmail-uidl.json``, plus a journal of the UIDLs stored since it was last rewritten);
- only after that does a classic fetch send DELE, and deletions take effect only at QUIT
  (RFC 1939 6), so a connection lost midway leaves every message on the server; the next fetch
  deletes the ones already stored (their UIDLs are remembered) instead of downloading them again.
With ``keep=True`` nothing is deleted and remembered UIDLs are never downloaded twice.
"""

from __future__ import annotations

import base64
import json
import os
import poplib
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from mua.errors import MuaError
from mua.profile import Profile, ServerSettings
from mua.trace import Transcript

STEP = 5
LONG_LINES_TRACED = 40  # a trace shows at most this many lines of each multi-line response
UIDL_FILE = "labmail-uidl.json"

Progress = Callable[[int, int], None]  # (messages done, messages to fetch)


class FetchError(MuaError):
    """Retrieval failed; ``stored`` counts the messages safely stored before the failure."""

    def __init__(self, message: str, stored: int = 0) -> None:
        super().__init__(message)
        self.stored = stored


@dataclass
class FetchResult:
    """What a fetch did: messages on the server, downloaded, deleted and their Maildir keys."""

    on_server: int = 0
    octets_on_server: int = 0  # total of the LIST sizes (RFC 1939 5); shown by ``mua fetch``
    downloaded: int = 0
    deleted: int = 0
    keys: list[str] = field(default_factory=list)


class _TracingMixin:
    transcript: Transcript
    _long_lines: int | None = None

    def _putline(self, line: bytes) -> None:
        self.transcript.client(line.decode("utf-8", "replace"))
        super()._putline(line)  # type: ignore[misc]

    def _getline(self) -> tuple[bytes, int]:
        line, octets = super()._getline()  # type: ignore[misc]
        if self._long_lines is None:
            self.transcript.server(line.decode("utf-8", "replace"))
        else:
            self._long_lines += 1
            if self._long_lines <= LONG_LINES_TRACED or line == b".":
                self.transcript.server(line.decode("utf-8", "replace"))
            elif self._long_lines == LONG_LINES_TRACED + 1:
                self.transcript.note("S", "[more lines not shown]")
        return line, octets

    def _getlongresp(self) -> tuple[bytes, list[bytes], int]:
        self._long_lines = -1  # the status line counts as 0, the lines after it from 1
        try:
            return super()._getlongresp()  # type: ignore[misc]
        finally:
            self._long_lines = None


class TracingPOP3(_TracingMixin, poplib.POP3):
    def __init__(self, host: str, port: int, timeout: float, transcript: Transcript) -> None:
        self.transcript = transcript
        super().__init__(host, port, timeout)


class TracingPOP3_SSL(_TracingMixin, poplib.POP3_SSL):  # noqa: N801 - mirrors poplib
    def __init__(
        self, host: str, port: int, timeout: float, transcript: Transcript, context: ssl.SSLContext
    ) -> None:
        self.transcript = transcript
        super().__init__(host, port, timeout=timeout, context=context)


def fetch(
    profile: Profile,
    password: str,
    maildir: str | os.PathLike[str] | None = None,
    *,
    keep: bool = False,
    progress: Progress | None = None,
) -> FetchResult:
    """Download new messages from the profile's POP3 server into ``maildir`` (step 5).

    ``maildir`` defaults to ``profile.maildir`` and is created when missing. Without ``keep``
    the downloaded messages are deleted from the server (after being stored); with ``keep`` they
    stay there and are remembered by UIDL. Raises ``FetchError``.
    """
    server = profile.pop3
    folder = Path(maildir) if maildir is not None else profile.maildir
    result = FetchResult()
    try:
        _ensure_maildir(folder)
    except OSError as e:
        raise FetchError(f"cannot create the mail folder {folder}: {e.strerror or e}") from None
    try:
        try:
            _fetch(server, password, folder, keep, progress, result)
        except poplib.error_proto as e:
            raise FetchError(_lost(server, result, _reply(e))) from None
        except ssl.SSLCertVerificationError as e:
            raise FetchError(
                f"TLS with {server.peer} failed: certificate not trusted ({e.verify_message});"
                " set pop3.ca_file in the profile"
            ) from None
        except ssl.SSLError as e:
            raise FetchError(_lost(server, result, f"TLS failed: {e.reason or e}")) from None
        except TimeoutError:
            raise FetchError(_lost(server, result, "timed out")) from None
        except ConnectionRefusedError:
            raise FetchError(f"cannot connect to {server.peer}: connection refused") from None
        except OSError as e:
            raise FetchError(_lost(server, result, e.strerror or str(e))) from None
        except (ValueError, UnicodeError) as e:  # e.g. a host name the socket layer refuses
            raise FetchError(f"cannot talk to {server.peer}: {e}") from None
    except FetchError as e:
        e.stored = result.downloaded  # the one place: every failure reports what was stored
        raise
    return result


def _lost(server: ServerSettings, result: FetchResult, why: str) -> str:
    stored = f"; {result.downloaded} message(s) were stored locally" if result.downloaded else ""
    return (
        f"POP3 with {server.peer} failed: {why}{stored};"
        " nothing was deleted from the server"
    )


def _fetch(
    server: ServerSettings,
    password: str,
    folder: Path,
    keep: bool,
    progress: Progress | None,
    result: FetchResult,
) -> None:
    transcript = Transcript(STEP, server.peer)
    context = server.ssl_context()
    pop: poplib.POP3
    if server.security == "tls":
        pop = TracingPOP3_SSL(server.host, server.port, server.timeout, transcript, context)
    else:
        pop = TracingPOP3(server.host, server.port, server.timeout, transcript)
    try:
        _login(pop, server, password, _secure(pop, server, context))
        _transaction(pop, server, folder, keep, progress, result)
    finally:
        pop.close()


def _secure(pop: poplib.POP3, server: ServerSettings, context: ssl.SSLContext) -> dict:
    """STLS when offered (or required, RFC 2595); returns the capabilities to log in with."""
    caps = _capabilities(pop)
    if server.security == "tls":
        return caps
    if "STLS" in caps:
        pop.stls(context)
        return _capabilities(pop)  # RFC 2595 4: capabilities may change after STLS
    if server.security == "starttls":
        raise FetchError(f"{server.peer} does not offer STLS, which the profile requires")
    return caps


def _transaction(
    pop: poplib.POP3,
    server: ServerSettings,
    folder: Path,
    keep: bool,
    progress: Progress | None,
    result: FetchResult,
) -> None:
    """STAT, LIST, UIDL, then RETR (and DELE unless ``keep``) of each new message, and QUIT."""
    count, _size = pop.stat()
    result.on_server = count
    result.octets_on_server = _listed_octets(pop, count)
    uids = _uidls(pop, count)
    if keep and uids is None:
        raise FetchError(f"{server.peer} does not support UIDL, which --keep needs")
    memory = UidMemory(folder / UIDL_FILE, f"{server.login}@{server.peer}")
    seen = memory.load()
    wanted = [n for n in range(1, count + 1) if uids is None or uids[n] not in seen]
    earlier = [] if keep or uids is None else _delete_stored_earlier(pop, uids, seen)
    deleted_uids = set(earlier)
    deleted = len(earlier)
    for done, n in enumerate(wanted):
        if progress:
            progress(done, len(wanted))
        uid = None if uids is None else uids[n]
        _retrieve(pop, n, folder, result, memory, seen, uid)
        if not keep:
            pop.dele(n)  # only marks it: RFC 1939 5
            deleted += 1
            if uid is not None:
                deleted_uids.add(uid)
    if progress:
        progress(len(wanted), len(wanted))
    pop.quit()  # RFC 1939 6: the UPDATE state; DELE takes effect only now
    result.deleted = deleted
    if uids is not None:
        present = set(uids.values())
        memory.save({u for u in seen if u in present and u not in deleted_uids})


def _delete_stored_earlier(pop: poplib.POP3, uids: dict[int, str], seen: set[str]) -> list[str]:
    """DELE the messages an earlier, interrupted fetch stored already; returns their UIDLs."""
    deleted = []
    for n, uid in sorted(uids.items()):
        if uid in seen:
            pop.dele(n)
            deleted.append(uid)
    return deleted


def _retrieve(
    pop: poplib.POP3,
    number: int,
    folder: Path,
    result: FetchResult,
    memory: UidMemory,
    seen: set[str],
    uid: str | None,
) -> None:
    """RETR one message and store it in the Maildir; its UIDL is on disk before any DELE."""
    _resp, lines, _octets = pop.retr(number)
    key = deliver(folder, b"\n".join(lines) + b"\n")
    result.keys.append(key)
    result.downloaded += 1
    if uid is not None:
        seen.add(uid)
        memory.remember(uid)


def _capabilities(pop: poplib.POP3) -> dict[str, list[str]]:
    try:
        return pop.capa()
    except poplib.error_proto:
        return {}  # CAPA is optional (RFC 2449); assume USER/PASS


def _login(pop: poplib.POP3, server: ServerSettings, password: str, caps: dict) -> None:
    try:
        if caps and "USER" not in caps and "PLAIN" in [m.upper() for m in caps.get("SASL", [])]:
            token = base64.b64encode(f"\0{server.login}\0{password}".encode()).decode()
            pop._shortcmd(f"AUTH PLAIN {token}")  # RFC 5034 with initial response
        else:
            pop.user(server.login)
            pop.pass_(password)
    except poplib.error_proto as e:
        raise FetchError(
            f"{server.peer} refused the login for {server.login}: {_reply(e)}"
        ) from None


def _listed_octets(pop: poplib.POP3, count: int) -> int:
    """The total of the LIST sizes: what the download will cost."""
    if count == 0:
        return 0
    _resp, lines, _ = pop.list()
    total = 0
    for line in lines:
        fields = line.split()
        if len(fields) == 2 and fields[1].isdigit():
            total += int(fields[1])
    return total


def _uidls(pop: poplib.POP3, count: int) -> dict[int, str] | None:
    if count == 0:
        return {}
    try:
        _resp, lines, _ = pop.uidl()
    except poplib.error_proto:
        return None  # UIDL is optional in RFC 1939
    uids: dict[int, str] = {}
    for line in lines:
        number, _, uid = line.decode("ascii", "replace").partition(" ")
        if number.isdigit() and uid:
            uids[int(number)] = uid.strip()
    if set(uids) != set(range(1, count + 1)):
        return None
    return uids


def _reply(error: poplib.error_proto) -> str:
    value = error.args[0] if error.args else ""
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
    if text == "-ERR EOF":
        return "the server closed the connection"
    return " ".join(text.split())


class UidMemory:
    """The UIDLs already stored locally, per account.

    ``labmail-uidl.json`` holds every account's list and is rewritten atomically by ``save``
    (once per fetch); in between, ``remember`` appends each new UIDL to a journal next to it
    (``labmail-uidl.json.journal``, one fsynced JSON line each), so a remembered UIDL is on disk
    before its DELE is sent without rewriting the whole file per message. ``load`` reads both.
    """

    def __init__(self, path: Path, account: str) -> None:
        self.path = path
        self.journal = path.with_name(path.name + ".journal")
        self.account = account
        self._data: dict[str, list[str]] | None = None
        self._torn = False  # the journal ends in a partial line: start the next one afresh

    def _read(self) -> dict[str, list[str]]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            data = {}
        except (OSError, ValueError) as e:
            raise FetchError(f"cannot read {self.path}: {e}") from None
        data = data if isinstance(data, dict) else {}
        try:
            text = self.journal.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            text = ""
        except OSError as e:
            raise FetchError(f"cannot read {self.journal}: {e}") from None
        self._torn = bool(text) and not text.endswith("\n")
        for line in text.splitlines():
            try:
                account, uid = json.loads(line)
            except (ValueError, TypeError):
                continue  # a line torn by a crash: its DELE was never sent
            if isinstance(account, str) and isinstance(uid, str):
                known = data.get(account)
                data[account] = [*known, uid] if isinstance(known, list) else [uid]
        return data

    def load(self) -> set[str]:
        self._data = self._read()
        return set(self._data.get(self.account, []))

    def remember(self, uid: str) -> None:
        """Record one stored message's UIDL durably (fsynced) before it may be deleted."""
        new = not self.journal.exists()
        with open(self.journal, "a", encoding="utf-8") as f:
            f.write(("\n" if self._torn else "") + json.dumps([self.account, uid]) + "\n")
            f.flush()
            os.fsync(f.fileno())
        self._torn = False
        if new:
            _fsync_dir(self.journal.parent)

    def save(self, uids: set[str]) -> None:
        """Replace this account's list by ``uids`` (atomic rewrite) and drop the journal."""
        data = self._data if self._data is not None else self._read()
        data[self.account] = sorted(uids)
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        self.journal.unlink(missing_ok=True)  # everything in it is in the file now


def _fsync_dir(path: Path) -> None:
    dir_fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _ensure_maildir(folder: Path) -> None:
    for sub in ("tmp", "new", "cur"):
        (folder / sub).mkdir(parents=True, exist_ok=True, mode=0o700)


_counter = 0


def deliver(folder: Path, data: bytes) -> str:
    """Store one message in a Maildir durably (tmp/, fsync, rename to new/); return its key.

    Not ``mailbox.Maildir.add``: that creates the file with mode 0o666 (minus the umask) where
    mail must be 0o600, and does not fsync the ``new/`` directory after the rename.
    """
    global _counter
    _counter += 1
    now = time.time()
    seconds, micros = int(now), int((now % 1) * 1_000_000)
    host = socket.gethostname().replace("/", "\\057").replace(":", "\\072")
    key = f"{seconds}.M{micros:06d}P{os.getpid()}Q{_counter}.{host}"
    tmp = folder / "tmp" / key
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp, folder / "new" / key)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(folder / "new")  # the rename itself is durable too
    return key
