-- The envelope is published byte for byte as it was written: `json` keeps the text (its key
-- order, as docs/ENVELOPE.md documents it) where `jsonb` reordered keys, and the relay reads it
-- without a jsonb-to-text conversion. Rows already written keep jsonb's order. The change
-- rewrites the tables under an exclusive lock: emits wait for it, so apply it while the outbox
-- is near empty (it usually is).
ALTER TABLE procon_outbox ALTER COLUMN payload TYPE json USING payload::json;
ALTER TABLE procon_outbox_parked ALTER COLUMN payload TYPE json USING payload::json;
