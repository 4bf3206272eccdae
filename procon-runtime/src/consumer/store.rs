//! The consumer's tables: positions (watermark + fencing epoch) per (group, topic, partition),
//! applied event ids, and counted failures. Every function runs on the caller's connection,
//! inside the caller's transaction when it has one.

use std::collections::HashSet;

use diesel::pg::PgConnection;
use diesel::sql_types::{Array, BigInt, Double, Integer, Text, Uuid as SqlUuid};
use diesel::{OptionalExtension, QueryableByName, RunQueryDsl};
use uuid::Uuid;

use crate::transport::{PartitionId, Position};

/// Positions are stored as `numeric` and read back as text (`numeric::text`).
impl diesel::deserialize::FromSql<Text, diesel::pg::Pg> for Position {
    fn from_sql(value: diesel::pg::PgValue<'_>) -> diesel::deserialize::Result<Self> {
        let text = <String as diesel::deserialize::FromSql<Text, diesel::pg::Pg>>::from_sql(value)?;
        Ok(text.parse()?)
    }
}

/// A stored position, read as `numeric::text`.
fn position(text: &str) -> diesel::QueryResult<Position> {
    text.parse()
        .map_err(|e| diesel::result::Error::DeserializationError(Box::new(e)))
}

/// A replay in progress on a partition (the `replay` module).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Replay {
    /// Messages below this position are replayed.
    pub(crate) until: Position,
    /// The replay's generation: its event-id records are the group's name + `/replay-<n>`.
    pub(crate) generation: i32,
    /// Whether handlers publish what they emit while replaying.
    pub(crate) publish: bool,
}

/// A partition claimed by this member: where it was left, and the epoch that fences the
/// previous owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Claim {
    /// The stored watermark; `None` when nothing of the partition was applied yet.
    pub(crate) next: Option<Position>,
    /// This member's epoch for the partition.
    pub(crate) epoch: i64,
    /// The replay in progress, if any.
    pub(crate) replay: Option<Replay>,
    /// The partition's replay generation at the claim: a replay recorded later raises it.
    pub(crate) generation: i32,
}

#[derive(QueryableByName)]
struct ClaimRow {
    /// The stored watermark as text; "-1" when nothing was applied yet.
    #[diesel(sql_type = Text)]
    next_offset: String,
    #[diesel(sql_type = BigInt)]
    epoch: i64,
    #[diesel(sql_type = diesel::sql_types::Nullable<Text>)]
    replay_until: Option<String>,
    #[diesel(sql_type = Integer)]
    replay_generation: i32,
    #[diesel(sql_type = diesel::sql_types::Bool)]
    replay_publish: bool,
}

/// Claims `partition` for this member: increments its epoch (waiting for the transactions of
/// a previous owner that are committing right now) and reads the stored watermark. From the
/// commit on, the previous owner's writes are refused by [`check_epoch`].
pub(crate) fn claim(
    conn: &mut PgConnection,
    group: &str,
    partition: &PartitionId,
) -> diesel::QueryResult<Claim> {
    let row: ClaimRow = diesel::sql_query(
        "INSERT INTO procon_consumer_offsets (group_id, topic, partition, next_offset, epoch) \
         VALUES ($1, $2, $3, -1, 1) \
         ON CONFLICT (group_id, topic, partition) DO UPDATE \
           SET epoch = procon_consumer_offsets.epoch + 1, updated_at = now() \
         RETURNING next_offset::text AS next_offset, epoch, replay_until::text AS replay_until, \
           replay_generation, replay_publish",
    )
    .bind::<Text, _>(group)
    .bind::<Text, _>(&partition.topic)
    .bind::<Integer, _>(partition.partition)
    .get_result(conn)?;
    let next = if row.next_offset.starts_with('-') {
        None
    } else {
        Some(position(&row.next_offset)?)
    };
    let replay = match row.replay_until {
        Some(until) => Some(Replay {
            until: position(&until)?,
            generation: row.replay_generation,
            publish: row.replay_publish,
        }),
        None => None,
    };
    Ok(Claim {
        next,
        epoch: row.epoch,
        replay,
        generation: row.replay_generation,
    })
}

#[derive(QueryableByName)]
struct Generation {
    #[diesel(sql_type = Text)]
    topic: String,
    #[diesel(sql_type = Integer)]
    partition: i32,
    #[diesel(sql_type = Integer)]
    replay_generation: i32,
}

/// The replay generation of every partition `group` has a stored position for, in one query
/// (the intake asks every second).
pub(crate) fn replay_generations(
    conn: &mut PgConnection,
    group: &str,
) -> diesel::QueryResult<Vec<(PartitionId, i32)>> {
    let rows: Vec<Generation> = diesel::sql_query(
        "SELECT topic, partition, replay_generation FROM procon_consumer_offsets \
         WHERE group_id = $1",
    )
    .bind::<Text, _>(group)
    .load(conn)?;
    Ok(rows
        .into_iter()
        .map(|row| {
            let partition = PartitionId {
                topic: row.topic,
                partition: row.partition,
            };
            (partition, row.replay_generation)
        })
        .collect())
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
    next: Position,
) -> diesel::QueryResult<bool> {
    let updated = diesel::sql_query(
        "UPDATE procon_consumer_offsets SET next_offset = $5::numeric, \
           replay_until = CASE WHEN replay_until <= $5::numeric THEN NULL ELSE replay_until END, \
           updated_at = now() \
         WHERE group_id = $1 AND topic = $2 AND partition = $3 AND epoch = $4",
    )
    .bind::<Text, _>(group)
    .bind::<Text, _>(&partition.topic)
    .bind::<Integer, _>(partition.partition)
    .bind::<BigInt, _>(epoch)
    .bind::<Text, _>(next.to_string())
    .execute(conn)?;
    Ok(updated == 1)
}

/// Sets the stored position of a partition, whoever owns it (operator actions).
pub(crate) fn set_position(
    conn: &mut PgConnection,
    group: &str,
    partition: &PartitionId,
    next: Position,
) -> diesel::QueryResult<()> {
    diesel::sql_query(
        "INSERT INTO procon_consumer_offsets (group_id, topic, partition, next_offset) \
         VALUES ($1, $2, $3, $4::numeric) ON CONFLICT (group_id, topic, partition) \
         DO UPDATE SET next_offset = EXCLUDED.next_offset, updated_at = now()",
    )
    .bind::<Text, _>(group)
    .bind::<Text, _>(&partition.topic)
    .bind::<Integer, _>(partition.partition)
    .bind::<Text, _>(next.to_string())
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
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Failures {
    /// Its position.
    pub(crate) position: Position,
    /// Counted failed attempts.
    pub(crate) attempts: i32,
}

#[derive(QueryableByName)]
struct FailuresRow {
    #[diesel(sql_type = Text)]
    position: String,
    #[diesel(sql_type = Integer)]
    attempts: i32,
}

/// Counts one more failure of the message at `at`; returns the count.
pub(crate) fn count_failure(
    conn: &mut PgConnection,
    group: &str,
    partition: &PartitionId,
    at: Position,
    error: &str,
) -> diesel::QueryResult<u32> {
    let row: FailuresRow = diesel::sql_query(
        "INSERT INTO procon_consumer_failures (group_id, topic, partition, \"offset\", attempts, error) \
         VALUES ($1, $2, $3, $4::numeric, 1, $5) ON CONFLICT (group_id, topic, partition, \"offset\") \
         DO UPDATE SET attempts = procon_consumer_failures.attempts + 1, error = EXCLUDED.error \
         RETURNING \"offset\"::text AS position, attempts",
    )
    .bind::<Text, _>(group)
    .bind::<Text, _>(&partition.topic)
    .bind::<Integer, _>(partition.partition)
    .bind::<Text, _>(at.to_string())
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
    let rows: Vec<FailuresRow> = diesel::sql_query(
        "SELECT \"offset\"::text AS position, attempts FROM procon_consumer_failures \
         WHERE group_id = $1 AND topic = $2 AND partition = $3",
    )
    .bind::<Text, _>(group)
    .bind::<Text, _>(&partition.topic)
    .bind::<Integer, _>(partition.partition)
    .load(conn)?;
    rows.into_iter()
        .map(|row| {
            Ok(Failures {
                position: position(&row.position)?,
                attempts: row.attempts,
            })
        })
        .collect()
}

/// Forgets the failures of messages that are now applied or settled.
pub(crate) fn clear_failures(
    conn: &mut PgConnection,
    group: &str,
    partition: &PartitionId,
    positions: &[Position],
) -> diesel::QueryResult<()> {
    if positions.is_empty() {
        return Ok(());
    }
    diesel::sql_query(
        "DELETE FROM procon_consumer_failures \
         WHERE group_id = $1 AND topic = $2 AND partition = $3 AND \"offset\" = ANY($4::numeric[])",
    )
    .bind::<Text, _>(group)
    .bind::<Text, _>(&partition.topic)
    .bind::<Integer, _>(partition.partition)
    .bind::<Array<Text>, _>(
        positions
            .iter()
            .map(Position::to_string)
            .collect::<Vec<_>>(),
    )
    .execute(conn)?;
    Ok(())
}
