-- labmail store, schema version 3: whether a queued message needs SMTPUTF8 (RFC 6531).
-- Set at acceptance when the client said SMTPUTF8 and the addresses or the header section are
-- not ASCII; the relay then uses SMTPUTF8 with the next hop, or bounces with 5.6.7 when the
-- hop does not offer it (RFC 6531 3.4). Existing rows keep 0: the relay still looks at the
-- addresses as before.

ALTER TABLE queue_messages ADD COLUMN smtputf8 INTEGER NOT NULL DEFAULT 0;
