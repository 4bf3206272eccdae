//! The consumer side: event handlers and the concurrent exactly-once pipeline that runs them.
//!
//! Job: read the topics handlers are registered for, and apply each message exactly once to
//! this service's database, many at a time.
//!
//! Reading path: `prepare` builds the handler registry, the connection pool, the
//! `pipeline::Pipeline` and the transport source; `run` starts `concurrency` processors
//! (`processor`), the housekeeping thread, and runs the intake loop (`intake`) on the calling
//! thread. The source positions and releases partitions through the pipeline
//! (`pipeline::PipelineOwnership`).
//!
//! Invariants and what a crash can do:
//! - Messages go to lanes (`partition_by`: the key by default); a lane is applied by one
//!   processor at a time, in position order; lanes of one partition are applied concurrently.
//! - A unit (up to `batch_size` messages of some lanes of one partition) is applied in one
//!   transaction: record the event ids (a redelivered id is not applied again; a message
//!   without one gets an id derived from its coordinates), run the handlers, check the
//!   partition's claim (epoch), commit. A crash before the commit leaves no trace.
//! - The stored position is the partition's watermark (the lowest position not yet applied),
//!   written every 100 ms. After a crash the next owner starts there and recognises what was
//!   applied above it by event id: no effect twice, none skipped.
//! - A claim increments the partition's epoch and waits for the previous owner's committing
//!   transactions; afterwards the previous owner's units and watermarks are refused (fenced).
//! - Revocation stops handing out the partition's work, waits for its busy lanes (bounded by
//!   `drain_timeout`) and stores its watermark before the partition is released.
//! - A stored position outside the log's range stops the partition with a clear error and a
//!   proposed reset (`procon resume <topic> <partition> --reset`); it is never passed over.
//! - A failing message holds only its lane (and the watermark): retries with backoff, counted
//!   failures persisted across rebalances, then the policy: `stop` the lane (persisted,
//!   resumable), dead letter or error event (settled atomically). Database outages are not
//!   counted. A panicking handler is a failure: rolled back, its connection discarded.
//! - Back-pressure: a partition with `max_in_flight` messages waiting is paused at the source
//!   until half of them are applied; the intake keeps polling, so no rebalance follows.

mod apply;
mod batch;
mod dead_letters;
mod decode;
mod exhausted;
mod handler;
mod housekeeping;
mod intake;
mod lanes;
mod pipeline;
mod processor;
mod replay;
mod retry;
mod status;
mod stopped;
mod store;
mod watermark;

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

pub use apply::DuplicateHandler;
pub use batch::BatchHandler;
pub use dead_letters::{
    dead_letters, dead_letters_with_progress, redrive, DeadLetter, RedriveError,
};
pub use exhausted::FailedEvent;
pub use handler::{
    registered_handlers, Coordinates, Event, EventHandler, HandlerContext, HandlerError,
    HandlerEventArg, Registration,
};
pub use replay::{
    replay, replay_positions_at, ReplayError, ReplayFrom, ReplayTarget, ReplayTargetError,
    ReplayedPartition,
};
pub use status::{Stall, Status};
pub use stopped::{
    resume_lane, resume_partition, stopped_partitions, Resume, ResumeError, StoppedPartition,
};

use crate::config::{Config, Transport};
use crate::transport::kafka::KafkaSource;
use crate::transport::kinesis::KinesisSource;
use crate::transport::{Source, TransportError};
use pipeline::{Pipeline, PipelineOwnership};

/// A consumer ready to run: built at start, so that configuration errors surface there.
pub(crate) struct Prepared {
    pipeline: Arc<Pipeline>,
    source: Box<dyn Source>,
}

/// Why the consumer could not be prepared.
#[derive(Debug, thiserror::Error)]
pub enum ConsumerSetupError {
    /// Two handlers claim one event.
    #[error(transparent)]
    DuplicateHandler(#[from] DuplicateHandler),
    /// The transport rejected the consumer configuration, or the subscription.
    #[error("could not create the consumer: {0}")]
    Transport(#[from] TransportError),
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
    let topics = registry.topics();
    // A connection per processor, one for the intake (watermarks, claims) and one for
    // housekeeping.
    let pool = crate::db::pool(&config.database_url, config.consumer.concurrency + 2);
    let pipeline = Arc::new(
        Pipeline::new(
            config.service_name.clone(),
            registry,
            config.consumer.clone(),
            pool,
            Status::default(),
        )
        .with_avro(decode::AvroDecoder::new(&config.schema_registry)),
    );
    let ownership = Arc::new(PipelineOwnership(pipeline.clone()));
    let source: Box<dyn Source> = match config.transport {
        Transport::Kafka => Box::new(KafkaSource::subscribe(config, &topics, ownership)?),
        Transport::Kinesis => Box::new(KinesisSource::subscribe(config, &topics, ownership)?),
    };
    Ok(Some(Prepared { pipeline, source }))
}

impl Prepared {
    /// The consumer's status handle.
    pub(crate) fn status(&self) -> Status {
        self.pipeline.status.clone()
    }

    /// Runs the consumer on the calling thread until `stop` is set: processors and
    /// housekeeping on threads of their own, the intake loop here.
    pub(crate) fn run(self, stop: Arc<AtomicBool>) {
        let Prepared { pipeline, source } = self;
        tracing::info!(
            group = pipeline.group,
            topics = ?pipeline.registry.topics(),
            concurrency = pipeline.config.concurrency,
            "consumer started"
        );
        let mut threads = Vec::new();
        for index in 0..pipeline.config.concurrency {
            let pipeline = pipeline.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("procon-processor-{index}"))
                .spawn(move || processor::run(pipeline));
            match spawned {
                Ok(handle) => threads.push(handle),
                Err(error) => tracing::error!(%error, "could not start a processor thread"),
            }
        }
        let housekeeping = {
            let (pipeline, stop) = (pipeline.clone(), stop.clone());
            std::thread::Builder::new()
                .name("procon-housekeeping".to_owned())
                .spawn(move || housekeeping::run(pipeline, stop))
        };
        intake::run(pipeline.clone(), source, stop);
        for thread in threads {
            let _ = thread.join();
        }
        if let Ok(housekeeping) = housekeeping {
            housekeeping.thread().unpark();
            let _ = housekeeping.join();
        }
    }
}
