-- Parked rows go back to the outbox so nothing is lost.
INSERT INTO procon_outbox (id, event_id, topic, message_key, event_name, entity, payload,
                           created_at, traceparent, raw_payload, headers, raw_key)
SELECT id, event_id, topic, message_key, event_name, entity, payload, created_at, traceparent,
       raw_payload, headers, raw_key
FROM procon_outbox_parked;
DROP TABLE procon_outbox_parked;
DROP INDEX procon_outbox_txid;
ALTER TABLE procon_outbox DROP COLUMN txid;
