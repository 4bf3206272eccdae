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

mod emit;
mod model;

pub use emit::{EmitError, OutboxEvent, OutboxExt, NOTIFY_CHANNEL};
pub use model::Outbox;
