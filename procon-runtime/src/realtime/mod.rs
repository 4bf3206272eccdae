//! Realtime notifications: short messages telling UIs that an entity changed.
//!
//! Job: carry `{channel, session_id, metadata}` messages (e.g. channel `accounts/42`) to a
//! realtime topic (default `procon-realtime`), keyed by channel, only for changes that committed,
//! and throttled per channel so a burst of changes does not flood the UIs.
//!
//! Invariants and what a crash can do:
//! - A notification is a `procon_realtime` row written in the emitting transaction (next to the
//!   event's outbox row, or by a handler inside the consumption's transaction): it exists if
//!   and only if that transaction commits. Deletes work like any other change: builders get the
//!   `before` image.
//! - The relay publishes them keyed by channel, so one channel's notifications stay in order.
//! - Throttling (per channel, threshold `T`, the message's own or the relay's default 1000 ms):
//!   a notification on a quiet channel (nothing published in the last `T`) is published at
//!   once, and opens a window of its own `T`; the ones that arrive while the window is open
//!   are coalesced, and only the latest of them is published when the window ends, which
//!   opens the next window. So per channel at
//!   most one notification is published per `T`, and each notification is either published or
//!   superseded by a later one of its channel published no later than `T` (plus relay latency)
//!   after it was emitted. None is dropped without a later one standing in for it.
//! - Rows are deleted only after the broker acknowledged the notification that covers them,
//!   and only rows the relay read with it (a row of the channel that commits later, even with
//!   a lower id, stays for the next round): a relay killed at any point loses nothing, and republishes at most the last one of each
//!   channel. Throttle windows live in the relay's memory, and only while they are open:
//!   after a restart the first notification of each channel goes out at once.
//! - Channels are read oldest pending first, leaving out those inside their window, so a
//!   channel never waits behind many busy ones. Realtime runs beside the outbox rounds (its
//!   own task and connection), never in their way.

mod message;
pub(crate) mod throttle;

pub(crate) use message::{insert_all, RealtimeRecord};
pub use message::{Change, Realtime, RealtimeError, REALTIME_EVENT};
