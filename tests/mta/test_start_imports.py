"""What a server process loads at start (issue 16: peak RSS of the MX under load).

aiohttp (the HTTP listener), cryptography (self-signed certificates), dnspython and aiosmtplib
(the relay) together cost ~24 MB resident. A process whose config does not need them must not
import them: each test starts a real server in a fresh interpreter and reads its ``sys.modules``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = ("aiohttp", "cryptography", "dns", "aiosmtplib")

SCRIPT = """
import asyncio, json, sys
from pathlib import Path
from mta.config import from_dict
from mta.server import start

async def main():
    folder = Path(sys.argv[1])
    listeners = {name: {"host": "127.0.0.1", "port": 0} for name in sys.argv[2:]}
    config = from_dict({"domains": ["bob.lab"], "database": "mail.db",
                        "listeners": listeners}, str(folder / "mail.toml"), folder)
    server = await start(config)
    ports = server.ports
    await server.close(grace=0)
    top = {name.split(".")[0] for name in sys.modules}
    print(json.dumps({"ports": sorted(ports), "modules": sorted(top)}))

asyncio.run(main())
"""


def started(tmp_path: Path, *listeners: str) -> dict[str, list[str]]:
    """Start a server with these listeners in a new interpreter; its ports and top modules."""
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path), *listeners],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


def test_an_mx_and_pop3_server_loads_no_http_tls_or_relay_library(tmp_path: Path) -> None:
    seen = started(tmp_path, "mx", "pop3")
    assert seen["ports"] == ["mx", "pop3"]
    assert not set(HEAVY) & set(seen["modules"])


@pytest.mark.parametrize(("listener", "needs"), [("http", "aiohttp"),
                                                 ("submission", "aiosmtplib")])
def test_a_listener_that_needs_a_library_still_loads_it(tmp_path: Path, listener: str,
                                                         needs: str) -> None:
    seen = started(tmp_path, "mx", listener)
    assert seen["ports"] == sorted(["mx", listener])
    assert needs in seen["modules"]
