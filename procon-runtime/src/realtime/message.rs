//! The realtime message and how it is written to `procon_realtime`.

use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel::connection::{AnsiTransactionManager, TransactionManager};
use diesel::pg::PgConnection;
use diesel::sql_types::{Array, Integer, Nullable, Text, Uuid as SqlUuid};
use diesel::RunQueryDsl;
use uuid::Uuid;

use crate::event::{EventKind, Metadata, SCHEMA_VERSION};

/// The `procon-event` header of realtime messages on the realtime topic.
pub const REALTIME_EVENT: &str = "procon.realtime";

/// One notification for UIs listening on `channel`.
///
/// ```
/// use procon_runtime::realtime::Realtime;
/// let message = Realtime::new("accounts/42")
///     .session_id("s-1")
///     .metadata("field", "email");
/// assert_eq!(message.channel, "accounts/42");
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Realtime {
    /// Where UIs listen, e.g. `accounts/42`. Also the Kafka key: one channel stays in order.
    pub channel: String,
    /// The user session the notification is meant for, if any.
    pub session_id: Option<String>,
    /// Free data for the UI.
    pub metadata: Metadata,
    /// This channel's throttle window; `None` uses the relay's default (1000 ms).
    pub threshold: Option<Duration>,
}

impl Realtime {
    /// A notification on `channel`, without session or metadata.
    pub fn new(channel: impl Into<String>) -> Self {
        Realtime {
            channel: channel.into(),
            session_id: None,
            metadata: Metadata::new(),
            threshold: None,
        }
    }

    /// Sets the session id.
    pub fn session_id(mut self, session_id: impl Into<String>) -> Self {
        self.session_id = Some(session_id.into());
        self
    }

    /// Adds one metadata entry.
    pub fn metadata(mut self, key: impl Into<String>, value: impl Into<serde_json::Value>) -> Self {
        self.metadata.insert(key.into(), value.into());
        self
    }

    /// Sets the throttle window of this notification's channel.
    pub fn threshold(mut self, threshold: Duration) -> Self {
        self.threshold = Some(threshold);
        self
    }

    /// Writes this notification through `conn`, which must be inside a transaction (e.g. in an
    /// event handler, after applying an event): it is published only if that transaction
    /// commits. Returns the notification's id.
    pub fn emit(self, conn: &mut PgConnection) -> Result<Uuid, RealtimeError> {
        match AnsiTransactionManager::transaction_manager_status_mut(conn).transaction_depth() {
            Ok(Some(_)) => {}
            Ok(None) => {
                return Err(RealtimeError::NotInTransaction {
                    channel: self.channel,
                })
            }
            Err(source) => return Err(RealtimeError::Database(source)),
        }
        let record = RealtimeRecord::new(self, None, crate::trace::current_traceparent());
        let id = record.id;
        insert_all(conn, &[record]).map_err(RealtimeError::Database)?;
        Ok(id)
    }
}

/// Why a realtime notification could not be written. Nothing was written.
#[derive(Debug, thiserror::Error)]
pub enum RealtimeError {
    /// `emit` was called outside a transaction.
    #[error(
        "realtime notification on `{channel}` was not written: it must be emitted inside a \
         transaction, so that it exists only if the change commits"
    )]
    NotInTransaction {
        /// The notification's channel.
        channel: String,
    },
    /// The insert failed (e.g. the `procon_realtime` table is missing: run `procon::migrate`).
    #[error("writing the realtime notification failed: {0}")]
    Database(#[source] diesel::result::Error),
}

/// The change a realtime builder is asked about: what happened, to which model, with what
/// metadata. `before` is `None` for creates, `after` is `None` for deletes.
#[derive(Debug)]
pub struct Change<'a, T> {
    /// The event's id.
    pub event_id: Uuid,
    /// The event name, e.g. `account.updated`.
    pub event: &'a str,
    /// What happened.
    pub kind: EventKind,
    /// The model before the change.
    pub before: Option<&'a T>,
    /// The model after the change.
    pub after: Option<&'a T>,
    /// The event's metadata (request id, user id, session...).
    pub metadata: &'a Metadata,
    /// `after`, or `before` for a delete.
    subject: &'a T,
}

impl<'a, T> Change<'a, T> {
    pub(crate) fn new(
        event_id: Uuid,
        event: &'a str,
        kind: EventKind,
        before: Option<&'a T>,
        after: Option<&'a T>,
        metadata: &'a Metadata,
        subject: &'a T,
    ) -> Self {
        Change {
            event_id,
            event,
            kind,
            before,
            after,
            metadata,
            subject,
        }
    }

    /// The model as it is now: `after`, or `before` for a delete. Channels are usually built
    /// from it (`accounts/<id>`), which is what makes deletes work.
    pub fn current(&self) -> &'a T {
        self.subject
    }
}

/// What the realtime topic carries (the message value).
#[derive(serde::Serialize)]
struct Body<'a> {
    schema_version: u32,
    id: Uuid,
    channel: &'a str,
    session_id: Option<&'a str>,
    metadata: &'a Metadata,
    /// The event that caused the notification, when it came from an emitted event.
    event_id: Option<Uuid>,
    event: Option<&'a str>,
    occurred_at: DateTime<Utc>,
}

/// A notification ready to insert.
pub(crate) struct RealtimeRecord {
    id: Uuid,
    channel: String,
    session_id: Option<String>,
    threshold_ms: Option<i32>,
    payload: String,
    traceparent: Option<String>,
}

impl RealtimeRecord {
    /// `cause` is the event (id, name) the notification is about, if any.
    pub(crate) fn new(
        message: Realtime,
        cause: Option<(Uuid, &str)>,
        traceparent: Option<String>,
    ) -> Self {
        let id = Uuid::now_v7();
        let body = Body {
            schema_version: SCHEMA_VERSION,
            id,
            channel: &message.channel,
            session_id: message.session_id.as_deref(),
            metadata: &message.metadata,
            event_id: cause.map(|(id, _)| id),
            event: cause.map(|(_, name)| name),
            occurred_at: Utc::now(),
        };
        // A map of JSON values with string keys always serializes.
        let payload = serde_json::to_string(&body).unwrap_or_else(|_| "{}".to_owned());
        RealtimeRecord {
            id,
            threshold_ms: message
                .threshold
                .map(|t| i32::try_from(t.as_millis()).unwrap_or(i32::MAX)),
            channel: message.channel,
            session_id: message.session_id,
            payload,
            traceparent,
        }
    }
}

/// Inserts notifications (one statement) and wakes the relay on commit.
pub(crate) fn insert_all(
    conn: &mut PgConnection,
    records: &[RealtimeRecord],
) -> Result<(), diesel::result::Error> {
    if records.is_empty() {
        return Ok(());
    }
    let ids: Vec<Uuid> = records.iter().map(|r| r.id).collect();
    let channels: Vec<&str> = records.iter().map(|r| r.channel.as_str()).collect();
    let sessions: Vec<Option<&str>> = records.iter().map(|r| r.session_id.as_deref()).collect();
    let thresholds: Vec<Option<i32>> = records.iter().map(|r| r.threshold_ms).collect();
    let payloads: Vec<&str> = records.iter().map(|r| r.payload.as_str()).collect();
    let traces: Vec<Option<&str>> = records.iter().map(|r| r.traceparent.as_deref()).collect();
    diesel::sql_query(concat!(
        "INSERT INTO procon_realtime \
           (message_id, channel, session_id, threshold_ms, payload, traceparent) \
         SELECT m.id, m.channel, m.session_id, m.threshold_ms, m.payload::jsonb, m.traceparent \
         FROM unnest($1, $2, $3, $4, $5, $6) \
           AS m(id, channel, session_id, threshold_ms, payload, traceparent), \
         (SELECT ",
        crate::outbox::wake_realtime_sql!(),
        ") AS wake \
         WHERE current_setting('procon.publish', true) IS DISTINCT FROM 'off'"
    ))
    .bind::<Array<SqlUuid>, _>(ids)
    .bind::<Array<Text>, _>(channels)
    .bind::<Array<Nullable<Text>>, _>(sessions)
    .bind::<Array<Nullable<Integer>>, _>(thresholds)
    .bind::<Array<Text>, _>(payloads)
    .bind::<Array<Nullable<Text>>, _>(traces)
    .execute(conn)?;
    Ok(())
}
