//! Stopped partitions: the record the `stop` failure policy leaves, and the operator's way out.
//!
//! A stopped partition stays paused in every member of its group, across restarts and
//! rebalances, for as long as its `procon_stopped_partitions` row exists. [`resume_partition`]
//! deletes the row (optionally marking the failed message as consumed, so it is skipped); the
//! consumer that owns the partition notices within a second and reads on from its stored
//! position.

use chrono::{DateTime, Utc};
use diesel::pg::PgConnection;
use diesel::sql_types::{BigInt, Integer, Nullable, Text, Timestamptz, Uuid as SqlUuid};
use diesel::{Connection, QueryableByName, RunQueryDsl};
use uuid::Uuid;

use super::store;

/// A partition stopped on a message that failed every attempt.
#[derive(Debug, Clone, PartialEq, Eq, QueryableByName)]
pub struct StoppedPartition {
    /// The consumer group (service name).
    #[diesel(sql_type = Text)]
    pub group_id: String,
    /// The topic, as consumed (physical name).
    #[diesel(sql_type = Text)]
    pub topic: String,
    /// The partition.
    #[diesel(sql_type = Integer)]
    pub partition: i32,
    /// The offset of the failed message.
    #[diesel(sql_type = BigInt)]
    pub offset: i64,
    /// Its event id, when it had one.
    #[diesel(sql_type = Nullable<SqlUuid>)]
    pub event_id: Option<Uuid>,
    /// Its event name, when it could be read.
    #[diesel(sql_type = Nullable<Text>)]
    pub event: Option<String>,
    /// The last error.
    #[diesel(sql_type = Text)]
    pub error: String,
    /// How many attempts failed.
    #[diesel(sql_type = Integer)]
    pub attempts: i32,
    /// When the partition stopped.
    #[diesel(sql_type = Timestamptz)]
    pub stopped_at: DateTime<Utc>,
}

const COLUMNS: &str =
    "group_id, topic, partition, \"offset\", event_id, event, error, attempts, stopped_at";

/// The stopped partitions of `group`, or of every group.
pub fn stopped_partitions(
    conn: &mut PgConnection,
    group: Option<&str>,
) -> diesel::QueryResult<Vec<StoppedPartition>> {
    diesel::sql_query(format!(
        "SELECT {COLUMNS} FROM procon_stopped_partitions \
         WHERE $1::text IS NULL OR group_id = $1 ORDER BY group_id, topic, partition"
    ))
    .bind::<Nullable<Text>, _>(group)
    .load(conn)
}

/// How a stopped partition resumes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resume {
    /// Retry the failed message (e.g. after deploying a fix).
    Retry,
    /// Record the failed message as consumed without applying it, and go on after it.
    Skip,
}

/// Resumes a stopped partition of `group`; returns the record it removed, or `None` if the
/// partition was not stopped. With [`Resume::Skip`], the position moves past the failed
/// message and its event id is recorded, in the same transaction as the removal.
pub fn resume_partition(
    conn: &mut PgConnection,
    group: &str,
    topic: &str,
    partition: i32,
    how: Resume,
) -> diesel::QueryResult<Option<StoppedPartition>> {
    conn.transaction(|conn| {
        let removed: Option<StoppedPartition> = diesel::sql_query(format!(
            "DELETE FROM procon_stopped_partitions \
             WHERE group_id = $1 AND topic = $2 AND partition = $3 RETURNING {COLUMNS}"
        ))
        .bind::<Text, _>(group)
        .bind::<Text, _>(topic)
        .bind::<Integer, _>(partition)
        .get_results(conn)?
        .into_iter()
        .next();
        if let (Some(stopped), Resume::Skip) = (&removed, how) {
            let next = store::lock_position(conn, group, topic, partition)?;
            if next <= stopped.offset {
                store::save_position(conn, group, topic, partition, stopped.offset + 1)?;
            }
            if let Some(id) = stopped.event_id {
                store::record_events(conn, group, &[id])?;
            }
        }
        Ok(removed)
    })
}

/// Records that `partition` stopped on a message (inside the caller's transaction).
pub(crate) fn record_stop(
    conn: &mut PgConnection,
    stopped: &StoppedPartition,
) -> diesel::QueryResult<()> {
    diesel::sql_query(
        "INSERT INTO procon_stopped_partitions \
           (group_id, topic, partition, \"offset\", event_id, event, error, attempts) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
         ON CONFLICT (group_id, topic, partition) DO UPDATE SET \"offset\" = EXCLUDED.\"offset\", \
           event_id = EXCLUDED.event_id, event = EXCLUDED.event, error = EXCLUDED.error, \
           attempts = EXCLUDED.attempts, stopped_at = now()",
    )
    .bind::<Text, _>(&stopped.group_id)
    .bind::<Text, _>(&stopped.topic)
    .bind::<Integer, _>(stopped.partition)
    .bind::<BigInt, _>(stopped.offset)
    .bind::<Nullable<SqlUuid>, _>(stopped.event_id)
    .bind::<Nullable<Text>, _>(stopped.event.as_deref())
    .bind::<Text, _>(&stopped.error)
    .bind::<Integer, _>(stopped.attempts)
    .execute(conn)?;
    Ok(())
}

/// The partitions of `topic` that `group` has stopped.
pub(crate) fn stopped_of_topic(
    conn: &mut PgConnection,
    group: &str,
    topic: &str,
) -> diesel::QueryResult<Vec<i32>> {
    Ok(stopped_partitions(conn, Some(group))?
        .into_iter()
        .filter(|s| s.topic == topic)
        .map(|s| s.partition)
        .collect())
}
