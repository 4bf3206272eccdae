-- Replay (the consumer's `replay` module): where a replay of the partition ends (the position
-- stored before it: every event below was applied), its generation (names the event-id records
-- of the replay) and whether handlers publish what they emit while they replay.
ALTER TABLE procon_consumer_offsets ADD COLUMN replay_until NUMERIC,
                                    ADD COLUMN replay_generation INT NOT NULL DEFAULT 0,
                                    ADD COLUMN replay_publish BOOLEAN NOT NULL DEFAULT true;
