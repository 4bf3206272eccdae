//! The relay's side of PostgreSQL: one connection that holds the leader lock, listens for
//! commits, reads outbox rows in id order and deletes delivered ones.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::Notify;
use tokio_postgres::{AsyncMessage, Client, NoTls};

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
}

/// A database failure of the relay, with what it was doing.
#[derive(Debug, thiserror::Error)]
#[error("relay could not {action}: {source}")]
pub(crate) struct SourceError {
    action: &'static str,
    #[source]
    source: tokio_postgres::Error,
}

impl SourceError {
    /// True when the outbox table does not exist yet (migrations not applied).
    pub(crate) fn is_missing_table(&self) -> bool {
        self.source
            .as_db_error()
            .is_some_and(|e| e.code() == &tokio_postgres::error::SqlState::UNDEFINED_TABLE)
    }
}

fn fail(action: &'static str) -> impl FnOnce(tokio_postgres::Error) -> SourceError {
    move |source| SourceError { action, source }
}

/// The relay's connection to the outbox.
pub(crate) struct OutboxSource {
    client: Client,
}

impl OutboxSource {
    /// Connects, starts listening for commits (each notification wakes `wake`).
    pub(crate) async fn connect(
        config: &tokio_postgres::Config,
        wake: Arc<Notify>,
    ) -> Result<Self, SourceError> {
        let (client, mut connection) = config
            .connect(NoTls)
            .await
            .map_err(fail("connect to PostgreSQL"))?;
        tokio::spawn(async move {
            let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
            while let Some(message) = messages.next().await {
                match message {
                    Ok(AsyncMessage::Notification(_)) => wake.notify_one(),
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
        client
            .batch_execute(&format!("LISTEN {NOTIFY_CHANNEL}"))
            .await
            .map_err(fail("listen for outbox commits"))?;
        Ok(OutboxSource { client })
    }

    /// Tries to become the one relay of this schema. Leadership is a session-level advisory lock:
    /// it ends with this connection, so a crashed relay's standby takes over.
    pub(crate) async fn try_lead(&self) -> Result<bool, SourceError> {
        let row = self
            .client
            .query_one(
                "SELECT pg_try_advisory_lock(hashtextextended('procon.relay.' || current_schema(), 0))",
                &[],
            )
            .await
            .map_err(fail("take the relay leader lock"))?;
        Ok(row.get(0))
    }

    /// Reads up to `limit` rows in id order. No watermark: every round reads the table afresh, so
    /// a row committed after rows with higher ids is picked up by the next round.
    pub(crate) async fn fetch(&self, limit: u32) -> Result<Vec<OutboxRow>, SourceError> {
        let rows = self
            .client
            .query(
                "SELECT id, event_id::text, topic, message_key, event_name, entity, \
                        COALESCE(raw_payload, convert_to(payload::text, 'UTF8')), \
                        traceparent, headers::text, raw_key \
                 FROM procon_outbox ORDER BY id LIMIT $1",
                &[&i64::from(limit)],
            )
            .await
            .map_err(fail("read the outbox"))?;
        Ok(rows
            .iter()
            .map(|row| OutboxRow {
                id: row.get(0),
                event_id: row.get(1),
                topic: row.get(2),
                key: row.get(3),
                event_name: row.get(4),
                entity: row.get(5),
                payload: row.get(6),
                traceparent: row.get(7),
                headers: extra_headers(row.get(8)),
                raw_key: row.get(9),
            })
            .collect())
    }

    /// Reads the newest pending notification of up to `limit` channels.
    pub(crate) async fn fetch_realtime(&self, limit: u32) -> Result<Vec<RealtimeRow>, SourceError> {
        let rows = self
            .client
            .query(
                "SELECT DISTINCT ON (channel) id, message_id::text, channel, threshold_ms, \
                        payload::text, traceparent \
                 FROM procon_realtime ORDER BY channel, id DESC LIMIT $1",
                &[&i64::from(limit)],
            )
            .await
            .map_err(fail("read the realtime notifications"))?;
        Ok(rows
            .iter()
            .map(|row| RealtimeRow {
                id: row.get(0),
                message_id: row.get(1),
                channel: row.get(2),
                threshold_ms: row.get(3),
                payload: row.get(4),
                traceparent: row.get(5),
            })
            .collect())
    }

    /// Deletes, per published notification, every row of its channel up to it (the older ones
    /// were coalesced into it).
    pub(crate) async fn delete_realtime(
        &self,
        published: &[(String, i64)],
    ) -> Result<(), SourceError> {
        if published.is_empty() {
            return Ok(());
        }
        let channels: Vec<&str> = published.iter().map(|(c, _)| c.as_str()).collect();
        let ids: Vec<i64> = published.iter().map(|(_, id)| *id).collect();
        self.client
            .execute(
                "DELETE FROM procon_realtime r USING unnest($1::text[], $2::bigint[]) AS p(channel, id) \
                 WHERE r.channel = p.channel AND r.id <= p.id",
                &[&channels, &ids],
            )
            .await
            .map_err(fail("delete published realtime notifications"))?;
        Ok(())
    }

    /// Deletes delivered rows.
    pub(crate) async fn delete(&self, ids: &[i64]) -> Result<(), SourceError> {
        if ids.is_empty() {
            return Ok(());
        }
        self.client
            .execute("DELETE FROM procon_outbox WHERE id = ANY($1)", &[&ids])
            .await
            .map_err(fail("delete delivered outbox rows"))?;
        Ok(())
    }

    /// Number of rows waiting, for logs.
    pub(crate) async fn backlog(&self) -> Result<i64, SourceError> {
        let row = self
            .client
            .query_one("SELECT count(*) FROM procon_outbox", &[])
            .await
            .map_err(fail("count the outbox"))?;
        Ok(row.get(0))
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

/// Parses the database URL and bounds how long a connection attempt may hang.
pub(crate) fn connection_config(
    url: &str,
) -> Result<tokio_postgres::Config, tokio_postgres::Error> {
    let mut config: tokio_postgres::Config = url.parse()?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(Duration::from_secs(5));
    }
    config.application_name("procon-relay");
    Ok(config)
}
