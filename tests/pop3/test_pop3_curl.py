"""curl's POP3 client (LIST and RETR over SASL PLAIN and USER/PASS) against the server."""

from __future__ import annotations

import asyncio
import shutil
import subprocess

import pytest

from pop3.memory import MemoryMaildrop

BOB = "bob@bob.lab"
BOB_PASSWORD = "bob secret"


def curl_pop3_missing() -> str | None:
    curl = shutil.which("curl")
    if curl is None:
        return "curl is not installed"
    version = subprocess.run([curl, "--version"], capture_output=True, text=True).stdout
    protocols = next((x for x in version.splitlines() if x.startswith("Protocols:")), "")
    return None if " pop3" in protocols else "this curl was built without pop3"


@pytest.fixture(autouse=True)
def curl_with_pop3(need_tool) -> None:
    missing = curl_pop3_missing()
    need_tool(missing is None, f"{missing} (Debian package curl)")


async def curl(*args: str) -> bytes:
    process = await asyncio.create_subprocess_exec(
        "curl", "--silent", "--show-error", "--max-time", "20", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    return out


@pytest.mark.parametrize("login_options", [[], ["--sasl-ir"]])
async def test_curl_lists_and_retrieves(start_pop3, maildrop: MemoryMaildrop, login_options):
    running = await start_pop3()
    url = f"pop3://{running.host}:{running.port}"
    stored = maildrop.messages(BOB)
    listing = await curl(*login_options, "--user", f"{BOB}:{BOB_PASSWORD}", f"{url}/")
    assert listing == b"".join(f"{i} {len(raw)}\r\n".encode() for i, raw in enumerate(stored, 1))
    for number, raw in enumerate(stored, 1):
        got = await curl(*login_options, "--user", f"{BOB}:{BOB_PASSWORD}", f"{url}/{number}")
        assert got == raw  # curl un-stuffs the dots
    await maildrop.wait_unlocked(BOB)
    assert maildrop.messages(BOB) == stored


async def test_curl_apop(start_pop3, maildrop: MemoryMaildrop) -> None:
    maildrop.deliver("carol@bob.lab", b"Subject: for carol\r\n\r\nhi\r\n")
    running = await start_pop3(apop=True)
    got = await curl(
        "--login-options", "AUTH=+APOP", "--user", "carol@bob.lab:tanstaaf",
        f"pop3://{running.host}:{running.port}/1",
    )
    assert got == b"Subject: for carol\r\n\r\nhi\r\n"


async def test_curl_wrong_password_fails(start_pop3) -> None:
    running = await start_pop3()
    process = await asyncio.create_subprocess_exec(
        "curl", "--silent", "--max-time", "20", "--user", f"{BOB}:wrong",
        f"pop3://{running.host}:{running.port}/",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    await process.communicate()
    assert process.returncode == 67  # CURLE_LOGIN_DENIED


async def test_curl_stls(start_pop3, maildrop, server_tls, ca, tmp_path) -> None:
    running = await start_pop3(ssl_context=server_tls, allow_plaintext_auth=False)
    cafile = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(cafile))
    got = await curl(
        "--ssl-reqd", "--cacert", str(cafile), "--user", f"{BOB}:{BOB_PASSWORD}",
        f"pop3://{running.host}:{running.port}/2",
    )
    assert got == maildrop.messages(BOB)[1]
