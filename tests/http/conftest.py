"""Fixtures of the HTTP tests: real servers with an HTTP listener on an ephemeral port."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
from http_helpers import Api

from mta import http as mta_http
from mta.server import Server


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


@pytest.fixture
def bob_factory(server_factory: Callable[..., Any]) -> Callable[..., Any]:
    """bob.lab's server (MX, POP3) with an HTTP listener; options: ``mta.http.Options``."""

    async def factory(**options: Any) -> Server:
        server = await server_factory(listeners={"mx": {"host": "127.0.0.1", "port": 0},
                                                 "pop3": {"host": "127.0.0.1", "port": 0}},
                                      allow_plaintext_auth=True)
        server.listeners["http"] = await mta_http.start(server, server.bus, "127.0.0.1", 0,
                                                        mta_http.Options(**options))
        return server

    return factory


@pytest.fixture
async def bob(bob_factory: Callable[..., Any]) -> Server:
    return await bob_factory()


@pytest.fixture
def api(bob: Server, session: aiohttp.ClientSession) -> Api:
    return Api(session, bob.ports["http"])
