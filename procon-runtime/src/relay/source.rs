//! The relay's side of PostgreSQL: one connection that holds the leader lock, listens for
//! commits, reads outbox rows in id order and deletes delivered ones.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::Notify;
use tokio_postgres::{AsyncMessage, Client};

use crate::outbox::NOTIFY_CHANNEL;

/// One outbox row, as the relay publishes it.
#[derive(Debug, Clone)]
pub(crate) struct OutboxRow {
    pub(crate) id: i64,
    pub(crate) event_id: String,
    pub(crate) topic: String,
    pub(crate) key: String,
    /// The key as bytes when it is not text (a dead letter's original key).
    pub(crate) raw_key: Option<Vec<u8>>,
    pub(crate) event_name: String,
    pub(crate) entity: String,
    /// The message value: the envelope, or a dead letter's original bytes.
    pub(crate) payload: Vec<u8>,
    pub(crate) traceparent: Option<String>,
    /// Extra headers (dead letters), name → value.
    pub(crate) headers: Vec<(String, String)>,
    /// The writing transaction's id (see `flight`).
    pub(crate) txid: i64,
    /// The row's shard (see `lease`).
    pub(crate) shard: i32,
    /// The fingerprint of the Avro schema `payload` is a datum of (`procon_schemas`), for an
    /// Avro event; the relay frames it with the registry's id.
    pub(crate) avro_schema: Option<String>,
}

/// The newest pending realtime notification of one channel.
#[derive(Debug, Clone)]
pub(crate) struct RealtimeRow {
    pub(crate) id: i64,
    pub(crate) message_id: String,
    pub(crate) channel: String,
    pub(crate) threshold_ms: Option<i32>,
    pub(crate) payload: String,
    pub(crate) traceparent: Option<String>,
    /// Ids of the channel's rows read with it (itself included): deleted once it is published.
    pub(crate) coalesced: Vec<i64>,
}

/// A database failure of the relay, with what it was doing.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SourceError {
    /// A statement or the connection failed.
    #[error("relay could not {action}: {source}")]
    Database {
        action: &'static str,
        #[source]
        source: tokio_postgres::Error,
    },
    /// `procon_outbox` is not there (migrations not applied, or the `search_path` names a
    /// schema that does not exist yet).
    #[error("table `procon_outbox` does not exist in the connection's search_path")]
    MissingTable,
    /// `relay.shards` differs from the number of shards the outbox is split into already.
    #[error(
        "relay.shards is {configured} but the outbox is split into {found} shards \
         (procon_relay_leases); give every relay the same count, or stop every relay and \
         empty procon_relay_leases to change it"
    )]
    ShardCount { configured: u32, found: i64 },
}

impl SourceError {
    /// True when the outbox tables do not exist yet (migrations not applied).
    pub(crate) fn is_missing_table(&self) -> bool {
        match self {
            SourceError::MissingTable => true,
            SourceError::ShardCount { .. } => false,
            SourceError::Database { source, .. } => source
                .as_db_error()
                .is_some_and(|e| e.code() == &tokio_postgres::error::SqlState::UNDEFINED_TABLE),
        }
    }
}

fn fail(action: &'static str) -> impl FnOnce(tokio_postgres::Error) -> SourceError {
    move |source| SourceError::Database { action, source }
}

/// Which commits wake a connection's task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wakes {
    /// Commits that wrote outbox rows.
    Outbox,
    /// Commits that wrote realtime notifications.
    Realtime,
    /// None (a connection that only deletes).
    Nothing,
}

/// Drives `connection`: wakes the relay on a notification for its own table (`table`, once
/// known) of the kind it `wakes_for`, and once more when the connection ends so the relay
/// notices.
fn listen<S, T>(
    mut connection: tokio_postgres::Connection<S, T>,
    table: Arc<std::sync::OnceLock<String>>,
    wake: Arc<Notify>,
    wakes_for: Wakes,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(message) = messages.next().await {
            match message {
                // An empty payload comes from an emitter of an older procon: wake anyway.
                Ok(AsyncMessage::Notification(note))
                    if note.payload().is_empty()
                        || table
                            .get()
                            .is_none_or(|oid| for_us(note.payload(), oid, wakes_for)) =>
                {
                    wake.notify_one()
                }
                Ok(_) => {}
                Err(error) => {
                    tracing::warn!(%error, "relay database connection closed");
                    break;
                }
            }
        }
        // The client's next call fails, which makes the relay reconnect.
        wake.notify_one();
    });
}

/// True when a notification `payload` is for table `oid` and of the kind `wakes_for`.
fn for_us(payload: &str, oid: &str, wakes_for: Wakes) -> bool {
    match payload.strip_prefix(oid) {
        Some("") => wakes_for == Wakes::Outbox,
        Some(":realtime") => wakes_for == Wakes::Realtime,
        _ => false,
    }
}

/// The relay's connection to the outbox.
pub(crate) struct OutboxSource {
    client: Client,
    /// Prepared once: every read and delete is one round trip.
    fetch: tokio_postgres::Statement,
    delete: tokio_postgres::Statement,
}

/// A row's shard: a hash of (topic, key) modulo the shard count (the same as the emit's key
/// lock hash, made non-negative). `{t}` is the table alias, `{n}` the parameter of the count.
macro_rules! shard_of {
    ($t:literal, $n:literal) => {
        concat!(
            "((hashtextextended(",
            $t,
            ".topic || '\u{1f}' || ",
            $t,
            ".message_key, 0) & 9223372036854775807) % ",
            $n,
            ")"
        )
    };
}

/// One read of the outbox; see [`OutboxSource::fetch`]. `$4` is the shard count, `$5` the
/// shards this relay holds. A read takes the next `$3` ids in order (the `span`: an index scan
/// that stops there, whatever the shards), then looks each one up once (`LATERAL … OFFSET 0`
/// keeps the planner from hash-joining the span with the whole table) and keeps those of its
/// shards whose key is not parked: so a read costs the span, not the backlog. The payload is
/// converted only for the rows kept. (Looking each row up twice, first for its shard and then
/// for its columns, cost a quarter more database time per read.) The count goes through the
/// `txid` index only (`b.id + 0` keeps the planner from also scanning the primary key below
/// the cursor, which holds every row ever deleted until a vacuum: 8.6 ms instead of 0.05 ms
/// per read was measured).
const FETCH_SQL: &str = concat!(
    "WITH below AS ( \
         SELECT count(*) AS n FROM procon_outbox b \
         WHERE b.txid >= $2::text::xid8 AND b.id + 0 <= $1 AND ",
    shard_of!("b", "$4"),
    " = ANY($5) \
           AND NOT EXISTS (SELECT 1 FROM procon_outbox_parked p \
               WHERE p.topic = b.topic AND p.message_key = b.message_key)), \
     span AS ( \
         SELECT id FROM procon_outbox WHERE id > $1 ORDER BY id LIMIT $3), \
     next AS ( \
         SELECT o.* FROM span, LATERAL ( \
             SELECT id, event_id, topic, message_key, event_name, entity, payload, \
                    raw_payload, traceparent, headers, raw_key, txid, avro_schema, ",
    shard_of!("o", "$4"),
    "::int AS shard \
             FROM procon_outbox o WHERE o.id = span.id OFFSET 0) AS o \
         WHERE o.shard = ANY($5) AND NOT EXISTS (SELECT 1 FROM procon_outbox_parked p \
             WHERE p.topic = o.topic AND p.message_key = o.message_key)) \
     SELECT below.n, pg_snapshot_xmin(pg_current_snapshot())::text::bigint, \
            (SELECT count(*) FROM span), (SELECT max(id) FROM span), \
            next.id, next.event_id::text, next.topic, next.message_key, next.event_name, \
            next.entity, COALESCE(next.raw_payload, convert_to(next.payload::text, 'UTF8')), \
            next.traceparent, next.headers::text, next.raw_key, next.txid::text::bigint, \
            next.shard, next.avro_schema \
     FROM below LEFT JOIN next ON true ORDER BY next.id"
);

/// Deleting acknowledged rows, only while this relay (`$2`) holds their shard (`$3` shards).
const DELETE_SQL: &str = concat!(
    "DELETE FROM procon_outbox o WHERE o.id = ANY($1) AND EXISTS ( \
         SELECT 1 FROM procon_relay_leases l \
         WHERE l.owner = $2 AND l.expires_at > now() AND l.shard = ",
    shard_of!("o", "$3"),
    ")"
);

/// Which shards a read covers: `owned` of `count`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Shards<'a> {
    pub(crate) count: u32,
    pub(crate) owned: &'a [i32],
}

fn leases(rows: &[tokio_postgres::Row]) -> Result<Vec<(i32, i64)>, tokio_postgres::Error> {
    rows.iter()
        .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
        .collect()
}

/// What one read of the outbox returned.
pub(crate) struct Fetched {
    /// The rows, in id order.
    pub(crate) rows: Vec<OutboxRow>,
    /// Rows at or below the read's cursor written by transactions at least as recent as the
    /// read's horizon.
    pub(crate) below: i64,
    /// This read's snapshot xmin: the horizon of the next read.
    pub(crate) horizon: i64,
    /// Ids the read looked at (its span), rows of other shards included.
    pub(crate) spanned: i64,
    /// The span's last id: once every row of the span was taken in, the cursor moves there.
    pub(crate) span_end: Option<i64>,
    /// False when the read stopped at the byte budget before the end of the span.
    pub(crate) complete: bool,
}

fn read_row(row: &tokio_postgres::Row) -> Result<OutboxRow, tokio_postgres::Error> {
    Ok(OutboxRow {
        id: row.try_get(4)?,
        event_id: row.try_get(5)?,
        topic: row.try_get(6)?,
        key: row.try_get(7)?,
        event_name: row.try_get(8)?,
        entity: row.try_get(9)?,
        payload: row.try_get(10)?,
        traceparent: row.try_get(11)?,
        headers: extra_headers(row.try_get(12)?),
        raw_key: row.try_get(13)?,
        txid: row.try_get(14)?,
        shard: row.try_get(15)?,
        avro_schema: row.try_get(16)?,
    })
}

impl OutboxSource {
    /// Connects, finds its outbox table and starts listening for its commits (each one wakes
    /// `wake`). Fails with [`SourceError::is_missing_table`] when the table (or the schema
    /// the connection's `search_path` names) does not exist yet.
    pub(crate) async fn connect(
        config: &tokio_postgres::Config,
        tls: &super::tls::Tls,
        wake: Arc<Notify>,
        wakes_for: Wakes,
    ) -> Result<Self, SourceError> {
        let table = Arc::new(std::sync::OnceLock::<String>::new());
        let client = match tls {
            super::tls::Tls::Disable => {
                let (client, connection) = config
                    .connect(tokio_postgres::NoTls)
                    .await
                    .map_err(fail("connect to PostgreSQL"))?;
                listen(connection, table.clone(), wake, wakes_for);
                client
            }
            super::tls::Tls::Native(connector) => {
                let (client, connection) = config
                    .connect(connector.clone())
                    .await
                    .map_err(fail("connect to PostgreSQL"))?;
                listen(connection, table.clone(), wake, wakes_for);
                client
            }
        };
        client
            .batch_execute(super::tls::SESSION_SQL)
            .await
            .map_err(fail("set up the session"))?;
        let row = client
            .query_one("SELECT to_regclass('procon_outbox')::oid::text", &[])
            .await
            .map_err(fail("find the outbox table"))?;
        let oid: Option<String> = row.try_get(0).map_err(fail("find the outbox table"))?;
        let Some(oid) = oid else {
            return Err(SourceError::MissingTable);
        };
        let _ = table.set(oid);
        client
            .batch_execute(&format!("LISTEN {NOTIFY_CHANNEL}"))
            .await
            .map_err(fail("listen for outbox commits"))?;
        let fetch = client
            .prepare(FETCH_SQL)
            .await
            .map_err(fail("prepare the outbox read"))?;
        let delete = client
            .prepare(DELETE_SQL)
            .await
            .map_err(fail("prepare the outbox delete"))?;
        Ok(OutboxSource {
            client,
            fetch,
            delete,
        })
    }

    /// Reads up to `limit` rows after id `after` (from the head when `None`) in id order,
    /// skipping keys that have a parked row. In the same snapshot it counts the rows at or
    /// below `after` written by transactions at least as recent as `horizon` (the previous
    /// read's snapshot xmin: a row committed late below the cursor is one of them, see
    /// `flight`), and returns this read's own snapshot xmin, the next horizon. Stops after
    /// the row that reaches `max_bytes`.
    pub(crate) async fn fetch(
        &self,
        after: Option<i64>,
        horizon: Option<i64>,
        limit: usize,
        max_bytes: usize,
        shards: Shards<'_>,
    ) -> Result<Fetched, SourceError> {
        let after = after.unwrap_or(0);
        let horizon = horizon.unwrap_or(i64::MAX).to_string();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let count = i64::from(shards.count);
        let owned: Vec<i64> = shards.owned.iter().map(|&s| i64::from(s)).collect();
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 5] =
            [&after, &horizon, &limit, &count, &owned];
        // Streamed, so a read stops at the byte budget instead of holding every row at once.
        let stream = self
            .client
            .query_raw(
                &self.fetch,
                params
                    .iter()
                    .map(|p| *p as &dyn tokio_postgres::types::ToSql),
            )
            .await
            .map_err(fail("read the outbox"))?;
        futures::pin_mut!(stream);
        let mut fetched = Fetched {
            rows: Vec::new(),
            below: 0,
            horizon: 0,
            spanned: 0,
            span_end: None,
            complete: true,
        };
        let mut first = true;
        let mut bytes = 0usize;
        while let Some(row) = stream.next().await {
            let row = row.map_err(fail("read the outbox"))?;
            if first {
                fetched.below = row.try_get(0).map_err(fail("read the outbox"))?;
                fetched.horizon = row.try_get(1).map_err(fail("read the outbox"))?;
                fetched.spanned = row.try_get(2).map_err(fail("read the outbox"))?;
                fetched.span_end = row.try_get(3).map_err(fail("read the outbox"))?;
                first = false;
            }
            let id: Option<i64> = row.try_get(4).map_err(fail("read the outbox"))?;
            if id.is_none() {
                continue; // the LEFT JOIN's row when nothing is there
            }
            let row = read_row(&row).map_err(fail("read the outbox"))?;
            bytes += super::flight::row_bytes(&row);
            fetched.rows.push(row);
            if bytes >= max_bytes {
                fetched.complete = false;
                break; // the rest is read next time (the cursor stays below it)
            }
        }
        if first {
            return Err(SourceError::MissingTable);
        }
        Ok(fetched)
    }

    /// Moves row `id` to the parked table with its error.
    pub(crate) async fn park(
        &self,
        id: i64,
        error: &str,
        attempts: u32,
    ) -> Result<(), SourceError> {
        let attempts = i32::try_from(attempts).unwrap_or(i32::MAX);
        self.client
            .execute(
                "WITH moved AS (DELETE FROM procon_outbox WHERE id = $1 \
                     RETURNING id, event_id, topic, message_key, event_name, entity, payload, \
                               created_at, traceparent, raw_payload, headers, raw_key, avro_schema) \
                 INSERT INTO procon_outbox_parked (id, event_id, topic, message_key, event_name, \
                     entity, payload, created_at, traceparent, raw_payload, headers, raw_key, \
                     avro_schema, error, attempts) \
                 SELECT moved.*, $2, $3 FROM moved",
                &[&id, &error, &attempts],
            )
            .await
            .map_err(fail("park an undeliverable outbox row"))?;
        Ok(())
    }

    /// Reads the newest pending notification of up to `limit` channels, oldest pending
    /// channel first (so no channel starves behind busy ones), leaving out the channels in
    /// `held` (inside their throttle window). Each comes with the ids of its channel's rows
    /// read now: only those are deleted once it is published, never a row that commits later.
    pub(crate) async fn fetch_realtime(
        &self,
        limit: usize,
        held: &[String],
    ) -> Result<Vec<RealtimeRow>, SourceError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = self
            .client
            .query(
                "SELECT r.id, r.message_id::text, r.channel, r.threshold_ms, r.payload::text, \
                        r.traceparent, c.ids \
                 FROM (SELECT channel, max(id) AS newest, min(id) AS oldest, array_agg(id) AS ids \
                       FROM procon_realtime WHERE channel <> ALL($2) \
                       GROUP BY channel ORDER BY min(id) LIMIT $1) AS c \
                 JOIN procon_realtime r ON r.id = c.newest \
                 ORDER BY c.oldest",
                &[&limit, &held],
            )
            .await
            .map_err(fail("read the realtime notifications"))?;
        rows.iter()
            .map(|row| {
                Ok(RealtimeRow {
                    id: row.try_get(0)?,
                    message_id: row.try_get(1)?,
                    channel: row.try_get(2)?,
                    threshold_ms: row.try_get(3)?,
                    payload: row.try_get(4)?,
                    traceparent: row.try_get(5)?,
                    coalesced: row.try_get(6)?,
                })
            })
            .collect::<Result<_, tokio_postgres::Error>>()
            .map_err(fail("read the realtime notifications"))
    }

    /// Deletes the realtime rows `ids` (a published notification and the older rows of its
    /// channel it was coalesced with).
    pub(crate) async fn delete_realtime(&self, ids: &[i64]) -> Result<(), SourceError> {
        if ids.is_empty() {
            return Ok(());
        }
        self.client
            .execute("DELETE FROM procon_realtime WHERE id = ANY($1)", &[&ids])
            .await
            .map_err(fail("delete published realtime notifications"))?;
        Ok(())
    }

    /// Deletes delivered rows, of the shards `member` still holds (a relay that lost a shard
    /// deletes nothing of it: its next owner publishes those rows again).
    pub(crate) async fn delete(
        &self,
        ids: &[i64],
        member: &str,
        shards: u32,
    ) -> Result<(), SourceError> {
        if ids.is_empty() {
            return Ok(());
        }
        self.client
            .execute(&self.delete, &[&ids, &member, &i64::from(shards)])
            .await
            .map_err(fail("delete delivered outbox rows"))?;
        Ok(())
    }

    /// Makes sure the lease table has one row per shard; refuses a shard count other than the
    /// one the outbox is split into already.
    pub(crate) async fn prepare_leases(&self, shards: u32) -> Result<(), SourceError> {
        let row = self
            .client
            .query_one(
                "SELECT count(*), COALESCE(max(shard) + 1, 0)::bigint FROM procon_relay_leases",
                &[],
            )
            .await
            .map_err(fail("read the relay leases"))?;
        let (rows, span): (i64, i64) = (
            row.try_get(0).map_err(fail("read the relay leases"))?,
            row.try_get(1).map_err(fail("read the relay leases"))?,
        );
        if rows == 0 {
            self.client
                .execute(
                    "INSERT INTO procon_relay_leases (shard) \
                     SELECT generate_series(0, $1::int - 1) ON CONFLICT DO NOTHING",
                    &[&i32::try_from(shards).unwrap_or(i32::MAX)],
                )
                .await
                .map_err(fail("create the relay leases"))?;
            return Ok(());
        }
        if rows != i64::from(shards) || span != i64::from(shards) {
            return Err(SourceError::ShardCount {
                configured: shards,
                found: rows,
            });
        }
        Ok(())
    }

    /// One heartbeat of `member`: records it as live, renews its leases (those not expired)
    /// for `ttl`, and counts the live members. Returns the renewed leases and the count.
    pub(crate) async fn heartbeat(
        &self,
        member: &str,
        ttl: Duration,
    ) -> Result<(Vec<(i32, i64)>, i64), SourceError> {
        let ttl = ttl.as_secs_f64();
        self.client
            .execute(
                "INSERT INTO procon_relay_members (member, seen_at) VALUES ($1, now()) \
                 ON CONFLICT (member) DO UPDATE SET seen_at = now()",
                &[&member],
            )
            .await
            .map_err(fail("record the relay as live"))?;
        let renewed = self
            .client
            .query(
                "UPDATE procon_relay_leases SET expires_at = now() + make_interval(secs => $2) \
                 WHERE owner = $1 AND expires_at > now() RETURNING shard, epoch",
                &[&member, &ttl],
            )
            .await
            .map_err(fail("renew the relay leases"))?;
        let members = self
            .client
            .query_one(
                "SELECT count(*) FROM procon_relay_members \
                 WHERE seen_at > now() - make_interval(secs => $1)",
                &[&ttl],
            )
            .await
            .map_err(fail("count the relays"))?;
        Ok((
            leases(&renewed).map_err(fail("renew the relay leases"))?,
            members.try_get(0).map_err(fail("count the relays"))?,
        ))
    }

    /// Claims up to `wanted` free or expired shards for `member`, for `ttl`.
    pub(crate) async fn claim(
        &self,
        member: &str,
        ttl: Duration,
        wanted: usize,
    ) -> Result<Vec<(i32, i64)>, SourceError> {
        let wanted = i64::try_from(wanted).unwrap_or(i64::MAX);
        let rows = self
            .client
            .query(
                "UPDATE procon_relay_leases SET owner = $1, epoch = epoch + 1, \
                     expires_at = now() + make_interval(secs => $2) \
                 WHERE shard IN (SELECT shard FROM procon_relay_leases \
                     WHERE owner IS NULL OR expires_at <= now() \
                     ORDER BY shard LIMIT $3 FOR UPDATE SKIP LOCKED) \
                 RETURNING shard, epoch",
                &[&member, &ttl.as_secs_f64(), &wanted],
            )
            .await
            .map_err(fail("claim relay leases"))?;
        leases(&rows).map_err(fail("claim relay leases"))
    }

    /// Gives `shards` up at once (another relay may claim them at its next heartbeat).
    pub(crate) async fn release(&self, member: &str, shards: &[i32]) -> Result<(), SourceError> {
        if shards.is_empty() {
            return Ok(());
        }
        self.client
            .execute(
                "UPDATE procon_relay_leases SET owner = NULL, expires_at = '-infinity' \
                 WHERE owner = $1 AND shard = ANY($2)",
                &[&member, &shards],
            )
            .await
            .map_err(fail("release relay leases"))?;
        Ok(())
    }

    /// `member` leaves: its leases are released and it no longer counts as live.
    pub(crate) async fn leave(&self, member: &str) -> Result<(), SourceError> {
        self.client
            .execute(
                "UPDATE procon_relay_leases SET owner = NULL, expires_at = '-infinity' \
                 WHERE owner = $1",
                &[&member],
            )
            .await
            .map_err(fail("release relay leases"))?;
        self.client
            .execute(
                "DELETE FROM procon_relay_members WHERE member = $1",
                &[&member],
            )
            .await
            .map_err(fail("leave the relays"))?;
        Ok(())
    }

    /// Rows waiting, the age of the oldest one, and rows parked (for logs and metrics).
    /// The text of the Avro schema stored under `fingerprint`, if any.
    pub(crate) async fn schema_text(
        &self,
        fingerprint: &str,
    ) -> Result<Option<String>, SourceError> {
        let row = self
            .client
            .query_opt(
                "SELECT schema FROM procon_schemas WHERE fingerprint = $1",
                &[&fingerprint],
            )
            .await
            .map_err(fail("read an Avro schema"))?;
        row.map(|r| r.try_get(0))
            .transpose()
            .map_err(fail("read an Avro schema"))
    }

    pub(crate) async fn backlog(&self) -> Result<(i64, Duration, i64), SourceError> {
        let row = self
            .client
            .query_one(
                "SELECT (SELECT count(*) FROM procon_outbox), \
                        COALESCE((SELECT EXTRACT(EPOCH FROM now() - created_at)::float8 \
                                  FROM procon_outbox ORDER BY id LIMIT 1), 0), \
                        (SELECT count(*) FROM procon_outbox_parked)",
                &[],
            )
            .await
            .map_err(fail("count the outbox"))?;
        let age: f64 = row.try_get(1).map_err(fail("count the outbox"))?;
        Ok((
            row.try_get(0).map_err(fail("count the outbox"))?,
            Duration::from_secs_f64(age.max(0.0)),
            row.try_get(2).map_err(fail("count the outbox"))?,
        ))
    }

    /// True once the connection is gone.
    pub(crate) fn is_closed(&self) -> bool {
        self.client.is_closed()
    }
}

/// The `headers` column: a JSON object of strings (anything else is ignored, with a log).
fn extra_headers(column: Option<String>) -> Vec<(String, String)> {
    let Some(text) = column else {
        return Vec::new();
    };
    match serde_json::from_str::<std::collections::BTreeMap<String, String>>(&text) {
        Ok(map) => map.into_iter().collect(),
        Err(error) => {
            tracing::warn!(%error, "ignoring malformed extra headers of an outbox row");
            Vec::new()
        }
    }
}
