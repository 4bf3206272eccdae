//! Handing one batch of outbox rows to the producer and collecting every delivery report.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::FutureRecord;
use tokio::sync::watch;

use super::order::Outcome;
use super::source::OutboxRow;
use crate::event::{headers, JSON_CONTENT_TYPE};
use crate::kafka::Producer;

/// How often a batch still waiting for delivery reports is logged.
const WAITING_LOG_PERIOD: Duration = Duration::from_secs(5);

/// Publishes `rows` in id order and waits for their delivery reports.
///
/// Rows are enqueued strictly in order: when librdkafka's queue is full the same row is retried
/// until it fits, so a later row can never overtake it. When a row is refused, the later rows
/// of its key in this batch are not sent (see [`super::order`]). Once `shutdown` fires, the
/// rows not yet enqueued are left alone and the wait for in-flight ones is bounded by
/// `shutdown_timeout`: whatever has no report by then counts as not delivered.
pub(crate) async fn publish(
    producer: &Producer,
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
        let mut record = FutureRecord::to(topics.physical_topic(&row.topic))
            .key(&row.key)
            .payload(&row.payload)
            .headers(event_headers(row));
        loop {
            match producer.send_result(record) {
                Ok(delivery) => {
                    pending.push((index, delivery));
                    break;
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned)) => {
                    record = returned;
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                Err((error, _)) => {
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
            Some(Ok(Ok(_))) => Outcome::Delivered,
            Some(Ok(Err((error, _)))) => {
                let row = &rows[index];
                tracing::error!(
                    %error, topic = row.topic, key = row.key, event_id = row.event_id,
                    "delivery failed; the event stays in the outbox"
                );
                Outcome::Failed
            }
            Some(Err(_canceled)) => Outcome::NotSent,
            None => Outcome::NotSent,
        };
    }
    outcomes
}

/// JSON, unless the row says otherwise (a dead letter keeps its original content type).
fn content_type(row: &OutboxRow) -> &str {
    row.headers
        .iter()
        .find(|(name, _)| name == headers::CONTENT_TYPE)
        .map_or(JSON_CONTENT_TYPE, |(_, value)| value.as_str())
}

fn event_headers(row: &OutboxRow) -> OwnedHeaders {
    let set = OwnedHeaders::new_with_capacity(5 + row.headers.len())
        .insert(Header {
            key: headers::EVENT_ID,
            value: Some(row.event_id.as_str()),
        })
        .insert(Header {
            key: headers::EVENT_NAME,
            value: Some(row.event_name.as_str()),
        })
        .insert(Header {
            key: headers::CONTENT_TYPE,
            value: Some(content_type(row)),
        });
    // Extra headers (a dead letter's original headers and its `procon-dlq-*` ones).
    let set = row
        .headers
        .iter()
        .filter(|(name, _)| name != headers::CONTENT_TYPE)
        .fold(set, |set, (name, value)| {
            set.insert(Header {
                key: name.as_str(),
                value: Some(value.as_str()),
            })
        });
    // Realtime notifications belong to no entity.
    let set = match row.entity.as_str() {
        "" => set,
        entity => set.insert(Header {
            key: headers::ENTITY,
            value: Some(entity),
        }),
    };
    match &row.traceparent {
        Some(traceparent) => set.insert(Header {
            key: headers::TRACEPARENT,
            value: Some(traceparent.as_str()),
        }),
        None => set,
    }
}
