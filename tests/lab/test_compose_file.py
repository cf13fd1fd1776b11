"""The compose lab's files agree with each other and with the code they name.

No container engine is needed: docker-compose.yml is validated by ``docker-compose config``
when that command exists, and read with PyYAML to check that every service's command,
environment, ports, volumes and health check fit the configs and CLIs it names.
"""

from __future__ import annotations

import ipaddress
import os
import shlex
import shutil
import subprocess
from pathlib import Path, PurePosixPath

import pytest
from lab_compose import (
    COMPOSE_DIR,
    DNS_CONF,
    LAB_MD,
    ROOT,
    Service,
    dnsmasq_records,
    dockerfile_stages,
    enabled_listeners,
    image_files,
    load_compose,
    parse_routes,
    service_config,
    services,
    source_of,
)

from mta import cli as mta_cli
from mua import cli as mua_cli
from mua.profile import load_profile

IMAGE_CONFIG_DIR = PurePosixPath("/etc/labmail")
PROFILE_SETS = [[], ["dns"]]


def compose_command() -> list[str] | None:
    """``docker-compose`` (v1, Debian's package) or ``docker compose`` (v2), if installed."""
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=30)
        if probe.returncode == 0:
            return ["docker", "compose"]
    return None


@pytest.fixture(scope="module")
def compose() -> dict:
    return load_compose({})


@pytest.fixture(scope="module")
def lab(compose: dict) -> dict[str, Service]:
    return services(compose)


@pytest.fixture(scope="module")
def servers(lab: dict[str, Service]) -> dict[str, Service]:
    return {name: s for name, s in lab.items() if s.is_mta_server}


def mta_parse(argv: list[str]) -> None:
    """Parse as ``mta`` would (argparse exits 2 on an unknown subcommand or option)."""
    mta_cli.build_parser().parse_args(argv)


def mua_parse(argv: list[str]) -> None:
    try:
        mua_cli.build_parser().parse_args(argv)
    except SystemExit as exc:  # --help exits 0 after printing; a usage error exits 2
        assert exc.code == 0, f"mua {shlex.join(argv)}: not a valid mua command line"


# -- docker-compose itself -----------------------------------------------------------------------


@pytest.mark.parametrize("profiles", PROFILE_SETS, ids=["default", "dns"])
@pytest.mark.parametrize("routes", [None, ""], ids=["static-routes", "LAB_ROUTES-empty"])
def test_docker_compose_config_accepts_the_file(profiles: list[str], routes: str | None,
                                                need_tool) -> None:
    command = compose_command()
    need_tool(command is not None, "neither docker-compose nor 'docker compose' is installed "
                                   "(Debian package docker-compose)")
    assert command is not None
    # docker-compose v1 is a program of the system's Python: keep the test's Python settings out
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("LAB_", "COMPOSE_", "PYTHON")) and k != "VIRTUAL_ENV"}
    if routes is not None:
        env["LAB_ROUTES"] = routes
    args = [*command, "--project-directory", str(ROOT), "-f", str(ROOT / "docker-compose.yml")]
    for profile in profiles:
        args += ["--profile", profile]
    result = subprocess.run([*args, "config", "-q"], capture_output=True, text=True, env=env,
                            cwd=ROOT, timeout=60)
    assert result.returncode == 0, result.stderr or result.stdout


# -- the image -------------------------------------------------------------------------------------


def test_the_image_runs_as_a_non_root_user_with_a_data_volume() -> None:
    stages = dockerfile_stages()
    final = list(stages)[-1]
    assert final == "labmail", "the default (last) stage is the labmail image"
    keywords = dict(stages[final])
    assert keywords["FROM"].startswith("python:3.11-slim")
    assert keywords["USER"] not in ("root", "0")
    assert "/var/lib/labmail" in keywords["VOLUME"]
    # the project is installed with its dependencies, so both entry points exist
    build = " ".join(rest for kw, rest in stages["build"] if kw == "RUN")
    assert "pip install ." in build


def test_every_service_runs_a_real_mta_or_mua_command(lab: dict[str, Service]) -> None:
    for service in lab.values():
        if service.name == "dns":
            continue
        assert service.spec["build"]["target"] == "labmail", service.name
        assert service.program in ("mta", "mua"), f"{service.name}: runs {service.argv}"
        if service.program == "mta":
            mta_parse(service.argv[1:])
        else:
            mua_parse(service.argv[1:])


def test_each_server_config_is_an_example_copied_into_the_image(
        servers: dict[str, Service]) -> None:
    assert set(servers) == {"alice-mta", "alice-pop3", "bob-mta", "bob-pop3"}
    for service in servers.values():
        path = service.config_path()
        assert path is not None and path.parent == IMAGE_CONFIG_DIR, service.name
        source = source_of(path)
        assert source is not None, f"{service.name}: the Dockerfile does not copy {path}"
        assert source.parent == COMPOSE_DIR and source.exists(), source


def test_listeners_are_what_the_ports_publish(servers: dict[str, Service]) -> None:
    expected = {
        "alice-mta": {"mx": 25, "submission": 587, "submissions": 465, "http": 8025},
        "bob-mta": {"mx": 25, "submission": 587, "submissions": 465, "http": 8025},
        "alice-pop3": {"pop3": 110, "pop3s": 995},
        "bob-pop3": {"pop3": 110, "pop3s": 995},
    }
    for name, service in servers.items():
        listeners = enabled_listeners(service_config(service))
        assert {n: lst.port for n, lst in listeners.items()} == expected[name], name
        # reachable from the other containers, not only from inside this one
        assert all(lst.host == "0.0.0.0" for lst in listeners.values()), name
        published = sorted(p.container_port for p in service.ports)
        assert published == sorted(lst.port for lst in listeners.values()), name
        http = listeners.get("http")
        assert http is None or http.token, f"{name}: the HTTP API off loopback needs a token"


def test_ports_are_published_on_loopback_only_with_unprivileged_numbers(
        lab: dict[str, Service]) -> None:
    host_ports = []
    for service in lab.values():
        for port in service.ports:
            assert port.host_ip == "127.0.0.1", f"{service.name}: {port} is not loopback-only"
            assert 1024 < port.host_port < 65536, f"{service.name}: {port}"
            host_ports.append(port.host_port)
    assert len(host_ports) == len(set(host_ports))


def test_host_ports_match_the_single_host_profiles(lab: dict[str, Service]) -> None:
    """examples/<user>.profile.toml (the host's profiles) reach the compose lab too."""
    for user in ("alice", "bob"):
        published = {p.container_port: p.host_port
                     for name in (f"{user}-mta", f"{user}-pop3") for p in lab[name].ports}
        profile = load_profile(ROOT / "examples" / f"{user}.profile.toml", env={})
        assert profile.smtp.port == published[587]
        assert profile.pop3.port == published[110]


def test_the_ports_below_1024_are_bindable_by_the_non_root_user(
        servers: dict[str, Service]) -> None:
    low_port_services = set()
    for service in servers.values():
        sysctls = service.spec.get("sysctls", {})
        low = any(lst.port < 1024 for lst in enabled_listeners(service_config(service)).values())
        if low:
            low_port_services.add(service.name)
            assert str(sysctls.get("net.ipv4.ip_unprivileged_port_start")) == "0", service.name
    # every server listens on a real (privileged) port number inside the network
    assert low_port_services == {"alice-mta", "alice-pop3", "bob-mta", "bob-pop3"}


def test_routes_lead_to_a_service_that_receives_for_the_domain(
        lab: dict[str, Service], servers: dict[str, Service]) -> None:
    for service in servers.values():
        config = service_config(service)
        for domain, (host, port) in config.routes.items():
            assert host in lab, f"{service.name}: route {domain} -> {host} is not a service"
            target = service_config(lab[host])
            assert domain in target.domains, f"{host} does not serve {domain}"
            assert target.listeners.mx is not None and target.listeners.mx.port == port


def test_each_mta_routes_to_the_other_domain(servers: dict[str, Service]) -> None:
    for user, other in (("alice", "bob"), ("bob", "alice")):
        service = servers[f"{user}-mta"]
        routes = parse_routes(service.env["LABMAIL_ROUTES"])
        assert routes == {f"{other}.lab": (f"{other}-mta", 25)}
        # the environment repeats the config file's table (so LAB_ROUTES= can empty it)
        config = service_config(service, env={})
        assert dict(config.routes) == routes


def test_health_checks_use_mta_check(servers: dict[str, Service]) -> None:
    for service in servers.values():
        test = service.spec["healthcheck"]["test"]
        assert test[0] == "CMD" and test[1] == "mta", service.name
        mta_parse(test[2:])
        assert test[2] == "check"


def test_depends_on_waits_for_health(lab: dict[str, Service]) -> None:
    dependencies = set()
    for service in lab.values():
        for dep, condition in (service.spec.get("depends_on") or {}).items():
            dependencies.add((service.name, dep))
            assert condition == {"condition": "service_healthy"}, service.name
            assert "healthcheck" in lab[dep].spec, dep
    # each POP3 server waits for its domain's MTA (which creates the database and certificate)
    assert dependencies == {("alice-pop3", "alice-mta"), ("bob-pop3", "bob-mta")}


def test_pop3_services_share_their_domains_database(servers: dict[str, Service]) -> None:
    for user in ("alice", "bob"):
        mta, pop3 = servers[f"{user}-mta"], servers[f"{user}-pop3"]
        mta_config, pop3_config = service_config(mta), service_config(pop3)
        assert mta_config.database == pop3_config.database
        database = PurePosixPath(str(mta_config.database))
        mta_mount, pop3_mount = mta.mount_of(database), pop3.mount_of(database)
        assert mta_mount is not None, f"{mta.name}: {database} is not on a volume"
        assert mta_mount == pop3_mount, f"{pop3.name} does not share {mta.name}'s volume"
        # a named volume (kept across restarts), not a bind mount
        assert mta_mount.source in load_compose({})["volumes"]
        assert pop3_config.listeners.mx is None and pop3_config.listeners.submission is None
        assert mta_config.listeners.pop3 is None


def test_lab_configs_allow_plaintext_auth_and_self_signed_tls(
        servers: dict[str, Service]) -> None:
    for service in servers.values():
        config = service_config(service)
        assert config.allow_plaintext_auth
        assert config.tls.mode == "self-signed"
        user = config.domains[0].split(".")[0]
        assert [a.address for a in config.accounts] == [f"{user}@{user}.lab"]
        assert config.accounts[0].password == f"{user}-lab-password"


def test_mua_profiles_reach_the_lab(lab: dict[str, Service]) -> None:
    mua = lab["mua"]
    assert mua.argv[:1] == ["mua"]
    assert "profiles" in mua.spec, "mua is a tool for 'run', not a service 'up' starts"
    workdir = PurePosixPath(mua.spec["working_dir"])
    files = image_files("labmail")
    for user in ("alice", "bob"):
        container_path = workdir / f"{user}.profile.toml"
        source = files.get(container_path)
        assert source is not None, f"{container_path} is not copied into the image"
        profile = load_profile(source, env={})
        assert profile.address == f"{user}@{user}.lab"
        # step 3: the submission listener of the user's own domain
        smtp = service_config(lab[profile.smtp.host])
        assert smtp.listeners.submission and smtp.listeners.submission.port == profile.smtp.port
        assert profile.domain in smtp.domains
        # step 5: the POP3 server over the same domain's mail
        pop3 = service_config(lab[profile.pop3.host])
        assert pop3.listeners.pop3 and pop3.listeners.pop3.port == profile.pop3.port
        assert profile.domain in pop3.domains
        # the lab-only password file holds the account's password
        password_file = PurePosixPath(
            str(profile.password_file).replace(str(COMPOSE_DIR), str(IMAGE_CONFIG_DIR)))
        assert files[password_file].read_text().strip() == pop3.accounts[0].password
        # fetched mail lives on a named volume
        maildir = PurePosixPath(str(profile.maildir))
        mount = mua.mount_of(maildir)
        assert mount is not None, f"{user}'s Maildir {maildir} is not on a volume"
        assert mount.source in load_compose({})["volumes"]
    assert "depends_on" not in mua.spec, "run would restart a server an exercise stopped"


# -- the DNS profile -------------------------------------------------------------------------------


def test_dns_profile_serves_mx_records_for_the_mtas(lab: dict[str, Service],
                                                    compose: dict) -> None:
    dns = lab["dns"]
    assert dns.profiles == ["dns"]
    assert dns.spec["build"]["target"] == "dns"
    stage = dict(dockerfile_stages()["dns"])
    assert stage["FROM"].split()[0].startswith("alpine")
    assert source_of(PurePosixPath("/etc/dnsmasq.conf"), "dns") == DNS_CONF
    nameserver = dns.address()
    mx, a = dnsmasq_records()
    subnet = ipaddress.ip_network(compose["networks"]["lab"]["ipam"]["config"][0]["subnet"])
    dynamic = ipaddress.ip_network(compose["networks"]["lab"]["ipam"]["config"][0]["ip_range"])
    for user in ("alice", "bob"):
        service = lab[f"{user}-mta"]
        config = service_config(service)
        assert config.relay.nameservers == (nameserver,)
        # the MX record names a host whose address is this MTA's static address
        exchange = mx[f"{user}.lab"]
        assert a[exchange] == service.address(), f"{exchange} is not {service.name}"
        assert config.relay.port == 25 and config.listeners.mx.port == 25
        address = ipaddress.ip_address(service.address())
        assert address in subnet and address not in dynamic
    assert ipaddress.ip_address(nameserver) in subnet
    assert ipaddress.ip_address(nameserver) not in dynamic


def test_empty_lab_routes_switch_the_mtas_to_mx_lookups() -> None:
    lab = services(load_compose({"LAB_ROUTES": ""}))
    for name in ("alice-mta", "bob-mta"):
        config = service_config(lab[name])
        assert dict(config.routes) == {}
        assert config.relay.nameservers == (lab["dns"].address(),)


def test_dnsmasq_accepts_its_config(need_tool) -> None:
    dnsmasq = shutil.which("dnsmasq") or ("/usr/sbin/dnsmasq" if Path("/usr/sbin/dnsmasq").exists()
                                          else None)
    need_tool(dnsmasq is not None, "dnsmasq is not installed (Debian package dnsmasq-base)")
    assert dnsmasq is not None
    result = subprocess.run([dnsmasq, "--test", f"--conf-file={DNS_CONF}"],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr


# -- LAB.md ------------------------------------------------------------------------------------


def lab_md_commands() -> list[list[str]]:
    """Every `docker compose run|exec` command line in LAB.md's code blocks, as words."""
    commands = []
    in_block = False
    for line in LAB_MD.read_text(encoding="utf-8").splitlines():
        if line.strip().startswith("```"):
            in_block = not in_block
            continue
        text = line.split(" #")[0].strip()
        if in_block and text.startswith(("docker compose run", "docker compose exec")):
            words = shlex.split(text)
            for stop in ("|", "&&", ";", ">"):
                if stop in words:
                    words = words[: words.index(stop)]
            commands.append(words)
    return commands


def test_lab_md_commands_are_real_commands(lab: dict[str, Service]) -> None:
    commands = lab_md_commands()
    assert len(commands) >= 8
    for words in commands:
        rest = words[3:]
        while rest and rest[0].startswith("-"):  # run/exec options: --rm, -T, -e X=Y
            option = rest.pop(0)
            if option in ("-e", "--env", "-u", "--user", "-w", "--workdir"):
                rest.pop(0)
        service, args = rest[0], rest[1:]
        assert service in lab, f"LAB.md: {shlex.join(words)}: no service {service}"
        if words[2] == "run" and service == "mua":
            mua_parse(args)
            if "--profile" in args:
                profile = args[args.index("--profile") + 1]
                assert (COMPOSE_DIR / profile).exists(), f"LAB.md: no profile {profile}"
        elif args[0] == "mta":
            mta_parse(args[1:])
        else:
            assert args[0] == "python", f"LAB.md: {shlex.join(words)}: not mta, mua or python"


def test_lab_md_lists_the_published_ports(lab: dict[str, Service]) -> None:
    text = LAB_MD.read_text(encoding="utf-8")
    for service in lab.values():
        for port in service.ports:
            assert f"127.0.0.1:{port.host_port}" in text, f"LAB.md misses {service.name} {port}"
