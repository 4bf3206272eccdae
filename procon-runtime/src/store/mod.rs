//! The project's own tables, created by embedded migrations.
//!
//! Job: create and upgrade the tables procon needs (`procon_outbox`, ...) in the schema the
//! connection's `search_path` points at. Invariant: migrations run under one PostgreSQL advisory
//! lock, so several processes (or parallel tests) starting at once never race on the catalog.
//! Users who run their own migration tool can copy the SQL from `procon-runtime/migrations/`.

mod migrations;

pub use migrations::{migrate, migration_sql, MigrationError};

/// Connects to `url` and runs `SELECT 1` (the admin server's readiness): `Err` says what failed,
/// without the URL's password.
pub fn ping(url: &str) -> Result<(), String> {
    use diesel::{Connection, RunQueryDsl};
    let mut conn =
        diesel::PgConnection::establish(url).map_err(|e| crate::config::redact(&e.to_string()))?;
    diesel::sql_query("SELECT 1")
        .execute(&mut conn)
        .map(|_| ())
        .map_err(|e| e.to_string())
}
