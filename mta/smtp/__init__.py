"""SMTP, both ways: the submission listener (step 3), the MX listener and the relay's client
(step 4).

- ``server``: aiosmtpd plumbing shared by both listeners (enhanced codes, trace, limits,
  shutdown) and the typed per-transaction ``LabEnvelope``; ``data`` reads DATA into one buffer.
- ``common``: what the MX and submission handlers share (recipients, Received, log fields).
- ``mx`` and ``submission``: the two listeners' handlers; ``faults``: scripted MX replies.
- ``client`` and ``connections``: the relay's sessions to next hops and their cache.

Invariants: ``250`` only after the store committed (RFC 5321 4.4 ownership); exception text never
reaches a client (``common.exception_reply``); every reply carries an enhanced code (RFC 2034).
"""
