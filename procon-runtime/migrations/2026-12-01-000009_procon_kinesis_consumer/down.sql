DROP TABLE procon_kinesis_members;
DROP TABLE procon_kinesis_leases;
ALTER TABLE procon_stopped_partitions ALTER COLUMN "offset" TYPE bigint,
                                      ALTER COLUMN reset_to TYPE bigint;
ALTER TABLE procon_consumer_failures ALTER COLUMN "offset" TYPE bigint;
ALTER TABLE procon_consumer_offsets ALTER COLUMN next_offset TYPE bigint;
