"""Accounts: profile files, their validation, and where the password comes from."""

from __future__ import annotations

from pathlib import Path

import pytest

from mua.profile import ProfileError, default_maildir, get_password, load_profile

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.mark.parametrize(
    "name, address, smtp_port, pop3_port",
    [("alice", "alice@alice.lab", 2587, 2110), ("bob", "bob@bob.lab", 3587, 3110)],
)
def test_example_profiles(name, address, smtp_port, pop3_port):
    profile = load_profile(EXAMPLES / f"{name}.profile.toml", env={})
    assert profile.address == address
    assert (profile.smtp.host, profile.smtp.port) == ("127.0.0.1", smtp_port)
    assert (profile.pop3.host, profile.pop3.port) == ("127.0.0.1", pop3_port)
    assert profile.smtp.security == profile.pop3.security == "none"
    assert profile.smtp.verify is profile.pop3.verify is False  # lab-only self-signed certs
    assert profile.smtp.login == address
    assert profile.maildir == default_maildir(address)


def write(tmp_path, text: str) -> Path:
    path = tmp_path / "p.toml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    "text, message",
    [
        ('address = "a@b.lab"\npassword = "x"\n', "unknown key 'password'"),
        ('address = "a@b.lab"\n[smtp]\nhots = "x"\n', "unknown key 'smtp.hots'"),
        ('name = "A"\n', "missing required key 'address'"),
        ('address = "not-an-address"\n', "not a valid address|ASCII user@domain"),
        ('address = "a@b.lab"\n[pop3]\nsecurity = "ssl"\n', "pop3.security must be one of"),
        ('address = "a@b.lab"\n[smtp]\nport = 70000\n', "smtp.port must be"),
        ('address = "a@b.lab"\n[smtp]\nverify = "no"\n', "smtp.verify must be"),
        ('address = "a@b.lab"\nsmtp = 3\n', r"\[smtp\] must be a table"),
        ("address = \n", "not valid TOML"),
    ],
)
def test_bad_profiles_are_refused_with_key_and_file(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(ProfileError, match=message) as e:
        load_profile(path, env={})
    assert str(path) in str(e.value) and "\n" not in str(e.value)


def test_missing_profile(tmp_path):
    with pytest.raises(ProfileError, match="cannot read profile"):
        load_profile(tmp_path / "nope.toml")


def test_defaults_relative_paths_and_maildir_override(tmp_path):
    path = write(tmp_path, 'address = "a@b.lab"\nmaildir = "mail"\n[pop3]\nsecurity = "tls"\n'
                           '[smtp]\nsecurity = "tls"\nca_file = "ca.pem"\n')
    profile = load_profile(path, env={})
    assert profile.maildir == tmp_path / "mail"
    assert profile.pop3.port == 995 and profile.smtp.port == 465
    assert profile.smtp.ca_file == tmp_path / "ca.pem"
    assert load_profile(path, env={"MUA_MAILDIR": "/x/y"}).maildir == Path("/x/y")


def test_password_sources(tmp_path):
    pw_file = tmp_path / "pw"
    pw_file.write_text("from-file\n")
    path = write(tmp_path, f'address = "a@b.lab"\npassword_file = "{pw_file}"\n')
    profile = load_profile(path, env={})
    assert get_password(profile, env={"MUA_PASSWORD": "from-env"}) == "from-env"
    assert get_password(profile, env={}) == "from-file"
    other = tmp_path / "other"
    other.write_text("other-file")
    assert get_password(profile, env={"MUA_PASSWORD_FILE": str(other)}) == "other-file"

    bare = load_profile(write(tmp_path, 'address = "a@b.lab"\n'), env={})
    assert get_password(bare, env={}, prompt=lambda p: "typed", interactive=True) == "typed"
    with pytest.raises(ProfileError, match="no password"):
        get_password(bare, env={}, interactive=False)
    with pytest.raises(ProfileError, match="cannot read password file"):
        get_password(bare, env={"MUA_PASSWORD_FILE": str(tmp_path / "missing")})


def test_ctrl_c_at_the_password_prompt_propagates(tmp_path):
    bare = load_profile(write(tmp_path, 'address = "a@b.lab"\n'), env={})

    def interrupted(prompt):
        raise KeyboardInterrupt

    def closed(prompt):
        raise EOFError

    with pytest.raises(KeyboardInterrupt):
        get_password(bare, env={}, prompt=interrupted, interactive=True)
    with pytest.raises(ProfileError, match="no password given"):
        get_password(bare, env={}, prompt=closed, interactive=True)
