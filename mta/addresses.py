"""Envelope address checks shared by the MX and submission listeners (steps 3 and 4).

RFC 5321 4.1.2 and 4.5.3.1: a mailbox is local-part@domain, local part at most 64 octets,
domain at most 255. Forms that ask a server to relay onward (``user%other@local``,
``"user@other"@local``, ``other!user@local``; source routes ``@a:user@b`` arrive here already
stripped to ``user@b`` by aiosmtpd, RFC 5321 4.1.1.3) are never honoured.
"""

from __future__ import annotations

from dataclasses import dataclass

MAX_LOCAL = 64
MAX_DOMAIN = 255


@dataclass(frozen=True)
class Mailbox:
    local: str
    domain: str

    @property
    def address(self) -> str:
        return f"{self.local}@{self.domain}"


class AddressError(ValueError):
    """An envelope address that cannot be accepted; ``kind`` picks the reply."""

    def __init__(self, kind: str, address: str) -> None:
        super().__init__(f"{kind}: {address}")
        self.kind = kind  # "syntax", "routed", "non-ascii"
        self.address = address


def parse(address: str, *, smtputf8: bool = False) -> Mailbox:
    """Split an envelope address (no angle brackets) into a Mailbox or raise AddressError."""
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain:
        raise AddressError("syntax", address)
    if local.startswith('"') and local.endswith('"') and len(local) >= 2:
        unquoted = local[1:-1].replace('\\"', '"').replace("\\\\", "\\")
    else:
        unquoted = local
    if any(c in unquoted for c in "%!@"):
        raise AddressError("routed", address)
    if (len(local.encode("utf-8", "surrogateescape")) > MAX_LOCAL
            or len(domain.encode("utf-8", "surrogateescape")) > MAX_DOMAIN
            or any(c.isspace() or ord(c) < 32 for c in address)):
        raise AddressError("syntax", address)
    if not address.isascii() and not smtputf8:
        raise AddressError("non-ascii", address)
    domain = domain.lower().rstrip(".")
    if not domain.startswith("[") and (".." in domain or domain.startswith(".")
                                       or any(c in domain for c in "()<>,;:\\\"[]")):
        raise AddressError("syntax", address)
    return Mailbox(unquoted, domain)


def normalise(address: str) -> str:
    """The one spelling of an account address: trimmed, lower case (logins and mailbox owners
    are case-insensitive in labmail, so keys in the store and the config use this form)."""
    return address.strip().lower()
