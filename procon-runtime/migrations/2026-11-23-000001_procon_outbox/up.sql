-- The transactional outbox: one row per event, written in the emitting transaction and
-- deleted by the relay only after the broker acknowledged it.
CREATE TABLE procon_outbox (
    -- Insertion order. The relay reads rows in id order but never assumes ids commit in order.
    id BIGSERIAL PRIMARY KEY,
    -- Sent as the `procon-event-id` header; identical on every redelivery of the event.
    event_id UUID NOT NULL,
    topic TEXT NOT NULL,
    -- The Kafka message key: one key's events stay on one partition, in order.
    message_key TEXT NOT NULL,
    -- `<entity>.<kind>`, e.g. `account.created`.
    event_name TEXT NOT NULL,
    entity TEXT NOT NULL,
    -- The whole event envelope (see the envelope documentation).
    payload JSONB NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
