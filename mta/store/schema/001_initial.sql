-- labmail store, schema version 1: accounts, mailboxes and the POP3 maildrop lock.
-- Applied by mta.store.connection.migrate when PRAGMA user_version < 1, inside one BEGIN IMMEDIATE transaction.

CREATE TABLE accounts (
    address     TEXT PRIMARY KEY,      -- full address, lower case (logins are case-insensitive)
    salt        BLOB NOT NULL,         -- scrypt salt, 16 random bytes
    hash        BLOB NOT NULL,         -- scrypt(password, salt, n, r, p), 32 bytes
    n           INTEGER NOT NULL,
    r           INTEGER NOT NULL,
    p           INTEGER NOT NULL,
    apop_secret TEXT,                  -- lab-only: the password kept reversibly for APOP (RFC 1939 7)
    created     REAL NOT NULL
);

-- One row per (message, local recipient). AUTOINCREMENT: an id is never reused, even after
-- deletes; uid is POP3's UIDL (RFC 1939 7), unique across databases and never changed.
CREATE TABLE mailbox (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    owner       TEXT NOT NULL,
    uid         TEXT NOT NULL UNIQUE,
    received    REAL NOT NULL,
    size        INTEGER NOT NULL,      -- len(raw): exact octets as POP3 sends them, CRLF line ends
    txn_id      TEXT NOT NULL,         -- the SMTP transaction id given in the 250 reply
    sender      TEXT NOT NULL,         -- envelope sender, '' for <>
    raw         BLOB NOT NULL
);
CREATE INDEX mailbox_owner ON mailbox (owner, id);

-- The POP3 maildrop lock (RFC 1939 8): lives in the database so it holds across processes;
-- a holder that dies leaves a lease that runs out.
CREATE TABLE maildrop_locks (
    owner       TEXT PRIMARY KEY,
    holder      TEXT NOT NULL,
    expires     REAL NOT NULL
);
