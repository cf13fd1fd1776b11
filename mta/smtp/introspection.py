"""aiosmtpd's per-connection introspection, done once per listener (steps 3 and 4: SMTP in).

aiosmtpd's ``SMTP.__init__`` runs on every connection and rebuilds, by introspection, tables
that depend only on the protocol class and the handler: ``_smtp_methods`` (``dir(self)``),
``_auth_methods`` (``inspect.getmembers`` of protocol and handler), ``_handle_hooks``
(``dir(handler)``) and ``_ehlo_hook_ver`` (``inspect.signature(handle_EHLO)``). That was about
a fifth of the MX's event loop per message. A listener's connections all share one handler
and the same keyword arguments, so ``ConnectionSetUp`` lets the first connection run
``SMTP.__init__`` in full, keeps what it set, and gives every later connection the same
attributes: shared values as they are, dicts copied, the protocol's own bound methods bound
again to the new connection, and a fresh ``asyncio.StreamReaderProtocol`` state (reader,
futures, flow control). The result is the attribute set ``SMTP.__init__`` would have built
(tests/mta/test_smtp_introspection.py compares the two and drives real sessions).
"""

from __future__ import annotations

import asyncio
import types
from collections.abc import Callable
from typing import Any


class _Rebind:
    """Stands, in a kept value, for a method of the first connection: bind it to the new one."""

    __slots__ = ("function",)

    def __init__(self, function: Any) -> None:
        self.function = function


def _keep(value: Any, first: object) -> Any:
    """``value`` with the first connection's bound methods replaced by ``_Rebind``."""
    if isinstance(value, types.MethodType) and value.__self__ is first:
        return _Rebind(value.__func__)
    if isinstance(value, dict):  # copied even when nothing in it changes
        return {key: _keep(item, first) for key, item in value.items()}
    if isinstance(value, tuple) and hasattr(value, "_fields"):  # aiosmtpd's _AuthMechAttr
        return type(value)(*(_keep(item, first) for item in value))
    return value


Builder = Callable[[object], Any]


def _builder(kept: Any) -> Builder | None:
    """How to make the kept value for a new connection; None: share it as it is. Worked out
    once, so a connection pays a dict comprehension per table, not a walk with type tests."""
    if isinstance(kept, _Rebind):
        function = kept.function
        return lambda smtp: types.MethodType(function, smtp)
    if isinstance(kept, dict):  # every connection gets its own, in the same order
        entries = [(key, item, _builder(item)) for key, item in kept.items()]
        return lambda smtp: {key: build(smtp) if build else item
                             for key, item, build in entries}
    if isinstance(kept, tuple) and hasattr(kept, "_fields"):
        kind = type(kept)
        fields = [(item, _builder(item)) for item in kept]
        return lambda smtp: kind(*(build(smtp) if build else item for item, build in fields))
    return None


def _stream_protocol_names(loop: asyncio.AbstractEventLoop) -> frozenset[str]:
    """The attributes ``asyncio.StreamReaderProtocol.__init__`` sets (per connection state)."""
    probe = asyncio.StreamReaderProtocol(asyncio.StreamReader(loop=loop),
                                         client_connected_cb=lambda *_: None, loop=loop)
    return frozenset(vars(probe))


class ConnectionSetUp:
    """One listener's ``SMTP.__init__`` result, learnt from its first connection.

    ``learn`` is called right after ``SMTP.__init__`` (before the subclass sets anything of
    its own); ``apply`` stands in for ``SMTP.__init__`` on every later connection. Only for
    connections built with the same handler and keyword arguments (one listener's factory).
    """

    def __init__(self) -> None:
        self.learnt = False
        self._shared: dict[str, Any] = {}  # values every connection may hold as they are
        self._own: dict[str, Builder] = {}  # dicts and bound methods: built per connection

    def learn(self, smtp: Any) -> None:
        per_connection = _stream_protocol_names(smtp.loop)
        for name, value in vars(smtp).items():
            if name in per_connection:
                continue
            build = _builder(_keep(value, smtp))
            if build is None:
                self._shared[name] = value
            else:
                self._own[name] = build
        self.learnt = True

    def apply(self, smtp: Any) -> None:
        assert self.learnt
        fields = smtp.__dict__
        fields.update(self._shared)
        for name, build in self._own.items():
            fields[name] = build(smtp)
        # What SMTP.__init__ hands to StreamReaderProtocol.__init__, fresh for this connection.
        reader = asyncio.StreamReader(loop=smtp.loop, limit=smtp.line_length_limit)
        asyncio.StreamReaderProtocol.__init__(
            smtp, reader, client_connected_cb=smtp._cb_client_connected, loop=smtp.loop)
