-- Dead letters carry the original message bytes (which may not be JSON) and headers.
ALTER TABLE procon_outbox ADD COLUMN raw_payload BYTEA;
-- Extra Kafka headers, as a JSON object of string values.
ALTER TABLE procon_outbox ADD COLUMN headers JSONB;

-- Partitions stopped on a message whose handler failed every attempt (policy `stop`). The
-- consumer keeps such a partition paused, across restarts and rebalances, until the row is
-- deleted by `resume_partition` (or `procon resume`).
CREATE TABLE procon_stopped_partitions (
    group_id TEXT NOT NULL,
    topic TEXT NOT NULL,
    partition INT NOT NULL,
    -- The offset of the message that failed.
    "offset" BIGINT NOT NULL,
    event_id UUID,
    event TEXT,
    error TEXT NOT NULL,
    attempts INT NOT NULL,
    stopped_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (group_id, topic, partition)
);
