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

pub use procon_derive::event_handler;
#[doc(inline)]
pub use procon_derive::Materialize;
#[doc(inline)]
pub use procon_derive::Outbox;
pub use procon_runtime::avro;
pub use procon_runtime::config::SchemaRegistryConfig;
pub use procon_runtime::consumer::{
    dead_letters, dead_letters_with_progress, redrive, replay, replay_positions_at, resume_lane,
    resume_partition, stopped_partitions, DeadLetter, FailedEvent, RedriveError, ReplayError,
    ReplayFrom, ReplayTarget, ReplayTargetError, ReplayedPartition, Resume, ResumeError, Stall,
    Status, StoppedPartition,
};
pub use procon_runtime::consumer::{
    BatchHandler, Coordinates, Event, EventHandler, HandlerContext, HandlerError,
};
pub use procon_runtime::declare_topic;
pub use procon_runtime::event::{self, Envelope, EventKind, Metadata};
pub use procon_runtime::materialize::{Materialize, MaterializeError, MaterializeHooks, Outcome};
pub use procon_runtime::outbox::parked::{
    backlog, drop_parked, parked_rows, retry_parked, Backlog, ParkedRow,
};
pub use procon_runtime::outbox::{
    emit_all, EmitError, Outbox, OutboxBatch, OutboxEvent, OutboxExt,
};
pub use procon_runtime::realtime::{Change, Realtime, RealtimeError};
pub use procon_runtime::register_batch_handler;
pub use procon_runtime::register_handler;
pub use procon_runtime::register_materializer;
pub use procon_runtime::store::{migrate, MigrationError};
pub use procon_runtime::transport::Position;
pub use procon_runtime::{
    config, start, start_relay_with, AdminConfig, Config, ConfigError, ConsumerConfig, Exhausted,
    FailurePolicy, KinesisConfig, PartitionBy, RateLimit, RelayConfig, Runtime, RuntimeError,
    StartError, Transport, UndeclaredTopics, UnknownEvents,
};

/// The runtime crate, for what the facade does not re-export.
pub use procon_runtime as runtime;

/// `use procon::prelude::*;` brings the derive, the trait and the emit shortcuts into scope.
pub mod prelude {
    pub use crate::{
        Change, Event, EventHandler, EventKind, HandlerContext, HandlerError, Metadata, Outbox,
        OutboxEvent, OutboxExt, Realtime,
    };
}

/// What the macros expand to. Not a public API: it changes without notice.
#[doc(hidden)]
pub mod __private {
    /// What `format = "avro"` models need.
    pub mod avro {
        pub use procon_runtime::avro::apache_avro::schema::derive::AvroSchemaComponent;
        pub use procon_runtime::avro::{
            payload_record, AvroModel, AvroRegistration, AvroSchemaError,
        };
    }
    pub use core::iter::Extend;
    pub use core::result::Result;
    pub use core::time::Duration;
    pub use diesel;
    pub use diesel::pg::PgConnection;
    pub use diesel::QueryResult;
    pub use procon_runtime::__inventory as inventory;
    pub use procon_runtime::consumer::{
        Event, EventHandler, HandlerContext, HandlerError, HandlerEventArg, Registration,
    };
    pub use procon_runtime::materialize::{
        Image, Materialize, MaterializeError, MaterializeHooks, OnCreated, OnDeleted, OnUpdated,
    };
    pub use procon_runtime::outbox::declared::DeclaredTopic;
    pub use procon_runtime::outbox::Outbox;
    pub use procon_runtime::realtime::{Change, Realtime};
    pub use serde::ser::{SerializeStruct, Serializer};
    pub use std::borrow::Cow;
    pub use std::string::{String, ToString};
    pub use std::vec::Vec;
}

/// Compiles the README's examples as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;
