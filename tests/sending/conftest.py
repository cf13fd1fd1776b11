"""Fixtures for the sending side (steps 3 and 4): in-process labs, smtplib submission, TLS."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import trustme
from sending_helpers import TWO

from mta.clock import FakeClock
from mta.lab import Lab


@pytest.fixture
async def lab_factory(tmp_path: Path, request: pytest.FixtureRequest
                      ) -> AsyncIterator[Callable[..., Any]]:
    """Start labs (closed at teardown); each in its own folder under tmp_path. A test that
    asks for ``trace_lines`` gets the labs' protocol lines there too."""
    labs: list[Lab] = []

    async def factory(domains: dict[str, Any] | None = None, **options: Any) -> Lab:
        folder = tmp_path / f"lab{len(labs)}"
        folder.mkdir()
        lab = await Lab.start(domains or TWO, folder=folder, **options)
        if "trace_lines" in request.fixturenames:
            request.getfixturevalue("trace_lines").follow(lab.bus)
        labs.append(lab)
        return lab

    yield factory
    for lab in labs:
        await lab.close()


@pytest.fixture
async def lab(lab_factory: Callable[..., Any]) -> Lab:
    """alice.lab (alice, ann) and bob.lab (bob) with running relay workers, real clock."""
    return await lab_factory()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(1_800_000_000.0)


@pytest.fixture
async def manual_lab(lab_factory: Callable[..., Any], clock: FakeClock) -> Lab:
    """The same lab with a fake clock and the relay loops off: tests call run_once."""
    return await lab_factory(clock=clock, relay=False)


@pytest.fixture(scope="session")
def cert_files(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("certs")
    cert = ca.issue_cert("127.0.0.1", "localhost", "mx.alice.lab")
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert.cert_chain_pems[0].write_to_path(str(cert_path))
    cert.private_key_pem.write_to_path(str(key_path))
    return cert_path, key_path
