//! The event envelope: the JSON document every procon event carries.
//!
//! Version 1 of the envelope, as stored in the outbox and published to Kafka:
//!
//! ```json
//! {
//!   "schema_version": 1,
//!   "event_id": "01936f6e-7a4c-7c3e-9d55-0c5e3b1f7a10",
//!   "event": "account.updated",
//!   "entity": "account",
//!   "kind": "updated",
//!   "key": "42",
//!   "occurred_at": "2026-11-23T10:59:12.123456Z",
//!   "before": { "id": 42, "email": "old@example.com" },
//!   "after": { "id": 42, "email": "new@example.com" },
//!   "metadata": { "request_id": "r-1", "user_id": "u-7" }
//! }
//! ```
//!
//! `before` is `null` for `created` events and `after` is `null` for `deleted` events. An
//! optional `traceparent` carries the emitter's W3C trace context. The full specification (every
//! field, the headers, the versioning rules) is `docs/ENVELOPE.md` in the repository.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The entity of the error events the consumer's `error_event` failure policy writes.
pub const ERROR_ENTITY: &str = "event.error";

/// The envelope version written by this release.
pub const SCHEMA_VERSION: u32 = 1;

/// What happened to the entity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventKind {
    /// The entity was inserted: `before` is null.
    Created,
    /// The entity changed: both `before` and `after` are set.
    Updated,
    /// The entity was removed: `after` is null.
    Deleted,
}

impl EventKind {
    /// The suffix of the event name: `created`, `updated` or `deleted`.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Created => "created",
            EventKind::Updated => "updated",
            EventKind::Deleted => "deleted",
        }
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Free metadata carried by an event: request id, user id, session...
pub type Metadata = BTreeMap<String, serde_json::Value>;

/// A decoded event envelope. `T` is the payload type of `before` / `after`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope<T = serde_json::Value> {
    /// Version of this envelope layout ([`SCHEMA_VERSION`]).
    pub schema_version: u32,
    /// Unique id of the event (UUID v7, so ids sort by creation time); also sent as a header.
    pub event_id: Uuid,
    /// `<entity>.<kind>`, e.g. `account.created`.
    pub event: String,
    /// The entity name, e.g. `account`.
    pub entity: String,
    /// What happened.
    pub kind: EventKind,
    /// The Kafka key the event was published with.
    pub key: String,
    /// When the event was emitted (inside the producing transaction). Written with exactly six
    /// fractional digits (`2026-11-23T10:59:12.123456Z`), PostgreSQL's precision.
    #[serde(serialize_with = "serialize_micros")]
    pub occurred_at: DateTime<Utc>,
    /// The entity before the change; `None` for `created`.
    pub before: Option<T>,
    /// The entity after the change; `None` for `deleted`.
    pub after: Option<T>,
    /// Free metadata given at emit time.
    #[serde(default)]
    pub metadata: Metadata,
    /// W3C trace context of the emitting span (`00-<trace id>-<span id>-<flags>`), when the
    /// emitter was traced with OpenTelemetry. Also sent as the `traceparent` header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
}

/// The envelope's fields other than the payloads, as an emit fills them in; both encoders (the
/// JSON envelope and its Avro form) write the same head.
pub(crate) struct EnvelopeHead<'a> {
    pub(crate) schema_version: u32,
    pub(crate) event_id: Uuid,
    pub(crate) event: &'a str,
    pub(crate) entity: &'a str,
    pub(crate) kind: EventKind,
    pub(crate) key: &'a str,
    pub(crate) occurred_at: DateTime<Utc>,
    pub(crate) metadata: &'a Metadata,
    pub(crate) traceparent: Option<&'a str>,
}

/// Writes `at` as RFC 3339 in UTC with exactly six fractional digits, the form
/// docs/ENVELOPE.md documents (chrono's default drops or adds digits as the value needs).
pub(crate) fn serialize_micros<S: serde::Serializer>(
    at: &DateTime<Utc>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.collect_str(&at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
}

/// Names of the Kafka headers the relay sets on every event.
pub mod headers {
    /// The event id (UUID text): the same on every redelivery of one event.
    pub const EVENT_ID: &str = "procon-event-id";
    /// The event name, e.g. `account.created`.
    pub const EVENT_NAME: &str = "procon-event";
    /// The entity name, e.g. `account`.
    pub const ENTITY: &str = "procon-entity";
    /// The payload's media type (`application/json`).
    pub const CONTENT_TYPE: &str = "content-type";
    /// W3C trace context of the emitting span, when there was one.
    pub const TRACEPARENT: &str = crate::trace::TRACEPARENT;
}

/// The media type of JSON-encoded envelopes.
pub const JSON_CONTENT_TYPE: &str = "application/json";
