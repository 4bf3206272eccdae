//! What happens to a message whose attempts are exhausted: `dead letter` and `error event`
//! settle it in one transaction (write the outbox row, record the event id as consumed, check
//! the claim), so a crash either leaves everything as it was (the message is retried) or the
//! whole settlement done (the relay publishes the row at least once, with a stable event id).
//! `stop` only records the stopped lane or partition; see [`super::stopped`].
//!
//! A dead letter is a new event (its own event id; the original id travels in the
//! `procon-dlq-event-id` header), so a handler of the dead-letter topic in the same group does
//! not take it for the already-consumed original. Its key keeps the original bytes.

use std::collections::BTreeMap;

use chrono::Utc;
use diesel::pg::PgConnection;
use diesel::sql_types::{Binary, Nullable, Text, Uuid as SqlUuid};
use diesel::{Connection, RunQueryDsl};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::apply::{ApplyError, Incoming, UnitContext};
use super::stopped::{record_stop, StoppedPartition};
use super::store;
use crate::config::Exhausted;
use crate::event::{headers, EventKind, Metadata, SCHEMA_VERSION};
use crate::transport::Position;

/// The payload (`after`) of an `event.error.<event name>` event: what failed, where, and why.
/// Handlers of error events take `Event<FailedEvent>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FailedEvent {
    /// The consumer group that gave up.
    pub group: String,
    /// The last error.
    pub error: String,
    /// How many attempts failed.
    pub attempts: u32,
    /// The failed event's id, when it had one.
    pub event_id: Option<Uuid>,
    /// The failed event's name, when it could be read.
    pub event: Option<String>,
    /// Where the failed message was read.
    pub topic: String,
    /// Its partition.
    pub partition: i32,
    /// Its position (the Kafka offset), as decimal text.
    pub position: Position,
    /// Its payload: the JSON document, or the bytes as (lossy) text when not JSON.
    pub payload: serde_json::Value,
}

/// A message that failed every attempt, with what is known about it.
pub(crate) struct Failed<'a> {
    pub(crate) group: &'a str,
    pub(crate) message: &'a Incoming<'a>,
    pub(crate) key: Option<&'a [u8]>,
    /// Every header of the message, as text.
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) event: Option<String>,
    /// The id it was consumed under (its own, or derived from its coordinates).
    pub(crate) consumed_id: Uuid,
    /// Its own event id, when it carried one.
    pub(crate) event_id: Option<Uuid>,
    pub(crate) error: String,
    pub(crate) attempts: u32,
    /// The lane it stops when the policy is `stop`.
    pub(crate) lane: &'a str,
}

/// How a failed message was settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Settled {
    /// Its lane (or partition) is stopped (recorded); it holds until resumed.
    Stopped,
    /// Written for the dead-letter topic; the position moved past it.
    DeadLettered,
    /// An error event was written; the position moved past it.
    ErrorEmitted,
    /// Another member had applied it meanwhile: nothing was written.
    AlreadyApplied,
}

/// Settles `failed` according to `policy`, in one transaction.
pub(crate) fn settle(
    conn: &mut PgConnection,
    unit: &UnitContext<'_>,
    policy: &Exhausted,
    failed: &Failed<'_>,
) -> Result<Settled, ApplyError> {
    let at = &failed.message.coordinates;
    let database = |source| ApplyError::Database {
        coordinates: at.clone(),
        source,
    };
    conn.transaction(|conn| {
        // A member that lost the partition settles nothing (the new owner decides).
        if !store::check_epoch(conn, unit.group, unit.partition, unit.epoch).map_err(database)? {
            return Err(ApplyError::Fenced {
                partition: unit.partition.clone(),
                epoch: unit.epoch,
            });
        }
        let (settled, topic) = match policy {
            Exhausted::Stop => {
                record_stop(
                    conn,
                    &StoppedPartition {
                        group_id: failed.group.to_owned(),
                        topic: at.topic.clone(),
                        partition: at.partition,
                        position: at.position,
                        event_id: failed.event_id,
                        event: failed.event.clone(),
                        error: failed.error.clone(),
                        attempts: i32::try_from(failed.attempts).unwrap_or(i32::MAX),
                        stopped_at: Utc::now(),
                        lane: failed.lane.to_owned(),
                        reset_to: None,
                    },
                )
                .map_err(database)?;
                return Ok(Settled::Stopped);
            }
            Exhausted::DeadLetter { topic } => (
                Settled::DeadLettered,
                topic.clone().unwrap_or_else(|| format!("{}.dlq", at.topic)),
            ),
            Exhausted::ErrorEvent { topic } => (
                Settled::ErrorEmitted,
                topic
                    .clone()
                    .unwrap_or_else(|| format!("{}.errors", at.topic)),
            ),
        };
        let fresh =
            store::record_events(conn, failed.group, &[failed.consumed_id]).map_err(database)?;
        if fresh.is_empty() {
            return Ok(Settled::AlreadyApplied);
        }
        if settled == Settled::DeadLettered {
            write_dead_letter(conn, &topic, failed).map_err(database)?;
        } else {
            write_error_event(conn, &topic, failed).map_err(database)?;
        }
        if !store::check_epoch(conn, unit.group, unit.partition, unit.epoch).map_err(database)? {
            return Err(ApplyError::Fenced {
                partition: unit.partition.clone(),
                epoch: unit.epoch,
            });
        }
        store::clear_failures(conn, unit.group, unit.partition, &[at.position])
            .map_err(database)?;
        Ok(settled)
    })
}

/// Headers the relay sets itself from the row's columns: not copied from the original.
const RELAY_HEADERS: [&str; 4] = [
    headers::EVENT_ID,
    headers::EVENT_NAME,
    headers::ENTITY,
    headers::TRACEPARENT,
];

/// The original message, its headers, and `procon-dlq-*` headers saying what failed where.
fn write_dead_letter(
    conn: &mut PgConnection,
    topic: &str,
    failed: &Failed<'_>,
) -> diesel::QueryResult<()> {
    let at = &failed.message.coordinates;
    let mut extra: BTreeMap<String, String> = failed
        .headers
        .iter()
        .filter(|(name, _)| !RELAY_HEADERS.contains(&name.as_str()))
        .cloned()
        .collect();
    extra
        .entry(headers::CONTENT_TYPE.to_owned())
        .or_insert_with(|| "application/octet-stream".to_owned());
    if let Some(original) = failed.event_id {
        extra.insert("procon-dlq-event-id".to_owned(), original.to_string());
    }
    for (name, value) in [
        ("procon-dlq-error", failed.error.clone()),
        ("procon-dlq-attempts", failed.attempts.to_string()),
        ("procon-dlq-group", failed.group.to_owned()),
        ("procon-dlq-topic", at.topic.clone()),
        ("procon-dlq-partition", at.partition.to_string()),
        ("procon-dlq-offset", at.position.to_string()),
    ] {
        extra.insert(name.to_owned(), value);
    }
    let traceparent = failed
        .headers
        .iter()
        .find(|(name, _)| name == headers::TRACEPARENT)
        .map(|(_, value)| value.as_str());
    insert_row(
        conn,
        Row {
            event_id: Uuid::now_v7(),
            topic,
            key: &key_text(failed.key),
            raw_key: failed.key,
            event_name: failed.event.as_deref().unwrap_or("unidentified"),
            entity: "",
            payload: "null",
            raw_payload: Some(failed.message.payload),
            headers: Some(serde_json::to_string(&extra).unwrap_or_else(|_| "{}".into())),
            traceparent,
        },
    )
}

/// An `event.error.<event name>` envelope whose `after` is a [`FailedEvent`].
fn write_error_event(
    conn: &mut PgConnection,
    topic: &str,
    failed: &Failed<'_>,
) -> diesel::QueryResult<()> {
    let at = &failed.message.coordinates;
    let event = format!(
        "event.error.{}",
        failed.event.as_deref().unwrap_or("unidentified")
    );
    let key = key_text(failed.key);
    let event_id = Uuid::now_v7();
    let payload = serde_json::from_slice(failed.message.payload).unwrap_or_else(|_| {
        serde_json::Value::String(String::from_utf8_lossy(failed.message.payload).into_owned())
    });
    let envelope = crate::event::Envelope {
        schema_version: SCHEMA_VERSION,
        event_id,
        event: event.clone(),
        entity: crate::event::ERROR_ENTITY.to_owned(),
        kind: EventKind::Created,
        key: key.clone(),
        occurred_at: Utc::now(),
        before: None,
        after: Some(FailedEvent {
            group: failed.group.to_owned(),
            error: failed.error.clone(),
            attempts: failed.attempts,
            event_id: failed.event_id,
            event: failed.event.clone(),
            topic: at.topic.clone(),
            partition: at.partition,
            position: at.position,
            payload,
        }),
        metadata: Metadata::new(),
        traceparent: None,
    };
    let payload = serde_json::to_string(&envelope).unwrap_or_else(|_| "null".into());
    insert_row(
        conn,
        Row {
            event_id,
            topic,
            key: &key,
            raw_key: None,
            event_name: &event,
            entity: crate::event::ERROR_ENTITY,
            payload: &payload,
            raw_payload: None,
            headers: None,
            traceparent: None,
        },
    )
}

/// The key as text for the outbox's `message_key`: itself when it is text PostgreSQL can
/// store, else `0x<hex>` (the bytes themselves travel in `raw_key`).
pub(crate) fn key_text(key: Option<&[u8]>) -> String {
    match key.map(std::str::from_utf8) {
        None => String::new(),
        Some(Ok(text)) if !text.contains('\0') => text.to_owned(),
        Some(_) => {
            let bytes = key.unwrap_or_default();
            let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            format!("0x{hex}")
        }
    }
}

/// An outbox row written by the consumer (dead letters, error events, redrives).
pub(crate) struct Row<'a> {
    pub(crate) event_id: Uuid,
    pub(crate) topic: &'a str,
    pub(crate) key: &'a str,
    pub(crate) raw_key: Option<&'a [u8]>,
    pub(crate) event_name: &'a str,
    pub(crate) entity: &'a str,
    pub(crate) payload: &'a str,
    pub(crate) raw_payload: Option<&'a [u8]>,
    pub(crate) headers: Option<String>,
    pub(crate) traceparent: Option<&'a str>,
}

/// One outbox row (the relay publishes it like any event) and the relay's wake-up.
pub(crate) fn insert_row(conn: &mut PgConnection, row: Row<'_>) -> diesel::QueryResult<()> {
    diesel::sql_query(concat!(
        "INSERT INTO procon_outbox (event_id, topic, message_key, event_name, entity, payload, \
           raw_payload, headers, traceparent, raw_key) \
         SELECT $1, $2, $3, $4, $5, $6::json, $7, $8::jsonb, $9, $10 \
         FROM (SELECT ",
        crate::outbox::wake_relay_sql!(),
        ") AS wake"
    ))
    .bind::<SqlUuid, _>(row.event_id)
    .bind::<Text, _>(row.topic)
    .bind::<Text, _>(row.key)
    .bind::<Text, _>(row.event_name)
    .bind::<Text, _>(row.entity)
    .bind::<Text, _>(row.payload)
    .bind::<Nullable<Binary>, _>(row.raw_payload)
    .bind::<Nullable<Text>, _>(row.headers)
    .bind::<Nullable<Text>, _>(row.traceparent)
    .bind::<Nullable<Binary>, _>(row.raw_key)
    .execute(conn)?;
    Ok(())
}
