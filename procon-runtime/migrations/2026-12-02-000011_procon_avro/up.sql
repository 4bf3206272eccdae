-- Avro events: the schema text of each Avro envelope, stored once by fingerprint (written in
-- the emitting statement, read by the relay when it registers the schema), and the
-- fingerprint of each Avro outbox row (its `raw_payload` holds the Avro datum; the relay adds
-- the registry's schema id in front).
CREATE TABLE procon_schemas (
    fingerprint text PRIMARY KEY,
    schema text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE procon_outbox ADD COLUMN avro_schema text;
ALTER TABLE procon_outbox_parked ADD COLUMN avro_schema text;
