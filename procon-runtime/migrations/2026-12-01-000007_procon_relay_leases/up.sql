-- Shard leases of the relays (see the relay's `lease` module). The outbox is split into
-- `relay.shards` shards by a hash of (topic, key); a relay publishes a shard only while it holds
-- its lease. `epoch` counts the claims of a shard; `expires_at` is database time.
CREATE TABLE procon_relay_leases (
    shard INT PRIMARY KEY,
    owner TEXT,
    epoch BIGINT NOT NULL DEFAULT 0,
    expires_at TIMESTAMPTZ NOT NULL DEFAULT '-infinity'
);

-- The relays sharing the outbox, seen at each heartbeat: the fair share of shards is
-- ceil(shards / members seen within a lease).
CREATE TABLE procon_relay_members (
    member TEXT PRIMARY KEY,
    seen_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- The outbox is a queue: every row is deleted soon after it is written. Vacuum it after every
-- few thousand deleted rows instead of after a fifth of the table, so the relay's index scans
-- do not walk long runs of dead entries.
ALTER TABLE procon_outbox SET (autovacuum_vacuum_scale_factor = 0.0,
                               autovacuum_vacuum_threshold = 5000,
                               autovacuum_analyze_scale_factor = 0.0,
                               autovacuum_analyze_threshold = 5000);
