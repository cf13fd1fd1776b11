"""Accounts: a user's TOML profile (the "who and where" behind steps 1, 3 and 5).

A profile names the user's address and display name, the submission server (step 3), the POP3
server (step 5) and the local Maildir where fetched mail is kept. It loads into frozen
dataclasses; unknown keys are refused with a one-line message naming the key and the file.

The password is never a command-line argument (it would show in ``ps`` and shell history): it
comes from ``MUA_PASSWORD``, a password file (``password_file`` in the profile or
``MUA_PASSWORD_FILE``) or an interactive prompt, in that order.

Security values for a server: ``"none"`` (plain, but STARTTLS/STLS is used when the server
offers it), ``"starttls"`` (required), ``"tls"`` (implicit TLS). ``verify = false`` turns
certificate verification off; it exists for the lab's self-signed certificates only.
"""

from __future__ import annotations

import getpass
import os
import ssl
import sys
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from email.headerregistry import Address
from pathlib import Path

from mua.errors import UsageError

SECURITY_VALUES = ("none", "starttls", "tls")
DEFAULT_PORTS = {
    "smtp": {"none": 587, "starttls": 587, "tls": 465},
    "pop3": {"none": 110, "starttls": 110, "tls": 995},
}


class ProfileError(UsageError):
    """The profile is missing, unreadable or invalid, or no password is available."""


@dataclass(frozen=True)
class ServerSettings:
    """How to reach one server: address, transport security and the login name."""

    host: str
    port: int
    security: str = "none"
    verify: bool = True
    ca_file: Path | None = None
    login: str = ""
    timeout: float = 30.0

    @property
    def peer(self) -> str:
        return f"{self.host}:{self.port}"

    def ssl_context(self) -> ssl.SSLContext:
        """A client TLS context: verifying by default, against ``ca_file`` when set."""
        context = ssl.create_default_context(
            cafile=str(self.ca_file) if self.ca_file else None
        )
        if not self.verify:  # lab-only: self-signed certificates
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context


@dataclass(frozen=True)
class Profile:
    """One user's account: identity, servers and local mail folder."""

    address: str
    name: str
    smtp: ServerSettings
    pop3: ServerSettings
    maildir: Path
    password_file: Path | None = None
    source: Path | None = None

    @property
    def domain(self) -> str:
        return self.address.rpartition("@")[2]


_TOP_KEYS = {"address", "name", "maildir", "password_file", "smtp", "pop3"}
_SERVER_KEYS = {"host", "port", "security", "verify", "ca_file", "login", "timeout"}


def default_maildir(address: str) -> Path:
    """``$XDG_DATA_HOME/labmail/<address>/Maildir`` (``~/.local/share`` by default)."""
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(Path.home(), ".local", "share")
    return Path(base) / "labmail" / address / "Maildir"


def load_profile(path: str | os.PathLike[str], env: Mapping[str, str] | None = None) -> Profile:
    """Read and validate a profile file; ``MUA_MAILDIR`` in ``env`` overrides the folder."""
    env = os.environ if env is None else env
    path = Path(path)
    try:
        with path.open("rb") as f:
            data = tomllib.load(f)
    except OSError as e:
        raise ProfileError(f"cannot read profile {path}: {e.strerror or e}") from None
    except tomllib.TOMLDecodeError as e:
        raise ProfileError(f"profile {path} is not valid TOML: {e}") from None
    return profile_from_dict(data, source=path, env=env)


def profile_from_dict(
    data: Mapping[str, object], *, source: Path | None = None, env: Mapping[str, str] | None = None
) -> Profile:
    """Validate a parsed profile (a dict as TOML gives it) into a ``Profile``."""
    env = os.environ if env is None else env
    where = str(source) if source else "<profile>"
    _refuse_unknown(data, _TOP_KEYS, "", where)

    address = _string(data, "address", "", where, required=True)
    try:
        parsed = Address(addr_spec=address)
    except (ValueError, IndexError) as e:
        raise ProfileError(f"{where}: address {address!r} is not a valid address: {e}") from None
    if not parsed.domain or not address.isascii():
        raise ProfileError(f"{where}: address {address!r} must be an ASCII user@domain")
    name = _string(data, "name", "", where)
    base = source.parent if source else Path.cwd()

    maildir_value = env.get("MUA_MAILDIR") or _string(data, "maildir", "", where)
    maildir = _path(maildir_value, base) if maildir_value else default_maildir(address)
    password_file = _string(data, "password_file", "", where)

    return Profile(
        address=address,
        name=name,
        smtp=_server(data, "smtp", address, base, where),
        pop3=_server(data, "pop3", address, base, where),
        maildir=maildir,
        password_file=_path(password_file, base) if password_file else None,
        source=source,
    )


def _server(
    data: Mapping[str, object], section: str, address: str, base: Path, where: str
) -> ServerSettings:
    table = data.get(section, {})
    if not isinstance(table, dict):
        raise ProfileError(f"{where}: [{section}] must be a table")
    _refuse_unknown(table, _SERVER_KEYS, section + ".", where)
    security = _string(table, "security", section + ".", where) or "none"
    if security not in SECURITY_VALUES:
        raise ProfileError(
            f"{where}: {section}.security must be one of {', '.join(SECURITY_VALUES)},"
            f" not {security!r}"
        )
    port = table.get("port", DEFAULT_PORTS[section][security])
    if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
        raise ProfileError(f"{where}: {section}.port must be an integer from 1 to 65535")
    verify = table.get("verify", True)
    if not isinstance(verify, bool):
        raise ProfileError(f"{where}: {section}.verify must be true or false")
    timeout = table.get("timeout", 30.0)
    if not isinstance(timeout, int | float) or isinstance(timeout, bool) or timeout <= 0:
        raise ProfileError(f"{where}: {section}.timeout must be a positive number of seconds")
    ca_file = _string(table, "ca_file", section + ".", where)
    return ServerSettings(
        host=_string(table, "host", section + ".", where) or "localhost",
        port=port,
        security=security,
        verify=verify,
        ca_file=_path(ca_file, base) if ca_file else None,
        login=_string(table, "login", section + ".", where) or address,
        timeout=float(timeout),
    )


def _refuse_unknown(table: Mapping[str, object], known: set[str], prefix: str, where: str) -> None:
    for key in table:
        if key not in known:
            raise ProfileError(f"{where}: unknown key '{prefix}{key}'")


def _string(
    table: Mapping[str, object], key: str, prefix: str, where: str, *, required: bool = False
) -> str:
    value = table.get(key)
    if value is None:
        if required:
            raise ProfileError(f"{where}: missing required key '{prefix}{key}'")
        return ""
    if not isinstance(value, str):
        raise ProfileError(f"{where}: {prefix}{key} must be a string")
    return value


def _path(value: str, base: Path) -> Path:
    path = Path(os.path.expanduser(value))
    return path if path.is_absolute() else base / path


def find_profile(cli_value: str | None, env: Mapping[str, str] | None = None) -> Path:
    """The profile path from ``--profile`` or ``MUA_PROFILE``."""
    env = os.environ if env is None else env
    value = cli_value or env.get("MUA_PROFILE")
    if not value:
        raise ProfileError("no profile: use --profile FILE or set MUA_PROFILE")
    return Path(value)


def get_password(
    profile: Profile,
    env: Mapping[str, str] | None = None,
    prompt: Callable[[str], str] | None = None,
    interactive: bool | None = None,
) -> str:
    """The account password from ``MUA_PASSWORD``, a password file, or a prompt on a terminal."""
    env = os.environ if env is None else env
    if env.get("MUA_PASSWORD"):
        return env["MUA_PASSWORD"]
    file_value = env.get("MUA_PASSWORD_FILE")
    password_file = Path(file_value) if file_value else profile.password_file
    if password_file is not None:
        try:
            text = password_file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise ProfileError(f"cannot read password file {password_file}: {e}") from None
        password = text.rstrip("\r\n")
        if not password:
            raise ProfileError(f"password file {password_file} is empty")
        return password
    if interactive is None:
        interactive = sys.stdin.isatty() or _has_terminal()
    if not interactive:
        raise ProfileError(
            "no password: set MUA_PASSWORD or MUA_PASSWORD_FILE, or run on a terminal"
        )
    ask = prompt or getpass.getpass
    try:
        return ask(f"Password for {profile.address}: ")
    except EOFError:  # Ctrl-D; Ctrl-C (KeyboardInterrupt) propagates: the CLI exits 130
        raise ProfileError("no password given") from None


def _has_terminal() -> bool:
    # getpass reads from /dev/tty, so a prompt works even when stdin is a pipe (mail body).
    try:
        with open("/dev/tty"):
            return True
    except OSError:
        return False
