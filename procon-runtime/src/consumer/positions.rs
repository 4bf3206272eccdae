//! Where a newly assigned partition starts: the position stored in PostgreSQL, never Kafka's
//! committed offset. Runs inside librdkafka's rebalance callback, before the assignment takes
//! effect, so the first fetch already starts at the right offset.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use diesel::pg::PgConnection;
use diesel::Connection;
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaError;
use rdkafka::{Offset, TopicPartitionList};

use super::stopped::stopped_of_topic;
use super::store;
use crate::kafka::TracingContext;

/// A (topic, partition) pair.
pub(crate) type Partition = (String, i32);

/// State shared between the rebalance callbacks and the worker loop (both run on the worker's
/// thread, inside or between `poll` calls, so the locks are never contended).
#[derive(Default)]
pub(crate) struct Shared {
    /// The worker's database connection, when it has one.
    pub(crate) conn: Option<PgConnection>,
    /// Assigned partitions whose stored position could not be read: they stay paused and none
    /// of their messages is applied until the position is known.
    pub(crate) unpositioned: HashSet<Partition>,
    /// Partitions revoked since the worker last looked.
    pub(crate) revoked: Vec<Partition>,
    /// The partitions this member owns now.
    pub(crate) assigned: std::collections::BTreeSet<Partition>,
    /// Assigned partitions stopped by the `stop` failure policy: paused until resumed.
    pub(crate) stopped: HashSet<Partition>,
}

/// The consumer's librdkafka context: logs to `tracing` and positions assigned partitions.
pub(crate) struct PositionContext {
    pub(crate) group: String,
    pub(crate) database_url: String,
    pub(crate) shared: Arc<Mutex<Shared>>,
}

impl ClientContext for PositionContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        TracingContext.log(level, fac, log_message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        TracingContext.error(error, reason);
    }
}

impl ConsumerContext for PositionContext {
    fn pre_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let mut shared = self
            .shared
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match rebalance {
            Rebalance::Assign(assignment) => {
                let mut topics: Vec<String> = assignment
                    .elements()
                    .iter()
                    .map(|e| e.topic().to_owned())
                    .collect();
                topics.dedup();
                for topic in topics {
                    let stored = self.read_positions(&mut shared, &topic);
                    for mut element in assignment.elements_for_topic(&topic) {
                        let partition = (topic.clone(), element.partition());
                        let offset = match &stored {
                            Ok((positions, stopped)) => {
                                if stopped.contains(&partition.1) {
                                    tracing::warn!(
                                        topic = partition.0,
                                        partition = partition.1,
                                        "partition is stopped on a failed event; it stays paused until resumed"
                                    );
                                    shared.stopped.insert(partition.clone());
                                }
                                match positions.iter().find(|(p, _)| *p == partition.1) {
                                    Some((_, next)) if *next >= 0 => Offset::Offset(*next),
                                    _ => Offset::Beginning,
                                }
                            }
                            Err(_) => {
                                shared.unpositioned.insert(partition.clone());
                                Offset::Beginning
                            }
                        };
                        if let Err(error) = element.set_offset(offset) {
                            tracing::error!(%error, topic, "could not set a start offset; holding the partition");
                            shared.unpositioned.insert(partition.clone());
                        }
                        tracing::info!(
                            topic = partition.0,
                            partition = partition.1,
                            ?offset,
                            "partition assigned"
                        );
                        shared.assigned.insert(partition);
                    }
                    if let Err(error) = stored {
                        tracing::error!(
                            %error, topic,
                            "could not read stored positions; the partitions stay paused until they can be read"
                        );
                    }
                }
            }
            Rebalance::Revoke(revoked) => {
                for element in revoked.elements() {
                    let partition = (element.topic().to_owned(), element.partition());
                    tracing::info!(
                        topic = partition.0,
                        partition = partition.1,
                        "partition revoked"
                    );
                    shared.unpositioned.remove(&partition);
                    shared.stopped.remove(&partition);
                    shared.assigned.remove(&partition);
                    shared.revoked.push(partition);
                }
            }
            Rebalance::Error(error) => tracing::warn!(%error, "rebalance error"),
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(assignment) = rebalance {
            let shared = self
                .shared
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            // librdkafka keeps a partition's pause flag across revoke and re-assignment: a
            // partition paused in an earlier generation must be resumed explicitly.
            let mut flowing = TopicPartitionList::new();
            for element in assignment.elements() {
                let partition = (element.topic().to_owned(), element.partition());
                if !shared.unpositioned.contains(&partition) && !shared.stopped.contains(&partition)
                {
                    flowing.add_partition(&partition.0, partition.1);
                }
            }
            if let Err(error) = consumer.resume(&flowing) {
                tracing::warn!(%error, "could not resume newly assigned partitions");
            }
            if !shared.unpositioned.is_empty() || !shared.stopped.is_empty() {
                let mut hold = TopicPartitionList::new();
                for (topic, partition) in shared.unpositioned.iter().chain(&shared.stopped) {
                    hold.add_partition(topic, *partition);
                }
                if let Err(error) = consumer.pause(&hold) {
                    tracing::error!(%error, "could not pause partitions without a known position");
                }
            }
        }
    }
}

impl PositionContext {
    /// The stored positions of `topic`'s partitions, and which of them are stopped.
    #[allow(clippy::type_complexity)]
    fn read_positions(
        &self,
        shared: &mut Shared,
        topic: &str,
    ) -> Result<(Vec<(i32, i64)>, Vec<i32>), String> {
        if shared.conn.is_none() {
            shared.conn =
                Some(PgConnection::establish(&self.database_url).map_err(|e| e.to_string())?);
        }
        let conn = shared.conn.as_mut().ok_or("no connection")?;
        let read = store::positions(conn, &self.group, topic)
            .and_then(|positions| Ok((positions, stopped_of_topic(conn, &self.group, topic)?)));
        read.map_err(|e| {
            shared.conn = None;
            e.to_string()
        })
    }

    /// Reads the stored position of one partition (for a partition assigned while the database
    /// was unreachable).
    pub(crate) fn position(
        &self,
        shared: &mut Shared,
        partition: &Partition,
    ) -> Result<Offset, String> {
        let (positions, stopped) = self.read_positions(shared, &partition.0)?;
        if stopped.contains(&partition.1) {
            shared.stopped.insert(partition.clone());
        }
        Ok(match positions.iter().find(|(p, _)| *p == partition.1) {
            Some((_, next)) if *next >= 0 => Offset::Offset(*next),
            _ => Offset::Beginning,
        })
    }
}
