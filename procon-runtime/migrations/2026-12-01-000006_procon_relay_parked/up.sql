-- The transaction that wrote each outbox row. The relay reads rows after a cursor; a row that
-- commits late below the cursor comes from a transaction that was still running at the
-- relay's previous read (its txid is at least that read's snapshot xmin), so the relay finds
-- such rows by looking only at recent transactions, through this index.
ALTER TABLE procon_outbox ADD COLUMN txid xid8 NOT NULL DEFAULT pg_current_xact_id();
CREATE INDEX procon_outbox_txid ON procon_outbox (txid);

-- Outbox rows the relay set aside because the broker rejected them on every attempt (too
-- large, no permission, an invalid topic...). A parked row keeps its outbox id, so a retried
-- row goes back in its place; while a key has a parked row, the key's later rows wait in the
-- outbox (the relay skips them), and every other key flows.
CREATE TABLE procon_outbox_parked (
    id BIGINT PRIMARY KEY,
    event_id UUID NOT NULL,
    topic TEXT NOT NULL,
    message_key TEXT NOT NULL,
    event_name TEXT NOT NULL,
    entity TEXT NOT NULL,
    payload JSONB NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    traceparent TEXT,
    raw_payload BYTEA,
    headers JSONB,
    raw_key BYTEA,
    -- The broker's (or the producer's) last error, and how many attempts were made.
    error TEXT NOT NULL,
    attempts INT NOT NULL,
    parked_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
-- The relay looks up, per outbox row, whether its key has a parked row.
CREATE INDEX procon_outbox_parked_key ON procon_outbox_parked (topic, message_key);
