//! Stops: the record the `stop` failure policy leaves, and the operator's way out.
//!
//! A stop holds one lane of a partition (a key, with `partition_by = key`) or the whole
//! partition (lane `""`: with `partition_by = partition`, or a stored position outside the
//! log's range). It holds in every member of the group, across restarts and rebalances, for as
//! long as its `procon_stopped_partitions` row exists. [`resume_partition`] deletes the rows
//! (optionally recording the failed message as consumed, so it is skipped, or accepting a
//! position reset); the consumer that owns the partition notices within a second.

use chrono::{DateTime, Utc};
use diesel::pg::PgConnection;
use diesel::sql_types::{Integer, Nullable, Text, Timestamptz, Uuid as SqlUuid};
use diesel::{Connection, QueryableByName, RunQueryDsl};
use uuid::Uuid;

use super::apply::synthetic_event_id;
use super::store;
use crate::transport::{PartitionId, Position};

/// A partition, or one lane (key) of it, stopped on a message that failed every attempt, or
/// on a stored position outside the log's range.
#[derive(Debug, Clone, PartialEq, Eq, QueryableByName, serde::Serialize)]
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
    /// The position (Kafka offset) of the failed message, or the stored position that is
    /// outside the log's range.
    #[diesel(sql_type = Text)]
    pub position: Position,
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
    /// The stopped lane: `""` for the whole partition, `key:<key>` for one key, `fn:<label>`
    /// for a lane of a user `partition_by` function.
    #[diesel(sql_type = Text)]
    pub lane: String,
    /// When the stored position was outside the log's range: the position
    /// [`Resume::Reset`] moves it to.
    #[diesel(sql_type = Nullable<Text>)]
    pub reset_to: Option<Position>,
}

const COLUMNS: &str = "group_id, topic, partition, \"offset\"::text AS position, event_id, event, \
     error, attempts, stopped_at, lane, reset_to::text AS reset_to";

/// The stopped partitions of `group`, or of every group.
pub fn stopped_partitions(
    conn: &mut PgConnection,
    group: Option<&str>,
) -> diesel::QueryResult<Vec<StoppedPartition>> {
    diesel::sql_query(format!(
        "SELECT {COLUMNS} FROM procon_stopped_partitions \
         WHERE $1::text IS NULL OR group_id = $1 ORDER BY group_id, topic, partition, lane"
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
    /// Accept the position the stop proposes (`reset_to`: the log's start or end) for a
    /// partition whose stored position was outside the log's range. Events between the old
    /// and the new position are not applied.
    Reset,
}

/// Why a stop could not be resumed.
#[derive(Debug, thiserror::Error)]
pub enum ResumeError {
    /// The database failed.
    #[error("could not resume: {0}")]
    Database(#[from] diesel::result::Error),
    /// `Resume::Reset` on a stop that is not about an out-of-range position.
    #[error("partition {topic}[{partition}] is stopped on a failed event, not on an out-of-range position: resume it with retry or skip")]
    NothingToReset {
        /// The topic.
        topic: String,
        /// The partition.
        partition: i32,
    },
    /// `Resume::Skip` on a stop about an out-of-range position (there is no event to skip).
    #[error("partition {topic}[{partition}] is stopped because its stored position is outside the log, not on an event: accept the proposed position with reset (`--reset`)")]
    NothingToSkip {
        /// The topic.
        topic: String,
        /// The partition.
        partition: i32,
    },
}

/// Resumes every stop of `partition` of `topic` (the physical topic name, as in
/// [`StoppedPartition::topic`]) for `group`: the whole partition and each stopped key. Returns
/// the records it removed (empty if nothing was stopped). With [`Resume::Skip`] each failed
/// message's id is recorded as consumed in the same transaction; with [`Resume::Reset`] the
/// stored position moves to the proposed one.
pub fn resume_partition(
    conn: &mut PgConnection,
    group: &str,
    topic: &str,
    partition: i32,
    how: Resume,
) -> Result<Vec<StoppedPartition>, ResumeError> {
    resume(conn, group, topic, partition, None, how)
}

/// Resumes one stopped lane (`key:<key>` for a key, as in [`StoppedPartition::lane`]).
pub fn resume_lane(
    conn: &mut PgConnection,
    group: &str,
    topic: &str,
    partition: i32,
    lane: &str,
    how: Resume,
) -> Result<Vec<StoppedPartition>, ResumeError> {
    resume(conn, group, topic, partition, Some(lane), how)
}

fn resume(
    conn: &mut PgConnection,
    group: &str,
    topic: &str,
    partition: i32,
    lane: Option<&str>,
    how: Resume,
) -> Result<Vec<StoppedPartition>, ResumeError> {
    conn.transaction(|conn| {
        let removed: Vec<StoppedPartition> = diesel::sql_query(format!(
            "DELETE FROM procon_stopped_partitions \
             WHERE group_id = $1 AND topic = $2 AND partition = $3 \
               AND ($4::text IS NULL OR lane = $4) RETURNING {COLUMNS}"
        ))
        .bind::<Text, _>(group)
        .bind::<Text, _>(topic)
        .bind::<Integer, _>(partition)
        .bind::<Nullable<Text>, _>(lane)
        .get_results(conn)?;
        let at = PartitionId::new(topic, partition);
        for stopped in &removed {
            match (how, stopped.reset_to) {
                (Resume::Reset, Some(next)) => store::set_position(conn, group, &at, next)?,
                (Resume::Reset, None) => {
                    return Err(ResumeError::NothingToReset {
                        topic: topic.to_owned(),
                        partition,
                    })
                }
                (Resume::Skip, None) => {
                    let id = stopped
                        .event_id
                        .unwrap_or_else(|| synthetic_event_id(topic, partition, stopped.position));
                    store::record_events(conn, group, &[id])?;
                    store::clear_failures(conn, group, &at, &[stopped.position])?;
                }
                (Resume::Skip, Some(_)) => {
                    return Err(ResumeError::NothingToSkip {
                        topic: topic.to_owned(),
                        partition,
                    })
                }
                (Resume::Retry, _) => {
                    store::clear_failures(conn, group, &at, &[stopped.position])?;
                }
            }
        }
        Ok(removed)
    })
}

/// Records that a partition or lane stopped (inside the caller's transaction).
pub(crate) fn record_stop(
    conn: &mut PgConnection,
    stopped: &StoppedPartition,
) -> diesel::QueryResult<()> {
    diesel::sql_query(
        "INSERT INTO procon_stopped_partitions \
           (group_id, topic, partition, \"offset\", event_id, event, error, attempts, lane, reset_to) \
         VALUES ($1, $2, $3, $4::numeric, $5, $6, $7, $8, $9, $10::numeric) \
         ON CONFLICT (group_id, topic, partition, lane) DO UPDATE SET \"offset\" = EXCLUDED.\"offset\", \
           event_id = EXCLUDED.event_id, event = EXCLUDED.event, error = EXCLUDED.error, \
           attempts = EXCLUDED.attempts, reset_to = EXCLUDED.reset_to, stopped_at = now()",
    )
    .bind::<Text, _>(&stopped.group_id)
    .bind::<Text, _>(&stopped.topic)
    .bind::<Integer, _>(stopped.partition)
    .bind::<Text, _>(stopped.position.to_string())
    .bind::<Nullable<SqlUuid>, _>(stopped.event_id)
    .bind::<Nullable<Text>, _>(stopped.event.as_deref())
    .bind::<Text, _>(&stopped.error)
    .bind::<Integer, _>(stopped.attempts)
    .bind::<Text, _>(&stopped.lane)
    .bind::<Nullable<Text>, _>(stopped.reset_to.map(|p| p.to_string()))
    .execute(conn)?;
    Ok(())
}

/// The stops of one partition of `group`.
pub(crate) fn stops_of(
    conn: &mut PgConnection,
    group: &str,
    partition: &PartitionId,
) -> diesel::QueryResult<Vec<StoppedPartition>> {
    diesel::sql_query(format!(
        "SELECT {COLUMNS} FROM procon_stopped_partitions \
         WHERE group_id = $1 AND topic = $2 AND partition = $3"
    ))
    .bind::<Text, _>(group)
    .bind::<Text, _>(&partition.topic)
    .bind::<Integer, _>(partition.partition)
    .load(conn)
}
