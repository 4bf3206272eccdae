//! Applying the embedded migrations.

use diesel::connection::SimpleConnection;
use diesel::pg::PgConnection;
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};

const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");

/// Arbitrary but fixed key of the advisory lock that serializes procon's migrations.
const MIGRATION_LOCK_KEY: i64 = 0x7072_6f63_6f6e_6d67; // "proconmg"

/// Failure to apply procon's migrations.
#[derive(Debug, thiserror::Error)]
pub enum MigrationError {
    /// Taking or releasing the migration lock failed.
    #[error("could not take the procon migration lock: {0}")]
    Lock(#[source] diesel::result::Error),
    /// A migration failed; nothing of that migration was applied.
    #[error("applying procon migrations failed: {0}")]
    Apply(String),
}

/// Applies every pending procon migration to the database `conn` points at, and returns the
/// versions it applied (empty when the schema was already up to date).
///
/// Safe to call from several processes at once: the calls are serialized by an advisory lock.
pub fn migrate(conn: &mut PgConnection) -> Result<Vec<String>, MigrationError> {
    conn.batch_execute(&format!("SELECT pg_advisory_lock({MIGRATION_LOCK_KEY})"))
        .map_err(MigrationError::Lock)?;
    let applied = conn
        .run_pending_migrations(MIGRATIONS)
        .map(|versions| versions.iter().map(ToString::to_string).collect())
        .map_err(|e| MigrationError::Apply(e.to_string()));
    let unlocked = conn
        .batch_execute(&format!("SELECT pg_advisory_unlock({MIGRATION_LOCK_KEY})"))
        .map_err(MigrationError::Lock);
    let applied = applied?;
    unlocked?;
    Ok(applied)
}

/// procon's migrations as SQL, in order: (name, up.sql). For `procon init` and for teams that
/// apply migrations with their own tool (record them there; `migrate` would apply them again
/// otherwise, as diesel keeps its own table of applied versions).
pub fn migration_sql() -> &'static [(&'static str, &'static str)] {
    &MIGRATION_SQL
}

const MIGRATION_SQL: [(&str, &str); 11] = [
    (
        "2026-11-23-000001_procon_outbox",
        include_str!("../../migrations/2026-11-23-000001_procon_outbox/up.sql"),
    ),
    (
        "2026-11-23-000002_procon_consumer",
        include_str!("../../migrations/2026-11-23-000002_procon_consumer/up.sql"),
    ),
    (
        "2026-11-23-000003_procon_realtime",
        include_str!("../../migrations/2026-11-23-000003_procon_realtime/up.sql"),
    ),
    (
        "2026-11-23-000004_procon_failures",
        include_str!("../../migrations/2026-11-23-000004_procon_failures/up.sql"),
    ),
    (
        "2026-12-01-000005_procon_pipeline",
        include_str!("../../migrations/2026-12-01-000005_procon_pipeline/up.sql"),
    ),
    (
        "2026-12-01-000006_procon_relay_parked",
        include_str!("../../migrations/2026-12-01-000006_procon_relay_parked/up.sql"),
    ),
    (
        "2026-12-01-000007_procon_relay_leases",
        include_str!("../../migrations/2026-12-01-000007_procon_relay_leases/up.sql"),
    ),
    (
        "2026-12-01-000008_procon_outbox_json_text",
        include_str!("../../migrations/2026-12-01-000008_procon_outbox_json_text/up.sql"),
    ),
    (
        "2026-12-01-000009_procon_kinesis_consumer",
        include_str!("../../migrations/2026-12-01-000009_procon_kinesis_consumer/up.sql"),
    ),
    (
        "2026-12-02-000010_procon_replay",
        include_str!("../../migrations/2026-12-02-000010_procon_replay/up.sql"),
    ),
    (
        "2026-12-02-000011_procon_avro",
        include_str!("../../migrations/2026-12-02-000011_procon_avro/up.sql"),
    ),
];

#[cfg(test)]
mod tests {
    #[test]
    fn the_sql_list_holds_every_migration_in_order() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        let listed: Vec<&str> = super::migration_sql().iter().map(|(n, _)| *n).collect();
        assert_eq!(listed, names);
    }
}
