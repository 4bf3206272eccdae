//! [`KafkaPublisher`]: the relay's idempotent producer behind the [`Publisher`] trait.

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::FutureRecord;

use super::{producer_config, Producer, TracingContext};
use crate::config::Config;
use crate::transport::{Delivery, Publisher, Record, SendError, TransportError};

/// The relay's producer: idempotent, `acks=all`, retrying until the broker takes a record (see
/// [`producer_config`]).
pub struct KafkaPublisher {
    producer: Producer,
}

impl KafkaPublisher {
    /// Creates the producer; fails on an option librdkafka rejects.
    pub fn new(config: &Config) -> Result<Self, TransportError> {
        let producer = producer_config(config)
            .create_with_context::<TracingContext, Producer>(TracingContext)?;
        Ok(KafkaPublisher { producer })
    }
}

impl Publisher for KafkaPublisher {
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
        match self.producer.send_result(future) {
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
