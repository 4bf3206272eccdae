DROP TABLE procon_consumed_events;
DROP TABLE procon_consumer_offsets;
