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
