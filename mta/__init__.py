"""labmail's mail server for one domain (steps 3 and 4 of the six).

A single process serves one mail domain, like Postfix does: the submission listener takes mail
from authenticated users (step 3), the MX listener takes mail from other servers for local users
(the far end of step 4), the durable queue and the relay worker carry mail to other domains
(step 4), and the SQLite store keeps every mailbox, which the POP3 listener serves (step 5).

Invariants: a message is committed to SQLite before any ``250`` is sent; the server is never an
open relay; the store module is the only place that writes SQL.
"""

__version__ = "0.1.0"
