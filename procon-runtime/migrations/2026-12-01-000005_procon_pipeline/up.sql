-- The concurrent pipeline. A partition's stored position is now its watermark (the lowest
-- offset not yet applied); messages above it that were applied are recognised by their event
-- id. `epoch` fences a member that lost the partition: every claim increments it, and a
-- member's writes check the epoch it claimed.
ALTER TABLE procon_consumer_offsets ADD COLUMN epoch BIGINT NOT NULL DEFAULT 0;

-- Failed attempts of a message, kept outside the rolled-back transaction so that a rebalance
-- or a restart goes on counting toward the failure policy's limit.
CREATE TABLE procon_consumer_failures (
    group_id TEXT NOT NULL,
    topic TEXT NOT NULL,
    partition INT NOT NULL,
    "offset" BIGINT NOT NULL,
    attempts INT NOT NULL,
    error TEXT NOT NULL,
    first_failed_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (group_id, topic, partition, "offset")
);

-- A stop now holds one lane (a key) of the partition, or the whole partition (lane '').
-- `reset_to`: the position an operator may accept when the stored one is out of the log's range.
ALTER TABLE procon_stopped_partitions ADD COLUMN lane TEXT NOT NULL DEFAULT '';
ALTER TABLE procon_stopped_partitions ADD COLUMN reset_to BIGINT;
ALTER TABLE procon_stopped_partitions DROP CONSTRAINT procon_stopped_partitions_pkey;
ALTER TABLE procon_stopped_partitions ADD PRIMARY KEY (group_id, topic, partition, lane);

-- The message key as bytes, for keys that are not text (a dead letter keeps its original key).
ALTER TABLE procon_outbox ADD COLUMN raw_key BYTEA;

-- Retention cleanup runs per group.
CREATE INDEX procon_consumed_events_group_time ON procon_consumed_events (group_id, consumed_at);
