ALTER TABLE procon_outbox RESET (autovacuum_vacuum_scale_factor, autovacuum_vacuum_threshold,
                                 autovacuum_analyze_scale_factor, autovacuum_analyze_threshold);
DROP TABLE procon_relay_members;
DROP TABLE procon_relay_leases;
