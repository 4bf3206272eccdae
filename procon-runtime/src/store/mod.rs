//! The project's own tables, created by embedded migrations.
//!
//! Job: create and upgrade the tables procon needs (`procon_outbox`, ...) in the schema the
//! connection's `search_path` points at. Invariant: migrations run under one PostgreSQL advisory
//! lock, so several processes (or parallel tests) starting at once never race on the catalog.
//! Users who run their own migration tool can copy the SQL from `procon-runtime/migrations/`.

mod migrations;

pub use migrations::{migrate, MigrationError};
