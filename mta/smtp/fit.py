"""Fitting a queued message to what the next hop offers (step 4: RFC 6531, 6152, 1870).

The relay decides per transaction, after EHLO:

- the message needs SMTPUTF8 (the client said so and its addresses or header section are not
  ASCII, carried through the queue; or its envelope addresses are not ASCII): the hop must
  offer SMTPUTF8, else the message is returned with ``5.6.7`` (RFC 6531 3.4);
- the message has 8-bit data and the hop does not offer 8BITMIME: it is converted to 7-bit
  MIME (``mta.sevenbit``, RFC 6152 3), or returned with ``5.6.3`` when it cannot be (8-bit header
  text without SMTPUTF8);
- MAIL parameters: ``SIZE`` (of what is sent), ``BODY=8BITMIME`` for 8-bit data the hop
  accepts, ``SMTPUTF8``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from mta.sevenbit import CannotConvert, to_7bit


@dataclass(frozen=True)
class Fitted:
    """What to send: the message as it goes to this hop and the MAIL parameters."""

    raw: bytes
    options: list[str]
    encoding: str  # of the envelope addresses in MAIL and RCPT


@dataclass(frozen=True)
class Unfit:
    """Why the message cannot go to this hop (a permanent failure)."""

    status: str  # RFC 3463
    reason: str


def fit(offers: Callable[[str], bool], sender: str, recipients: list[str], raw: bytes, *,
        smtputf8: bool) -> Fitted | Unfit:
    """The message and MAIL parameters for a hop whose EHLO ``offers(keyword)``."""
    utf8 = smtputf8 or not (sender.isascii() and all(r.isascii() for r in recipients))
    if utf8 and not offers("smtputf8"):
        return Unfit("5.6.7", "does not support SMTPUTF8 (RFC 6531)")
    eight_bit = not raw.isascii()
    if eight_bit and not offers("8bitmime"):
        try:
            raw = to_7bit(raw, utf8_headers=utf8)
        except CannotConvert as exc:
            return Unfit("5.6.3", f"does not support 8BITMIME and {exc}")
        eight_bit = not raw.isascii()  # UTF-8 headers under SMTPUTF8 stay
    options = []
    if offers("size"):
        options.append(f"SIZE={len(raw)}")
    if eight_bit and offers("8bitmime"):
        options.append("BODY=8BITMIME")
    if utf8:
        options.append("SMTPUTF8")
    return Fitted(raw, options, "utf-8" if utf8 else "ascii")
