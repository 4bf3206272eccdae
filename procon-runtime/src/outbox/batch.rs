//! Writing many events to the outbox in one statement.
//!
//! Job: the bulk path of [`super::OutboxEvent::emit`], with the same guarantees: every event
//! is written in the caller's transaction or none is; per (topic, key), ids follow commit
//! order, because the statement takes every key's transaction lock (in one fixed order, so two
//! batches cannot deadlock on each other) before any id is drawn; within the batch, ids follow
//! the order events were added, so a key's events keep their order. One round trip for the
//! events and one for their realtime notifications, whatever their number.

use diesel::pg::PgConnection;
use diesel::sql_types::{Array, Binary, Nullable, Text, Uuid as SqlUuid};
use diesel::RunQueryDsl;
use uuid::Uuid;

use super::emit::{classify, ensure_transaction, Prepared};
use super::{EmitError, Outbox, OutboxEvent};
use crate::realtime;

/// The batch statement. The `locks` CTE takes every distinct key's lock, in hash order, and
/// is an aggregate, so it finishes before the `INSERT` receives its first row (and draws its
/// first id); `schemas` stores each Avro schema of the batch once; `ORDER BY n` draws ids in the order events were added.
const INSERT_EVENTS: &str = concat!(
    "WITH locks AS MATERIALIZED ( \
         SELECT count(pg_advisory_xact_lock(h)) AS taken FROM ( \
             SELECT DISTINCT hashtextextended(t || '\u{1f}' || k, 0) AS h \
             FROM unnest($2::text[], $3::text[]) AS keys(t, k) ORDER BY 1) AS ordered), \
     wake AS MATERIALIZED (SELECT ",
    super::wake_relay_sql!(),
    "), \
     schemas AS (INSERT INTO procon_schemas (fingerprint, schema) \
         SELECT * FROM unnest($10::text[], $11::text[]) ON CONFLICT DO NOTHING) \
     INSERT INTO procon_outbox (event_id, topic, message_key, event_name, entity, payload, traceparent, \
                                raw_payload, avro_schema) \
     SELECT e.event_id, e.topic, e.message_key, e.event_name, e.entity, e.payload::json, e.traceparent, \
            e.raw_payload, e.avro_schema \
     FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], \
                 $8::bytea[], $9::text[]) \
          WITH ORDINALITY AS e(event_id, topic, message_key, event_name, entity, payload, traceparent, \
                               raw_payload, avro_schema, n), \
          locks, wake \
     WHERE current_setting('procon.publish', true) IS DISTINCT FROM 'off' \
     ORDER BY e.n"
);

/// Many events, of any models, written to the outbox by one [`OutboxBatch::emit`].
///
/// ```no_run
/// # use procon_runtime::outbox::{Outbox, OutboxBatch, OutboxEvent};
/// # fn demo<T: Outbox>(conn: &mut diesel::pg::PgConnection, accounts: &[T]) -> Result<(), Box<dyn std::error::Error>> {
/// let mut batch = OutboxBatch::new();
/// for account in accounts {
///     batch.push(OutboxEvent::created(account))?;
/// }
/// let event_ids = batch.emit(conn)?;
/// # Ok(()) }
/// ```
#[derive(Default)]
#[must_use = "events are only written by `.emit(conn)`"]
pub struct OutboxBatch {
    events: Vec<Prepared>,
}

impl std::fmt::Debug for OutboxBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutboxBatch")
            .field("events", &self.events.len())
            .finish()
    }
}

impl OutboxBatch {
    /// An empty batch.
    pub fn new() -> Self {
        OutboxBatch::default()
    }

    /// Adds `event` (serialized now: a payload that cannot be serialized fails here, before
    /// anything is written).
    pub fn push<T: Outbox>(&mut self, event: OutboxEvent<'_, T>) -> Result<&mut Self, EmitError> {
        self.events.push(event.prepare()?);
        Ok(self)
    }

    /// Number of events added.
    pub fn len(&self) -> usize {
        self.events.len()
    }

    /// True when no event was added.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// Writes every event through `conn`, which must be inside a transaction; returns their
    /// ids in the order they were added.
    pub fn emit(self, conn: &mut PgConnection) -> Result<Vec<Uuid>, EmitError> {
        let Some(first) = self.events.first() else {
            return Ok(Vec::new());
        };
        let label = format!("{} (and {} more)", first.event, self.events.len() - 1);
        ensure_transaction(conn, &label)?;
        let events = &self.events;
        let ids: Vec<Uuid> = events.iter().map(|e| e.event_id).collect();
        // Each Avro schema of the batch once.
        let schemas: std::collections::BTreeMap<&str, &str> = events
            .iter()
            .filter_map(|e| e.avro.as_ref())
            .map(|a| (a.fingerprint.as_str(), a.schema))
            .collect();
        diesel::sql_query(INSERT_EVENTS)
            .bind::<Array<SqlUuid>, _>(&ids)
            .bind::<Array<Text>, _>(events.iter().map(|e| e.topic.as_str()).collect::<Vec<_>>())
            .bind::<Array<Text>, _>(events.iter().map(|e| e.key.as_str()).collect::<Vec<_>>())
            .bind::<Array<Text>, _>(events.iter().map(|e| e.event.as_str()).collect::<Vec<_>>())
            .bind::<Array<Text>, _>(events.iter().map(|e| e.entity).collect::<Vec<_>>())
            .bind::<Array<Text>, _>(
                events
                    .iter()
                    .map(|e| e.payload.as_str())
                    .collect::<Vec<_>>(),
            )
            .bind::<Array<Nullable<Text>>, _>(
                events
                    .iter()
                    .map(|e| e.traceparent.as_deref())
                    .collect::<Vec<_>>(),
            )
            .bind::<Array<Nullable<Binary>>, _>(
                events
                    .iter()
                    .map(|e| e.avro.as_ref().map(|a| a.datum.as_slice()))
                    .collect::<Vec<_>>(),
            )
            .bind::<Array<Nullable<Text>>, _>(
                events
                    .iter()
                    .map(|e| e.avro.as_ref().map(|a| a.fingerprint.as_str()))
                    .collect::<Vec<_>>(),
            )
            .bind::<Array<Text>, _>(schemas.keys().copied().collect::<Vec<_>>())
            .bind::<Array<Text>, _>(schemas.values().copied().collect::<Vec<_>>())
            .execute(conn)
            .map_err(|source| classify(label.clone(), source))?;
        let notifications: Vec<_> = self.events.into_iter().flat_map(|e| e.realtime).collect();
        realtime::insert_all(conn, &notifications).map_err(|source| EmitError::Database {
            event: label,
            source,
        })?;
        Ok(ids)
    }
}

/// Writes `events` (of one model) in one statement; see [`OutboxBatch`].
pub fn emit_all<'a, T: Outbox + 'a>(
    conn: &mut PgConnection,
    events: impl IntoIterator<Item = OutboxEvent<'a, T>>,
) -> Result<Vec<Uuid>, EmitError> {
    let mut batch = OutboxBatch::new();
    for event in events {
        batch.push(event)?;
    }
    batch.emit(conn)
}
