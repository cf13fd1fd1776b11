"""Config loading: typed values, refused unknown keys, LABMAIL_* overrides, CLI errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from mta.config import ConfigError, Listener, load
from mta.config_env import apply_env

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"


def test_example_configs_load() -> None:
    bob = load(EXAMPLES / "bob.lab.toml", environ={})
    alice = load(EXAMPLES / "alice.lab.toml", environ={})
    assert bob.domains == ("bob.lab",) and alice.domains == ("alice.lab",)
    assert bob.listeners.mx == Listener("127.0.0.1", 3525)
    assert alice.routes["bob.lab"] == ("127.0.0.1", bob.listeners.mx.port)
    assert bob.routes["alice.lab"] == ("127.0.0.1", alice.listeners.mx.port)
    assert bob.database == EXAMPLES / "bob.lab.db"
    assert bob.accounts[0].address == "bob@bob.lab"
    assert bob.allow_plaintext_auth and bob.tls.mode == "self-signed"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "server.toml"
    path.write_text('domains = ["bob.lab"]\ndatabase = "x.db"\n' + text)
    return path


@pytest.mark.parametrize(("text", "message"), [
    ("colour = 1\n", "'colour' is not a known setting"),
    ("[listeners.mx]\nport = 25\nhots = 'x'\n", "'listeners.mx.hots' is not a known setting"),
    ("[listeners.mx]\nport = 'twenty-five'\n", "'listeners.mx.port' must be an integer"),
    ("[listeners.mx]\nport = 70000\n", "'listeners.mx.port' must be between 0 and 65535"),
    ("[limits]\nmax_recipients = 0\n", "'limits.max_recipients' must be greater than 0"),
    ("[limits]\nmax_recipients = true\n", "'limits.max_recipients' must be a number"),
    ("[[accounts]]\naddress = 'eve@evil.lab'\npassword = 'x'\n",
     "'accounts[0].address' must be an address in one of"),
    ("[routes]\n'alice.lab' = 'host:port'\n", "'routes.alice.lab'"),
    ("tls = 'maybe'\n", "'tls' must be"),
    ("allow_plaintext_auth = 'yes'\n", "'allow_plaintext_auth' must be true or false"),
    ("[queue]\nretry_factor = -1\n", "'queue.retry_factor' must be greater than 0"),
    ("[limits]\nfailed_auth_delay = -1\n", "'limits.failed_auth_delay' must not be negative"),
    # nan passes every comparison check; nan or 0 as a timeout ends every session at once
    ("[limits]\ncommand_timeout = nan\n", "'limits.command_timeout' must be a finite number"),
    ("[limits]\npop3_idle_timeout = inf\n", "'limits.pop3_idle_timeout' must be a finite"),
    ("[limits]\npop3_lock_lease = -inf\n", "'limits.pop3_lock_lease' must be a finite"),
    ("[relay]\nconnect_timeout = 0\n", "'relay.connect_timeout' must be greater than 0"),
    ("[queue]\nlifetime = 0.0\n", "'queue.lifetime' must be greater than 0"),
    ("[queue]\nretry_initial = nan\n", "'queue.retry_initial' must be a finite number"),
])
def test_bad_values_name_key_and_file(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load(path, environ={})
    assert message in str(info.value)
    assert str(path) in str(info.value)
    assert "\n" not in str(info.value)


def test_missing_and_broken_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such config file"):
        load(tmp_path / "nope.toml", environ={})
    broken = tmp_path / "broken.toml"
    broken.write_text("domains = [\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load(broken, environ={})
    empty = tmp_path / "empty.toml"
    empty.write_text("")
    with pytest.raises(ConfigError, match="'domains' is required"):
        load(empty, environ={})


def test_environment_overrides(tmp_path: Path) -> None:
    config = load(EXAMPLES / "bob.lab.toml", environ={
        "LABMAIL_LISTENERS_MX": "0.0.0.0:25",
        "LABMAIL_LISTENERS_SUBMISSION": "off",
        "LABMAIL_DATABASE": str(tmp_path / "b.db"),
        "LABMAIL_ROUTES": "alice.lab=alice-mta:25, carol.lab=10.0.0.3",
        "LABMAIL_HOSTNAME": "bob-mta",
        "LABMAIL_RELAY_NAMESERVERS": "127.0.0.1:5353",
        "UNRELATED": "1",
    })
    assert config.listeners.mx == Listener("0.0.0.0", 25)
    assert config.listeners.submission is None
    assert config.listeners.pop3 == Listener("127.0.0.1", 3110)
    assert config.database == tmp_path / "b.db"
    assert config.routes == {"alice.lab": ("alice-mta", 25), "carol.lab": ("10.0.0.3", 25)}
    assert config.hostname == "bob-mta"
    assert config.relay.nameservers == ("127.0.0.1:5353",)


def test_unknown_override_is_refused() -> None:
    config = load(EXAMPLES / "bob.lab.toml", environ={})
    with pytest.raises(ConfigError, match="LABMAIL_LISTENER_MX: not a known override"):
        apply_env(config, {"LABMAIL_LISTENER_MX": "x:1"})
    with pytest.raises(ConfigError, match="expected host:port"):
        apply_env(config, {"LABMAIL_LISTENERS_MX": "nowhere"})


def test_logins_are_case_insensitive(tmp_path: Path) -> None:
    path = write(tmp_path, "[[accounts]]\naddress = 'Bob@BOB.lab'\npassword = 'pw'\n")
    assert load(path, environ={}).accounts[0].address == "bob@bob.lab"


def test_cli_bad_config_is_one_line_exit_2(tmp_path: Path) -> None:
    path = write(tmp_path, "colour = 1\n")
    result = subprocess.run([sys.executable, "-m", "mta", "--config", str(path), "serve"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip() == f"mta: {path}: 'colour' is not a known setting"
    assert "Traceback" not in result.stderr


def test_failed_auth_delay_may_be_zero(tmp_path: Path) -> None:
    path = write(tmp_path, "[limits]\nfailed_auth_delay = 0\n")
    assert load(path, environ={}).limits.failed_auth_delay == 0


def test_cli_config_not_utf8_is_one_line_exit_2(tmp_path: Path) -> None:
    path = tmp_path / "server.toml"
    path.write_bytes(b'domains = ["bob.lab"]\ndatabase = "x.db"\nhostname = "mx.b\xf6b.lab"\n')
    result = subprocess.run([sys.executable, "-m", "mta", "--config", str(path), "check"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip() == f"mta: {path}: not valid UTF-8 at byte 56"
