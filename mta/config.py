"""Server configuration: one TOML file per mail domain, loaded into frozen dataclasses.

Every step a server takes part in (3 submit, 4 relay/receive, 5 retrieve) reads its settings from
here. Unknown keys and bad values are refused with a one-line ``ConfigError`` naming the key and
the file. Environment variables override what containers and tests must change (applied by
``mta.config_env``); the rule is

    LABMAIL_<KEY PATH IN UPPER CASE, DOTS AS UNDERSCORES>

    LABMAIL_HOSTNAME=mx.bob.lab
    LABMAIL_DATABASE=/var/lib/labmail/bob.db
    LABMAIL_LISTENERS_MX=0.0.0.0:25          ("off" disables a listener)
    LABMAIL_LISTENERS_SUBMISSION=0.0.0.0:587
    LABMAIL_LISTENERS_POP3=0.0.0.0:110
    LABMAIL_LISTENERS_HTTP=127.0.0.1:8025     (the JSON API; "off" disables it)
    LABMAIL_LISTENERS_HTTP_TOKEN=...          (its bearer token; required off loopback)
    LABMAIL_LISTENERS_SUBMISSIONS=0.0.0.0:465   (implicit TLS, RFC 8314)
    LABMAIL_LISTENERS_POP3S=0.0.0.0:995
    LABMAIL_ROUTES=alice.lab=alice-mta:25,bob.lab=bob-mta:25   ("" clears the table)
    LABMAIL_RELAY_NAMESERVERS=127.0.0.1:5353
    LABMAIL_WORKERS=2                         (processes on the MX and POP3 ports)
    LABMAIL_CONFIG=/etc/labmail/bob.lab.toml  (the file itself, when --config is not given)
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from mta.addresses import normalise

ENV_PREFIX = "LABMAIL_"


class ConfigError(Exception):
    """A config file or override that cannot be used; the message is one line for the user."""


@dataclass(frozen=True)
class Listener:
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True)
class HTTPListener(Listener):
    """``[listeners.http]``: the JSON API and event stream (``mta.http``)."""

    token: str | None = None             # then every request needs "Bearer <token>"
    cors_origins: tuple[str, ...] = ()   # no CORS headers for any other origin

    @property
    def loopback(self) -> bool:
        """Whether only this machine can reach it (else ``mta serve`` wants a token)."""
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False


@dataclass(frozen=True)
class Listeners:
    mx: Listener | None = None
    submission: Listener | None = None
    pop3: Listener | None = None
    http: HTTPListener | None = None
    # RFC 8314 implicit TLS: TLS from the first byte (need a [tls] certificate)
    submissions: Listener | None = None
    pop3s: Listener | None = None


# the listener names, in the order they are started and reported
LISTENER_NAMES = ("mx", "submission", "submissions", "pop3", "pop3s")
IMPLICIT_TLS = ("submissions", "pop3s")


@dataclass(frozen=True)
class Account:
    address: str
    password: str
    # APOP needs the secret in reversible form (RFC 1939 7): lab-only, off unless asked for.
    apop: bool = False


@dataclass(frozen=True)
class TLS:
    # "off", "self-signed" (generated for the hostname at first start) or "files"
    mode: str = "off"
    cert: Path | None = None
    key: Path | None = None


@dataclass(frozen=True)
class Limits:
    max_message_size: int = 10 * 1024 * 1024
    max_recipients: int = 100
    max_connections: int = 200
    # per client IP address and listener; room for 50 connections from one test or benchmark
    max_connections_per_client: int = 100
    # NOOP, RSET, VRFY, HELP and EHLO/HELO outside a transaction, per SMTP session between two
    # accepted messages (like Postfix's smtpd_junk_command_limit); then 421 and close
    max_junk_commands: int = 100
    command_timeout: float = 300.0
    pop3_idle_timeout: float = 600.0
    # a POP3 maildrop lock left by a killed process frees itself after this (renewed while alive)
    pop3_lock_lease: float = 60.0
    # base delay before a failed-login reply; it doubles with each failure from one client
    # address, across connections (at most 64 times this), in submission and POP3
    failed_auth_delay: float = 1.0
    max_auth_failures: int = 3  # per connection; then 421 and the connection is closed
    max_received_headers: int = 30


@dataclass(frozen=True)
class Queue:
    # Retry delay for attempt n is retry_initial * retry_factor ** (n - 1), capped at retry_max.
    retry_initial: float = 300.0
    retry_factor: float = 2.0
    retry_max: float = 4 * 3600.0
    lifetime: float = 5 * 24 * 3600.0
    # An idle relay worker re-reads the queue this often, so `mta queue flush` run by another
    # process takes effect (mail queued by this process wakes it at once).
    idle_recheck: float = 5.0


@dataclass(frozen=True)
class Relay:
    verify_tls: bool = False
    connect_timeout: float = 30.0
    command_timeout: float = 300.0
    nameservers: tuple[str, ...] = ()  # "ip" or "ip:port"; empty: the system's resolvers
    dns_timeout: float = 10.0
    port: int = 25  # the SMTP port of hosts found by DNS (MX or A); static routes name theirs
    # with verify_tls: trust this CA file (relative to the config) instead of the system's
    ca_file: str = ""


@dataclass(frozen=True)
class Faults:
    """Lab and test fault injection; empty unless configured."""

    # replies the MX listener gives to its next transactions, one each, e.g. ["451 4.3.0 try later"]
    mx_replies: tuple[str, ...] = ()


@dataclass(frozen=True)
class Config:
    hostname: str
    domains: tuple[str, ...]
    database: Path
    listeners: Listeners = field(default_factory=Listeners)
    accounts: tuple[Account, ...] = ()
    routes: Mapping[str, tuple[str, int]] = field(default_factory=dict)
    postmaster: str | None = None
    catch_all: Mapping[str, str] = field(default_factory=dict)
    allow_plaintext_auth: bool = False
    tls: TLS = field(default_factory=TLS)
    limits: Limits = field(default_factory=Limits)
    queue: Queue = field(default_factory=Queue)
    relay: Relay = field(default_factory=Relay)
    faults: Faults = field(default_factory=Faults)
    # processes serving the MX and POP3 ports (mta.workers); submission and relay run in one
    workers: int = 1
    source: str = "<config>"

    def is_local_domain(self, domain: str) -> bool:
        return domain.lower() in self.domains

    @property
    def postmaster_address(self) -> str:
        """Where mail to postmaster goes (RFC 5321 4.5.1)."""
        if self.postmaster:
            return self.postmaster
        if self.accounts:
            return self.accounts[0].address
        return f"postmaster@{self.domains[0]}"


# ---------------------------------------------------------------------------------------------
# parsing


# Float settings that may be 0; every other float (timeouts, leases, retry times) must be > 0.
ZERO_ALLOWED = frozenset({"failed_auth_delay"})


def parse_hostport(value: str, where: str) -> tuple[str, int]:
    host, sep, port = value.strip().rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"{where}: expected host:port, got {value!r}")
    return host.strip("[]"), int(port)


class _Reader:
    """Walks one TOML table, refusing unknown keys and wrong types with the key's full name."""

    def __init__(self, table: Mapping[str, Any], prefix: str, source: str) -> None:
        if not isinstance(table, Mapping):
            raise ConfigError(f"{source}: '{prefix.rstrip('.')}' must be a table")
        self.table = table
        self.prefix = prefix
        self.source = source
        self.used: set[str] = set()

    def err(self, key: str, message: str) -> ConfigError:
        return ConfigError(f"{self.source}: '{self.prefix}{key}' {message}")

    def get(self, key: str, kind: type | tuple[type, ...], default: Any = None) -> Any:
        self.used.add(key)
        if key not in self.table:
            return default
        value = self.table[key]
        if isinstance(value, bool) and kind in (int, float, (int, float)):
            raise self.err(key, "must be a number")
        if kind is float and isinstance(value, int):
            value = float(value)
        if not isinstance(value, kind):
            names = kind.__name__ if isinstance(kind, type) else "number"
            names = {"str": "a string", "int": "an integer", "float": "a number",
                     "bool": "true or false", "list": "a list", "dict": "a table",
                     "number": "a number"}.get(names, names)
            raise self.err(key, f"must be {names}")
        return value

    def positive(self, key: str, kind: type, default: Any) -> Any:
        value = self.get(key, kind, default)
        if value <= 0:
            raise self.err(key, "must be greater than 0")
        return value

    def sub(self, key: str) -> _Reader:
        return _Reader(self.get(key, dict, {}), f"{self.prefix}{key}.", self.source)

    def finish(self) -> None:
        unknown = sorted(set(self.table) - self.used)
        if unknown:
            raise self.err(unknown[0], "is not a known setting")


def _domain(value: str, reader: _Reader, key: str) -> str:
    domain = value.strip().lower().rstrip(".")
    if not domain or len(domain) > 255 or any(c.isspace() or c in "@:/[]" for c in domain):
        raise reader.err(key, f"has an invalid domain {value!r}")
    return domain


def _listener(reader: _Reader, name: str) -> Listener | None:
    if name not in reader.table:
        reader.used.add(name)
        return None
    sub = reader.sub(name)
    listener = Listener(*_host_port(sub))
    sub.finish()
    return listener


def _host_port(sub: _Reader) -> tuple[str, int]:
    host = sub.get("host", str, "127.0.0.1")
    port = sub.get("port", int)
    if port is None:
        raise sub.err("port", "is required")
    if not 0 <= port <= 65535:
        raise sub.err("port", "must be between 0 and 65535")
    return host, port


_ORIGIN = re.compile(r"https?://[^\s/]+")  # scheme://host[:port], as browsers send it


def _http_listener(reader: _Reader) -> HTTPListener | None:
    if "http" not in reader.table:
        reader.used.add("http")
        return None
    sub = reader.sub("http")
    host, port = _host_port(sub)
    token = sub.get("token", str)
    if token is not None and not token.strip():
        raise sub.err("token", "must not be empty")
    origins = sub.get("cors_origins", list, [])
    if not all(isinstance(o, str) and _ORIGIN.fullmatch(o) for o in origins):
        raise sub.err("cors_origins", 'must be origins such as "http://localhost:3000"')
    sub.finish()
    return HTTPListener(host, port, token, tuple(origins))


def _accounts(reader: _Reader, domains: tuple[str, ...]) -> tuple[Account, ...]:
    raw = reader.get("accounts", list, [])
    accounts = []
    seen = set()
    for i, item in enumerate(raw):
        sub = _Reader(item, f"accounts[{i}].", reader.source)
        address = normalise(sub.get("address", str, ""))
        local, _, domain = address.rpartition("@")
        if not local or domain not in domains:
            raise sub.err("address", f"must be an address in one of {list(domains)}")
        password = sub.get("password", str)
        if not password:
            raise sub.err("password", "is required")
        if address in seen:
            raise sub.err("address", f"repeats {address}")
        seen.add(address)
        accounts.append(Account(address, password, sub.get("apop", bool, False)))
        sub.finish()
    return tuple(accounts)


def _routes(reader: _Reader) -> dict[str, tuple[str, int]]:
    sub = reader.sub("routes")
    routes = {}
    for domain in list(sub.table):
        value = sub.get(domain, str)
        where = f"{sub.source}: '{sub.prefix}{domain}'"
        routes[_domain(domain, sub, domain)] = parse_target(value, where)
    sub.finish()
    return routes


def parse_target(value: str, where: str) -> tuple[str, int]:
    """A route target is host or host:port (port 25 by default)."""
    if ":" not in value:
        if not value.strip():
            raise ConfigError(f"{where}: expected host or host:port")
        return value.strip(), 25
    return parse_hostport(value, where)


def _dataclass_section(reader: _Reader, key: str, cls: type) -> Any:
    sub = reader.sub(key)
    values = {}
    for f in fields(cls):
        default = f.default
        if isinstance(default, bool):
            value = sub.get(f.name, bool, default)
        elif isinstance(default, int):
            value = sub.positive(f.name, int, default)
        elif isinstance(default, float):
            value = sub.get(f.name, float, default)
            # nan compares false with everything: without isfinite, a nan timeout would pass
            # (and make every session time out at once)
            if not math.isfinite(value):
                raise sub.err(f.name, "must be a finite number (not nan or inf)")
            if value < 0 or (value == 0 and f.name not in ZERO_ALLOWED):
                raise sub.err(f.name, "must be greater than 0"
                              if f.name not in ZERO_ALLOWED else "must not be negative")
        elif isinstance(default, str):
            value = sub.get(f.name, str, default)
        else:  # tuple of strings
            items = sub.get(f.name, list, list(default))
            if not all(isinstance(x, str) for x in items):
                raise sub.err(f.name, "must be a list of strings")
            value = tuple(items)
        values[f.name] = value
    sub.finish()
    return cls(**values)


def _relay(relay: Relay, base: Path) -> Relay:
    return replace(relay, ca_file=str(base / relay.ca_file)) if relay.ca_file else relay


def _tls(reader: _Reader, base: Path) -> TLS:
    if isinstance(reader.table.get("tls"), str):
        mode = reader.get("tls", str)
        if mode not in ("off", "self-signed"):
            raise reader.err("tls", 'must be "off", "self-signed" or a table with cert and key')
        return TLS(mode)
    sub = reader.sub("tls")
    cert = sub.get("cert", str)
    key = sub.get("key", str)
    sub.finish()
    if not sub.table:
        return TLS()
    if not cert or not key:
        raise sub.err("cert" if not cert else "key", "is required in a [tls] table")
    return TLS("files", base / cert, base / key)


def _workers(value: int, error: ConfigError) -> int:
    if not 1 <= value <= 64:
        raise error
    return value


def from_dict(data: Mapping[str, Any], source: str = "<config>",
              base: Path | None = None) -> Config:
    """Build a Config from parsed TOML; paths are relative to ``base`` (the file's folder)."""
    base = base or Path.cwd()
    r = _Reader(data, "", source)
    domains_raw = r.get("domains", list)
    if not domains_raw:
        raise r.err("domains", "is required (a list of the mail domains this server serves)")
    domains = tuple(_domain(d, r, "domains") if isinstance(d, str) else "" for d in domains_raw)
    if "" in domains:
        raise r.err("domains", "must be a list of strings")
    hostname = r.get("hostname", str, f"mx.{domains[0]}")
    database = r.get("database", str)
    if not database:
        raise r.err("database", "is required (the SQLite file that holds the mailboxes)")
    listeners_r = r.sub("listeners")
    listeners = Listeners(**{n: _listener(listeners_r, n) for n in LISTENER_NAMES},
                          http=_http_listener(listeners_r))
    listeners_r.finish()
    accounts = _accounts(r, domains)
    postmaster = r.get("postmaster", str)
    if postmaster is not None:
        postmaster = normalise(postmaster)
        if postmaster.rpartition("@")[2] not in domains:
            raise r.err("postmaster", "must be an address in this server's domains")
    catch_r = r.sub("catch_all")
    catch_all = {}
    for dom in list(catch_r.table):
        address = normalise(catch_r.get(dom, str))
        d = _domain(dom, catch_r, dom)
        if d not in domains or address.rpartition("@")[2] not in domains:
            raise catch_r.err(dom, "must map one of this server's domains to a local address")
        catch_all[d] = address
    catch_r.finish()
    config = Config(
        hostname=hostname,
        domains=domains,
        database=base / database,
        listeners=listeners,
        accounts=accounts,
        routes=_routes(r),
        postmaster=postmaster,
        catch_all=catch_all,
        allow_plaintext_auth=r.get("allow_plaintext_auth", bool, False),
        tls=_tls(r, base),
        limits=_dataclass_section(r, "limits", Limits),
        queue=_dataclass_section(r, "queue", Queue),
        relay=_relay(_dataclass_section(r, "relay", Relay), base),
        faults=_dataclass_section(r, "faults", Faults),
        workers=_workers(r.get("workers", int, 1), r.err("workers", "must be from 1 to 64")),
        source=source,
    )
    r.finish()
    return config


def load(path: str | Path, environ: Mapping[str, str] | None = None) -> Config:
    """Load a config file and apply the ``LABMAIL_*`` overrides (default: from os.environ)."""
    path = Path(path)
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except UnicodeDecodeError as exc:  # TOML is UTF-8 (TOML 1.0 "Spec")
        raise ConfigError(f"{path}: not valid UTF-8 at byte {exc.start}") from None
    config = from_dict(data, str(path), path.parent)
    from mta.config_env import apply_env  # it builds on this module's types

    return apply_env(config, os.environ if environ is None else environ)
