//! A processor: one thread with its own pooled database connection that takes units from the
//! pipeline and applies them exactly once (see [`super::apply`]).
//!
//! What a failure does: a unit of several messages that fails is rolled back and its messages
//! go back to their lanes to be applied one at a time, which pins the failure to its message
//! and lets the others through. A single message that fails holds only its lane: it waits for
//! its retry (counted failures are persisted), and after the last attempt the failure policy
//! settles it (stop the lane, dead letter, error event). A database failure is retried with
//! backoff and never counted. A fenced unit (another member claimed the partition) is dropped.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::apply::{
    apply_unit, identity, synthetic_event_id, Applied, ApplyError, Incoming, UnitFailed,
};
use super::decode::Undecodable;
use super::exhausted::{settle, Failed, Settled};
use super::handler::DispatchError;
use super::pipeline::{Pipeline, Unit};
use super::retry::{self, Next};
use super::status::Stall;
use super::store;
use crate::backoff::Backoff;
use crate::db::DbConn;
use crate::transport::{Message, PartitionId};

/// How long a processor waits for work before it looks at the pipeline's state again.
const IDLE_WAIT: Duration = Duration::from_millis(200);

/// Runs until the pipeline is closed.
pub(crate) fn run(pipeline: Arc<Pipeline>) {
    let mut conn: Option<DbConn> = None;
    let mut outage = Backoff::new(pipeline.config.backoff);
    while !pipeline.is_closed() {
        let Some(unit) = pipeline.take(IDLE_WAIT) else {
            continue;
        };
        let connection = match conn.as_mut() {
            Some(connection) => connection,
            None => match pipeline.pool.get() {
                Ok(connection) => conn.insert(connection),
                Err(error) => {
                    let delay = outage.next_delay();
                    tracing::error!(%error, retry_in_ms = delay.as_millis() as u64, "consumer database unavailable; the messages wait");
                    give_back(&pipeline, unit, Some(Instant::now() + delay), false);
                    continue;
                }
            },
        };
        let mut processor = Processor {
            pipeline: &pipeline,
            conn: connection,
            outage: &mut outage,
        };
        match processor.process(unit) {
            Keep::Connection => outage.reset(),
            Keep::Nothing => conn = None,
        }
    }
}

/// Whether the connection is still good after a unit.
enum Keep {
    Connection,
    Nothing,
}

fn give_back(pipeline: &Pipeline, unit: Unit, retry_at: Option<Instant>, solo: bool) {
    for (lane, messages) in unit.taken.lanes {
        pipeline.put_back(&unit.partition, &lane, messages, retry_at, solo);
    }
}

/// One unit's work, with what it needs.
struct Processor<'p> {
    pipeline: &'p Pipeline,
    conn: &'p mut DbConn,
    outage: &'p mut Backoff,
}

impl Processor<'_> {
    fn process(&mut self, unit: Unit) -> Keep {
        let pipeline = self.pipeline;
        let context = pipeline.unit_context(&unit.partition, unit.epoch, unit.replay);
        let messages: Vec<&Message> = unit.taken.lanes.iter().flat_map(|(_, ms)| ms).collect();
        // Avro messages are read as the JSON envelope their datum decodes to.
        let mut decoded = Vec::with_capacity(messages.len());
        for (index, message) in messages.iter().enumerate() {
            match pipeline.avro.decode(&message.payload) {
                Ok(json) => decoded.push(json),
                Err(Undecodable::Outage(error)) => {
                    let delay = self.outage.next_delay();
                    tracing::error!(%error, retry_in_ms = delay.as_millis() as u64, "cannot decode Avro messages while the schema registry is unavailable; they wait (not counted as a failure)");
                    drop(messages);
                    give_back(pipeline, unit, Some(Instant::now() + delay), false);
                    return Keep::Connection;
                }
                Err(Undecodable::Invalid(reason)) => {
                    let coordinates = Incoming::of(message).coordinates;
                    drop(messages);
                    let error = ApplyError::Undecodable {
                        coordinates,
                        reason,
                    };
                    return self.failed(unit, Some(index), error);
                }
            }
        }
        let incoming: Vec<Incoming<'_>> = messages
            .iter()
            .zip(&decoded)
            .map(|(m, json)| {
                let mut incoming = Incoming::of(m);
                if let Some(json) = json {
                    incoming.payload = json;
                }
                incoming
            })
            .collect();
        let started = Instant::now();
        let applied = apply_unit(self.conn, &context, &incoming, &unit.retried);
        crate::metrics::unit_applied(&unit.partition.topic, started.elapsed());
        match applied {
            Ok(outcomes) => {
                let duplicates = outcomes
                    .iter()
                    .filter(|o| **o == Applied::Duplicate)
                    .count();
                let topic = &unit.partition.topic;
                crate::metrics::consumed(topic, "applied", outcomes.len() - duplicates);
                crate::metrics::consumed(topic, "duplicate", duplicates);
                for (message, outcome) in incoming.iter().zip(&outcomes) {
                    if *outcome == Applied::Duplicate {
                        tracing::info!(at = %message.coordinates, "event already applied (redelivered): skipped");
                    }
                }
                let retried = !unit.retried.is_empty();
                for (lane, lane_messages) in &unit.taken.lanes {
                    let done: Vec<_> = lane_messages.iter().map(|m| m.position).collect();
                    pipeline.complete(&unit.partition, lane, &done);
                    if retried {
                        pipeline.status.flowing(&unit.partition, lane);
                    }
                }
                if retried {
                    tracing::info!(partition = %unit.partition, "event applied after retries; its lane flows again");
                }
                Keep::Connection
            }
            Err(UnitFailed { index, error }) => {
                drop(incoming);
                self.failed(unit, index, *error)
            }
        }
    }

    fn failed(&mut self, unit: Unit, index: Option<usize>, error: ApplyError) -> Keep {
        let pipeline = self.pipeline;
        match &error {
            ApplyError::Fenced { partition, epoch } => {
                pipeline.fence(partition, *epoch);
                return Keep::Connection;
            }
            ApplyError::Database { .. } => {
                let delay = self.outage.next_delay();
                tracing::error!(%error, retry_in_ms = delay.as_millis() as u64, "database error while applying; the messages are tried again (not counted as a failure)");
                give_back(pipeline, unit, Some(Instant::now() + delay), false);
                return Keep::Nothing;
            }
            _ => {}
        }
        // A panic may have left a nested transaction open: never reuse that connection.
        let keep = match &error {
            ApplyError::Dispatch {
                source: DispatchError::Panicked(_),
                ..
            } => Keep::Nothing,
            _ => Keep::Connection,
        };
        let total: usize = unit.taken.lanes.iter().map(|(_, ms)| ms.len()).sum();
        crate::metrics::consumed(&unit.partition.topic, "failed", 1);
        if total > 1 || index.is_none() {
            tracing::debug!(%error, messages = total, "unit rolled back; its messages are applied one at a time");
            give_back(pipeline, unit, None, true);
            return keep;
        }
        let Unit {
            partition,
            epoch,
            mut taken,
            ..
        } = unit;
        let (lane, mut messages) = taken.lanes.pop().expect("a unit of one message");
        let message = messages.pop().expect("a unit of one message");
        match self.fail_alone(&partition, epoch, &lane, message, &error) {
            Some(message) => {
                // The settlement itself failed: the message is tried again after a backoff.
                let delay = self.outage.next_delay();
                pipeline.put_back(
                    &partition,
                    &lane,
                    vec![message],
                    Some(Instant::now() + delay),
                    true,
                );
                Keep::Nothing
            }
            None => keep,
        }
    }

    /// Counts a single message's failure and retries it later, or settles it by the policy.
    /// Returns the message when its settlement failed (a database error).
    fn fail_alone(
        &mut self,
        partition: &PartitionId,
        epoch: i64,
        lane: &str,
        message: Message,
        error: &ApplyError,
    ) -> Option<Message> {
        let pipeline = self.pipeline;
        let incoming = Incoming::of(&message);
        let at = incoming.coordinates.clone();
        let error_text = error.to_string();
        let stored = match store::count_failure(
            self.conn,
            &pipeline.group,
            partition,
            at.position,
            &error_text,
        ) {
            Ok(count) => Some(count),
            Err(db_error) => {
                tracing::warn!(error = %db_error, "could not persist the failure count; counting in memory");
                None
            }
        };
        let failures = pipeline.count_failure(partition, at.position, stored);
        let policy = pipeline
            .registry
            .failure_policy(&pipeline.config, &partition.topic);
        let next = retry::after_failure(
            failures,
            failures,
            true,
            policy.max_attempts,
            policy.backoff,
            0.75 + fastrand::f64() * 0.5,
        );
        let stall = Stall {
            coordinates: at.clone(),
            lane: lane.to_owned(),
            attempts: failures,
            error: error_text.clone(),
            since: std::time::SystemTime::now(),
            stopped: false,
        };
        if let Next::RetryIn(delay) = next {
            tracing::warn!(
                %at, lane, attempt = failures, max_attempts = policy.max_attempts,
                retry_in_ms = delay.as_millis() as u64, error = %error_text,
                "event failed; its lane waits and retries it (other lanes go on)"
            );
            pipeline.status.stalled(stall);
            drop(incoming);
            pipeline.put_back(
                partition,
                lane,
                vec![message],
                Some(Instant::now() + delay),
                true,
            );
            return None;
        }
        let (event, event_id) = identity(&incoming, error);
        let failed = Failed {
            group: &pipeline.group,
            message: &incoming,
            key: message.key.as_deref(),
            headers: message
                .headers
                .iter()
                .map(|(n, v)| (n.clone(), String::from_utf8_lossy(v).into_owned()))
                .collect(),
            event,
            consumed_id: event_id
                .unwrap_or_else(|| synthetic_event_id(&at.topic, at.partition, at.position)),
            event_id,
            error: error_text.clone(),
            attempts: failures,
            lane,
        };
        let context = pipeline.unit_context(partition, epoch, None);
        let settled = settle(self.conn, &context, &policy.exhausted, &failed);
        drop(incoming);
        match settled {
            Ok(Settled::Stopped) => {
                crate::metrics::consumed(&partition.topic, "stopped", 1);
                tracing::error!(
                    %at, lane, attempts = failures, error = %error_text,
                    "event failed every attempt: its lane is STOPPED (recorded in procon_stopped_partitions); \
                     the other lanes go on; resume it with `procon resume` or `resume_lane`"
                );
                pipeline.status.stalled(Stall {
                    stopped: true,
                    ..stall
                });
                pipeline.stop_lane(partition, lane, vec![message]);
            }
            Ok(settled) => {
                let outcome = match settled {
                    Settled::DeadLettered => "dead_lettered",
                    Settled::ErrorEmitted => "error_emitted",
                    _ => "duplicate",
                };
                crate::metrics::consumed(&partition.topic, outcome, 1);
                if settled == Settled::DeadLettered {
                    crate::metrics::dead_lettered(&partition.topic);
                }
                match settled {
                    Settled::DeadLettered => {
                        tracing::error!(%at, attempts = failures, error = %error_text, "event failed every attempt: sent to the dead-letter topic; its lane goes on")
                    }
                    Settled::ErrorEmitted => {
                        tracing::error!(%at, attempts = failures, error = %error_text, "event failed every attempt: error event emitted; its lane goes on")
                    }
                    _ => tracing::info!(%at, "event was applied meanwhile; nothing to settle"),
                }
                pipeline.status.flowing(partition, lane);
                pipeline.complete(partition, lane, &[message.position]);
            }
            Err(ApplyError::Fenced { partition, epoch }) => pipeline.fence(&partition, epoch),
            Err(settle_error) => {
                tracing::error!(%at, error = %settle_error, "could not settle the failed event; it is tried again");
                return Some(message);
            }
        }
        None
    }
}
