"""The compose lab as data: docker-compose.yml, the Dockerfile and the files they name.

Shared by ``test_compose_file.py`` (do the files agree with each other and with the CLIs?) and
``test_netns.py`` (run the lab's services as separate hosts). Reading docker-compose.yml needs
PyYAML (in the test extra); everything else is the standard library and the project itself.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from mta import config as mta_config
from mta import config_env as mta_config_env

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
COMPOSE_DIR = ROOT / "examples" / "compose"
DNS_CONF = ROOT / "examples" / "dns" / "dnsmasq.conf"
LAB_MD = ROOT / "LAB.md"

_VARIABLE = re.compile(
    r"\$\$|\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?-)(?P<default>[^}]*))?\}")


def interpolate(text: str, env: Mapping[str, str]) -> str:
    """Compose's variable substitution: ``${VAR}``, ``${VAR-default}``, ``${VAR:-default}``."""

    def sub(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, op, default = match.group("name", "op", "default")
        if op == "-":  # default only when unset
            return env[name] if name in env else default
        if op == ":-":  # default when unset or empty
            return env.get(name) or default
        return env.get(name, "")

    return _VARIABLE.sub(sub, text)


def _interpolate_all(value: Any, env: Mapping[str, str]) -> Any:
    if isinstance(value, str):
        return interpolate(value, env)
    if isinstance(value, list):
        return [_interpolate_all(v, env) for v in value]
    if isinstance(value, dict):
        return {k: _interpolate_all(v, env) for k, v in value.items()}
    return value


def load_compose(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """docker-compose.yml with anchors merged and ``${...}`` substituted from ``env``."""
    data = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    return _interpolate_all(data, env or {})


# -- services ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Port:
    host_ip: str
    host_port: int
    container_port: int


@dataclass(frozen=True)
class Volume:
    source: str
    target: PurePosixPath


@dataclass
class Service:
    name: str
    spec: dict[str, Any]

    @property
    def profiles(self) -> list[str]:
        return list(self.spec.get("profiles", []))

    @property
    def env(self) -> dict[str, str]:
        raw = self.spec.get("environment", {}) or {}
        if isinstance(raw, list):
            raw = dict(item.partition("=")[::2] for item in raw)
        return {k: "" if v is None else str(v) for k, v in raw.items()}

    @property
    def argv(self) -> list[str]:
        """What the container runs: entrypoint + command (no image ENTRYPOINT is set)."""

        def words(value: Any) -> list[str]:
            if value is None:
                return []
            return shlex.split(value) if isinstance(value, str) else [str(v) for v in value]

        return words(self.spec.get("entrypoint")) + words(self.spec.get("command"))

    @property
    def ports(self) -> list[Port]:
        result = []
        for item in self.spec.get("ports", []):
            assert isinstance(item, str), f"{self.name}: use the short port syntax, got {item!r}"
            parts = item.split("/")[0].split(":")
            host_ip = parts[0] if len(parts) == 3 else ""
            result.append(Port(host_ip, int(parts[-2]) if len(parts) > 1 else 0, int(parts[-1])))
        return result

    @property
    def volumes(self) -> list[Volume]:
        result = []
        for item in self.spec.get("volumes", []):
            source, _, target = item.partition(":")
            result.append(Volume(source, PurePosixPath(target.split(":")[0])))
        return result

    @property
    def networks(self) -> dict[str, dict[str, Any]]:
        raw = self.spec.get("networks", {}) or {}
        if isinstance(raw, list):
            return {name: {} for name in raw}
        return {name: (value or {}) for name, value in raw.items()}

    def address(self, network: str = "lab") -> str | None:
        return self.networks.get(network, {}).get("ipv4_address")

    @property
    def program(self) -> str:
        return self.argv[0] if self.argv else ""

    @property
    def is_mta_server(self) -> bool:
        return self.argv[:1] == ["mta"] and "serve" in self.argv

    def config_path(self) -> PurePosixPath | None:
        """The container path of the mta config: ``--config`` or ``LABMAIL_CONFIG``."""
        argv = self.argv
        for flag in ("--config", "-c"):
            if flag in argv:
                return PurePosixPath(argv[argv.index(flag) + 1])
        value = self.env.get("LABMAIL_CONFIG")
        return PurePosixPath(value) if value else None

    def mount_of(self, path: PurePosixPath) -> Volume | None:
        for volume in self.volumes:
            if path == volume.target or volume.target in path.parents:
                return volume
        return None


def services(compose: Mapping[str, Any]) -> dict[str, Service]:
    return {name: Service(name, spec or {}) for name, spec in compose["services"].items()}


# -- the Dockerfile ----------------------------------------------------------------------------


def dockerfile_stages() -> dict[str, list[tuple[str, str]]]:
    """Stage name -> its instructions as (KEYWORD, rest), continuation lines joined."""
    text = DOCKERFILE.read_text(encoding="utf-8")
    text = re.sub(r"\\\n", " ", text)
    stages: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, rest = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            words = rest.split()
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else str(len(stages))
            current = []
            stages[name] = current
        current.append((keyword, rest.strip()))
    return stages


def image_files(stage: str) -> dict[PurePosixPath, Path]:
    """Files the stage COPYs from the build context: container path -> source in the repo."""
    result: dict[PurePosixPath, Path] = {}
    for keyword, rest in dockerfile_stages()[stage]:
        if keyword != "COPY" or rest.startswith("--from"):
            continue
        words = [w for w in rest.split() if not w.startswith("--")]
        *sources, dest = words
        for source in sources:
            path = ROOT / source
            if path.is_dir():
                for file in path.rglob("*"):
                    if file.is_file() and "__pycache__" not in file.parts:
                        result[PurePosixPath(dest) / file.relative_to(path).as_posix()] = file
            else:
                target = PurePosixPath(dest)
                if dest.endswith("/"):
                    target = target / path.name
                result[target] = path
    return result


def source_of(container_path: PurePosixPath, stage: str = "labmail") -> Path | None:
    return image_files(stage).get(container_path)


def service_config(service: Service, env: Mapping[str, str] | None = None) -> mta_config.Config:
    """Load the config a server service names, with its environment (or ``env``) applied."""
    path = service.config_path()
    assert path is not None, f"{service.name}: names no config (--config or LABMAIL_CONFIG)"
    source = source_of(path)
    assert source is not None, f"{service.name}: {path} is not copied into the image"
    return mta_config.load(source, environ=service.env if env is None else env)


def enabled_listeners(config: mta_config.Config) -> dict[str, mta_config.Listener]:
    return {name: listener for name in (*mta_config.LISTENER_NAMES, "http")
            if (listener := getattr(config.listeners, name)) is not None}


def parse_routes(value: str) -> dict[str, tuple[str, int]]:
    """A LABMAIL_ROUTES value, parsed the way mta.config does."""
    return dict(mta_config_env.apply_env(_EMPTY, {"LABMAIL_ROUTES": value}).routes)


_EMPTY = mta_config.from_dict({"domains": ["x.invalid"], "database": "x.db"}, "<routes>")


def format_routes(routes: Mapping[str, tuple[str, int]]) -> str:
    return ",".join(f"{domain}={host}:{port}" for domain, (host, port) in routes.items())


# -- examples/dns/dnsmasq.conf -----------------------------------------------------------------


def dnsmasq_records() -> tuple[dict[str, str], dict[str, str]]:
    """(MX: domain -> exchange, A: name -> address) from the lab's dnsmasq.conf."""
    mx: dict[str, str] = {}
    a: dict[str, str] = {}
    for line in DNS_CONF.read_text(encoding="utf-8").splitlines():
        key, _, value = line.split("#")[0].strip().partition("=")
        fields = [f.strip() for f in value.split(",")]
        if key == "mx-host":
            mx[fields[0]] = fields[1]
        elif key == "host-record":
            a[fields[0]] = fields[1]
    return mx, a


# -- TOML (just enough to write a derived mua profile) ----------------------------------------


def toml_dumps(data: Mapping[str, Any]) -> str:
    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, int | float):
            return repr(v)
        return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'

    lines = [f"{k} = {value(v)}" for k, v in data.items() if not isinstance(v, dict)]
    for k, table in data.items():
        if isinstance(table, dict):
            lines.append(f"\n[{k}]")
            lines.extend(f"{kk} = {value(vv)}" for kk, vv in table.items())
    return "\n".join(lines) + "\n"
