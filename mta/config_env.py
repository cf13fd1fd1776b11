"""The ``LABMAIL_*`` environment overrides of a server's config (steps 3, 4 and 5).

What a container or a test must change without editing the file: listeners, database, routes,
hostname, workers, nameservers, the HTTP token. The naming rule and the list are in
``mta.config``'s docstring; an unknown ``LABMAIL_`` name is refused in one line.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from mta.config import (
    ENV_PREFIX,
    Config,
    ConfigError,
    HTTPListener,
    Listener,
    parse_hostport,
    parse_target,
)


def _env_workers(config: Config, name: str, value: str) -> dict[str, Any]:
    if not value.strip().isdigit() or not 1 <= int(value) <= 64:
        raise ConfigError(f"{name}: expected a number of processes from 1 to 64")
    return {"workers": int(value)}


def _env_routes(config: Config, name: str, value: str) -> dict[str, Any]:
    routes = {}
    for item in filter(None, (s.strip() for s in value.split(","))):
        domain, sep, target = item.partition("=")
        if not sep or not domain.strip():
            raise ConfigError(f"{name}: expected domain=host:port[,...], got {item!r}")
        routes[domain.strip().lower()] = parse_target(target, name)
    return {"routes": routes}


def _env_nameservers(config: Config, name: str, value: str) -> dict[str, Any]:
    servers = tuple(s.strip() for s in value.split(",") if s.strip())
    return {"relay": replace(config.relay, nameservers=servers)}


def _env_listener(config: Config, name: str, value: str) -> dict[str, Any]:
    """A listener moved (its other settings, such as a token, kept), added, or off."""
    which = name.removeprefix(ENV_PREFIX + "LISTENERS_").lower()
    current = getattr(config.listeners, which)
    listener: Listener | None = None
    if value.strip().lower() not in ("off", "none", ""):
        host, port = parse_hostport(value, name)
        if current is not None:
            listener = replace(current, host=host, port=port)
        else:
            listener = HTTPListener(host, port) if which == "http" else Listener(host, port)
    return {"listeners": replace(config.listeners, **{which: listener})}


def _with_token(config: Config, token: str | None) -> Config:
    """``LABMAIL_LISTENERS_HTTP_TOKEN``, applied after the listener overrides (any order)."""
    if token is None:
        return config
    name = ENV_PREFIX + "LISTENERS_HTTP_TOKEN"
    http = config.listeners.http
    if http is None:
        raise ConfigError(f"{name}: no HTTP listener to protect")
    if not token.strip():
        raise ConfigError(f"{name}: must not be empty")
    return replace(config, listeners=replace(config.listeners, http=replace(http, token=token)))


# LABMAIL_<key> -> fn(config, variable name, value) -> the fields it changes
_ENV_OVERRIDES: dict[str, Callable[[Config, str, str], dict[str, Any]]] = {
    "CONFIG": lambda config, name, value: {},  # names the file itself (mta --config's default)
    "HOSTNAME": lambda config, name, value: {"hostname": value.strip()},
    "WORKERS": _env_workers,
    "DATABASE": lambda config, name, value: {"database": Path(value)},
    "ROUTES": _env_routes,
    "RELAY_NAMESERVERS": _env_nameservers,
    "LISTENERS_MX": _env_listener,
    "LISTENERS_SUBMISSION": _env_listener,
    "LISTENERS_POP3": _env_listener,
    "LISTENERS_HTTP": _env_listener,
    "LISTENERS_HTTP_TOKEN": lambda config, name, value: {},  # _with_token, after the loop
    "LISTENERS_SUBMISSIONS": _env_listener,
    "LISTENERS_POP3S": _env_listener,
}


def apply_env(config: Config, environ: Mapping[str, str]) -> Config:
    """Apply the LABMAIL_* overrides (see the module docstring)."""
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX):
            continue
        override = _ENV_OVERRIDES.get(name[len(ENV_PREFIX):])
        if override is None:
            raise ConfigError(f"{name}: not a known override (known: "
                              + ", ".join(ENV_PREFIX + k for k in sorted(_ENV_OVERRIDES)) + ")")
        config = replace(config, **override(config, name, value))
    return _with_token(config, environ.get(ENV_PREFIX + "LISTENERS_HTTP_TOKEN"))
