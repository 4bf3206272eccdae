-- Where each consumer group is in each partition: the offset of the next message to apply.
-- Written in the same transaction as the handler's effects, so it is the source of truth;
-- Kafka's committed offsets are only a hint.
CREATE TABLE procon_consumer_offsets (
    group_id TEXT NOT NULL,
    topic TEXT NOT NULL,
    partition INT NOT NULL,
    -- -1 until the first message of the partition has been applied.
    next_offset BIGINT NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (group_id, topic, partition)
);

-- Event ids a group has applied, to recognise an event the relay published twice (same event
-- id, new offset). Rows older than the configured retention are deleted by the runtime.
CREATE TABLE procon_consumed_events (
    group_id TEXT NOT NULL,
    event_id UUID NOT NULL,
    consumed_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (group_id, event_id)
);
CREATE INDEX procon_consumed_events_consumed_at ON procon_consumed_events (consumed_at);
