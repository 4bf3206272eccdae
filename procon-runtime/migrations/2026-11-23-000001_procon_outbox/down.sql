DROP TABLE procon_outbox;
