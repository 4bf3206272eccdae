-- Positions are as wide as the transport's: Kinesis sequence numbers have up to 56 digits
-- (the API allows 129), far beyond BIGINT. Kafka offsets keep their values.
ALTER TABLE procon_consumer_offsets ALTER COLUMN next_offset TYPE numeric;
ALTER TABLE procon_consumer_failures ALTER COLUMN "offset" TYPE numeric;
ALTER TABLE procon_stopped_partitions ALTER COLUMN "offset" TYPE numeric,
                                      ALTER COLUMN reset_to TYPE numeric;

-- Kinesis shard leases of consumer groups (the Kinesis source's `leases` module): which member
-- reads which shard of a stream, until `expires_at` (database time). `finished`: the shard is
-- closed (split or merged) and every record of it is applied, so its children may start.
CREATE TABLE procon_kinesis_leases (
    group_id TEXT NOT NULL,
    stream TEXT NOT NULL,
    shard_id TEXT NOT NULL,
    owner TEXT,
    expires_at TIMESTAMPTZ NOT NULL DEFAULT '-infinity',
    finished BOOLEAN NOT NULL DEFAULT false,
    PRIMARY KEY (group_id, stream, shard_id)
);

-- The members of a group reading Kinesis, seen at each heartbeat: the fair share of shards is
-- ceil(readable shards / members seen within a lease).
CREATE TABLE procon_kinesis_members (
    group_id TEXT NOT NULL,
    member TEXT NOT NULL,
    seen_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (group_id, member)
);
