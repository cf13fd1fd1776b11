"""The compose lab as separate hosts, without a container engine: Linux network namespaces.

Each compose service becomes a host (a namespace with its own address on a private bridge) that
runs the service's own command with the service's own environment. Only what a container engine
would supply differently is overridden: the config path (the example the image copies), the
database (a directory per named volume, so alice-mta and alice-pop3 share one exactly as they
share the volume), the listener addresses (the host's address), route targets (service name ->
that host's address, as the compose network's DNS would answer) and the user agent's servers.
Then alice's user agent submits to alice-mta, which relays across the network to bob-mta, and
bob's user agent fetches the message from bob-pop3, a separate process over bob's database.

With ``LAB_ROUTES=""`` (the "dns" variant) the MTAs have no static routes: alice-mta asks the
lab's dnsmasq (examples/dns/dnsmasq.conf, at the compose file's address) for bob.lab's MX.
"""

from __future__ import annotations

import ipaddress
import os
import re
import shutil
import sys
import tomllib
from pathlib import Path, PurePosixPath

import pytest
from lab_compose import (
    COMPOSE_DIR,
    DNS_CONF,
    Service,
    enabled_listeners,
    format_routes,
    load_compose,
    parse_routes,
    service_config,
    services,
    source_of,
    toml_dumps,
)
from lab_netns import LabNetwork, Process

SERVERS_IN_ORDER = ["bob-mta", "bob-pop3", "alice-mta", "alice-pop3"]
LISTENING = r"mta: \S+ (mx|submissions?|pop3s?|http) listening on "


def clean_env(work: Path) -> dict[str, str]:
    """The test's environment without any LABMAIL_*/MUA_* of its own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LABMAIL_", "MUA_"))}
    env.update(HOME=str(work), PYTHONUNBUFFERED="1", XDG_DATA_HOME=str(work / "xdg"))
    return env


def addresses_for(compose: dict, names: list[str]) -> dict[str, str]:
    """Compose's static addresses where it gives one; the others from its dynamic range."""
    ipam = compose["networks"]["lab"]["ipam"]["config"][0]
    dynamic = ipaddress.ip_network(ipam["ip_range"]).hosts()
    lab = services(compose)
    return {name: (lab[name].address() if name in lab and lab[name].address()
                   else str(next(dynamic))) for name in names}


def server_env(service: Service, net: LabNetwork, work: Path) -> dict[str, str]:
    """The service's environment, with what a container engine would supply replaced."""
    env = {k: v for k, v in service.env.items() if k != "LABMAIL_CONFIG"}
    config = service_config(service)
    # the database: the same file name inside a directory that stands for the named volume
    database = PurePosixPath(str(config.database))
    mount = service.mount_of(database)
    assert mount is not None, f"{service.name}: {database} is not on a volume"
    volume_dir = work / "volumes" / mount.source
    volume_dir.mkdir(parents=True, exist_ok=True)
    env["LABMAIL_DATABASE"] = str(volume_dir / database.relative_to(mount.target))
    # listeners: the same ports, on this host's address
    for name, listener in enabled_listeners(config).items():
        env[f"LABMAIL_LISTENERS_{name.upper()}"] = f"{net.addresses[service.name]}:{listener.port}"
    # routes: service names resolved as the compose network's DNS would
    if "LABMAIL_ROUTES" in env:
        routes = parse_routes(env["LABMAIL_ROUTES"])
        env["LABMAIL_ROUTES"] = format_routes({domain: (net.addresses.get(host, host), port)
                                               for domain, (host, port) in routes.items()})
    return env


def write_profile(user: str, lab: dict[str, Service], net: LabNetwork, work: Path) -> Path:
    """The compose lab's profile for ``user`` with the servers at their hosts' addresses."""
    mua = lab["mua"]
    source = source_of(PurePosixPath(mua.spec["working_dir"]) / f"{user}.profile.toml")
    assert source is not None
    data = tomllib.loads(source.read_text(encoding="utf-8"))
    for section in ("smtp", "pop3"):
        data[section]["host"] = net.addresses[data[section]["host"]]
    data["maildir"] = str(work / "mua" / f"{user}@{user}.lab" / "Maildir")
    data["password_file"] = str(COMPOSE_DIR / data["password_file"])
    path = work / f"{user}.profile.toml"
    path.write_text(toml_dumps(data), encoding="utf-8")
    return path


def mua(net: LabNetwork, env: dict[str, str], profile: Path, *args: str) -> str:
    result = net.run("mua", [sys.executable, "-m", "mua", "--profile", str(profile), *args], env)
    assert result.returncode == 0, f"mua {' '.join(args)}: {result.stderr}{result.stdout}"
    return result.stdout


def start_dns(net: LabNetwork, env: dict[str, str], need_tool) -> Process:
    dnsmasq = shutil.which("dnsmasq") or "/usr/sbin/dnsmasq"
    need_tool(Path(dnsmasq).exists(), "dnsmasq is not installed (Debian package dnsmasq-base)")
    # the lab's own config; only what a container would not need is added (no pid file, and
    # this test's namespace address instead of the container's wildcard)
    process = net.start("dns", [dnsmasq, "--keep-in-foreground", f"--conf-file={DNS_CONF}",
                                "--pid-file=", "--user=root", "--bind-interfaces",
                                f"--listen-address={net.addresses['dns']}"], env)
    process.wait_for(r"started, version", stream="stderr", timeout=15)
    return process


@pytest.mark.parametrize("routing", ["static", "dns"])
def test_mail_crosses_the_lab_network(routing: str, lab_net: LabNetwork, tmp_path: Path,
                                      need_tool) -> None:
    compose = load_compose({} if routing == "static" else {"LAB_ROUTES": ""})
    lab = services(compose)
    hosts = [*SERVERS_IN_ORDER, "mua"] + (["dns"] if routing == "dns" else [])
    for name, address in addresses_for(compose, hosts).items():
        lab_net.add_host(name, address)
    env = clean_env(tmp_path)

    dns = start_dns(lab_net, env, need_tool) if routing == "dns" else None

    # the servers, in compose's depends_on order, each waited for as compose waits for health
    started = {}
    for name in SERVERS_IN_ORDER:
        service = lab[name]
        for dependency in service.spec.get("depends_on", {}):
            assert dependency in started, f"{name} starts before {dependency}"
        config_file = source_of(service.config_path())
        service_env = {**env, **server_env(service, lab_net, tmp_path)}
        argv = [sys.executable, "-m", "mta", "--config", str(config_file), *service.argv[1:]]
        process = lab_net.start(name, argv, service_env)
        listeners = enabled_listeners(service_config(service))
        process.wait_for(LISTENING, timeout=30, count=len(listeners))
        health = service.spec["healthcheck"]["test"][1:]  # ["mta", "check", ...]
        check = lab_net.run(name, [sys.executable, "-m", "mta", "--config", str(config_file),
                                   *health[1:]], service_env)
        assert check.returncode == 0, f"{name}: {health}: {check.stdout}{check.stderr}"
        started[name] = process

    # step 1-3: alice's user agent, on its own host, submits to alice-mta
    alice = write_profile("alice", lab, lab_net, tmp_path)
    bob = write_profile("bob", lab, lab_net, tmp_path)
    subject = f"across the lab network ({routing})"
    out = mua(lab_net, env, alice, "send", "--to", "bob@bob.lab", "--subject", subject,
              "--body", "Hello Bob, this crossed two hosts.")
    assert "sent to bob@bob.lab" in out

    # step 4: alice-mta relays to bob-mta; bob-mta's trace shows it accepting the message
    alice_address = re.escape(lab_net.addresses["alice-mta"])
    started["bob-mta"].wait_for(rf"{alice_address}:\d+\s+S: 250 .*queued", stream="stderr",
                                timeout=60)
    if dns is not None:
        dns.wait_for(rf"query\[MX\] bob\.lab from {alice_address}", stream="stderr", timeout=5)

    # step 5: bob's user agent fetches it from bob-pop3, a separate process over bob's database
    out = mua(lab_net, env, bob, "fetch")
    assert "fetched 1 new message" in out, out
    listing = mua(lab_net, env, bob, "list")
    assert subject in listing
    shown = mua(lab_net, env, bob, "read", "1")
    assert "Hello Bob, this crossed two hosts." in shown
    assert "alice@alice.lab" in shown
    raw = mua(lab_net, env, bob, "read", "1", "--raw")
    assert raw.count("Received:") >= 2, "a Received: line from each server (step 4)"
