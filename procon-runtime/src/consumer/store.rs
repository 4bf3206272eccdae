//! The consumer's tables: positions per (group, topic, partition) and applied event ids.
//! Every function here runs on the caller's connection, inside the caller's transaction.

use diesel::pg::PgConnection;
use std::collections::HashSet;

use diesel::sql_types::{Array, BigInt, Integer, Nullable, Text, Uuid as SqlUuid};
use diesel::{QueryableByName, RunQueryDsl};
use uuid::Uuid;

#[derive(QueryableByName)]
struct Position {
    #[diesel(sql_type = Text)]
    topic: String,
    #[diesel(sql_type = Integer)]
    partition: i32,
    #[diesel(sql_type = BigInt)]
    next_offset: i64,
}

#[derive(QueryableByName)]
struct Next {
    #[diesel(sql_type = BigInt)]
    next_offset: i64,
}

/// The stored next offsets of `group` for `topic` (partitions without a row are absent; a row
/// at -1 means "nothing applied yet").
pub(crate) fn positions(
    conn: &mut PgConnection,
    group: &str,
    topic: &str,
) -> diesel::QueryResult<Vec<(i32, i64)>> {
    let rows: Vec<Position> = diesel::sql_query(
        "SELECT topic, partition, next_offset FROM procon_consumer_offsets \
         WHERE group_id = $1 AND topic = $2",
    )
    .bind::<Text, _>(group)
    .bind::<Text, _>(topic)
    .load(conn)?;
    Ok(rows
        .into_iter()
        .filter(|r| r.topic == topic)
        .map(|r| (r.partition, r.next_offset))
        .collect())
}

/// Locks the partition's position row for this transaction (creating it at -1 if needed) and
/// returns the stored next offset. Two consumers that both believe they own the partition (a
/// zombie after a rebalance) serialize here, and the second sees the first one's progress.
pub(crate) fn lock_position(
    conn: &mut PgConnection,
    group: &str,
    topic: &str,
    partition: i32,
) -> diesel::QueryResult<i64> {
    let next: Next = diesel::sql_query(
        "INSERT INTO procon_consumer_offsets (group_id, topic, partition, next_offset) \
         VALUES ($1, $2, $3, -1) \
         ON CONFLICT (group_id, topic, partition) DO UPDATE SET updated_at = now() \
         RETURNING next_offset",
    )
    .bind::<Text, _>(group)
    .bind::<Text, _>(topic)
    .bind::<Integer, _>(partition)
    .get_result(conn)?;
    Ok(next.next_offset)
}

/// Stores the next offset to apply (the row is locked by [`lock_position`]).
pub(crate) fn save_position(
    conn: &mut PgConnection,
    group: &str,
    topic: &str,
    partition: i32,
    next_offset: i64,
) -> diesel::QueryResult<()> {
    diesel::sql_query(
        "UPDATE procon_consumer_offsets SET next_offset = $4, updated_at = now() \
         WHERE group_id = $1 AND topic = $2 AND partition = $3",
    )
    .bind::<Text, _>(group)
    .bind::<Text, _>(topic)
    .bind::<Integer, _>(partition)
    .bind::<BigInt, _>(next_offset)
    .execute(conn)?;
    Ok(())
}

#[derive(QueryableByName)]
struct Recorded {
    #[diesel(sql_type = SqlUuid)]
    event_id: Uuid,
}

/// Records that `group` applied `event_ids` (one statement for a whole batch) and returns the
/// ids that were new: an id missing from the result had been applied before (a duplicate).
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

/// Deletes event-id records older than `retention_s` seconds; returns how many.
pub(crate) fn forget_events_older_than(
    conn: &mut PgConnection,
    retention_s: i64,
) -> diesel::QueryResult<usize> {
    diesel::sql_query(
        "DELETE FROM procon_consumed_events WHERE consumed_at < now() - make_interval(secs => $1)",
    )
    .bind::<Nullable<diesel::sql_types::Double>, _>(Some(retention_s as f64))
    .execute(conn)
}
