ALTER TABLE procon_outbox_parked ALTER COLUMN payload TYPE jsonb USING payload::jsonb;
ALTER TABLE procon_outbox ALTER COLUMN payload TYPE jsonb USING payload::jsonb;
