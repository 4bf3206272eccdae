DROP INDEX IF EXISTS procon_consumed_events_group_time;
ALTER TABLE procon_outbox DROP COLUMN raw_key;
DELETE FROM procon_stopped_partitions WHERE lane <> '';
ALTER TABLE procon_stopped_partitions DROP CONSTRAINT procon_stopped_partitions_pkey;
ALTER TABLE procon_stopped_partitions ADD PRIMARY KEY (group_id, topic, partition);
ALTER TABLE procon_stopped_partitions DROP COLUMN reset_to;
ALTER TABLE procon_stopped_partitions DROP COLUMN lane;
DROP TABLE procon_consumer_failures;
ALTER TABLE procon_consumer_offsets DROP COLUMN epoch;
