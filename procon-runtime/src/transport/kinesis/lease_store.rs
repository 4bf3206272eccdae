//! The SQL of the Kinesis shard leases (`procon_kinesis_leases`, `procon_kinesis_members`);
//! the decisions are in [`super::leases`]. Expiries are database time, so members' clocks do
//! not matter. Each function is one statement on the source's own connection.

use std::time::Duration;

use diesel::pg::PgConnection;
use diesel::sql_types::{Array, BigInt, Bool, Double, Integer, Nullable, Text};
use diesel::{QueryableByName, RunQueryDsl};

use super::leases::LeaseRow;
use crate::transport::Position;

fn seconds(ttl: Duration) -> f64 {
    ttl.as_secs_f64()
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    count: i64,
}

/// Marks `member` as seen and returns how many members of `group` were seen within `ttl`.
pub(crate) fn heartbeat(
    conn: &mut PgConnection,
    group: &str,
    member: &str,
    ttl: Duration,
) -> diesel::QueryResult<i64> {
    let row: Count = diesel::sql_query(
        "WITH seen AS (INSERT INTO procon_kinesis_members (group_id, member) VALUES ($1, $2) \
           ON CONFLICT (group_id, member) DO UPDATE SET seen_at = now() RETURNING member) \
         SELECT count(*) + 1 AS count FROM procon_kinesis_members m \
         WHERE m.group_id = $1 AND m.member <> $2 \
           AND m.seen_at > now() - make_interval(secs => $3)",
    )
    .bind::<Text, _>(group)
    .bind::<Text, _>(member)
    .bind::<Double, _>(seconds(ttl))
    .get_result(conn)?;
    Ok(row.count)
}

/// Makes sure every shard of `shard_ids` has a lease row.
pub(crate) fn ensure_rows(
    conn: &mut PgConnection,
    group: &str,
    stream: &str,
    shard_ids: &[String],
) -> diesel::QueryResult<()> {
    diesel::sql_query(
        "INSERT INTO procon_kinesis_leases (group_id, stream, shard_id) \
         SELECT $1, $2, unnest($3::text[]) ON CONFLICT DO NOTHING",
    )
    .bind::<Text, _>(group)
    .bind::<Text, _>(stream)
    .bind::<Array<Text>, _>(shard_ids)
    .execute(conn)?;
    Ok(())
}

#[derive(QueryableByName)]
struct Row {
    #[diesel(sql_type = Text)]
    shard_id: String,
    #[diesel(sql_type = Nullable<Text>)]
    live_owner: Option<String>,
    #[diesel(sql_type = Bool)]
    finished: bool,
}

/// The lease rows of `stream`, with the owner only where the lease is live.
pub(crate) fn rows(
    conn: &mut PgConnection,
    group: &str,
    stream: &str,
) -> diesel::QueryResult<Vec<LeaseRow>> {
    let rows: Vec<Row> = diesel::sql_query(
        "SELECT shard_id, CASE WHEN expires_at > now() THEN owner END AS live_owner, finished \
         FROM procon_kinesis_leases WHERE group_id = $1 AND stream = $2",
    )
    .bind::<Text, _>(group)
    .bind::<Text, _>(stream)
    .load(conn)?;
    Ok(rows
        .into_iter()
        .map(|r| LeaseRow {
            shard_id: r.shard_id,
            live_owner: r.live_owner,
            finished: r.finished,
        })
        .collect())
}

#[derive(QueryableByName)]
struct Leased {
    #[diesel(sql_type = Text)]
    stream: String,
    #[diesel(sql_type = Text)]
    shard_id: String,
}

/// Extends every live lease of `member` by `ttl`; returns the (stream, shard) it still holds.
pub(crate) fn renew(
    conn: &mut PgConnection,
    group: &str,
    member: &str,
    ttl: Duration,
) -> diesel::QueryResult<Vec<(String, String)>> {
    let rows: Vec<Leased> = diesel::sql_query(
        "UPDATE procon_kinesis_leases SET expires_at = now() + make_interval(secs => $3) \
         WHERE group_id = $1 AND owner = $2 AND expires_at > now() AND NOT finished \
         RETURNING stream, shard_id",
    )
    .bind::<Text, _>(group)
    .bind::<Text, _>(member)
    .bind::<Double, _>(seconds(ttl))
    .load(conn)?;
    Ok(rows.into_iter().map(|r| (r.stream, r.shard_id)).collect())
}

/// Takes the lease of a shard when it is free or expired and not finished; true when taken.
pub(crate) fn claim(
    conn: &mut PgConnection,
    group: &str,
    stream: &str,
    shard_id: &str,
    member: &str,
    ttl: Duration,
) -> diesel::QueryResult<bool> {
    let taken = diesel::sql_query(
        "UPDATE procon_kinesis_leases SET owner = $4, expires_at = now() + make_interval(secs => $5) \
         WHERE group_id = $1 AND stream = $2 AND shard_id = $3 AND NOT finished \
           AND (owner IS NULL OR owner = $4 OR expires_at <= now())",
    )
    .bind::<Text, _>(group)
    .bind::<Text, _>(stream)
    .bind::<Text, _>(shard_id)
    .bind::<Text, _>(member)
    .bind::<Double, _>(seconds(ttl))
    .execute(conn)?;
    Ok(taken == 1)
}

/// Gives a lease up (a finished shard stays finished for good).
pub(crate) fn release(
    conn: &mut PgConnection,
    group: &str,
    stream: &str,
    shard_id: &str,
    member: &str,
    finished: bool,
) -> diesel::QueryResult<()> {
    diesel::sql_query(
        "UPDATE procon_kinesis_leases \
         SET owner = NULL, expires_at = '-infinity', finished = finished OR $5 \
         WHERE group_id = $1 AND stream = $2 AND shard_id = $3 AND owner = $4",
    )
    .bind::<Text, _>(group)
    .bind::<Text, _>(stream)
    .bind::<Text, _>(shard_id)
    .bind::<Text, _>(member)
    .bind::<Bool, _>(finished)
    .execute(conn)?;
    Ok(())
}

/// Leaves the group: every lease of `member` is released and it is no longer counted.
pub(crate) fn leave(conn: &mut PgConnection, group: &str, member: &str) -> diesel::QueryResult<()> {
    diesel::sql_query(
        "WITH gone AS (DELETE FROM procon_kinesis_members WHERE group_id = $1 AND member = $2) \
         UPDATE procon_kinesis_leases SET owner = NULL, expires_at = '-infinity' \
         WHERE group_id = $1 AND owner = $2",
    )
    .bind::<Text, _>(group)
    .bind::<Text, _>(member)
    .execute(conn)?;
    Ok(())
}

#[derive(QueryableByName)]
struct Stored {
    #[diesel(sql_type = Text)]
    next_offset: String,
}

/// The watermark the pipeline stored for a shard (`None` when nothing was applied yet).
pub(crate) fn stored_position(
    conn: &mut PgConnection,
    group: &str,
    stream: &str,
    partition: i32,
) -> diesel::QueryResult<Option<Position>> {
    let rows: Vec<Stored> = diesel::sql_query(
        "SELECT next_offset::text AS next_offset FROM procon_consumer_offsets \
         WHERE group_id = $1 AND topic = $2 AND partition = $3 AND next_offset >= 0",
    )
    .bind::<Text, _>(group)
    .bind::<Text, _>(stream)
    .bind::<Integer, _>(partition)
    .load(conn)?;
    Ok(rows.first().and_then(|r| r.next_offset.parse().ok()))
}
