//! The producer side: models that publish events, and writing those events to the outbox.
//!
//! Job: turn a change of a model into one `procon_outbox` row, written through the caller's own
//! Diesel connection *inside the caller's transaction*.
//!
//! Invariants:
//! - An event exists if and only if the emitting transaction commits: the row is an ordinary
//!   insert, so a rollback removes it with everything else.
//! - Emitting outside a transaction is refused and writes nothing (an autocommitted event would
//!   be published even if the caller's later statements fail).
//! - Per key, outbox ids follow commit order: an emit takes a transaction-scoped advisory lock on
//!   (topic, key), so a second transaction emitting for the same key waits for the first to end.
//!   The relay can then publish rows in id order without ever reordering one key's events.
//! - The commit wakes the relay (`NOTIFY procon_outbox`, delivered by PostgreSQL only on commit).
//!   The notification's payload is the outbox table's oid, so a relay wakes only for its own
//!   table when several schemas share a database.

/// The SQL expression that wakes the relay of the outbox table the statement writes to: the
/// payload names the table (its oid), so relays of other schemas ignore it.
macro_rules! wake_relay_sql {
    () => {
        "pg_notify('procon_outbox', 'procon_outbox'::regclass::oid::text)"
    };
}
pub(crate) use wake_relay_sql;

/// Like [`wake_relay_sql`], for realtime notifications: the payload ends in `:realtime`, so
/// only the relay's realtime task wakes for them.
macro_rules! wake_realtime_sql {
    () => {
        "pg_notify('procon_outbox', 'procon_outbox'::regclass::oid::text || ':realtime')"
    };
}
pub(crate) use wake_realtime_sql;

mod batch;
pub mod declared;
mod emit;
mod model;
pub mod parked;

pub use batch::{emit_all, OutboxBatch};
pub use declared::declared_topics;
pub use emit::{EmitError, OutboxEvent, OutboxExt, NOTIFY_CHANNEL};
pub use model::Outbox;
