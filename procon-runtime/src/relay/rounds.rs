//! The pipelined outbox loop of a leading relay: reading, publishing and deleting overlap.
//!
//! Each turn: take in the broker's answers, hand back keys whose backoff is over, delete what
//! was acknowledged (in batches), read what fits the budgets and hand it to the producer, then
//! wait for the next answer, a commit notification, a poll tick or a backoff's end. A key's
//! next row goes out as soon as its window has room. All decisions are in [`super::flight`];
//! this loop performs them.
//!
//! Answers are taken in per-key order: the futures of a key's deliveries can become ready in
//! any order (a future pushed after an earlier one was woken is polled first), so an answer
//! for a row behind an unanswered earlier row of its key waits for that one.
//!
//! What a crash can do: rows are deleted only after their acknowledgement, so a relay killed
//! at any point publishes some rows again (same event ids), in order per key; it never loses
//! one. A row is parked in one statement (moved, with its error), so it is either in the
//! outbox or parked, never lost.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

use futures::stream::FuturesUnordered;
use futures::StreamExt;
use tokio::sync::{watch, Notify};

use super::avro::AvroFraming;
use super::flight::{AfterFailure, FastMap, Flight, KeyId, Limits};
use super::lease::Leases;
use super::publisher::send_row;
use super::source::{OutboxRow, OutboxSource, Shards, SourceError};
use super::topics::{TopicCheck, Verdict};
use crate::config::RelayConfig;
use crate::transport::{Publisher, SendError, TransportError};

/// One answered delivery: the row's id and key, the attempt it answers, and the broker's
/// answer.
type Answer = (i64, KeyId, u64, Result<(), TransportError>);
type Pending = Pin<Box<dyn Future<Output = Answer> + Send>>;

/// Acknowledged rows are deleted at least this many at a time while deliveries go on...
const DELETE_BATCH: usize = 1000;
/// ...or at least this often.
const DELETE_EVERY: Duration = Duration::from_millis(20);

/// How the loop ended.
pub(crate) enum End {
    /// Shutdown: in-flight deliveries were awaited (bounded) and the acknowledged rows deleted.
    Shutdown,
}

/// The budgets of `config`, with `per_key` rows of a key in flight at most.
pub(crate) fn limits(config: &RelayConfig, per_key: usize) -> Limits {
    Limits {
        max_rows: (config.batch_size as usize).saturating_mul(2),
        max_bytes: config.max_bytes_in_flight,
        batch_size: config.batch_size as usize,
        park_after: config.park_after_attempts,
        per_key,
        backoff: config.backoff,
    }
}

/// Who this relay is among the relays of its outbox, and where it says whether it holds
/// shard 0 (the realtime task runs while it does).
pub(crate) struct Membership<'a> {
    pub(crate) member: &'a str,
    pub(crate) leading: watch::Sender<bool>,
    /// How many shards this relay holds, for its operator.
    pub(crate) held: &'a std::sync::atomic::AtomicUsize,
}

/// Runs until shutdown or a database failure, publishing through `framing` (Avro rows get
/// their schema id) and `producer`.
pub(crate) async fn run(
    source: &OutboxSource,
    deleter: OutboxSource,
    (producer, framing): (&dyn Publisher, &mut AvroFraming),
    config: &RelayConfig,
    wake: &Notify,
    shutdown: &mut watch::Receiver<bool>,
    membership: Membership<'_>,
) -> Result<End, SourceError> {
    // Several rows of a key in flight only where a failed record fails its successors too.
    let per_key = if producer.fails_successors() {
        config.max_in_flight_per_key
    } else {
        1
    };
    let mut pump = Pump {
        source,
        producer,
        config,
        flight: Flight::new(limits(config, per_key)),
        deleter: Deleter::spawn(deleter, membership.member.to_owned(), config.shards),
        leases: Leases::new(
            i32::try_from(config.shards).unwrap_or(i32::MAX),
            config.lease_ttl,
        ),
        member: membership.member,
        leading: membership.leading,
        held: membership.held,
        next_heartbeat: Instant::now(),
        pending: FuturesUnordered::new(),
        attempts: FastMap::default(),
        next_attempt: 0,
        early: FastMap::default(),
        published: FastMap::default(),
        last_errors: FastMap::default(),
        last_delete: Instant::now(),
        topics: TopicCheck::new(config, crate::outbox::declared_topics()),
        framing,
    };
    // Read when there may be something new: at start, on a notification or a poll tick, after
    // a full read, when a backoff ended or budget freed up. An acknowledgement alone does not
    // call for a read: that keeps a busy relay from querying once per acknowledgement.
    let mut want_read = true;
    loop {
        if *shutdown.borrow() {
            pump.drain().await?;
            return Ok(End::Shutdown);
        }
        if pump.leases_due().await? {
            want_read = true;
        }
        let blocked = pump.flight.next_read().is_none();
        while let Some(Some(answer)) = futures::FutureExt::now_or_never(pump.pending.next()) {
            pump.answer(answer, true).await?;
        }
        pump.count_published();
        while let Ok(deleted) = pump.deleter.done.try_recv() {
            pump.deleted(deleted)?;
        }
        if blocked && pump.flight.next_read().is_some() {
            want_read = true;
        }
        if pump.flight.release_due(Instant::now()) {
            want_read = true;
        }
        pump.delete_if_due().await?;
        if want_read && pump.read().await? {
            continue; // more is waiting
        }
        want_read = false;
        pump.flight.restart_when_idle(Instant::now());
        let nap = pump
            .flight
            .next_retry()
            .map_or(config.poll_interval, |at| {
                at.saturating_duration_since(Instant::now())
                    .min(config.poll_interval)
            })
            .max(Duration::from_millis(1));
        let nap = if pump.flight.deletable() > 0 {
            nap.min(DELETE_EVERY)
        } else {
            nap
        }
        .min(
            pump.next_heartbeat
                .saturating_duration_since(Instant::now()),
        )
        .max(Duration::from_millis(1));
        tokio::select! {
            answer = pump.pending.next(), if !pump.pending.is_empty() => {
                if let Some(answer) = answer {
                    pump.answer(answer, true).await?;
                }
            }
            Some(deleted) = pump.deleter.done.recv(), if pump.deleter.outstanding > 0 => {
                pump.deleted(deleted)?;
            }
            _ = wake.notified() => want_read = true,
            _ = tokio::time::sleep(nap) => want_read = true,
            _ = shutdown.changed() => {}
        }
        if source.is_closed() {
            source.backlog().await?;
        }
    }
}

/// Deletes acknowledged rows on a connection of its own, so deletes overlap reads; answers
/// with the ids it deleted (only then does the relay forget them: until a delete is
/// confirmed, its rows still count as known, which keeps the late-row check exact). It also
/// samples the outbox for the metrics: a `count(*)` walks the whole table (and every dead row
/// not vacuumed yet), which inline in the loop held acknowledgements and reads back for tens
/// of milliseconds at each heartbeat.
struct Deleter {
    requests: tokio::sync::mpsc::UnboundedSender<Job>,
    done: tokio::sync::mpsc::UnboundedReceiver<Result<Vec<i64>, SourceError>>,
    /// Batches sent and not answered yet.
    outstanding: usize,
}

/// What the deleter's connection does next.
enum Job {
    /// Delete these acknowledged rows (answered on `done`).
    Delete(Vec<i64>),
    /// Sample the outbox's backlog into the metrics.
    Sample,
}

impl Deleter {
    fn spawn(source: OutboxSource, member: String, shards: u32) -> Deleter {
        let (requests, mut todo) = tokio::sync::mpsc::unbounded_channel::<Job>();
        let (report, done) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Some(job) = todo.recv().await {
                match job {
                    Job::Delete(ids) => {
                        let result = source.delete(&ids, &member, shards).await.map(|()| ids);
                        if report.send(result).is_err() {
                            break;
                        }
                    }
                    Job::Sample => match source.backlog().await {
                        Ok((pending, oldest_age, parked)) => {
                            crate::metrics::outbox(pending, oldest_age, parked);
                        }
                        // A failed connection shows at the next delete, which ends the session.
                        Err(error) => tracing::debug!(%error, "could not sample the outbox"),
                    },
                }
            }
        });
        Deleter {
            requests,
            done,
            outstanding: 0,
        }
    }
}

/// The loop's state and the I/O it performs.
struct Pump<'a> {
    source: &'a OutboxSource,
    producer: &'a dyn Publisher,
    config: &'a RelayConfig,
    flight: Flight,
    deleter: Deleter,
    leases: Leases,
    member: &'a str,
    leading: watch::Sender<bool>,
    held: &'a std::sync::atomic::AtomicUsize,
    next_heartbeat: Instant,
    pending: FuturesUnordered<Pending>,
    /// The current attempt of each row in flight: an answer to an earlier attempt (a record
    /// that failed with its predecessor and was sent again since) is stale.
    attempts: FastMap<i64, u64>,
    next_attempt: u64,
    /// Answers that arrived before an earlier row of their key was answered, per key by id.
    early: FastMap<KeyId, BTreeMap<i64, Answer>>,
    /// Acknowledgements per topic not yet counted in the metrics (counted in bulk: a labelled
    /// counter per acknowledgement cost more than the rest of the bookkeeping).
    published: FastMap<String, u64>,
    /// The last error logged per row, so a row retried with the same error is logged once.
    last_errors: FastMap<i64, String>,
    last_delete: Instant,
    topics: TopicCheck,
    /// Frames Avro rows with their schema's registry id.
    framing: &'a mut AvroFraming,
}

impl Pump<'_> {
    /// One read. Returns true when more rows are probably waiting (a full read, or a read
    /// sent back to the head of the outbox).
    async fn read(&mut self) -> Result<bool, SourceError> {
        let Some(read) = self.flight.next_read() else {
            return Ok(false);
        };
        let owned = self.leases.owned(Instant::now());
        if owned.is_empty() {
            return Ok(false);
        }
        let started = Instant::now();
        let shards = Shards {
            count: self.config.shards,
            owned: &owned,
        };
        let fetched = self
            .source
            .fetch(read.after, read.horizon, read.limit, read.max_bytes, shards)
            .await?;
        let took_ms = started.elapsed().as_secs_f64() * 1000.0;
        let read_rows = fetched.rows.len();
        let full = usize::try_from(fetched.spanned).unwrap_or(0) >= read.limit;
        let send = self
            .flight
            .admit(read, fetched.rows, fetched.below, fetched.horizon);
        // Unless the read was sent back to the head, or stopped at the byte budget, the rows of
        // the span it did not return are not this relay's: move past them.
        let sent_back =
            read.after.is_some() && self.flight.next_read().is_some_and(|r| r.after.is_none());
        if fetched.complete && !sent_back {
            if let Some(end) = fetched.span_end {
                self.flight.spanned(end);
            }
        }

        let (held_rows, held_bytes) = self.flight.held();
        tracing::trace!(
            read = read_rows,
            sent = send.len(),
            held_rows,
            held_bytes,
            took_ms,
            "relay read"
        );
        for row in send {
            self.send(row).await?;
        }
        let restarted =
            read.after.is_some() && self.flight.next_read().is_some_and(|r| r.after.is_none());
        Ok(full || restarted)
    }

    /// Hands `row` to the producer; a row the producer refuses at once is settled as failed.
    async fn send(&mut self, row: OutboxRow) -> Result<(), SourceError> {
        let key: KeyId = (row.topic.clone(), row.key.clone());
        if !self.flight.still_sending(&key, row.id) {
            // An earlier row of its key was refused while this one waited to be handed over:
            // it was handed back and is read again behind that row.
            return Ok(());
        }
        if !self.leases.may_send(row.shard, Instant::now()) {
            // The shard's lease may be gone (no renewal in time): never publish past it. The
            // next turn drops the shard; its next owner publishes the row.
            return Ok(());
        }
        let verdict = self.topics.check(&row.topic, &row.entity);
        if verdict == Verdict::PublishAndWarn {
            tracing::warn!(
                topic = row.topic,
                physical_topic = self.config.physical_topic(&row.topic),
                "publishing to a topic no #[derive(Outbox)] model, declare_topic! or relay.topics \
                 entry declares (a mistyped topic becomes a new one on brokers that create \
                 topics on demand); declare it, or set PROCON_RELAY_UNDECLARED_TOPICS=refuse to \
                 hold such events back"
            );
        }
        let mut row = row;
        let framed = match row.avro_schema.is_some() {
            true => {
                let physical_topic = self.config.physical_topic(&row.topic).to_owned();
                let source = self.source;
                self.framing
                    .frame(&mut row, &physical_topic, source)
                    .await?
            }
            false => Ok(()),
        };
        let delivery = if verdict == Verdict::Refuse {
            Err(TransportError::UndeclaredTopic(row.topic.clone()))
        } else if let Err(error) = framed {
            Err(error)
        } else {
            loop {
                match send_row(self.producer, self.config, &row) {
                    Ok(delivery) => break Ok(delivery),
                    // Bounded by the relay's budgets; librdkafka's queue drains in milliseconds.
                    Err(SendError::QueueFull) => tokio::time::sleep(Duration::from_millis(1)).await,
                    Err(SendError::Refused(error)) => break Err(error),
                }
            }
        };
        match delivery {
            Ok(delivery) => {
                let id = row.id;
                let attempt = self.next_attempt;
                self.next_attempt += 1;
                self.attempts.insert(id, attempt);
                let sent = Instant::now();
                self.pending.push(Box::pin(async move {
                    let answer = delivery.await;
                    crate::metrics::answered_after(sent.elapsed());
                    tracing::trace!(ack_ms = sent.elapsed().as_secs_f64() * 1000.0, "relay ack");
                    (id, key, attempt, answer)
                }));
                Ok(())
            }
            // Refused before it left (too large for the client...): settled like a failed
            // delivery.
            Err(error) => {
                self.attempts.remove(&row.id);
                self.failed(row.id, &key, error).await
            }
        }
    }

    /// Takes in one answer, in per-key order (see the module doc); `send_next`: hand the
    /// key's next rows to the producer (not during shutdown).
    async fn answer(&mut self, answer: Answer, send_next: bool) -> Result<(), SourceError> {
        if self.attempts.get(&answer.0) != Some(&answer.2) {
            return Ok(()); // an earlier attempt's answer: the current one decides
        }
        if self.flight.answered_too_early(&answer.1, answer.0) {
            self.early
                .entry(answer.1.clone())
                .or_default()
                .insert(answer.0, answer);
            return Ok(());
        }
        let mut next = Some(answer);
        while let Some((id, key, _, result)) = next.take() {
            self.attempts.remove(&id);
            match result {
                Ok(()) => {
                    match self.published.get_mut(&key.0) {
                        Some(count) => *count += 1,
                        None => {
                            self.published.insert(key.0.clone(), 1);
                        }
                    }
                    self.last_errors.remove(&id);
                    let rows = self.flight.delivered(id, &key);
                    if send_next {
                        for row in rows {
                            Box::pin(self.send(row)).await?;
                        }
                    }
                }
                Err(error) => self.failed(id, &key, error).await?,
            }
            // An answer that waited for this one may be next: the key's earliest waiting one
            // (rows are in flight in id order, so no later one can be ready before it).
            if let Some(waiting) = self.early.get_mut(&key) {
                if let Some(first) = waiting.first_entry() {
                    if !self.flight.answered_too_early(&key, *first.key()) {
                        next = Some(first.remove());
                    }
                }
                if waiting.is_empty() {
                    self.early.remove(&key);
                }
            }
        }
        Ok(())
    }

    /// Adds the acknowledgements taken in since the last call to the metrics (once per turn
    /// of the loop, and at shutdown).
    fn count_published(&mut self) {
        for (topic, count) in self.published.iter_mut().filter(|(_, n)| **n > 0) {
            crate::metrics::published(topic, std::mem::take(count));
        }
    }

    /// A row failed: back off its key, or park the row once the broker rejected it often
    /// enough.
    async fn failed(
        &mut self,
        id: i64,
        key: &KeyId,
        error: TransportError,
    ) -> Result<(), SourceError> {
        let rejected = error.is_rejection();
        crate::metrics::delivery_failed(&key.0, rejected);
        let message = error.to_string();
        match self.flight.failed(id, key, rejected, Instant::now()) {
            AfterFailure::Ignore => {}
            AfterFailure::Park { attempts } => {
                self.source.park(id, &message, attempts).await?;
                crate::metrics::parked(&key.0);
                self.flight.parked(id, key);
                self.last_errors.remove(&id);
                tracing::error!(
                    error = message,
                    topic = key.0,
                    key = key.1,
                    outbox_id = id,
                    attempts,
                    "the broker rejected an event on every attempt; it is parked \
                     (`procon parked list`) and the later events of its key wait until it is \
                     retried or dropped (`procon parked retry|drop {id}`); other keys go on"
                );
            }
            AfterFailure::Retry { at } => {
                let retry_in_ms = at.saturating_duration_since(Instant::now()).as_millis() as u64;
                let repeated =
                    self.last_errors.insert(id, message.clone()) == Some(message.clone());
                if !repeated || !rejected {
                    tracing::warn!(
                        error = message,
                        topic = key.0,
                        key = key.1,
                        outbox_id = id,
                        retry_in_ms,
                        rejected,
                        "an event was not delivered; it and the later events of its key are \
                         retried (other keys go on)"
                    );
                }
            }
        }
        Ok(())
    }

    /// Drops lapsed leases, and runs the heartbeat when it is due: renew, release the surplus,
    /// claim up to the fair share. Returns true when shards were gained (read from the head).
    async fn leases_due(&mut self) -> Result<bool, SourceError> {
        let now = Instant::now();
        let lapsed = self.leases.lapsed(now);
        if !lapsed.is_empty() {
            tracing::warn!(
                shards = ?lapsed,
                "relay leases lapsed (no renewal in time): their events are left to the next owner"
            );
            self.flight.forget_shards(&lapsed);
        }
        if now < self.next_heartbeat {
            return Ok(false);
        }
        let ttl = self.config.lease_ttl;
        self.next_heartbeat = now + ttl / 3;
        let (renewed, members) = self.source.heartbeat(self.member, ttl).await?;
        let held: Vec<i32> = renewed.iter().map(|(shard, _)| *shard).collect();
        let release = self.leases.to_release(&held, members);
        self.source.release(self.member, &release).await?;
        let wanted = self.leases.to_claim(held.len() - release.len(), members);
        let claimed = if wanted > 0 {
            self.source.claim(self.member, ttl, wanted).await?
        } else {
            Vec::new()
        };
        let change = self.leases.renewed(now, &renewed, &claimed, &release);
        if !change.lost.is_empty() {
            tracing::info!(shards = ?change.lost, members, "relay shards handed over");
            self.flight.forget_shards(&change.lost);
        }
        if !change.gained.is_empty() {
            tracing::info!(shards = ?change.gained, members, "relay shards taken");
            self.flight.restart_from_head();
        }
        let held = self.leases.owned(Instant::now()).len();
        self.held.store(held, std::sync::atomic::Ordering::Relaxed);
        crate::metrics::shards_held(held);
        // Sampled on the deleter's connection, off this loop (see `Deleter`).
        let _ = self.deleter.requests.send(Job::Sample);
        let leading = self.leases.holds(0, Instant::now());
        self.leading
            .send_if_modified(|was| std::mem::replace(was, leading) != leading);
        Ok(!change.gained.is_empty())
    }

    /// Deletes acknowledged rows when enough have gathered, when nothing is in flight, or
    /// every `DELETE_EVERY`.
    async fn delete_if_due(&mut self) -> Result<(), SourceError> {
        let deletable = self.flight.deletable();
        let due = deletable >= DELETE_BATCH
            || self.pending.is_empty()
            || self.last_delete.elapsed() >= DELETE_EVERY;
        if deletable > 0 && due {
            self.delete().await?;
        }
        Ok(())
    }

    async fn delete(&mut self) -> Result<(), SourceError> {
        let done = self.flight.take_deletable();
        self.last_delete = Instant::now();
        if done.is_empty() {
            return Ok(());
        }
        // Not deleted (the database failed) means published again: duplicates, never loss.
        match self.deleter.requests.send(Job::Delete(done)) {
            Ok(()) => {
                self.deleter.outstanding += 1;
                Ok(())
            }
            // The deleter ended: its connection failed; the session reconnects.
            Err(tokio::sync::mpsc::error::SendError(Job::Delete(ids))) => {
                self.source
                    .delete(&ids, self.member, self.config.shards)
                    .await
            }
            Err(_) => Ok(()),
        }
    }

    /// A delete batch was answered.
    fn deleted(&mut self, deleted: Result<Vec<i64>, SourceError>) -> Result<(), SourceError> {
        self.deleter.outstanding = self.deleter.outstanding.saturating_sub(1);
        self.flight.deleted(&deleted?);
        Ok(())
    }

    /// Shutdown: wait (bounded by `shutdown_timeout`) for what is in flight, delete what was
    /// acknowledged, leave the rest for the next start. No new row is sent.
    async fn drain(&mut self) -> Result<(), SourceError> {
        let deadline = tokio::time::Instant::now() + self.config.shutdown_timeout;
        while !self.pending.is_empty() {
            match tokio::time::timeout_at(deadline, self.pending.next()).await {
                Ok(Some(answer)) => self.answer(answer, false).await?,
                Ok(None) | Err(_) => break,
            }
        }
        if !self.pending.is_empty() {
            tracing::warn!(
                unanswered = self.pending.len(),
                "shutdown: some events were not acknowledged in time; they stay in the outbox"
            );
        }
        self.count_published();
        self.delete().await?;
        // The deletes get a few seconds of their own even when the wait above used the rest.
        let deadline = deadline.max(tokio::time::Instant::now() + Duration::from_secs(5));
        while self.deleter.outstanding > 0 {
            match tokio::time::timeout_at(deadline, self.deleter.done.recv()).await {
                Ok(Some(deleted)) => self.deleted(deleted)?,
                Ok(None) | Err(_) => break,
            }
        }
        // Hand the shards over at once instead of letting the leases expire.
        self.leases.drop_all();
        self.leading.send_replace(false);
        self.source.leave(self.member).await
    }
}
