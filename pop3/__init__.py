"""A POP3 protocol library (step 5 of the six: the recipient's user agent retrieves its mail).

``pop3.protocol`` is a sans-IO state machine (RFC 1939, 2449, 5034, 2595): bytes in, reply bytes
and effects out. ``pop3.server`` is a thin asyncio stream server that carries out those effects
against an abstract maildrop (``pop3.maildrop.Maildrop``). This package imports nothing from
``mta`` or ``mua``; labmail's SQLite store implements the maildrop interface.
"""
