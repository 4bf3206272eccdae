DROP TABLE procon_realtime;
ALTER TABLE procon_outbox DROP COLUMN traceparent;
