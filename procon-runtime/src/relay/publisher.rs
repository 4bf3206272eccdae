//! Handing one batch of outbox rows to the producer and collecting every delivery report.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::source::OutboxRow;
use crate::event::{headers, JSON_CONTENT_TYPE};
use crate::transport::{Publisher, Record, SendError};

/// What happened to one row of a batch given to [`publish`].
#[derive(Debug)]
pub(crate) enum Outcome {
    /// The broker acknowledged it.
    Delivered,
    /// It was not handed to the producer (an earlier row of its key failed, or shutdown).
    NotSent,
    /// The producer or the broker refused it (logged where it happened).
    Failed,
}

/// How often a batch still waiting for delivery reports is logged.
const WAITING_LOG_PERIOD: Duration = Duration::from_secs(5);

/// Publishes `rows` in id order and waits for their delivery reports.
///
/// Rows are enqueued strictly in order: when the client's queue is full the same row is retried
/// until it fits, so a later row can never overtake it. When a row is refused, the later rows
/// of its key in this batch are not sent (see [`super::order`]). Once `shutdown` fires, the
/// rows not yet enqueued are left alone and the wait for in-flight ones is bounded by
/// `shutdown_timeout`: whatever has no report by then counts as not delivered.
pub(crate) async fn publish(
    producer: &dyn Publisher,
    topics: &crate::config::RelayConfig,
    rows: &[OutboxRow],
    shutdown: &mut watch::Receiver<bool>,
    shutdown_timeout: Duration,
) -> Vec<Outcome> {
    let mut outcomes: Vec<Outcome> = rows.iter().map(|_| Outcome::NotSent).collect();
    let mut pending = Vec::with_capacity(rows.len());
    let mut refused_keys: HashSet<(&str, &str)> = HashSet::new();
    for (index, row) in rows.iter().enumerate() {
        if *shutdown.borrow() {
            break;
        }
        let key = (row.topic.as_str(), row.key.as_str());
        if refused_keys.contains(&key) {
            continue;
        }
        let headers = event_headers(row);
        let record = Record {
            topic: topics.physical_topic(&row.topic),
            key: row.raw_key.as_deref().unwrap_or(row.key.as_bytes()),
            payload: &row.payload,
            headers: &headers,
        };
        loop {
            match producer.send(record) {
                Ok(delivery) => {
                    pending.push((index, delivery));
                    break;
                }
                Err(SendError::QueueFull) => {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                Err(SendError::Refused(error)) => {
                    tracing::error!(
                        %error, topic = row.topic, key = row.key, event_id = row.event_id,
                        "the producer refused an event; it and the later events of its key stay in the outbox"
                    );
                    outcomes[index] = Outcome::Failed;
                    refused_keys.insert(key);
                    break;
                }
            }
        }
    }

    let started = Instant::now();
    let mut deadline: Option<Instant> = None;
    let mut last_log = Instant::now();
    for (index, mut delivery) in pending {
        let report = loop {
            if deadline.is_none() && *shutdown.borrow() {
                deadline = Some(Instant::now() + shutdown_timeout);
            }
            let tick = match deadline {
                Some(at) => at
                    .saturating_duration_since(Instant::now())
                    .min(WAITING_LOG_PERIOD),
                None => WAITING_LOG_PERIOD,
            };
            tokio::select! {
                biased;
                report = &mut delivery => break Some(report),
                _ = tokio::time::sleep(tick) => {}
                _ = shutdown.changed(), if deadline.is_none() => {}
            }
            if deadline.is_some_and(|at| Instant::now() >= at) {
                break None;
            }
            if last_log.elapsed() >= WAITING_LOG_PERIOD {
                last_log = Instant::now();
                tracing::warn!(
                    waited_s = started.elapsed().as_secs(),
                    "still waiting for the broker to acknowledge events; is it reachable?"
                );
            }
        };
        outcomes[index] = match report {
            Some(Ok(())) => Outcome::Delivered,
            Some(Err(crate::transport::TransportError::Cancelled)) | None => Outcome::NotSent,
            Some(Err(error)) => {
                let row = &rows[index];
                tracing::error!(
                    %error, topic = row.topic, key = row.key, event_id = row.event_id,
                    "delivery failed; the event stays in the outbox"
                );
                Outcome::Failed
            }
        };
    }
    outcomes
}

/// Hands one row to the producer (the pipelined outbox rounds' way to send).
pub(crate) fn send_row(
    producer: &dyn Publisher,
    topics: &crate::config::RelayConfig,
    row: &OutboxRow,
) -> Result<crate::transport::Delivery, SendError> {
    let headers = event_headers(row);
    producer.send(Record {
        topic: topics.physical_topic(&row.topic),
        key: row.raw_key.as_deref().unwrap_or(row.key.as_bytes()),
        payload: &row.payload,
        headers: &headers,
    })
}

/// JSON, unless the row says otherwise (a dead letter keeps its original content type).
fn content_type(row: &OutboxRow) -> &str {
    row.headers
        .iter()
        .find(|(name, _)| name == headers::CONTENT_TYPE)
        .map_or(JSON_CONTENT_TYPE, |(_, value)| value.as_str())
}

fn event_headers(row: &OutboxRow) -> Vec<(&str, &[u8])> {
    let mut set: Vec<(&str, &[u8])> = Vec::with_capacity(5 + row.headers.len());
    set.push((headers::EVENT_ID, row.event_id.as_bytes()));
    set.push((headers::EVENT_NAME, row.event_name.as_bytes()));
    set.push((headers::CONTENT_TYPE, content_type(row).as_bytes()));
    // Extra headers (a dead letter's original headers and its `procon-dlq-*` ones).
    set.extend(
        row.headers
            .iter()
            .filter(|(name, _)| name != headers::CONTENT_TYPE)
            .map(|(name, value)| (name.as_str(), value.as_bytes())),
    );
    // Realtime notifications belong to no entity.
    if !row.entity.is_empty() {
        set.push((headers::ENTITY, row.entity.as_bytes()));
    }
    if let Some(traceparent) = &row.traceparent {
        set.push((headers::TRACEPARENT, traceparent.as_bytes()));
    }
    set
}
