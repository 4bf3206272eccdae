//! Writing one event to the outbox in the caller's transaction.

use chrono::Utc;
use diesel::connection::{AnsiTransactionManager, TransactionManager};
use diesel::pg::PgConnection;
use diesel::sql_types::{Binary, Nullable, Text, Uuid as SqlUuid};
use diesel::RunQueryDsl;
use uuid::Uuid;

use super::model::{Outbox, Payload};
use crate::avro::{encode_envelope, AvroCodecError, AvroSchemaError};
use crate::event::{EnvelopeHead, EventKind, Metadata, SCHEMA_VERSION};
use crate::realtime::{self, Change, RealtimeRecord};

/// The PostgreSQL channel an emitting transaction notifies on commit; the relay listens on it.
pub const NOTIFY_CHANNEL: &str = "procon_outbox";

/// One statement (one round trip) that
/// - takes the per-(topic, key) transaction lock *before* the row's id is drawn, so per key, ids
///   are assigned in commit order;
/// - queues the relay's wake-up, which PostgreSQL delivers only if the transaction commits.
const INSERT_EVENT: &str = concat!(
    "INSERT INTO procon_outbox (event_id, topic, message_key, event_name, entity, payload, traceparent) \
     SELECT $1, $2, $3, $4, $5, $6::json, $7 \
     FROM (SELECT pg_advisory_xact_lock(hashtextextended($2 || '\u{1f}' || $3, 0)), ",
    super::wake_relay_sql!(),
    ") AS procon_guard \
     WHERE current_setting('procon.publish', true) IS DISTINCT FROM 'off'"
);

/// [`INSERT_EVENT`] for an Avro event: the Avro datum goes to `raw_payload` (the JSON
/// envelope stays in `payload` for operators), the row names its schema by fingerprint, and
/// the schema text is stored once in `procon_schemas` by the same statement.
const INSERT_AVRO_EVENT: &str = concat!(
    "WITH procon_schema AS (INSERT INTO procon_schemas (fingerprint, schema) VALUES ($8, $9) \
         ON CONFLICT DO NOTHING) \
     INSERT INTO procon_outbox (event_id, topic, message_key, event_name, entity, payload, traceparent, \
                                raw_payload, avro_schema) \
     SELECT $1, $2, $3, $4, $5, $6::json, $7, $10, $8 \
     FROM (SELECT pg_advisory_xact_lock(hashtextextended($2 || '\u{1f}' || $3, 0)), ",
    super::wake_relay_sql!(),
    ") AS procon_guard \
     WHERE current_setting('procon.publish', true) IS DISTINCT FROM 'off'"
);

/// Wakes the relay (on commit) without writing an event.
pub(crate) const NOTIFY_OUTBOX: &str = concat!("SELECT ", super::wake_relay_sql!());

/// Why an event could not be written to the outbox. In every case nothing was written.
#[derive(Debug, thiserror::Error)]
pub enum EmitError {
    /// `emit` was called on a connection that is not inside a transaction.
    #[error(
        "`{event}` was not emitted: emit must run inside a transaction \
         (wrap the change and the emit in `conn.transaction(|conn| ...)`)"
    )]
    NotInTransaction {
        /// The event name, e.g. `account.created`.
        event: String,
    },
    /// The model's payload could not be serialized to JSON.
    #[error("`{event}` was not emitted: its payload could not be serialized: {source}")]
    Serialize {
        /// The event name.
        event: String,
        /// The serializer's error.
        #[source]
        source: serde_json::Error,
    },
    /// The model is declared Avro, but its schema could not be built.
    #[error("`{event}` was not emitted: {source}")]
    AvroSchema {
        /// The event name.
        event: String,
        /// What Avro objected to.
        #[source]
        source: AvroSchemaError,
    },
    /// The event could not be encoded in its model's Avro schema.
    #[error("`{event}` was not emitted: it cannot be encoded as Avro: {source}")]
    AvroEncode {
        /// The event name.
        event: String,
        /// Avro's explanation.
        #[source]
        source: AvroCodecError,
    },
    /// The outbox table does not exist in the connection's schema.
    #[error(
        "`{event}` was not emitted: table `procon_outbox` does not exist \
         (run `procon::migrate(&mut conn)` or apply the SQL in procon-runtime/migrations)"
    )]
    OutboxMissing {
        /// The event name.
        event: String,
    },
    /// The insert failed; the caller's transaction is likely aborted and should be rolled back.
    #[error("`{event}` was not emitted: writing the outbox row failed: {source}")]
    Database {
        /// The event name.
        event: String,
        /// Diesel's error.
        #[source]
        source: diesel::result::Error,
    },
    /// The surrounding transaction failed (when `EmitError` is the transaction's error type).
    #[error("the transaction failed: {0}")]
    Transaction(#[source] diesel::result::Error),
}

/// Lets `EmitError` be the error type of `conn.transaction(|conn| ...)` itself.
impl From<diesel::result::Error> for EmitError {
    fn from(source: diesel::result::Error) -> Self {
        EmitError::Transaction(source)
    }
}

/// Lets `?` on an emit work inside `conn.transaction(|conn| -> QueryResult<_> { ... })`. A
/// database error keeps its Diesel form (so e.g. a serialization failure can still be
/// recognised and retried); the others are boxed in `QueryBuilderError`.
impl From<EmitError> for diesel::result::Error {
    fn from(error: EmitError) -> Self {
        match error {
            EmitError::Database { source, .. } | EmitError::Transaction(source) => source,
            other => diesel::result::Error::QueryBuilderError(Box::new(other)),
        }
    }
}

/// An event about to be written to the outbox: built from a model, given metadata, then emitted.
///
/// ```no_run
/// # use procon_runtime::outbox::{Outbox, OutboxEvent};
/// # fn demo<T: Outbox>(conn: &mut diesel::pg::PgConnection, account: &T) -> Result<(), Box<dyn std::error::Error>> {
/// let event_id = OutboxEvent::created(account)
///     .metadata("request_id", "r-1")
///     .emit(conn)?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
#[must_use = "an event is only written by `.emit(conn)`"]
pub struct OutboxEvent<'a, T> {
    kind: EventKind,
    /// The model the topic and key are taken from: `after`, or `before` for deletes.
    subject: &'a T,
    before: Option<&'a T>,
    after: Option<&'a T>,
    metadata: Metadata,
}

impl<'a, T: Outbox> OutboxEvent<'a, T> {
    /// `<entity>.created`: `before` is null, `after` is `model`.
    pub fn created(model: &'a T) -> Self {
        Self::new(EventKind::Created, model, None, Some(model))
    }

    /// `<entity>.updated`, from the model before and after the change. The key and topic are
    /// taken from `after`.
    pub fn updated(before: &'a T, after: &'a T) -> Self {
        Self::new(EventKind::Updated, after, Some(before), Some(after))
    }

    /// `<entity>.deleted`: `before` is `model`, `after` is null.
    pub fn deleted(model: &'a T) -> Self {
        Self::new(EventKind::Deleted, model, Some(model), None)
    }

    fn new(kind: EventKind, subject: &'a T, before: Option<&'a T>, after: Option<&'a T>) -> Self {
        OutboxEvent {
            kind,
            subject,
            before,
            after,
            metadata: Metadata::new(),
        }
    }

    /// Adds one metadata entry (request id, user id, session...).
    pub fn metadata(mut self, key: impl Into<String>, value: impl Into<serde_json::Value>) -> Self {
        self.metadata.insert(key.into(), value.into());
        self
    }

    /// Adds every entry of `metadata`.
    pub fn with_metadata(mut self, metadata: Metadata) -> Self {
        self.metadata.extend(metadata);
        self
    }

    /// The event name, e.g. `account.created`.
    pub fn name(&self) -> String {
        format!("{}.{}", T::ENTITY, self.kind)
    }

    /// Writes the event to the outbox through `conn`, which must be inside a transaction.
    /// Returns the new event's id.
    pub fn emit(self, conn: &mut PgConnection) -> Result<Uuid, EmitError> {
        let event = self.prepare()?;
        ensure_transaction(conn, &event.event)?;
        let insert = diesel::sql_query(match event.avro {
            Some(_) => INSERT_AVRO_EVENT,
            None => INSERT_EVENT,
        })
        .bind::<SqlUuid, _>(event.event_id)
        .bind::<Text, _>(&event.topic)
        .bind::<Text, _>(&event.key)
        .bind::<Text, _>(&event.event)
        .bind::<Text, _>(event.entity)
        .bind::<Text, _>(&event.payload)
        .bind::<Nullable<Text>, _>(event.traceparent.as_deref());
        let inserted = match &event.avro {
            Some(avro) => insert
                .bind::<Text, _>(&avro.fingerprint)
                .bind::<Text, _>(avro.schema)
                .bind::<Binary, _>(&avro.datum)
                .execute(conn),
            None => insert.execute(conn),
        };
        inserted.map_err(|source| classify(event.event.clone(), source))?;
        realtime::insert_all(conn, &event.realtime).map_err(|source| EmitError::Database {
            event: event.event,
            source,
        })?;
        Ok(event.event_id)
    }

    /// Serializes the event and its realtime notifications, ready to be written.
    pub(super) fn prepare(self) -> Result<Prepared, EmitError> {
        let event = self.name();
        let topic = self.subject.topic().into_owned();
        let key = self.subject.key();
        let event_id = Uuid::now_v7();
        let traceparent = crate::trace::current_traceparent();
        let head = EnvelopeHead {
            schema_version: SCHEMA_VERSION,
            event_id,
            event: &event,
            entity: T::ENTITY,
            kind: self.kind,
            key: &key,
            occurred_at: Utc::now(),
            metadata: &self.metadata,
            traceparent: traceparent.as_deref(),
        };
        let (before, after) = (self.before.map(Payload), self.after.map(Payload));
        let json = EnvelopeRef {
            head: &head,
            before: before.as_ref(),
            after: after.as_ref(),
        };
        let payload = serde_json::to_string(&json).map_err(|source| EmitError::Serialize {
            event: event.clone(),
            source,
        })?;
        let avro = match T::avro_model() {
            None => None,
            Some(model) => {
                let model = model.map_err(|source| EmitError::AvroSchema {
                    event: event.clone(),
                    source,
                })?;
                let datum = encode_envelope(model, &head, before, after).map_err(|source| {
                    EmitError::AvroEncode {
                        event: event.clone(),
                        source,
                    }
                })?;
                Some(AvroRow {
                    fingerprint: model.fingerprint.clone(),
                    schema: &model.text,
                    datum,
                })
            }
        };
        let change = Change::new(
            event_id,
            &event,
            self.kind,
            self.before,
            self.after,
            &self.metadata,
            self.subject,
        );
        let realtime: Vec<RealtimeRecord> = T::realtime(&change)
            .into_iter()
            .map(|m| RealtimeRecord::new(m, Some((event_id, &event)), traceparent.clone()))
            .collect();
        Ok(Prepared {
            event_id,
            topic,
            key,
            event,
            entity: T::ENTITY,
            payload,
            traceparent,
            realtime,
            avro,
        })
    }
}

/// An event serialized and ready to be inserted (one emit, or one entry of a batch).
pub(super) struct Prepared {
    pub(super) event_id: Uuid,
    pub(super) topic: String,
    pub(super) key: String,
    /// The event name.
    pub(super) event: String,
    pub(super) entity: &'static str,
    /// The envelope as JSON.
    pub(super) payload: String,
    pub(super) traceparent: Option<String>,
    pub(super) realtime: Vec<RealtimeRecord>,
    /// The Avro form, for a model published as Avro.
    pub(super) avro: Option<AvroRow>,
}

/// An event's Avro datum and the schema it is written in.
pub(super) struct AvroRow {
    /// The schema's fingerprint (`procon_schemas.fingerprint`).
    pub(super) fingerprint: String,
    /// The schema's text.
    pub(super) schema: &'static str,
    /// The envelope as an Avro datum, without the registry's framing.
    pub(super) datum: Vec<u8>,
}

/// Refuses to write outside a transaction (an autocommitted event could outlive a failed
/// change).
pub(super) fn ensure_transaction(conn: &mut PgConnection, event: &str) -> Result<(), EmitError> {
    match AnsiTransactionManager::transaction_manager_status_mut(conn).transaction_depth() {
        Ok(Some(_)) => Ok(()),
        Ok(None) => Err(EmitError::NotInTransaction {
            event: event.to_owned(),
        }),
        Err(source) => Err(EmitError::Database {
            event: event.to_owned(),
            source,
        }),
    }
}

pub(super) fn classify(event: String, source: diesel::result::Error) -> EmitError {
    let missing_table = matches!(
        &source,
        diesel::result::Error::DatabaseError(_, info)
            if info.message().contains("\"procon_outbox\" does not exist")
    );
    if missing_table {
        EmitError::OutboxMissing { event }
    } else {
        EmitError::Database { event, source }
    }
}

/// The JSON envelope as written: borrows the model instead of copying it into JSON values;
/// fields in the order docs/ENVELOPE.md documents.
struct EnvelopeRef<'a, T: Outbox> {
    head: &'a EnvelopeHead<'a>,
    before: Option<&'a Payload<'a, T>>,
    after: Option<&'a Payload<'a, T>>,
}

impl<T: Outbox> serde::Serialize for EnvelopeRef<'_, T> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        /// `occurred_at` with exactly six fractional digits.
        struct Micros<'a>(&'a chrono::DateTime<Utc>);
        impl serde::Serialize for Micros<'_> {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                crate::event::serialize_micros(self.0, serializer)
            }
        }
        let head = self.head;
        let traced = head.traceparent.is_some();
        let mut state = serializer.serialize_struct("Envelope", 10 + usize::from(traced))?;
        state.serialize_field("schema_version", &head.schema_version)?;
        state.serialize_field("event_id", &head.event_id)?;
        state.serialize_field("event", head.event)?;
        state.serialize_field("entity", head.entity)?;
        state.serialize_field("kind", &head.kind)?;
        state.serialize_field("key", head.key)?;
        state.serialize_field("occurred_at", &Micros(&head.occurred_at))?;
        state.serialize_field("before", &self.before)?;
        state.serialize_field("after", &self.after)?;
        state.serialize_field("metadata", head.metadata)?;
        if let Some(traceparent) = head.traceparent {
            state.serialize_field("traceparent", traceparent)?;
        }
        state.end()
    }
}

/// Shortcuts on every [`Outbox`] model: `account.emit_created(conn)?`.
pub trait OutboxExt: Outbox + Sized {
    /// Emits `<entity>.created` with this model as `after`. See [`OutboxEvent::emit`].
    fn emit_created(&self, conn: &mut PgConnection) -> Result<Uuid, EmitError> {
        OutboxEvent::created(self).emit(conn)
    }

    /// Emits `<entity>.updated` with `before` and this model as `after`.
    fn emit_updated(&self, before: &Self, conn: &mut PgConnection) -> Result<Uuid, EmitError> {
        OutboxEvent::updated(before, self).emit(conn)
    }

    /// Emits `<entity>.deleted` with this model as `before`.
    fn emit_deleted(&self, conn: &mut PgConnection) -> Result<Uuid, EmitError> {
        OutboxEvent::deleted(self).emit(conn)
    }
}

impl<T: Outbox> OutboxExt for T {}
