"""The HTTP listener as `mta serve` runs it: config, environment, refusals, `mta check`, curl."""

from __future__ import annotations

import asyncio
import os
import poplib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from http_helpers import BOB, mail, send_mx

from mta import config_env
from mta.config import ConfigError
from mta.server import Server
from tests.conftest import make_config
from tests.serve_helpers import ROOT, start_serve

HTTP = {"host": "127.0.0.1", "port": 0}


def mta(config: Path, *args: str, env: dict[str, str] | None = None
        ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mta", "--config", str(config), *args],
                          capture_output=True, text=True, timeout=60, cwd=ROOT,
                          env={**os.environ, **(env or {})})


def write_config(tmp_path: Path, http: str) -> Path:
    path = tmp_path / "bob.toml"
    path.write_text('hostname = "mx.bob.lab"\ndomains = ["bob.lab"]\ndatabase = "bob.db"\n'
                    '[listeners.mx]\nhost = "127.0.0.1"\nport = 0\n'
                    f"[listeners.http]\n{http}\n"
                    '[[accounts]]\naddress = "bob@bob.lab"\npassword = "bob-pw"\n')
    return path


def test_config_reads_the_http_listener(tmp_path: Path) -> None:
    config = make_config(tmp_path, listeners={"http": {
        **HTTP, "token": "t0ken", "cors_origins": ["http://localhost:3000"]}})
    http = config.listeners.http
    assert (http.host, http.port, http.token) == ("127.0.0.1", 0, "t0ken")
    assert http.cors_origins == ("http://localhost:3000",)
    assert make_config(tmp_path).listeners.http is None


@pytest.mark.parametrize(("http", "message"), [
    ({"port": 80, "tok": "x"}, "'listeners.http.tok' is not a known setting"),
    ({"port": 80, "token": ""}, "'listeners.http.token' must not be empty"),
    ({"port": 80, "token": 5}, "'listeners.http.token' must be a string"),
    ({"port": 80, "cors_origins": "http://x"}, "'listeners.http.cors_origins' must be a list"),
    ({"port": 80, "cors_origins": ["*"]}, "'listeners.http.cors_origins' must be origins"),
    ({"host": "127.0.0.1"}, "'listeners.http.port' is required"),
])
def test_bad_http_settings_are_refused(tmp_path: Path, http: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        make_config(tmp_path, listeners={"http": http})


def test_environment_overrides(tmp_path: Path) -> None:
    config = make_config(tmp_path, listeners={"http": {**HTTP, "token": "file-token"}})
    moved = config_env.apply_env(config, {"LABMAIL_LISTENERS_HTTP": "0.0.0.0:8025",
                                          "LABMAIL_LISTENERS_HTTP_TOKEN": "env-token"})
    assert (moved.listeners.http.host, moved.listeners.http.port) == ("0.0.0.0", 8025)
    assert moved.listeners.http.token == "env-token"
    kept = config_env.apply_env(config, {"LABMAIL_LISTENERS_HTTP": "127.0.0.1:9"})
    assert kept.listeners.http.token == "file-token"  # the address moves, the token stays
    assert config_env.apply_env(config, {"LABMAIL_LISTENERS_HTTP": "off"}).listeners.http is None
    added = config_env.apply_env(make_config(tmp_path), {"LABMAIL_LISTENERS_HTTP": "[::1]:0"})
    assert added.listeners.http.host == "::1" and added.listeners.http.token is None


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.1.2.3"])
def test_serve_refuses_a_public_bind_without_a_token(tmp_path: Path, host: str) -> None:
    path = write_config(tmp_path, f'host = "{host}"\nport = 0')
    refused = mta(path, "serve")
    assert refused.returncode == 2
    assert refused.stderr.strip().count("\n") == 0 and "token" in refused.stderr
    env_refused = mta(write_config(tmp_path, 'port = 0'), "serve",
                      env={"LABMAIL_LISTENERS_HTTP": f"{host}:0"})
    assert env_refused.returncode == 2 and "token" in env_refused.stderr


def test_mta_serve_runs_it_and_the_curl_test_passes(tmp_path: Path, need_tool) -> None:
    need_tool(shutil.which("curl") is not None, "curl is not installed")
    path = write_config(tmp_path, 'host = "127.0.0.1"\nport = 0\ntoken = "ci-token"')
    proc, ports = start_serve(path, listeners=("mx", "http"))
    try:
        env = {**os.environ, "API_URL": f"http://127.0.0.1:{ports['http']}",
               "SMTP_URL": f"smtp://127.0.0.1:{ports['mx']}", "API_TOKEN": "ci-token"}
        run = subprocess.run(["sh", str(ROOT / "tests" / "http" / "api_test.sh")], env=env,
                             capture_output=True, text=True, timeout=90, cwd=tmp_path)
        assert run.returncode == 0, run.stdout + run.stderr
        assert run.stdout.startswith("ok: sent, waited for, read and deleted")
        check_path = tmp_path / "check.toml"
        check_path.write_text(path.read_text().replace("port = 0", f"port = {ports['mx']}", 1)
                              .replace("port = 0", f"port = {ports['http']}", 1))
        check = mta(check_path, "check")
        assert check.returncode == 0, check.stdout
        assert any(line.startswith("http") and " ok " in line
                   for line in check.stdout.splitlines())
    finally:
        proc.terminate()
        proc.wait(30)
    down = mta(check_path, "check")
    assert down.returncode == 1 and "FAIL" in down.stdout


async def test_mailbox_purge_honours_the_pop3_lock(bob: Server, tmp_path: Path,
                                                   session) -> None:
    await send_mx(bob.ports["mx"], mail("keep me"))
    config = tmp_path / "same.toml"
    config.write_text(f'domains = ["bob.lab"]\ndatabase = "{bob.config.database}"\n')
    client = await asyncio.to_thread(poplib.POP3, "127.0.0.1", bob.ports["pop3"], 10)
    await asyncio.to_thread(client.user, BOB)
    await asyncio.to_thread(client.pass_, "bob-pw")  # holds the maildrop
    refused = await asyncio.to_thread(mta, config, "mailbox", "purge", BOB)
    assert refused.returncode == 1 and "POP3 session" in refused.stderr
    assert "Traceback" not in refused.stderr and await bob.store.count_entries(BOB) == 1
    await asyncio.to_thread(client.quit)
    purged = await asyncio.to_thread(mta, config, "mailbox", "purge", BOB)
    assert purged.returncode == 0 and "deleted 1 message(s)" in purged.stdout
