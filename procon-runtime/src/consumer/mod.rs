//! The consumer side: event handlers and the exactly-once consumer that runs them.
//!
//! Job: read the topics handlers are registered for, and apply each message exactly once to
//! this service's database.
//!
//! Invariants and what a crash can do:
//! - Each message is applied in one transaction: lock the (group, topic, partition) position
//!   row → skip if the stored position is already past the offset → record the event id (a
//!   redelivered event id is not applied again) → run the handler → store offset + 1 → commit.
//!   A crash before the commit leaves no trace; a crash after it is seen by the next owner of
//!   the partition, which starts at the stored position. Kafka's committed offsets are only a
//!   hint for tools; they are never read.
//! - On assignment the consumer seeks to the position stored in PostgreSQL. If it cannot be
//!   read, the partition stays paused: a database error never reads as "already processed".
//! - Messages of a partition are applied in offset order. A failed message (handler error,
//!   undecodable payload, database down) pauses its partition; after a backoff the consumer
//!   seeks back to it and retries. Nothing after it is applied first, nothing is skipped, and
//!   the loop keeps polling, so a long wait neither busy-loops nor triggers a rebalance.
//! - After `max_attempts` counted failures (database outages are not counted) the topic's
//!   failure policy settles the message: `stop` records a stopped partition, which stays paused
//!   in every member and across restarts until resumed; `dead letter` / `error event` write an
//!   outbox row in the same transaction that records the message as consumed and moves the
//!   position past it, so a crash leaves either the message to retry or the settlement done.
//! - Two members that both think they own a partition (a zombie after a rebalance) serialize
//!   on the position row lock; the second sees the first one's progress and skips.

mod apply;
mod exhausted;
mod handler;
mod positions;
mod stopped;
mod store;
mod worker;

use std::sync::{Arc, Mutex};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};

pub use apply::DuplicateHandler;
pub use exhausted::FailedEvent;
pub use handler::{
    registered_handlers, Coordinates, Event, EventHandler, HandlerContext, HandlerError,
    HandlerEventArg, Registration,
};
pub use stopped::{resume_partition, stopped_partitions, Resume, StoppedPartition};
pub use worker::Stall;

use crate::config::Config;
use crate::kafka::client_config;

/// A consumer ready to run: built at start, so that configuration errors surface there.
pub(crate) struct Prepared {
    worker: worker::Worker,
}

/// Read access to a running consumer's state, for the runtime's status calls.
#[derive(Clone, Default)]
pub(crate) struct ConsumerView {
    stalls: worker::Stalls,
    shared: Arc<Mutex<positions::Shared>>,
}

impl std::fmt::Debug for ConsumerView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsumerView").finish_non_exhaustive()
    }
}

impl ConsumerView {
    /// The partitions this member owns, as (topic, partition).
    pub(crate) fn assigned(&self) -> Vec<(String, i32)> {
        let shared = self.shared.lock().unwrap_or_else(|p| p.into_inner());
        shared.assigned.iter().cloned().collect()
    }

    /// The partitions currently held on a failing message, by topic and partition.
    pub(crate) fn stalls(&self) -> Vec<Stall> {
        let mut stalls: Vec<Stall> = self
            .stalls
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        stalls.sort_by(|a, b| {
            (&a.coordinates.topic, a.coordinates.partition)
                .cmp(&(&b.coordinates.topic, b.coordinates.partition))
        });
        stalls
    }
}

/// Why the consumer could not be prepared.
#[derive(Debug, thiserror::Error)]
pub enum ConsumerSetupError {
    /// Two handlers claim one event.
    #[error(transparent)]
    DuplicateHandler(#[from] DuplicateHandler),
    /// librdkafka rejected the consumer configuration, or the subscription.
    #[error("could not create the Kafka consumer: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
}

/// The consumer's librdkafka settings: the shared ones, then procon's, then the user's
/// consumer-only options. Offsets are stored only after the database commit (as a hint).
pub fn consumer_config(config: &Config) -> ClientConfig {
    let mut client = client_config(config);
    client
        .set("group.id", &config.service_name)
        .set(
            "enable.auto.commit",
            if config.consumer.commit_hints {
                "true"
            } else {
                "false"
            },
        )
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "false");
    for (name, value) in &config.consumer.kafka {
        client.set(name, value);
    }
    client
}

/// Builds the consumer for the registered handlers; `None` when there is nothing to consume.
pub(crate) fn prepare(
    config: &Config,
    handlers: Vec<Registration>,
) -> Result<Option<Prepared>, ConsumerSetupError> {
    let registry = apply::Registry::new(handlers, |topic| {
        config.consumer.physical_topic(topic).to_owned()
    })?;
    if registry.is_empty() || !config.consumer.enabled {
        return Ok(None);
    }
    let shared = Arc::new(Mutex::new(positions::Shared::default()));
    let context = positions::PositionContext {
        group: config.service_name.clone(),
        database_url: config.database_url.clone(),
        shared: shared.clone(),
    };
    let consumer: BaseConsumer<positions::PositionContext> =
        consumer_config(config).create_with_context(context)?;
    let topics = registry.topics();
    let topic_refs: Vec<&str> = topics.iter().map(String::as_str).collect();
    consumer.subscribe(&topic_refs)?;
    Ok(Some(Prepared {
        worker: worker::Worker {
            consumer,
            registry,
            group: config.service_name.clone(),
            database_url: config.database_url.clone(),
            config: config.consumer.clone(),
            shared,
            stalls: worker::Stalls::default(),
        },
    }))
}

impl Prepared {
    /// A view of this consumer's state.
    pub(crate) fn view(&self) -> ConsumerView {
        ConsumerView {
            stalls: self.worker.stalls.clone(),
            shared: self.worker.shared.clone(),
        }
    }

    /// Runs the consumer loop on the calling thread until `stop` is set.
    pub(crate) fn run(self, stop: Arc<std::sync::atomic::AtomicBool>) {
        self.worker.run(stop)
    }
}
