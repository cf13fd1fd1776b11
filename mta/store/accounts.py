"""Accounts and password hashing (steps 3 and 5: who may submit, whose maildrop POP3 opens).

Passwords are salted scrypt with the salt and cost stored per account (STYLE 8), checked with
``hmac.compare_digest``; hashing is CPU-bound, so it always runs in a thread. ``has_account``
(asked by every MX RCPT) remembers existing accounts for a few seconds.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
import sqlite3
import time
from typing import Any

from mta.addresses import normalise
from mta.store.connection import StoreBase

# scrypt cost: n=2**14, r=8, p=1 takes ~16 MiB and tens of milliseconds (RFC 7914 suggestion).
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
# has_account remembers existing accounts this long (RCPT checks without a database trip).
ACCOUNT_CACHE_SECONDS = 5.0
ACCOUNT_CACHE_SIZE = 10_000


def hash_password(password: str, salt: bytes | None = None,
                  n: int = SCRYPT_N, r: int = SCRYPT_R, p: int = SCRYPT_P) -> tuple[bytes, bytes]:
    """Salted scrypt; CPU-bound, so callers run it in a thread."""
    salt = salt if salt is not None else secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p,
                            maxmem=128 * 1024 * 1024, dklen=32)
    return salt, digest


class Accounts(StoreBase):
    """The ``accounts`` table, and the login half of ``pop3.maildrop.Maildrop``."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        # address -> monotonic expiry: accounts seen lately (RCPT checks skip the database)
        self._known_accounts: dict[str, float] = {}

    async def set_account(self, address: str, password: str, *, apop: bool = False) -> None:
        """Create the account or change its password (hashed off the event loop)."""
        address = normalise(address)
        self._known_accounts.pop(address, None)
        salt, digest = await asyncio.to_thread(hash_password, password)
        await self._write([(
            "INSERT INTO accounts (address, salt, hash, n, r, p, apop_secret, created) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(address) DO UPDATE SET "
            "salt=excluded.salt, hash=excluded.hash, n=excluded.n, r=excluded.r, "
            "p=excluded.p, apop_secret=excluded.apop_secret",
            [(address, salt, digest, SCRYPT_N, SCRYPT_R, SCRYPT_P,
              password if apop else None, time.time())])])

    async def ensure_account(self, address: str, password: str, *, apop: bool = False) -> bool:
        """Set the account unless it exists with this password already; True if written."""
        if await self.check_password(address, password):
            row = await self._one("SELECT apop_secret FROM accounts WHERE address = ?",
                                  (normalise(address),))
            if (row["apop_secret"] is not None) == apop:
                return False
        await self.set_account(address, password, apop=apop)
        return True

    async def delete_account(self, address: str) -> bool:
        """Remove the account and its mailbox; False if there was no such account."""
        address = normalise(address)

        def run(db: sqlite3.Connection) -> bool:
            cursor = db.execute("DELETE FROM accounts WHERE address = ?", (address,))
            db.execute("DELETE FROM mailbox WHERE owner = ?", (address,))
            db.execute("DELETE FROM maildrop_locks WHERE owner = ?", (address,))
            return cursor.rowcount > 0

        deleted = await self._write_fn(run)
        self._known_accounts.pop(address, None)  # after the commit: no lookup re-caches it
        return deleted

    async def accounts(self) -> list[str]:
        rows = await self._all("SELECT address FROM accounts ORDER BY address")
        return [row["address"] for row in rows]

    async def has_account(self, address: str) -> bool:
        """Whether the account exists. Positive answers are remembered for a few seconds
        (changes made through this Store are seen at once; by another process, within
        ``ACCOUNT_CACHE_SECONDS``); unknown addresses always ask the database."""
        address = normalise(address)
        now = time.monotonic()
        if self._known_accounts.get(address, 0.0) > now:
            return True
        row = await self._one("SELECT 1 FROM accounts WHERE address = ?", (address,))
        if row is None:
            return False
        if len(self._known_accounts) >= ACCOUNT_CACHE_SIZE:
            self._known_accounts.clear()
        self._known_accounts[address] = now + ACCOUNT_CACHE_SECONDS
        return True

    async def check_password(self, address: str, password: str) -> bool:
        """Constant-time check of a password against the stored salted scrypt hash."""
        row = await self._one("SELECT salt, hash, n, r, p FROM accounts WHERE address = ?",
                              (normalise(address),))
        if row is None:
            # Spend the same time on unknown users so timing does not reveal which exist.
            await asyncio.to_thread(hash_password, password, b"\0" * 16)
            return False
        _, digest = await asyncio.to_thread(hash_password, password, row["salt"],
                                            row["n"], row["r"], row["p"])
        return hmac.compare_digest(digest, row["hash"])

    # -- pop3.maildrop.Maildrop: logging in -------------------------------------------------

    async def authenticate(self, login: str, password: str) -> str | None:
        owner = normalise(login)
        return owner if await self.check_password(owner, password) else None

    async def apop_secret(self, login: str) -> tuple[str, str] | None:
        owner = normalise(login)
        row = await self._one("SELECT apop_secret FROM accounts WHERE address = ?", (owner,))
        if row is None or row["apop_secret"] is None:
            return None
        return owner, row["apop_secret"]
