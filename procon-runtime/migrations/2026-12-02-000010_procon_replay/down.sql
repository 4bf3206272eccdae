ALTER TABLE procon_consumer_offsets DROP COLUMN replay_publish,
                                    DROP COLUMN replay_generation,
                                    DROP COLUMN replay_until;
