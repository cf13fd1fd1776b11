"""Implicit TLS (RFC 8314): submissions (465) and pop3s (995), TLS from the first byte."""

from __future__ import annotations

import asyncio
import poplib
import smtplib
import ssl
import subprocess
import sys
from pathlib import Path

import pytest
import trustme

from mta.config import ConfigError, Listener, load
from mta.config_env import apply_env
from mta.server import Server
from mua.cli import main as mua_main
from tests.postfix_sink import FETCHMAIL, run_fetchmail

LOOPBACK = {"host": "127.0.0.1", "port": 0}
MSG = b"From: bob@bob.lab\r\nTo: carol@bob.lab\r\nSubject: over 465\r\n\r\nhello\r\n"


@pytest.fixture
def tls_files(tmp_path: Path, ca: trustme.CA) -> dict[str, str]:
    # fetchmail checks the subject common name (it reads no IP address from the SANs)
    cert = ca.issue_cert("mx.bob.lab", "127.0.0.1", common_name="mx.bob.lab")
    cert.private_key_and_cert_chain_pem.write_to_path(
        tmp_path / "server.pem")
    ca.cert_pem.write_to_path(tmp_path / "ca.pem")
    return {"cert": "server.pem", "key": "server.pem"}


@pytest.fixture
def client_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


@pytest.fixture
async def tls_server(server_factory, tls_files) -> Server:
    """Plain-text AUTH forbidden (the default); every listener, implicit TLS ones included."""
    return await server_factory(tls=tls_files, listeners={
        "submission": LOOPBACK, "submissions": LOOPBACK, "pop3": LOOPBACK,
        "pop3s": LOOPBACK})


async def test_smtp_ssl_logs_in_on_submissions(tls_server: Server, client_context) -> None:
    def run() -> tuple[dict[str, str], dict]:
        with smtplib.SMTP_SSL("127.0.0.1", tls_server.ports["submissions"],
                              context=context, timeout=10) as client:
            client.ehlo("client.example")
            features = dict(client.esmtp_features)
            client.login("bob@bob.lab", "bob-pw")
            return features, client.sendmail("bob@bob.lab", ["carol@bob.lab"], MSG)

    context = client_context
    features, refused = await asyncio.to_thread(run)
    assert "auth" in features and "starttls" not in features  # TLS is on already
    assert refused == {}
    (entry,) = await tls_server.store.list_entries("carol@bob.lab")
    raw = await tls_server.store.fetch("carol@bob.lab", entry.id)
    assert b"with ESMTPSA id" in raw  # RFC 3848: TLS and AUTH


async def test_plain_text_auth_on_submission_is_still_refused(tls_server: Server) -> None:
    def run() -> tuple[dict[str, str], tuple[int, bytes], tuple[int, bytes]]:
        with smtplib.SMTP("127.0.0.1", tls_server.ports["submission"], timeout=10) as client:
            client.ehlo("client.example")
            auth = client.docmd("AUTH", "PLAIN AGJvYkBib2IubGFiAGJvYi1wdw==")
            return dict(client.esmtp_features), auth, client.docmd("STARTTLS")

    features, auth, starttls = await asyncio.to_thread(run)
    assert "auth" not in features and "starttls" in features
    assert auth[0] == 538


async def test_starttls_on_submissions_says_tls_is_active(tls_server: Server,
                                                          client_context) -> None:
    def run() -> tuple[int, bytes]:
        with smtplib.SMTP_SSL("127.0.0.1", tls_server.ports["submissions"],
                              context=client_context, timeout=10) as client:
            client.ehlo("client.example")
            return client.docmd("STARTTLS")

    code, _ = await asyncio.to_thread(run)
    assert code == 503


async def test_pop3_ssl_logs_in_on_pop3s(tls_server: Server, client_context) -> None:
    await tls_server.store.deliver(["bob@bob.lab"], b"Subject: hi\r\n\r\nhello\r\n", "")

    def run() -> tuple[dict, tuple[int, int], bytes]:
        client = poplib.POP3_SSL("127.0.0.1", tls_server.ports["pop3s"],
                                 context=client_context, timeout=10)
        try:
            capa = client.capa()
            client.user("bob@bob.lab")
            client.pass_("bob-pw")
            return capa, client.stat(), b"\r\n".join(client.retr(1)[1])
        finally:
            client.quit()

    capa, stat, message = await asyncio.to_thread(run)
    assert "STLS" not in capa and "USER" in capa
    assert stat[0] == 1 and b"hello" in message

    def plain() -> str:  # the plain POP3 listener still refuses USER before STLS
        client = poplib.POP3("127.0.0.1", tls_server.ports["pop3"], timeout=10)
        try:
            with pytest.raises(poplib.error_proto) as info:
                client.user("bob@bob.lab")
            return str(info.value)
        finally:
            client.quit()

    assert "-ERR" in await asyncio.to_thread(plain)


async def test_implicit_tls_needs_a_certificate(server_factory) -> None:
    with pytest.raises(ConfigError, match=r"'listeners.pop3s' needs TLS"):
        await server_factory(listeners={"pop3s": LOOPBACK})


async def test_mua_profiles_with_implicit_tls(tls_server: Server, tmp_path: Path,
                                              monkeypatch) -> None:
    profile = tmp_path / "bob.profile.toml"
    ca_file = tmp_path / "ca.pem"
    profile.write_text(
        f'address = "bob@bob.lab"\nmaildir = "{tmp_path / "Maildir"}"\n'
        f'[smtp]\nhost = "127.0.0.1"\nport = {tls_server.ports["submissions"]}\n'
        f'security = "tls"\nca_file = "{ca_file}"\ntimeout = 10\n'
        f'[pop3]\nhost = "127.0.0.1"\nport = {tls_server.ports["pop3s"]}\n'
        f'security = "tls"\nca_file = "{ca_file}"\ntimeout = 10\n')
    monkeypatch.setenv("MUA_PASSWORD", "bob-pw")
    monkeypatch.delenv("MUA_MAILDIR", raising=False)
    monkeypatch.delenv("MUA_PROFILE", raising=False)

    def run(*argv: str) -> int:
        return mua_main(["--profile", str(profile), *argv])

    assert await asyncio.to_thread(run, "send", "--to", "bob@bob.lab", "--subject",
                                   "to myself over 465", "--body", "hi\n") == 0
    assert await asyncio.to_thread(run, "fetch") == 0
    messages = list((tmp_path / "Maildir").glob("*/*"))
    assert len(messages) == 1 and b"to myself over 465" in messages[0].read_bytes()


async def test_fetchmail_ssl_fetches_from_pop3s(tls_server: Server, tmp_path: Path,
                                                need_tool) -> None:
    need_tool(FETCHMAIL is not None, "fetchmail is not installed (Debian package fetchmail)")
    for n in range(2):
        await tls_server.store.deliver(["bob@bob.lab"], b"Subject: pop3s %d\r\n\r\nx\r\n" % n,
                                       "")
    result, mbox = await run_fetchmail(
        tmp_path, tls_server.ports["pop3s"],
        f'ssl sslproto "tls1.2+" sslcertck sslcertfile "{tmp_path / "ca.pem"}" '
        'sslcommonname "mx.bob.lab"')
    assert result.returncode == 0, result.stdout + result.stderr
    assert "STLS" not in result.stdout  # TLS from the first byte, no upgrade
    assert b"Subject: pop3s 0" in mbox and b"Subject: pop3s 1" in mbox
    assert await tls_server.store.count_entries("bob@bob.lab") == 0


async def test_mta_check_greets_through_tls(tls_server: Server, tmp_path: Path) -> None:
    config = tmp_path / "check.toml"
    config.write_text(
        f'domains = ["bob.lab"]\ndatabase = "{tls_server.config.database}"\n'
        f'[listeners.submissions]\nhost = "127.0.0.1"\nport = {tls_server.ports["submissions"]}\n'
        f'[listeners.pop3s]\nhost = "127.0.0.1"\nport = {tls_server.ports["pop3s"]}\n')
    result = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "mta", "--config", str(config), "check"],
        capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert any(line.startswith("submissions") and " ok  220" in line for line in lines)
    assert any(line.startswith("pop3s") and " ok  +OK" in line for line in lines)


def test_environment_names_the_implicit_tls_listeners(tmp_path: Path) -> None:
    path = tmp_path / "server.toml"
    path.write_text('domains = ["bob.lab"]\ndatabase = "x.db"\n')
    config = load(path, environ={"LABMAIL_LISTENERS_SUBMISSIONS": "0.0.0.0:465",
                                 "LABMAIL_LISTENERS_POP3S": "0.0.0.0:995"})
    assert config.listeners.submissions == Listener("0.0.0.0", 465)
    assert config.listeners.pop3s == Listener("0.0.0.0", 995)
    off = apply_env(config, {"LABMAIL_LISTENERS_POP3S": "off"})
    assert off.listeners.pop3s is None
