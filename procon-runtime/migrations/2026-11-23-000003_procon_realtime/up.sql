-- W3C trace context of the emitting span, sent as the `traceparent` header.
ALTER TABLE procon_outbox ADD COLUMN traceparent TEXT;

-- Realtime notifications waiting to be published, written in the emitting transaction. The
-- relay publishes the newest row of a channel (throttled per channel) and then deletes every
-- row of that channel up to it: older ones are coalesced into it.
CREATE TABLE procon_realtime (
    id BIGSERIAL PRIMARY KEY,
    -- Sent as the `procon-event-id` header of the notification.
    message_id UUID NOT NULL,
    -- Where UIs listen, e.g. `accounts/42`; the Kafka key.
    channel TEXT NOT NULL,
    session_id TEXT,
    -- This channel's throttle window; NULL uses the relay's default.
    threshold_ms INT,
    -- The message value published to the realtime topic.
    payload JSONB NOT NULL,
    traceparent TEXT,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
-- The relay reads the newest row per channel.
CREATE INDEX procon_realtime_channel_id ON procon_realtime (channel, id DESC);
