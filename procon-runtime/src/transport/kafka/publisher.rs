//! [`KafkaPublisher`]: the relay's idempotent producer behind the [`Publisher`] trait.

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::FutureRecord;

use super::{producer_config, Producer, TracingContext};
use crate::config::Config;
use crate::transport::{Delivery, Publisher, Record, SendError, TransportError};

/// The relay's producer: idempotent, `acks=all`, gapless, retrying until the broker takes a
/// record (see [`producer_config`]).
///
/// Gapless means: when the broker rejects a record for good, librdkafka stops the producer
/// (a fatal error) instead of renumbering the records behind it, so every later record of the
/// partition fails too and none can reach the broker ahead of the rejected one. The publisher
/// then replaces the stopped producer with a new one on the next send; the relay reads the
/// failed records again, in order, behind the rejected one.
pub struct KafkaPublisher {
    client: rdkafka::ClientConfig,
    producer: std::sync::Mutex<Producer>,
}

impl KafkaPublisher {
    /// Creates the producer; fails on an option librdkafka rejects.
    pub fn new(config: &Config) -> Result<Self, TransportError> {
        let client = producer_config(config);
        let producer = client.create_with_context::<TracingContext, Producer>(TracingContext)?;
        Ok(KafkaPublisher {
            client,
            producer: std::sync::Mutex::new(producer),
        })
    }

    /// The current producer, replaced first if librdkafka stopped it with a fatal error.
    fn producer(&self) -> Result<Producer, TransportError> {
        use rdkafka::producer::Producer as _;
        let mut producer = self
            .producer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((code, reason)) = producer.client().fatal_error() {
            tracing::warn!(
                error = %code, reason,
                "the producer stopped (a record was rejected for good); starting a new one"
            );
            *producer = self
                .client
                .create_with_context::<TracingContext, Producer>(TracingContext)?;
        }
        Ok(producer.clone())
    }
}

impl Publisher for KafkaPublisher {
    fn warm_up(&self, timeout: std::time::Duration) -> Result<(), TransportError> {
        use rdkafka::producer::Producer as _;
        // A metadata request connects to the brokers; the idempotent producer asks for its
        // producer id as soon as a broker is up, so the id is there before the first event.
        self.producer()?.client().fetch_metadata(None, timeout)?;
        Ok(())
    }

    fn fails_successors(&self) -> bool {
        true
    }

    fn send(&self, record: Record<'_>) -> Result<Delivery, SendError> {
        let headers = record.headers.iter().fold(
            OwnedHeaders::new_with_capacity(record.headers.len()),
            |set, (key, value)| {
                set.insert(Header {
                    key,
                    value: Some(*value),
                })
            },
        );
        let future = FutureRecord::to(record.topic)
            .key(record.key)
            .payload(record.payload)
            .headers(headers);
        let producer = self.producer().map_err(SendError::Refused)?;
        match producer.send_result(future) {
            Ok(delivery) => Ok(Box::pin(async move {
                match delivery.await {
                    Ok(Ok(_)) => Ok(()),
                    Ok(Err((error, _))) => Err(TransportError::Kafka(error)),
                    Err(_cancelled) => Err(TransportError::Cancelled),
                }
            })),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                Err(SendError::QueueFull)
            }
            Err((error, _)) => Err(SendError::Refused(TransportError::Kafka(error))),
        }
    }
}
