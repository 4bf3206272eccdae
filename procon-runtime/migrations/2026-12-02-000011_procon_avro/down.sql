ALTER TABLE procon_outbox_parked DROP COLUMN avro_schema;
ALTER TABLE procon_outbox DROP COLUMN avro_schema;
DROP TABLE procon_schemas;
