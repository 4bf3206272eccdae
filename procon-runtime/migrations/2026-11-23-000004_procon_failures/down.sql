DROP TABLE procon_stopped_partitions;
ALTER TABLE procon_outbox DROP COLUMN headers;
ALTER TABLE procon_outbox DROP COLUMN raw_payload;
