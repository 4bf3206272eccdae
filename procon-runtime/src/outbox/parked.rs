//! Parked outbox rows: what the relay set aside, and the operator's retry and drop.
//!
//! Job: show and resolve rows the broker rejected on every attempt (see the relay's module
//! doc). Invariants: a parked row keeps its outbox id; while a key has a parked row, its later
//! rows stay in the outbox unpublished. Retrying puts the row back under its own id, so it is
//! published before the key's later rows; dropping deletes it for good and lets the key flow.
//! Both wake the relay.

use chrono::{DateTime, Utc};
use diesel::pg::PgConnection;
use diesel::sql_types::{BigInt, Int4, Text, Timestamptz, Uuid as SqlUuid};
use diesel::{Connection, OptionalExtension, QueryableByName, RunQueryDsl};

/// One parked outbox row, as `procon parked list` shows it.
#[derive(Debug, Clone, PartialEq, QueryableByName, serde::Serialize)]
pub struct ParkedRow {
    /// The row's outbox id (kept, so a retry puts it back in its place).
    #[diesel(sql_type = BigInt)]
    pub id: i64,
    /// The event id (`procon-event-id`).
    #[diesel(sql_type = SqlUuid)]
    pub event_id: uuid::Uuid,
    /// The topic, as the model names it.
    #[diesel(sql_type = Text)]
    pub topic: String,
    /// The message key; its later events wait behind this row.
    #[diesel(sql_type = Text, column_name = message_key)]
    pub key: String,
    /// The event name.
    #[diesel(sql_type = Text)]
    pub event_name: String,
    /// The last error the producer or the broker gave.
    #[diesel(sql_type = Text)]
    pub error: String,
    /// Attempts made before it was parked.
    #[diesel(sql_type = Int4)]
    pub attempts: i32,
    /// Events of the same key waiting behind it in the outbox.
    #[diesel(sql_type = BigInt)]
    pub waiting_behind: i64,
    /// When it was parked.
    #[diesel(sql_type = Timestamptz)]
    pub parked_at: DateTime<Utc>,
}

/// The outbox's backlog, as `procon status` shows it.
#[derive(Debug, Clone, PartialEq, QueryableByName, serde::Serialize)]
pub struct Backlog {
    /// Events waiting to be published.
    #[diesel(sql_type = BigInt)]
    pub waiting: i64,
    /// Age of the oldest waiting event in seconds; `None` when the outbox is empty.
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Double>)]
    pub oldest_age_seconds: Option<f64>,
    /// Events parked.
    #[diesel(sql_type = BigInt)]
    pub parked: i64,
}

/// The outbox's backlog: waiting events, the oldest one's age, parked events.
pub fn backlog(conn: &mut PgConnection) -> diesel::QueryResult<Backlog> {
    diesel::sql_query(
        "SELECT (SELECT count(*) FROM procon_outbox) AS waiting, \
                (SELECT extract(epoch FROM now() - created_at)::float8 \
                   FROM procon_outbox ORDER BY id LIMIT 1) AS oldest_age_seconds, \
                (SELECT count(*) FROM procon_outbox_parked) AS parked",
    )
    .get_result(conn)
}

/// Every parked row, oldest first, with the number of events of its key waiting behind it.
pub fn parked_rows(conn: &mut PgConnection) -> diesel::QueryResult<Vec<ParkedRow>> {
    diesel::sql_query(
        "SELECT p.id, p.event_id, p.topic, p.message_key, p.event_name, p.error, p.attempts, \
                (SELECT count(*) FROM procon_outbox o \
                 WHERE o.topic = p.topic AND o.message_key = p.message_key) AS waiting_behind, \
                p.parked_at \
         FROM procon_outbox_parked p ORDER BY p.id",
    )
    .load(conn)
}

/// Puts parked row `id` back into the outbox under its own id, so the relay publishes it
/// again before the later events of its key. Returns false when no such row is parked.
pub fn retry_parked(conn: &mut PgConnection, id: i64) -> diesel::QueryResult<bool> {
    conn.transaction(|conn| {
        let moved = diesel::sql_query(
            "WITH back AS (DELETE FROM procon_outbox_parked WHERE id = $1 \
                 RETURNING id, event_id, topic, message_key, event_name, entity, payload, \
                           created_at, traceparent, raw_payload, headers, raw_key, avro_schema) \
             INSERT INTO procon_outbox (id, event_id, topic, message_key, event_name, entity, \
                                        payload, created_at, traceparent, raw_payload, headers, raw_key, \
                                        avro_schema) \
             SELECT * FROM back",
        )
        .bind::<BigInt, _>(id)
        .execute(conn)?;
        wake_relay(conn)?;
        Ok(moved == 1)
    })
}

/// Deletes parked row `id` for good: its event is never published, and the later events of
/// its key flow again. Returns false when no such row is parked.
pub fn drop_parked(conn: &mut PgConnection, id: i64) -> diesel::QueryResult<bool> {
    #[derive(QueryableByName)]
    struct Dropped {
        #[diesel(sql_type = Text)]
        topic: String,
        #[diesel(sql_type = Text)]
        message_key: String,
    }
    conn.transaction(|conn| {
        let dropped: Option<Dropped> = diesel::sql_query(
            "DELETE FROM procon_outbox_parked WHERE id = $1 RETURNING topic, message_key",
        )
        .bind::<BigInt, _>(id)
        .get_result(conn)
        .optional()?;
        let Some(dropped) = dropped else {
            return Ok(false);
        };
        // The key's waiting rows count as written now, so a running relay whose read cursor
        // is past them notices them (see the relay's `flight`).
        diesel::sql_query(
            "UPDATE procon_outbox SET txid = pg_current_xact_id() \
             WHERE topic = $1 AND message_key = $2",
        )
        .bind::<Text, _>(&dropped.topic)
        .bind::<Text, _>(&dropped.message_key)
        .execute(conn)?;
        wake_relay(conn)?;
        Ok(true)
    })
}

fn wake_relay(conn: &mut PgConnection) -> diesel::QueryResult<()> {
    diesel::sql_query(super::emit::NOTIFY_OUTBOX).execute(conn)?;
    Ok(())
}
