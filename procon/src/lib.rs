//! # procon
//!
//! Publish your domain events to Kafka exactly when your Diesel transaction commits.
//!
//! - `#[derive(Outbox)]` on a Diesel model describes its events (entity, topic, key, payload).
//! - [`OutboxExt::emit_created`] and friends write the event to the `procon_outbox` table *in
//!   your transaction*: the event exists if and only if your change committed.
//! - [`start`] runs the relay, which publishes outbox rows to Kafka in order per key, with an
//!   event-id header, and deletes them only once the broker acknowledged them.
//!
//! See the repository README for a complete example.

#[doc(inline)]
pub use procon_derive::Outbox;
pub use procon_runtime::event::{self, Envelope, EventKind, Metadata};
pub use procon_runtime::outbox::{EmitError, Outbox, OutboxEvent, OutboxExt};
pub use procon_runtime::store::{migrate, MigrationError};
pub use procon_runtime::{config, start, Config, ConfigError, Runtime, RuntimeError, StartError};

/// The runtime crate, for what the facade does not re-export.
pub use procon_runtime as runtime;

/// `use procon::prelude::*;` brings the derive, the trait and the emit shortcuts into scope.
pub mod prelude {
    pub use crate::{EventKind, Metadata, Outbox, OutboxEvent, OutboxExt};
}

/// What the macros expand to. Not a public API: it changes without notice.
#[doc(hidden)]
pub mod __private {
    pub use core::result::Result;
    pub use procon_runtime::outbox::Outbox;
    pub use serde::ser::{SerializeStruct, Serializer};
    pub use std::borrow::Cow;
    pub use std::string::{String, ToString};
}
