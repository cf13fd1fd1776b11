"""labmail's user agent (steps 1, 2, 3, 5 and 6 of the six).

It composes an RFC 5322 message (steps 1-2), submits it by SMTP (step 3), fetches mail by POP3
into a local Maildir (step 5) and renders it (step 6). Its core is a plain client built on the
stdlib ``email``, ``smtplib``, ``poplib`` and ``mailbox`` modules and imports neither ``mta`` nor
``pop3``; only its two composition roots, the six-step demo (``mua.demo``) and the pytest plugin
(``mua.testing``), use ``mta.lab``.
"""

__version__ = "0.1.0"
