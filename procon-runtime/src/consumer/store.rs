//! The consumer's tables: positions (watermark + fencing epoch) per (group, topic, partition),
//! applied event ids, and counted failures. Every function runs on the caller's connection,
//! inside the caller's transaction when it has one.

use std::collections::HashSet;

use diesel::pg::PgConnection;
use diesel::sql_types::{Array, BigInt, Double, Integer, Text, Uuid as SqlUuid};
use diesel::{OptionalExtension, QueryableByName, RunQueryDsl};
use uuid::Uuid;

use crate::transport::PartitionId;

/// A partition claimed by this member: where it was left, and the epoch that fences the
/// previous owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq, QueryableByName)]
pub(crate) struct Claim {
    /// The stored watermark; -1 when nothing of the partition was applied yet.
    #[diesel(sql_type = BigInt)]
    pub(crate) next_offset: i64,
    /// This member's epoch for the partition.
    #[diesel(sql_type = BigInt)]
    pub(crate) epoch: i64,
}

/// Claims `partition` for this member: increments its epoch (waiting for the transactions of
/// a previous owner that are committing right now) and reads the stored watermark. From the
/// commit on, the previous owner's writes are refused by [`check_epoch`].
pub(crate) fn claim(
    conn: &mut PgConnection,
    group: &str,
    partition: &PartitionId,
) -> diesel::QueryResult<Claim> {
    diesel::sql_query(
        "INSERT INTO procon_consumer_offsets (group_id, topic, partition, next_offset, epoch) \
         VALUES ($1, $2, $3, -1, 1) \
         ON CONFLICT (group_id, topic, partition) DO UPDATE \
           SET epoch = procon_consumer_offsets.epoch + 1, updated_at = now() \
         RETURNING next_offset, epoch",
    )
    .bind::<Text, _>(group)
    .bind::<Text, _>(&partition.topic)
    .bind::<Integer, _>(partition.partition)
    .get_result(conn)
}

#[derive(QueryableByName)]
struct One {
    #[diesel(sql_type = Integer)]
    #[allow(dead_code)]
    one: i32,
}

/// Inside a consumption transaction: true while this member still owns `partition` at
/// `epoch`. The row is share-locked until the commit, so a new owner's [`claim`] waits for
/// this transaction and then sees its effects; once a claim committed, this returns false.
pub(crate) fn check_epoch(
    conn: &mut PgConnection,
    group: &str,
    partition: &PartitionId,
    epoch: i64,
) -> diesel::QueryResult<bool> {
    let row: Option<One> = diesel::sql_query(
        "SELECT 1 AS one FROM procon_consumer_offsets \
         WHERE group_id = $1 AND topic = $2 AND partition = $3 AND epoch = $4 FOR SHARE",
    )
    .bind::<Text, _>(group)
    .bind::<Text, _>(&partition.topic)
    .bind::<Integer, _>(partition.partition)
    .bind::<BigInt, _>(epoch)
    .get_result(conn)
    .optional()?;
    Ok(row.is_some())
}

/// Stores the watermark of `partition`; false when another member claimed it since (fenced).
pub(crate) fn store_watermark(
    conn: &mut PgConnection,
    group: &str,
    partition: &PartitionId,
    epoch: i64,
    next_offset: i64,
) -> diesel::QueryResult<bool> {
    let updated = diesel::sql_query(
        "UPDATE procon_consumer_offsets SET next_offset = $5, updated_at = now() \
         WHERE group_id = $1 AND topic = $2 AND partition = $3 AND epoch = $4",
    )
    .bind::<Text, _>(group)
    .bind::<Text, _>(&partition.topic)
    .bind::<Integer, _>(partition.partition)
    .bind::<BigInt, _>(epoch)
    .bind::<BigInt, _>(next_offset)
    .execute(conn)?;
    Ok(updated == 1)
}

/// Sets the stored position of a partition, whoever owns it (operator actions).
pub(crate) fn set_position(
    conn: &mut PgConnection,
    group: &str,
    partition: &PartitionId,
    next_offset: i64,
) -> diesel::QueryResult<()> {
    diesel::sql_query(
        "INSERT INTO procon_consumer_offsets (group_id, topic, partition, next_offset) \
         VALUES ($1, $2, $3, $4) ON CONFLICT (group_id, topic, partition) \
         DO UPDATE SET next_offset = EXCLUDED.next_offset, updated_at = now()",
    )
    .bind::<Text, _>(group)
    .bind::<Text, _>(&partition.topic)
    .bind::<Integer, _>(partition.partition)
    .bind::<BigInt, _>(next_offset)
    .execute(conn)?;
    Ok(())
}

#[derive(QueryableByName)]
struct Recorded {
    #[diesel(sql_type = SqlUuid)]
    event_id: Uuid,
}

/// Records that `group` applied `event_ids` (one statement for a whole unit) and returns the
/// ids that were new: an id missing from the result had been applied before (a duplicate). A
/// concurrent transaction recording the same id makes this one wait for its outcome.
pub(crate) fn record_events(
    conn: &mut PgConnection,
    group: &str,
    event_ids: &[Uuid],
) -> diesel::QueryResult<HashSet<Uuid>> {
    if event_ids.is_empty() {
        return Ok(HashSet::new());
    }
    let recorded: Vec<Recorded> = diesel::sql_query(
        "INSERT INTO procon_consumed_events (group_id, event_id) SELECT $1, unnest($2) \
         ON CONFLICT (group_id, event_id) DO NOTHING RETURNING event_id",
    )
    .bind::<Text, _>(group)
    .bind::<Array<SqlUuid>, _>(event_ids)
    .load(conn)?;
    Ok(recorded.into_iter().map(|r| r.event_id).collect())
}

/// Deletes at most `limit` of `group`'s event-id records older than `retention_s` seconds;
/// returns how many. Other groups' records are theirs to expire.
pub(crate) fn forget_events_older_than(
    conn: &mut PgConnection,
    group: &str,
    retention_s: f64,
    limit: i64,
) -> diesel::QueryResult<usize> {
    diesel::sql_query(
        "DELETE FROM procon_consumed_events WHERE group_id = $1 AND event_id IN ( \
           SELECT event_id FROM procon_consumed_events \
           WHERE group_id = $1 AND consumed_at < now() - make_interval(secs => $2) LIMIT $3)",
    )
    .bind::<Text, _>(group)
    .bind::<Double, _>(retention_s)
    .bind::<BigInt, _>(limit)
    .execute(conn)
}

/// A message's counted failures so far.
#[derive(Debug, Clone, PartialEq, Eq, QueryableByName)]
pub(crate) struct Failures {
    /// Its offset.
    #[diesel(sql_type = BigInt)]
    pub(crate) offset: i64,
    /// Counted failed attempts.
    #[diesel(sql_type = Integer)]
    pub(crate) attempts: i32,
    /// The last error.
    #[diesel(sql_type = Text)]
    pub(crate) error: String,
}

/// Counts one more failure of the message at `offset`; returns the count.
pub(crate) fn count_failure(
    conn: &mut PgConnection,
    group: &str,
    partition: &PartitionId,
    offset: i64,
    error: &str,
) -> diesel::QueryResult<u32> {
    let row: Failures = diesel::sql_query(
        "INSERT INTO procon_consumer_failures (group_id, topic, partition, \"offset\", attempts, error) \
         VALUES ($1, $2, $3, $4, 1, $5) ON CONFLICT (group_id, topic, partition, \"offset\") \
         DO UPDATE SET attempts = procon_consumer_failures.attempts + 1, error = EXCLUDED.error \
         RETURNING \"offset\", attempts, error",
    )
    .bind::<Text, _>(group)
    .bind::<Text, _>(&partition.topic)
    .bind::<Integer, _>(partition.partition)
    .bind::<BigInt, _>(offset)
    .bind::<Text, _>(error)
    .get_result(conn)?;
    Ok(u32::try_from(row.attempts).unwrap_or(0))
}

/// The counted failures of `partition`'s messages, as left by earlier owners.
pub(crate) fn failures(
    conn: &mut PgConnection,
    group: &str,
    partition: &PartitionId,
) -> diesel::QueryResult<Vec<Failures>> {
    diesel::sql_query(
        "SELECT \"offset\", attempts, error FROM procon_consumer_failures \
         WHERE group_id = $1 AND topic = $2 AND partition = $3",
    )
    .bind::<Text, _>(group)
    .bind::<Text, _>(&partition.topic)
    .bind::<Integer, _>(partition.partition)
    .load(conn)
}

/// Forgets the failures of messages that are now applied or settled.
pub(crate) fn clear_failures(
    conn: &mut PgConnection,
    group: &str,
    partition: &PartitionId,
    offsets: &[i64],
) -> diesel::QueryResult<()> {
    if offsets.is_empty() {
        return Ok(());
    }
    diesel::sql_query(
        "DELETE FROM procon_consumer_failures \
         WHERE group_id = $1 AND topic = $2 AND partition = $3 AND \"offset\" = ANY($4)",
    )
    .bind::<Text, _>(group)
    .bind::<Text, _>(&partition.topic)
    .bind::<Integer, _>(partition.partition)
    .bind::<Array<BigInt>, _>(offsets)
    .execute(conn)?;
    Ok(())
}
