//! The consumer loop: one thread that polls Kafka and applies messages one at a time, in offset
//! order per partition, pausing a partition while a failed message waits for its retry.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use diesel::pg::PgConnection;
use diesel::Connection;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::{Offset, TopicPartitionList};

use super::apply::{apply_batch, Applied, ApplyError, Incoming, Registry};
use super::exhausted::{settle, Failed, Settled};
use super::handler::Coordinates;
use super::positions::{Partition, PositionContext, Shared};
use super::stopped::stopped_of_topic;
use super::store;
use crate::backoff::Backoff;
use crate::config::{ConsumerConfig, Exhausted};
use crate::event::headers;

/// How long one `poll` waits; also the period of the loop's housekeeping.
const POLL: Duration = Duration::from_millis(100);

/// How often stopped partitions are checked for having been resumed by an operator.
const STOPPED_CHECK: Duration = Duration::from_secs(1);

/// A partition whose message at `offset` failed and waits to be retried.
struct Retry {
    offset: i64,
    attempt: u32,
    /// Failed attempts that count toward the policy's `max_attempts` (database outages don't).
    failures: u32,
    backoff: Backoff,
    resume_at: Instant,
    /// Seeked back to `offset` and resumed: the next message of the partition is the retry.
    resumed: bool,
}

/// Everything the loop owns.
pub(crate) struct Worker {
    pub(crate) consumer: BaseConsumer<PositionContext>,
    pub(crate) registry: Registry,
    pub(crate) group: String,
    pub(crate) database_url: String,
    pub(crate) config: ConsumerConfig,
    pub(crate) shared: Arc<Mutex<Shared>>,
    pub(crate) stalls: Stalls,
}

/// A partition held on a message that could not be applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stall {
    /// Where the failing message is.
    pub coordinates: Coordinates,
    /// Attempts so far.
    pub attempts: u32,
    /// The last error, naming the event.
    pub error: String,
    /// When the first attempt failed.
    pub since: std::time::SystemTime,
    /// The attempts are exhausted and the partition is stopped (policy `stop`) until resumed.
    pub stopped: bool,
}

/// The stalls of one consumer, readable from the runtime.
pub(crate) type Stalls = Arc<Mutex<HashMap<Partition, Stall>>>;

impl Worker {
    /// Runs until `stop` is set.
    pub(crate) fn run(self, stop: Arc<AtomicBool>) {
        let mut retries: HashMap<Partition, Retry> = HashMap::new();
        let mut position_backoff = Backoff::new(self.config.backoff);
        let mut next_position_try = Instant::now();
        let mut next_cleanup = Instant::now() + self.config.cleanup_interval;
        let mut next_stopped_check = Instant::now() + STOPPED_CHECK;
        tracing::info!(group = self.group, topics = ?self.registry.topics(), "consumer started");
        while !stop.load(Ordering::Relaxed) {
            let batch = self.poll_batch();
            self.forget_revoked(&mut retries);
            for (partition, messages) in group_by_partition(&batch) {
                let batchable = messages.len() > 1
                    && !retries.contains_key(&partition)
                    && !self.is_held(&partition);
                // (held covers stopped partitions too)
                if batchable && self.apply_run(&partition, &messages) {
                    continue;
                }
                // One at a time: a retrying partition, a lone message, or a batch that failed
                // (its transaction rolled back; applying one by one stops exactly at the culprit).
                for message in messages {
                    self.handle(message, &mut retries);
                }
            }
            self.resume_due(&mut retries);
            if Instant::now() >= next_position_try {
                if self.position_held_partitions() {
                    position_backoff.reset();
                    next_position_try = Instant::now() + POLL;
                } else {
                    next_position_try = Instant::now() + position_backoff.next_delay();
                }
            }
            if Instant::now() >= next_stopped_check {
                self.resume_released_partitions();
                next_stopped_check = Instant::now() + STOPPED_CHECK;
            }
            if Instant::now() >= next_cleanup {
                self.forget_old_events();
                next_cleanup = Instant::now() + self.config.cleanup_interval;
            }
        }
        tracing::info!(group = self.group, "consumer stopping");
    }

    /// Waits up to `POLL` for a message, then takes whatever else is already fetched, up to
    /// `batch_size` messages in all.
    fn poll_batch(&self) -> Vec<BorrowedMessage<'_>> {
        let mut batch = Vec::new();
        let mut timeout = POLL;
        while batch.len() < self.config.batch_size {
            match self.consumer.poll(timeout) {
                Some(Ok(message)) => batch.push(message),
                Some(Err(error)) => {
                    tracing::warn!(%error, "consumer error");
                    break;
                }
                None => break,
            }
            timeout = Duration::ZERO;
        }
        batch
    }

    fn is_held(&self, partition: &Partition) -> bool {
        let shared = self.shared();
        shared.unpositioned.contains(partition) || shared.stopped.contains(partition)
    }

    /// Applies consecutive messages of one partition in one transaction; false if it failed
    /// (nothing of it was applied).
    fn apply_run(&self, partition: &Partition, messages: &[&BorrowedMessage<'_>]) -> bool {
        let incoming: Vec<Incoming<'_>> = messages.iter().map(|m| incoming(m)).collect();
        let mut shared = self.shared();
        let Some(conn) = connection(&mut shared, &self.database_url) else {
            return false;
        };
        match apply_batch(
            conn,
            &self.group,
            &self.registry,
            self.config.unknown_events,
            &incoming,
        ) {
            Ok(outcomes) => {
                drop(shared);
                let last = incoming
                    .last()
                    .map(|m| m.coordinates.offset)
                    .unwrap_or_default();
                tracing::debug!(
                    topic = partition.0,
                    partition = partition.1,
                    last,
                    applied = outcomes.len(),
                    "batch applied"
                );
                if self.config.commit_hints {
                    let _ = self
                        .consumer
                        .store_offset(&partition.0, partition.1, last + 1);
                }
                true
            }
            Err(error) => {
                if let ApplyError::Database { .. } = error {
                    shared.conn = None;
                }
                tracing::debug!(%error, "batch not applied; applying its messages one at a time");
                false
            }
        }
    }

    fn shared(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Applies one message, unless its partition is held (unknown position, or waiting for the
    /// retry of an earlier message: messages fetched before the pause are dropped here and read
    /// again after the seek).
    fn handle(&self, message: &BorrowedMessage<'_>, retries: &mut HashMap<Partition, Retry>) {
        let partition = (message.topic().to_owned(), message.partition());
        if self.is_held(&partition) {
            return;
        }
        if let Some(retry) = retries.get_mut(&partition) {
            if !retry.resumed || message.offset() < retry.offset {
                return;
            }
            if message.offset() > retry.offset {
                // A message from before the seek: seek again rather than skip the failed one.
                tracing::debug!(
                    offset = message.offset(),
                    expected = retry.offset,
                    "stale message after seek"
                );
                retry.resumed = false;
                retry.resume_at = Instant::now();
                self.pause(&partition);
                return;
            }
        }
        let incoming = incoming(message);
        match self.apply(&incoming) {
            Ok(applied) => {
                if retries.remove(&partition).is_some() {
                    self.stalls
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .remove(&partition);
                    tracing::info!(at = %incoming.coordinates, "event applied after retries; partition flowing again");
                }
                match applied {
                    Applied::Handled => {
                        tracing::debug!(at = %incoming.coordinates, "event applied")
                    }
                    Applied::Duplicate => {
                        tracing::info!(at = %incoming.coordinates, "event already applied (redelivered): skipped")
                    }
                    Applied::PastPosition => {
                        tracing::debug!(at = %incoming.coordinates, "offset already applied")
                    }
                    Applied::NoHandler => {
                        tracing::debug!(at = %incoming.coordinates, "no handler for this event: recorded as consumed")
                    }
                }
                if self.config.commit_hints {
                    let _ =
                        self.consumer
                            .store_offset(&partition.0, partition.1, message.offset() + 1);
                }
            }
            Err(error) => {
                let counted = !matches!(error, ApplyError::Database { .. });
                let policy = self.registry.failure_policy(&self.config, &partition.0);
                let failures = self.schedule_retry(
                    partition.clone(),
                    message.offset(),
                    error.to_string(),
                    counted,
                    retries,
                );
                if counted && failures >= policy.max_attempts {
                    let exhausted = policy.exhausted.clone();
                    self.exhaust(message, &incoming, &error, failures, &exhausted, retries);
                }
            }
        }
    }

    /// Applies the policy's last resort to a message that failed every attempt.
    fn exhaust(
        &self,
        message: &BorrowedMessage<'_>,
        incoming: &Incoming<'_>,
        error: &ApplyError,
        failures: u32,
        policy: &Exhausted,
        retries: &mut HashMap<Partition, Retry>,
    ) {
        let partition = (message.topic().to_owned(), message.partition());
        let at = &incoming.coordinates;
        let identity = identity_of(incoming, error);
        let failed = Failed {
            group: &self.group,
            message: incoming,
            key: message.key(),
            headers: all_headers(message),
            event: identity.0,
            event_id: identity.1,
            error: error.to_string(),
            attempts: failures,
        };
        let mut shared = self.shared();
        let Some(conn) = connection(&mut shared, &self.database_url) else {
            return; // retried later like any database outage
        };
        match settle(conn, policy, &failed) {
            Ok(Settled::Stopped) => {
                shared.stopped.insert(partition.clone());
                drop(shared);
                retries.remove(&partition);
                if let Some(stall) = self
                    .stalls
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .get_mut(&partition)
                {
                    stall.stopped = true;
                }
                self.pause(&partition);
                tracing::error!(
                    %at, attempts = failures, error = %failed.error,
                    "event failed every attempt: partition STOPPED (recorded in procon_stopped_partitions); \
                     resume it with `procon resume` or `resume_partition`"
                );
            }
            Ok(settled) => {
                drop(shared);
                // Go on after the settled message: the next message of the partition is
                // expected at offset + 1 (see `handle`), reached by seeking there.
                retries.insert(
                    partition.clone(),
                    Retry {
                        offset: at.offset + 1,
                        attempt: 0,
                        failures: 0,
                        backoff: Backoff::new(self.config.backoff),
                        resume_at: Instant::now(),
                        resumed: false,
                    },
                );
                self.stalls
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&partition);
                match settled {
                    Settled::DeadLettered => tracing::error!(
                        %at, attempts = failures, error = %failed.error,
                        "event failed every attempt: sent to the dead-letter topic; partition goes on"
                    ),
                    Settled::ErrorEmitted => tracing::error!(
                        %at, attempts = failures, error = %failed.error,
                        "event failed every attempt: error event emitted; partition goes on"
                    ),
                    _ => tracing::info!(%at, "event was applied by another member meanwhile"),
                }
            }
            Err(db_error) => {
                shared.conn = None;
                tracing::error!(%at, error = %db_error, "could not settle the failed event; it will be retried");
            }
        }
    }

    /// Resumes stopped partitions whose record an operator removed.
    fn resume_released_partitions(&self) {
        let stopped: Vec<Partition> = self.shared().stopped.iter().cloned().collect();
        if stopped.is_empty() {
            return;
        }
        let mut topics: Vec<&String> = stopped.iter().map(|(t, _)| t).collect();
        topics.sort();
        topics.dedup();
        for topic in topics {
            let still = {
                let mut shared = self.shared();
                let Some(conn) = connection(&mut shared, &self.database_url) else {
                    return;
                };
                match stopped_of_topic(conn, &self.group, topic) {
                    Ok(still) => still,
                    Err(error) => {
                        shared.conn = None;
                        tracing::warn!(%error, "could not read stopped partitions");
                        return;
                    }
                }
            };
            for partition in stopped
                .iter()
                .filter(|(t, p)| t == topic && !still.contains(p))
            {
                // The operator resumed it: read on from the stored position (past the failed
                // message if it was skipped).
                self.shared().stopped.remove(partition);
                self.shared().unpositioned.insert(partition.clone());
                self.stalls
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(partition);
                tracing::info!(
                    topic = partition.0,
                    partition = partition.1,
                    "stopped partition resumed"
                );
            }
        }
        self.position_held_partitions();
    }

    fn apply(&self, incoming: &Incoming<'_>) -> Result<Applied, ApplyError> {
        let mut shared = self.shared();
        if shared.conn.is_none() {
            match PgConnection::establish(&self.database_url) {
                Ok(conn) => shared.conn = Some(conn),
                Err(error) => {
                    return Err(ApplyError::Database {
                        coordinates: incoming.coordinates.clone(),
                        source: diesel::result::Error::QueryBuilderError(Box::new(error)),
                    })
                }
            }
        }
        let Some(conn) = shared.conn.as_mut() else {
            return Err(ApplyError::Database {
                coordinates: incoming.coordinates.clone(),
                source: diesel::result::Error::BrokenTransactionManager,
            });
        };
        let result = apply_batch(
            conn,
            &self.group,
            &self.registry,
            self.config.unknown_events,
            std::slice::from_ref(incoming),
        )
        .map(|outcomes| outcomes.first().copied().unwrap_or(Applied::PastPosition));
        if let Err(ApplyError::Database { .. }) = result {
            // The connection may be broken; a new one is made for the retry.
            shared.conn = None;
        }
        result
    }

    /// Pauses the partition and schedules the failed message's retry; returns how many
    /// counted failures the message has had.
    fn schedule_retry(
        &self,
        partition: Partition,
        offset: i64,
        error: String,
        counted: bool,
        retries: &mut HashMap<Partition, Retry>,
    ) -> u32 {
        let policy = self.registry.failure_policy(&self.config, &partition.0);
        let backoff = if counted {
            policy.backoff
        } else {
            self.config.backoff
        };
        let retry = retries.entry(partition.clone()).or_insert_with(|| Retry {
            offset,
            attempt: 0,
            failures: 0,
            backoff: Backoff::new(backoff),
            resume_at: Instant::now(),
            resumed: false,
        });
        if retry.offset != offset {
            // A new message failed (the earlier one went through): count afresh.
            retry.failures = 0;
            retry.backoff = Backoff::new(backoff);
        }
        retry.offset = offset;
        retry.attempt += 1;
        if counted {
            retry.failures += 1;
        }
        let delay = retry.backoff.next_delay();
        retry.resume_at = Instant::now() + delay;
        retry.resumed = false;
        let mut stalls = self.stalls.lock().unwrap_or_else(|p| p.into_inner());
        let stall = stalls.entry(partition.clone()).or_insert_with(|| Stall {
            coordinates: Coordinates {
                topic: partition.0.clone(),
                partition: partition.1,
                offset,
            },
            attempts: 0,
            error: String::new(),
            since: std::time::SystemTime::now(),
            stopped: false,
        });
        stall.coordinates.offset = offset;
        stall.attempts = retry.attempt;
        stall.error = error.clone();
        drop(stalls);
        tracing::error!(
            error = %error, attempt = retry.attempt, failures = retry.failures,
            max_attempts = policy.max_attempts, retry_in_ms = delay.as_millis() as u64,
            "event not applied; its partition is paused and the event will be retried (nothing after it is applied first)"
        );
        self.pause(&partition);
        retry.failures
    }

    fn pause(&self, partition: &Partition) {
        let mut list = TopicPartitionList::new();
        list.add_partition(&partition.0, partition.1);
        if let Err(error) = self.consumer.pause(&list) {
            tracing::warn!(%error, topic = partition.0, partition = partition.1, "pause failed");
        }
    }

    /// Seeks back to the failed message and resumes its partition once the backoff elapsed.
    fn resume_due(&self, retries: &mut HashMap<Partition, Retry>) {
        let now = Instant::now();
        for (partition, retry) in retries.iter_mut() {
            if retry.resumed || now < retry.resume_at {
                continue;
            }
            match self.seek_and_resume(partition, Offset::Offset(retry.offset)) {
                Ok(()) => retry.resumed = true,
                Err(error) => {
                    tracing::debug!(%error, "seek not possible yet; trying again");
                    retry.resume_at = now + POLL;
                }
            }
        }
    }

    fn seek_and_resume(
        &self,
        partition: &Partition,
        offset: Offset,
    ) -> Result<(), rdkafka::error::KafkaError> {
        self.consumer
            .seek(&partition.0, partition.1, offset, Duration::from_secs(1))?;
        let mut list = TopicPartitionList::new();
        list.add_partition(&partition.0, partition.1);
        self.consumer.resume(&list)
    }

    /// Reads the positions of partitions assigned while the database was unreachable; returns
    /// true when none is left waiting.
    fn position_held_partitions(&self) -> bool {
        let held: Vec<Partition> = self.shared().unpositioned.iter().cloned().collect();
        if held.is_empty() {
            return true;
        }
        let context = self.consumer.context();
        for partition in held {
            let position = context.position(&mut self.shared(), &partition);
            if position.is_ok() && self.shared().stopped.contains(&partition) {
                self.shared().unpositioned.remove(&partition);
                continue; // known now, but stopped: it stays paused
            }
            match position {
                Ok(offset) => match self.seek_and_resume(&partition, offset) {
                    Ok(()) => {
                        tracing::info!(
                            topic = partition.0,
                            partition = partition.1,
                            ?offset,
                            "stored position read; partition resumed"
                        );
                        self.shared().unpositioned.remove(&partition);
                    }
                    Err(error) => tracing::debug!(%error, "seek not possible yet"),
                },
                Err(error) => {
                    tracing::error!(%error, topic = partition.0, partition = partition.1, "stored position still unreadable; partition stays paused");
                    return false;
                }
            }
        }
        self.shared().unpositioned.is_empty()
    }

    fn forget_revoked(&self, retries: &mut HashMap<Partition, Retry>) {
        let mut shared = self.shared();
        for partition in shared.revoked.drain(..) {
            retries.remove(&partition);
            self.stalls
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&partition);
        }
    }

    fn forget_old_events(&self) {
        let retention = self.config.dedup_retention.as_secs() as i64;
        let mut shared = self.shared();
        let Some(conn) = shared.conn.as_mut() else {
            return;
        };
        match store::forget_events_older_than(conn, retention) {
            Ok(n) => tracing::debug!(forgotten = n, "expired applied-event ids deleted"),
            Err(error) => tracing::warn!(%error, "could not delete expired applied-event ids"),
        }
    }
}

/// The worker's connection, (re)established when missing; `None` (logged) if that fails.
fn connection<'s>(shared: &'s mut Shared, url: &str) -> Option<&'s mut PgConnection> {
    if shared.conn.is_none() {
        match PgConnection::establish(url) {
            Ok(conn) => shared.conn = Some(conn),
            Err(error) => {
                tracing::error!(%error, "consumer database unavailable");
                return None;
            }
        }
    }
    shared.conn.as_mut()
}

/// A Kafka message as the apply step reads it.
fn incoming<'m>(message: &'m BorrowedMessage<'_>) -> Incoming<'m> {
    let header = |name: &str| {
        message.headers().and_then(|hs| {
            hs.iter()
                .find(|h| h.key == name)
                .and_then(|h| h.value)
                .and_then(|v| std::str::from_utf8(v).ok())
        })
    };
    Incoming {
        coordinates: Coordinates {
            topic: message.topic().to_owned(),
            partition: message.partition(),
            offset: message.offset(),
        },
        event_header: header(headers::EVENT_NAME),
        event_id_header: header(headers::EVENT_ID),
        traceparent_header: header(headers::TRACEPARENT),
        payload: message.payload().unwrap_or_default(),
    }
}

/// Splits a batch into runs per partition, each in offset order, partitions in first-seen order.
fn group_by_partition<'b, 'c>(
    batch: &'b [BorrowedMessage<'c>],
) -> Vec<(Partition, Vec<&'b BorrowedMessage<'c>>)> {
    let mut groups: Vec<(Partition, Vec<&BorrowedMessage<'c>>)> = Vec::new();
    for message in batch {
        let partition = (message.topic().to_owned(), message.partition());
        match groups.iter_mut().find(|(p, _)| *p == partition) {
            Some((_, messages)) => messages.push(message),
            None => groups.push((partition, vec![message])),
        }
    }
    groups
}

/// Every header of `message`, values as (lossy) text.
fn all_headers(message: &BorrowedMessage<'_>) -> Vec<(String, String)> {
    message
        .headers()
        .map(|hs| {
            hs.iter()
                .map(|h| {
                    let value = h.value.map(String::from_utf8_lossy).unwrap_or_default();
                    (h.key.to_owned(), value.into_owned())
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The failed message's event name and id, from the error, the headers or the payload.
fn identity_of(
    incoming: &Incoming<'_>,
    error: &ApplyError,
) -> (Option<String>, Option<uuid::Uuid>) {
    #[derive(serde::Deserialize)]
    struct Head {
        event: Option<String>,
        event_id: Option<uuid::Uuid>,
    }
    let head: Option<Head> = serde_json::from_slice(incoming.payload).ok();
    let event = error
        .event()
        .map(str::to_owned)
        .or_else(|| incoming.event_header.map(str::to_owned))
        .or_else(|| head.as_ref().and_then(|h| h.event.clone()));
    let event_id = incoming
        .event_id_header
        .and_then(|h| uuid::Uuid::parse_str(h).ok())
        .or_else(|| head.and_then(|h| h.event_id));
    (event, event_id)
}
