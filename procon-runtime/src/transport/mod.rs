//! The seam between the runtime and a message transport (Kafka; Kinesis for publishing; NATS
//! JetStream fits the same traits).
//!
//! Job: say what the consumer pipeline and the relay need from a transport, and nothing more.
//! Nothing above this module names a type of a transport's client library.
//!
//! - A [`Source`] hands out owned [`Message`]s in batches, pauses, resumes and seeks
//!   partitions, and tells the runtime's [`Ownership`] when partitions (Kafka partitions,
//!   Kinesis shards under a lease, JetStream consumers) are assigned or revoked. Assignment
//!   asks the runtime where each partition starts; revocation waits until the runtime has
//!   drained the partition's in-flight work.
//! - A [`Publisher`] takes one record at a time in order and returns a future per record that
//!   resolves once the broker acknowledged it (the relay's send-and-await-acks).
//!
//! Invariants a transport must keep: a partition's messages are delivered in position order;
//! after `seek(p, at)` the next message of `p` is the one at `at`; a paused partition delivers
//! at most what was already fetched; records given to a publisher for one partition key are
//! acknowledged in the order they were given, or fail.

pub mod kafka;
pub mod kinesis;
mod position;

pub use position::{Position, PositionParseError};

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

/// A partition of a topic: a Kafka partition, a Kinesis shard (its numeric suffix), a
/// JetStream subject partition.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PartitionId {
    /// The topic (stream), by its physical name.
    pub topic: String,
    /// The partition (shard) number.
    pub partition: i32,
}

impl PartitionId {
    /// The partition `partition` of `topic`.
    pub fn new(topic: impl Into<String>, partition: i32) -> Self {
        PartitionId {
            topic: topic.into(),
            partition,
        }
    }
}

impl fmt::Display for PartitionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}[{}]", self.topic, self.partition)
    }
}

/// One message, owned: it outlives the poll that returned it and moves between threads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Where it was read.
    pub partition: PartitionId,
    /// Its position in the partition.
    pub position: Position,
    /// The partition key, when it has one (bytes as sent).
    pub key: Option<Vec<u8>>,
    /// Headers in order, values as bytes.
    pub headers: Vec<(String, Vec<u8>)>,
    /// The payload (empty for a message without one).
    pub payload: Vec<u8>,
}

impl Message {
    /// The first header named `name`, as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
    }
}

/// Where a newly assigned partition starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartAt {
    /// The oldest message the transport still holds (nothing applied yet).
    Beginning,
    /// The message at this position.
    At(Position),
}

/// The range of positions a partition holds now: `low` is the oldest message still there,
/// `high` the position the next message will get.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    /// The oldest position still held.
    pub low: Position,
    /// The position of the next message to be written.
    pub high: Position,
}

/// The runtime's side of partition ownership, called by a [`Source`] when partitions move.
pub trait Ownership: Send + Sync {
    /// `partitions` were assigned to this member: claim them and say where each starts,
    /// `None` to hold it paused (its position is unknown or not acceptable). `bounds` reads the
    /// partition's current range from the transport.
    fn assigned(
        &self,
        partitions: &[PartitionId],
        bounds: &dyn Fn(&PartitionId) -> Result<Bounds, TransportError>,
    ) -> Vec<Option<StartAt>>;

    /// `partitions` are being taken away: returns once their in-flight work is finished (or
    /// the drain timeout passed) and their positions are stored.
    fn revoked(&self, partitions: &[PartitionId]);
}

/// A stream of messages from the partitions assigned to this member.
pub trait Source: Send {
    /// Waits up to `timeout` for a message, then takes what else is already fetched, up to
    /// `max` messages in all. Assignment changes are reported to the [`Ownership`] from inside
    /// this call. Transient errors are logged, not returned.
    fn poll(&mut self, max: usize, timeout: Duration) -> Vec<Message>;
    /// Stops fetching `partition` (back-pressure, a stopped or unpositioned partition).
    fn pause(&mut self, partition: &PartitionId) -> Result<(), TransportError>;
    /// Fetches `partition` again.
    fn resume(&mut self, partition: &PartitionId) -> Result<(), TransportError>;
    /// Moves `partition` to `at` and resumes it: the next message of it is the one at `at`.
    fn seek(&mut self, partition: &PartitionId, at: StartAt) -> Result<(), TransportError>;
    /// The range of positions `partition` holds now.
    fn bounds(&mut self, partition: &PartitionId) -> Result<Bounds, TransportError>;
    /// The position the next message of `partition` will get (the lag metric's log end; asked
    /// every few seconds, briefly). `None` when it is not known now or the transport has no
    /// such end (Kinesis).
    fn log_end(&mut self, partition: &PartitionId) -> Option<Position> {
        let _ = partition;
        None
    }
    /// Tells the transport how far the partition is applied, for its own tools (Kafka's
    /// committed offsets). The runtime never reads it back.
    fn hint_position(&mut self, partition: &PartitionId, next: Position);
    /// Leaves the group (revoking what this member owns) and closes the client.
    fn close(&mut self);
}

/// One record for a [`Publisher`].
#[derive(Debug, Clone, Copy)]
pub struct Record<'a> {
    /// The physical topic.
    pub topic: &'a str,
    /// The partition key.
    pub key: &'a [u8],
    /// The payload.
    pub payload: &'a [u8],
    /// Headers, in order.
    pub headers: &'a [(&'a str, &'a [u8])],
}

/// The broker's answer for one record.
pub type Delivery = Pin<Box<dyn Future<Output = Result<(), TransportError>> + Send>>;

/// Why a publisher did not take a record.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The client's queue is full: try the same record again shortly.
    #[error("the producer queue is full")]
    QueueFull,
    /// The record is refused (too large, unknown topic...).
    #[error(transparent)]
    Refused(TransportError),
}

/// Sends records and reports each one's acknowledgement.
pub trait Publisher: Send + Sync {
    /// Enqueues `record`; the returned [`Delivery`] resolves when the broker acknowledged it.
    fn send(&self, record: Record<'_>) -> Result<Delivery, SendError>;

    /// Connects and acquires whatever the first send would otherwise wait for (Kafka: the
    /// brokers' metadata and the idempotent producer's id), so the first event is not slower
    /// than the others. Waits at most `timeout`; a failure is only logged by the caller.
    fn warm_up(&self, timeout: Duration) -> Result<(), TransportError> {
        let _ = timeout;
        Ok(())
    }

    /// True when a record that fails makes every later record of its key already handed over
    /// fail too (Kafka's gapless idempotent producer). The relay then keeps several records of a
    /// key in flight; otherwise one at a time, so a failure can never be overtaken.
    fn fails_successors(&self) -> bool {
        false
    }
}

/// An error of a transport client, with the transport named.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// Kafka (librdkafka) failed.
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    /// Kinesis (aws-sdk-kinesis) failed, or procon refused a record Kinesis cannot take.
    #[error("kinesis: {0}")]
    Kinesis(#[from] kinesis::KinesisError),
    /// The event's topic is declared nowhere and `relay.undeclared_topics` is `refuse`.
    #[error(
        "topic `{0}` is not declared: no #[derive(Outbox)] model, declare_topic! or relay.topics \
         entry names it, and relay.undeclared_topics is `refuse` \
         (PROCON_RELAY_UNDECLARED_TOPICS)"
    )]
    UndeclaredTopic(String),
    /// The schema registry could not give an Avro event's schema id (see
    /// [`crate::avro::RegistryError::is_outage`] for which failures are retried).
    #[error("schema registry: {0}")]
    Registry(#[from] crate::avro::RegistryError),
    /// The registry does not know an Avro event's schema and `schema_registry.auto_register`
    /// is off: the event waits until the schema is registered (`procon schemas register`).
    #[error("the Avro schema of this event is not registered under subject `{0}` and auto-registration is off; register it with `procon schemas register`")]
    SchemaUnregistered(String),
    /// An Avro event names a schema fingerprint `procon_schemas` does not hold.
    #[error("the Avro schema {0} of this event is missing from procon_schemas")]
    SchemaMissing(String),
    /// The delivery was cancelled before the broker answered (the client is closing).
    #[error("the delivery was cancelled before the broker answered")]
    Cancelled,
}

impl TransportError {
    /// True when the broker or the client rejected the record itself (too large, invalid, not
    /// allowed on its topic): sending it again the same way fails again. Outages, timeouts and
    /// cancellations are not rejections; they are retried without limit.
    pub fn is_rejection(&self) -> bool {
        match self {
            TransportError::Kafka(error) => kafka::is_rejection(error),
            TransportError::Kinesis(error) => error.is_rejection(),
            TransportError::UndeclaredTopic(_) => true,
            TransportError::Cancelled => false,
            TransportError::Registry(error) => !error.is_outage(),
            TransportError::SchemaUnregistered(_) => false,
            TransportError::SchemaMissing(_) => true,
        }
    }
}
