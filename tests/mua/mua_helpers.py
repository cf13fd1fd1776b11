"""Profiles and users shared by the user-agent tests (plain functions, not fixtures)."""

from __future__ import annotations

from pathlib import Path

from mua.profile import Profile, profile_from_dict

ALICE = "alice@alice.lab"
BOB = "bob@bob.lab"
USERS = {ALICE: "alice-lab-password", BOB: "bob-lab-password"}


def make_profile(
    tmp_path: Path,
    *,
    address: str = ALICE,
    name: str = "Alice Liddell",
    smtp_port: int = 9,
    pop3_port: int = 9,
    ca_file: Path | None = None,
    smtp_security: str = "none",
    pop3_security: str = "none",
) -> Profile:
    server = {"host": "127.0.0.1", "timeout": 10}
    if ca_file:
        server["ca_file"] = str(ca_file)
    return profile_from_dict(
        {
            "address": address,
            "name": name,
            "maildir": str(tmp_path / "Maildir"),
            "smtp": {**server, "port": smtp_port, "security": smtp_security},
            "pop3": {**server, "port": pop3_port, "security": pop3_security},
        },
        env={},
    )


def write_profile(path: Path, profile: Profile) -> Path:
    """A TOML profile file equivalent to ``profile`` (for CLI tests)."""

    def server(section: str, s) -> str:
        lines = [f"[{section}]", f'host = "{s.host}"', f"port = {s.port}",
                 f'security = "{s.security}"', f"timeout = {s.timeout}"]
        if s.ca_file:
            lines.append(f'ca_file = "{s.ca_file}"')
        if not s.verify:
            lines.append("verify = false")
        return "\n".join(lines) + "\n"

    path.write_text(
        f'address = "{profile.address}"\nname = "{profile.name}"\n'
        f'maildir = "{profile.maildir}"\n\n'
        + server("smtp", profile.smtp) + "\n" + server("pop3", profile.pop3),
        encoding="utf-8",
    )
    return path
