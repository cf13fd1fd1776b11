"""SASL PLAIN for POP3's AUTH command (step 5: the user agent logs in; RFC 5034, RFC 4616).

``pop3.protocol`` runs the AUTH exchange (initial response or a ``+`` continuation, ``*`` to
cancel); this module only reads what the client sent. No I/O.
"""

from __future__ import annotations

import base64
import binascii

MECHANISM = "PLAIN"  # the only one offered (CAPA "SASL PLAIN")
CANCEL = "*"  # RFC 5034 4: the client gives up
EMPTY_RESPONSE = "="  # RFC 5034 4: an empty initial response


class NotBase64(ValueError):
    """The response is not base64 (RFC 5034 4: the server refuses it)."""


def decode_plain(response: str) -> tuple[str, str | None]:
    """The authentication identity and password in a PLAIN response (RFC 4616 2).

    The password is None when the login must fail without asking the maildrop: not three
    NUL-separated UTF-8 parts, no authentication identity, or an authorization identity other
    than it (no logging in as someone else). Raises ``NotBase64``.
    """
    try:
        decoded = base64.b64decode(response.encode("ascii"), validate=True)
    except (UnicodeEncodeError, binascii.Error):
        raise NotBase64 from None
    try:
        authzid, authcid, password = (part.decode("utf-8") for part in decoded.split(b"\0"))
    except (ValueError, UnicodeDecodeError):  # not 3 parts, or not UTF-8
        return "", None
    if not authcid or (authzid and authzid.lower() != authcid.lower()):
        return authcid, None
    return authcid, password
