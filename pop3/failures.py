"""Failed logins per client address, shared by every session of a listener (steps 3 and 5).

A password guesser opens many connections, so a per-connection delay only slows it by the
number of connections it opens. Failures are counted per client address across connections,
and the answer to each failed login waits ``base * 2 ** (n - 1)`` seconds (at most 64 times
``base``), ``n`` being the failures from that address. A successful login forgets only that
account's failures from the address: a guesser who owns one account cannot use it to reset
the delay for guessing others. The table holds at most ``max_tracked`` addresses, dropping the
one that failed longest ago. POP3 (``pop3.server``) and SMTP submission (``mta.smtp``) use it.
"""

from __future__ import annotations

MAX_TRACKED_ADDRESSES = 10_000


def failed_auth_delay(base: float, failures: int) -> float:
    """Delay before answering the ``failures``-th failed login from one address."""
    return base * 2 ** min(max(failures - 1, 0), 6)


class FailedLogins:
    """Failed logins per client address and account."""

    def __init__(self, base_delay: float, max_tracked: int = MAX_TRACKED_ADDRESSES) -> None:
        self.base_delay = base_delay
        self.max_tracked = max_tracked
        self._by_address: dict[str, dict[str, int]] = {}  # oldest failure first

    def failed(self, address: str, login: str) -> float:
        """Note a failed login; returns how long to wait before answering it."""
        logins = self._by_address.pop(address, {})
        key = login.strip().lower()
        logins[key] = logins.get(key, 0) + 1
        self._by_address[address] = logins  # re-inserted: the dict stays oldest-first
        if len(self._by_address) > self.max_tracked:
            del self._by_address[next(iter(self._by_address))]
        return failed_auth_delay(self.base_delay, self.count(address))

    def succeeded(self, address: str, login: str) -> None:
        """Forget ``login``'s failures from ``address`` (not the other accounts')."""
        logins = self._by_address.get(address)
        if logins is not None:
            logins.pop(login.strip().lower(), None)
            if not logins:
                del self._by_address[address]

    def count(self, address: str) -> int:
        """Failed logins from ``address`` still counted."""
        return sum(self._by_address.get(address, {}).values())
