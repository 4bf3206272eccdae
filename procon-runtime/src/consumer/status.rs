//! What a running consumer shows its operator: the partitions it owns and the messages it is
//! held on. Kept apart from the pipeline's lock, so reading it never waits for a handler (a
//! handler may read it too).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use super::handler::Coordinates;
use super::stopped::StoppedPartition;
use crate::transport::PartitionId;

/// A message the consumer is held on: failing and waiting for its retry, or stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stall {
    /// Where the failing message is.
    pub coordinates: Coordinates,
    /// The lane it holds: `""` for the whole partition, `key:<key>` for one key.
    pub lane: String,
    /// Attempts so far.
    pub attempts: u32,
    /// The last error, naming the event.
    pub error: String,
    /// When this member saw it fail first (or found it stopped).
    pub since: std::time::SystemTime,
    /// The attempts are exhausted and the lane (or partition) is stopped until resumed.
    pub stopped: bool,
}

impl Stall {
    pub(crate) fn of_stop(stop: &StoppedPartition) -> Self {
        Stall {
            coordinates: Coordinates {
                topic: stop.topic.clone(),
                partition: stop.partition,
                position: stop.position,
            },
            lane: stop.lane.clone(),
            attempts: u32::try_from(stop.attempts).unwrap_or(0),
            error: stop.error.clone(),
            since: std::time::SystemTime::now(),
            stopped: true,
        }
    }
}

#[derive(Debug, Default)]
struct Inner {
    assigned: BTreeSet<PartitionId>,
    stalls: BTreeMap<(PartitionId, String), Stall>,
    /// Messages received and not yet applied, per partition.
    in_flight: BTreeMap<PartitionId, usize>,
    /// Log end minus stored position, per partition, as last sampled.
    lag: BTreeMap<PartitionId, u64>,
}

/// A consumer's state for status calls; cheap to clone, safe to call from anywhere.
#[derive(Debug, Clone, Default)]
pub struct Status(Arc<Mutex<Inner>>);

impl Status {
    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn assigned(&self, partition: &PartitionId, owned: bool) {
        let mut inner = self.inner();
        if owned {
            inner.assigned.insert(partition.clone());
        } else {
            inner.assigned.remove(partition);
            inner.in_flight.remove(partition);
            inner.lag.remove(partition);
            inner.stalls.retain(|(p, _), _| p != partition);
        }
    }

    pub(crate) fn stalled(&self, stall: Stall) {
        let key = (
            PartitionId::new(stall.coordinates.topic.clone(), stall.coordinates.partition),
            stall.lane.clone(),
        );
        let mut inner = self.inner();
        let since = inner.stalls.get(&key).map(|s| s.since);
        let stall = Stall {
            since: since.unwrap_or(stall.since),
            ..stall
        };
        inner.stalls.insert(key, stall);
    }

    pub(crate) fn flowing(&self, partition: &PartitionId, lane: &str) {
        self.inner()
            .stalls
            .remove(&(partition.clone(), lane.to_owned()));
    }

    pub(crate) fn set_in_flight(&self, partition: &PartitionId, pending: usize) {
        let mut inner = self.inner();
        if inner.assigned.contains(partition) {
            inner.in_flight.insert(partition.clone(), pending);
        }
    }

    pub(crate) fn set_lag(&self, partition: &PartitionId, lag: u64) {
        let mut inner = self.inner();
        if inner.assigned.contains(partition) {
            inner.lag.insert(partition.clone(), lag);
        }
    }

    /// Per owned partition, the messages between its stored position and the log end, as last
    /// sampled (every few seconds; Kafka only), as (topic, partition, lag).
    pub fn lag(&self) -> Vec<(String, i32, u64)> {
        self.inner()
            .lag
            .iter()
            .map(|(p, n)| (p.topic.clone(), p.partition, *n))
            .collect()
    }

    /// Messages received and not yet applied, per owned partition, as (topic, partition,
    /// count): at most `max_in_flight` waiting (plus one poll's worth) and `concurrency` ×
    /// `batch_size` being applied.
    pub fn in_flight(&self) -> Vec<(String, i32, usize)> {
        self.inner()
            .in_flight
            .iter()
            .map(|(p, n)| (p.topic.clone(), p.partition, *n))
            .collect()
    }

    /// The partitions this member owns now, as (topic, partition).
    pub fn assigned_partitions(&self) -> Vec<(String, i32)> {
        self.inner()
            .assigned
            .iter()
            .map(|p| (p.topic.clone(), p.partition))
            .collect()
    }

    /// The messages this member is held on, by partition and lane.
    pub fn stalls(&self) -> Vec<Stall> {
        self.inner().stalls.values().cloned().collect()
    }
}
