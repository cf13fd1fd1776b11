-- labmail store, schema version 2: the outbound queue (step 4, the sending side).
-- A message is stored once; each (message, recipient) pair has its own delivery status
-- (per-recipient status, RFC 3464 2.3). Written only by mta.store, in the same transactions
-- as the submission's local mailbox entries, so a 250 reply covers both.

CREATE TABLE queue_messages (
    id          TEXT PRIMARY KEY,      -- the transaction id named in the 250 reply
    sender      TEXT NOT NULL,         -- envelope sender, '' for <> (never bounced)
    raw         BLOB,                  -- CRLF line ends; NULL once every recipient is final
    size        INTEGER NOT NULL,
    created     REAL NOT NULL          -- the message lifetime counts from here
);

CREATE TABLE queue_recipients (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    message_id   TEXT NOT NULL REFERENCES queue_messages (id) ON DELETE CASCADE,
    recipient    TEXT NOT NULL,        -- as the client gave it (local part case kept)
    domain       TEXT NOT NULL,        -- lower case; routing and grouping key
    state        TEXT NOT NULL DEFAULT 'queued'
                 CHECK (state IN ('queued', 'delivered', 'failed')),
    attempts     INTEGER NOT NULL DEFAULT 0,
    next_attempt REAL NOT NULL,        -- due when next_attempt <= now and state = 'queued'
    last_reply   TEXT,                 -- the last SMTP reply or error, for `mta queue list`
    created      REAL NOT NULL,
    updated      REAL NOT NULL
);
CREATE INDEX queue_due ON queue_recipients (state, next_attempt);
CREATE INDEX queue_message ON queue_recipients (message_id);
