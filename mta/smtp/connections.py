"""Reusable SMTP sessions to next hops (step 4): the relay's connection cache.

Opening a session costs a TCP handshake, EHLO, often a TLS handshake and a second EHLO; a busy
queue sending to the same next hop would pay that for every message. Like Postfix's connection
cache, a session that ended its transaction with a ``2xx`` is kept for a short idle time and the
next transaction to the same hop (same address, port and TLS choice) reuses it (RFC 5321 3.3:
several transactions per session). A cached session the server has since closed is detected at
the next ``MAIL`` and the transaction moves to a fresh session without counting as an attempt.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Hashable

import aiosmtplib

IDLE_SECONDS = 2.0  # far below servers' 5 minute timeout (RFC 5321 4.5.3.2.7)
PER_HOP = 20


class SessionCache:
    """Idle, healthy sessions by next hop; each is used by one transaction at a time."""

    def __init__(self, idle: float = IDLE_SECONDS, per_hop: int = PER_HOP) -> None:
        self.idle = idle
        self.per_hop = per_hop
        self._idle: dict[Hashable, list[tuple[float, aiosmtplib.SMTP]]] = {}
        self._sweeper: asyncio.TimerHandle | None = None
        self._closing: set[asyncio.Task[None]] = set()

    def take(self, key: Hashable) -> aiosmtplib.SMTP | None:
        """An idle session to ``key``, or None; stale ones are closed on the way."""
        sessions = self._idle.get(key, [])
        now = time.monotonic()
        while sessions:
            expires, client = sessions.pop()
            if expires > now and client.is_connected:
                return client
            self._quit(client)
        return None

    def give(self, key: Hashable, client: aiosmtplib.SMTP) -> None:
        """Keep ``client`` for the next transaction to ``key`` (or close it when full)."""
        sessions = self._idle.setdefault(key, [])
        if not client.is_connected or len(sessions) >= self.per_hop:
            self._quit(client)
            return
        sessions.append((time.monotonic() + self.idle, client))
        if self._sweeper is None:
            self._sweeper = asyncio.get_running_loop().call_later(self.idle, self._sweep)

    def _sweep(self) -> None:
        self._sweeper = None
        now = time.monotonic()
        for key, sessions in list(self._idle.items()):
            keep = [(expires, c) for expires, c in sessions if expires > now and c.is_connected]
            for expires, client in sessions:
                if (expires, client) not in keep:
                    self._quit(client)
            if keep:
                self._idle[key] = keep
            else:
                del self._idle[key]
        if self._idle:
            self._sweeper = asyncio.get_running_loop().call_later(self.idle, self._sweep)

    def _quit(self, client: aiosmtplib.SMTP) -> None:
        task = asyncio.get_running_loop().create_task(close_session(client))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def close(self) -> None:
        """QUIT every idle session (the relay is stopping)."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        sessions = [client for group in self._idle.values() for _, client in group]
        self._idle.clear()
        await asyncio.gather(*(close_session(c) for c in sessions), *self._closing,
                             return_exceptions=True)


async def close_session(client: aiosmtplib.SMTP) -> None:
    """QUIT politely, or just drop the connection when the server is gone."""
    if not client.is_connected:
        return
    try:
        await client.quit(timeout=5)
    except (TimeoutError, aiosmtplib.SMTPException, OSError):
        client.close()
