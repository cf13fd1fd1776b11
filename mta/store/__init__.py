"""The SQLite mail store: the only place that writes SQL (steps 4 and 5).

Step 4 ends here: the MX and submission listeners hand a message to ``deliver`` / ``accept``
and answer ``250`` only after the transaction holding it has committed (group commit, WAL,
``synchronous=FULL``). Step 5 reads from here: ``Store`` implements ``pop3.maildrop.Maildrop``
without importing it. The relay worker takes its rows from the outbound queue here.

One ``Store`` class, made of one part per concern over one shared connection pair:

- ``connection``: opening, schema migrations (``schema/NNN_*.sql``), the group committer;
- ``accounts``: accounts and password hashing (scrypt), the account cache;
- ``mailboxes``: delivery into local mailboxes, the POP3 maildrop and its lock;
- ``queue``: the outbound queue rows and their states.
"""

from mta.store.accounts import Accounts, hash_password
from mta.store.connection import (
    StoreError,
    check_writable,
    migrate,
    schema_files,
    why_not_writable,
)
from mta.store.mailboxes import Delivered, Entry, MaildropLocked, new_queue_id, new_uid
from mta.store.queue import (
    Bounce,
    Outbound,
    Outcome,
    QueueRow,
    QueueState,
    format_row,
    format_rows,
)

__all__ = ["Bounce", "Delivered", "Entry", "MaildropLocked", "Outcome", "QueueRow",
           "QueueState", "Store", "StoreError", "check_writable", "format_row", "format_rows",
           "hash_password", "migrate", "new_queue_id", "new_uid", "schema_files",
           "why_not_writable"]


class Store(Accounts, Outbound):
    """The mail store over one SQLite file. Open with ``await Store.open(path)``."""
