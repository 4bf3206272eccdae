//! [`KafkaSource`]: a group member whose partitions are positioned by the runtime.
//!
//! Assignment runs inside librdkafka's rebalance callback, before the assignment takes effect,
//! so the first fetch of a partition already starts where the runtime says; a partition the
//! runtime holds (`None`) is paused right after the assignment. Revocation blocks in the
//! callback until the runtime has drained the partition, so no other member starts on it
//! while this one still applies its messages.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaError;
use rdkafka::message::{Headers, Message as _};
use rdkafka::{Offset, TopicPartitionList};

use super::{consumer_config, TracingContext};
use crate::config::Config;
use crate::transport::{
    Bounds, Message, Ownership, PartitionId, Position, Source, StartAt, TransportError,
};

/// How long a watermark query may take inside the rebalance callback.
const BOUNDS_TIMEOUT: Duration = Duration::from_secs(5);

/// The consumer's librdkafka context: logs to `tracing` and asks the runtime where assigned
/// partitions start.
struct OwnershipContext {
    ownership: Arc<dyn Ownership>,
    /// Partitions the runtime holds, to pause once the assignment took effect.
    held: std::sync::Mutex<Vec<PartitionId>>,
}

impl ClientContext for OwnershipContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        TracingContext.log(level, fac, log_message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        TracingContext.error(error, reason);
    }
}

/// The Kafka offset of a position. Every position of a Kafka partition came from an offset; a
/// larger one (stored by another transport under the same group and topic) is past any log end,
/// where Kafka's own reset policy applies.
fn kafka_offset(position: Position) -> i64 {
    position.as_offset().unwrap_or(i64::MAX)
}

fn partitions_of(list: &TopicPartitionList) -> Vec<PartitionId> {
    list.elements()
        .iter()
        .map(|e| PartitionId::new(e.topic(), e.partition()))
        .collect()
}

impl ConsumerContext for OwnershipContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(assignment) => {
                let partitions = partitions_of(assignment);
                let bounds = |p: &PartitionId| -> Result<Bounds, TransportError> {
                    let (low, high) =
                        consumer.fetch_watermarks(&p.topic, p.partition, BOUNDS_TIMEOUT)?;
                    Ok(Bounds {
                        low: Position::offset(low),
                        high: Position::offset(high),
                    })
                };
                let starts = self.ownership.assigned(&partitions, &bounds);
                let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
                held.clear();
                // `assignment` is the list librdkafka assigns: setting an element's offset
                // there decides where its first fetch starts.
                let mut elements = assignment.elements();
                for ((partition, start), element) in
                    partitions.into_iter().zip(starts).zip(elements.iter_mut())
                {
                    let offset = match start {
                        Some(StartAt::At(at)) => Offset::Offset(kafka_offset(at)),
                        Some(StartAt::Beginning) => Offset::Beginning,
                        None => {
                            held.push(partition.clone());
                            Offset::Beginning
                        }
                    };
                    if let Err(error) = element.set_offset(offset) {
                        tracing::error!(%error, %partition, "could not set a start offset; holding the partition");
                    }
                }
            }
            Rebalance::Revoke(revoked) => self.ownership.revoked(&partitions_of(revoked)),
            Rebalance::Error(error) => tracing::warn!(%error, "rebalance error"),
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(assignment) = rebalance {
            let held = self.held.lock().unwrap_or_else(|p| p.into_inner());
            // librdkafka keeps a partition's pause flag across revoke and re-assignment: a
            // partition paused in an earlier generation must be resumed explicitly.
            let mut flowing = TopicPartitionList::new();
            let mut hold = TopicPartitionList::new();
            for p in partitions_of(assignment) {
                let list = if held.contains(&p) {
                    &mut hold
                } else {
                    &mut flowing
                };
                list.add_partition(&p.topic, p.partition);
            }
            if let Err(error) = consumer.resume(&flowing) {
                tracing::warn!(%error, "could not resume newly assigned partitions");
            }
            if hold.count() > 0 {
                if let Err(error) = consumer.pause(&hold) {
                    tracing::error!(%error, "could not pause held partitions");
                }
            }
        }
    }
}

/// A Kafka group member behind the [`Source`] trait.
pub struct KafkaSource {
    consumer: BaseConsumer<OwnershipContext>,
}

impl KafkaSource {
    /// Creates the consumer with procon's settings and subscribes to `topics` (physical names).
    pub fn subscribe(
        config: &Config,
        topics: &[String],
        ownership: Arc<dyn Ownership>,
    ) -> Result<Self, TransportError> {
        let context = OwnershipContext {
            ownership,
            held: std::sync::Mutex::new(Vec::new()),
        };
        let consumer: BaseConsumer<OwnershipContext> =
            consumer_config(config).create_with_context(context)?;
        let topic_refs: Vec<&str> = topics.iter().map(String::as_str).collect();
        consumer.subscribe(&topic_refs)?;
        Ok(KafkaSource { consumer })
    }

    fn list(partition: &PartitionId) -> TopicPartitionList {
        let mut list = TopicPartitionList::new();
        list.add_partition(&partition.topic, partition.partition);
        list
    }
}

/// A fetched message, owned (it outlives the poll).
pub(super) fn owned(message: &rdkafka::message::BorrowedMessage<'_>) -> Message {
    let headers = message
        .headers()
        .map(|hs| {
            hs.iter()
                .map(|h| {
                    (
                        h.key.to_owned(),
                        h.value.map(<[u8]>::to_vec).unwrap_or_default(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    Message {
        partition: PartitionId::new(message.topic(), message.partition()),
        position: Position::offset(message.offset()),
        key: message.key().map(<[u8]>::to_vec),
        headers,
        payload: message.payload().map(<[u8]>::to_vec).unwrap_or_default(),
    }
}

impl Source for KafkaSource {
    fn poll(&mut self, max: usize, timeout: Duration) -> Vec<Message> {
        let mut batch = Vec::new();
        let mut timeout = timeout;
        while batch.len() < max {
            match self.consumer.poll(timeout) {
                Some(Ok(message)) => batch.push(owned(&message)),
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

    fn pause(&mut self, partition: &PartitionId) -> Result<(), TransportError> {
        Ok(self.consumer.pause(&Self::list(partition))?)
    }

    fn resume(&mut self, partition: &PartitionId) -> Result<(), TransportError> {
        Ok(self.consumer.resume(&Self::list(partition))?)
    }

    fn seek(&mut self, partition: &PartitionId, at: StartAt) -> Result<(), TransportError> {
        let offset = match at {
            StartAt::Beginning => Offset::Beginning,
            StartAt::At(position) => Offset::Offset(kafka_offset(position)),
        };
        self.consumer.seek(
            &partition.topic,
            partition.partition,
            offset,
            Duration::from_secs(1),
        )?;
        self.resume(partition)
    }

    fn bounds(&mut self, partition: &PartitionId) -> Result<Bounds, TransportError> {
        let (low, high) = self.consumer.fetch_watermarks(
            &partition.topic,
            partition.partition,
            BOUNDS_TIMEOUT,
        )?;
        Ok(Bounds {
            low: Position::offset(low),
            high: Position::offset(high),
        })
    }

    fn log_end(&mut self, partition: &PartitionId) -> Option<Position> {
        // One ListOffsets request, kept short: a slow broker skips a lag sample, nothing else.
        let (_, high) = self
            .consumer
            .fetch_watermarks(
                &partition.topic,
                partition.partition,
                Duration::from_millis(100),
            )
            .ok()?;
        (high >= 0).then(|| Position::offset(high))
    }

    fn hint_position(&mut self, partition: &PartitionId, next: Position) {
        let _ =
            self.consumer
                .store_offset(&partition.topic, partition.partition, kafka_offset(next));
    }

    fn close(&mut self) {
        self.consumer.unsubscribe();
        // Poll until the revocation callback ran (it drains the pipeline), bounded.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !self
            .consumer
            .assignment()
            .map(|a| a.count() == 0)
            .unwrap_or(true)
            && std::time::Instant::now() < deadline
        {
            let _ = self.consumer.poll(Duration::from_millis(50));
        }
    }
}
