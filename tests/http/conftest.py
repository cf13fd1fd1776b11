"""Fixtures of the HTTP tests: real servers with an HTTP listener on an ephemeral port."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
from http_helpers import Api

from mta.server import Server


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


@pytest.fixture
def bob_factory(server_factory: Callable[..., Any]) -> Callable[..., Any]:
    """bob.lab's server (MX, POP3, HTTP) as ``mta serve`` starts it; keyword arguments are
    ``[listeners.http]`` settings (``token``, ``cors_origins``)."""

    async def factory(**http: Any) -> Server:
        local = {"host": "127.0.0.1", "port": 0}
        return await server_factory(listeners={"mx": local, "pop3": local,
                                               "http": {**local, **http}},
                                    allow_plaintext_auth=True)

    return factory


@pytest.fixture
async def bob(bob_factory: Callable[..., Any]) -> Server:
    return await bob_factory()


@pytest.fixture
def api(bob: Server, session: aiohttp.ClientSession) -> Api:
    return Api(session, bob.ports["http"])
