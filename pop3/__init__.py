"""A POP3 protocol library (step 5 of the six: the recipient's user agent retrieves its mail).

``pop3.protocol`` is a sans-IO state machine (RFC 1939, 2449, 3206, 5034, 2595): bytes in, reply
bytes and effects out; one ``cmd_VERB`` method per command and one ``ALLOWED`` table of which
commands each state (AUTHORIZATION, TRANSACTION, UPDATE) takes (``pop3.states``). Its parts,
also without I/O: ``pop3.actions`` (what it asks the I/O layer to do), ``pop3.replies`` (reply
bytes, dot-stuffing) and ``pop3.sasl`` (AUTH PLAIN). ``pop3.server`` is a thin asyncio
stream server (``start_server(maildrop, host, port, POP3Options(...), ssl_context)``) that
carries out those effects against an abstract maildrop (``pop3.maildrop.Maildrop``), seen
through ``pop3.readahead.ReadAhead`` so that a RETR reads the small messages after it too.
``pop3.memory.MemoryMaildrop`` is an in-memory maildrop for tests and demos.

Invariants (RFC 1939): the maildrop is locked exclusively (a renewed lease in the store) while a
session holds it; the session sees a snapshot taken at login; DELE only marks, and a marked
message vanishes from STAT/LIST/RETR/UIDL at once; only QUIT in TRANSACTION removes the marked
messages, in one maildrop call; a dropped or timed-out connection removes nothing; sizes are
the exact CRLF octet counts; message lines starting with '.' are byte-stuffed. USER/PASS and
AUTH PLAIN need TLS unless ``allow_plaintext_auth``; APOP (shared secret kept in clear) is off
unless ``apop`` is set, and is meant for labs only. No exception text reaches a client.

This package imports nothing from ``mta`` or ``mua``; labmail's SQLite store implements the
maildrop interface.
"""
