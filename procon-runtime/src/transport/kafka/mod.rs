//! Kafka behind the transport seam: everything that names an rdkafka type lives here.
//!
//! Job: build librdkafka configurations from [`Config`] (the one place procon's Kafka client
//! settings are decided), route librdkafka's logs and errors (broker down, authentication
//! failure...) to `tracing`, and implement [`super::Source`] ([`KafkaSource`]) and
//! [`super::Publisher`] ([`KafkaPublisher`]).

mod publisher;
mod reader;
mod source;

pub use publisher::KafkaPublisher;
pub use reader::{positions_at, read_topic};
pub use source::KafkaSource;

use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::error::KafkaError;
use rdkafka::producer::DeliveryResult;
use rdkafka::producer::{FutureProducer, ProducerContext};

use crate::config::Config;

/// Routes librdkafka's logs and client-level errors to `tracing`.
#[derive(Debug, Clone, Default)]
pub struct TracingContext;

impl ClientContext for TracingContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        // procon sets `enable.gapless.guarantee` on purpose (see `producer_config`); librdkafka
        // warns about every experimental property, at every start.
        if fac == "CONFWARN" && log_message.contains("enable.gapless.guarantee") {
            tracing::debug!(target: "procon::kafka", facility = fac, "{log_message}");
            return;
        }
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => {
                tracing::error!(target: "procon::kafka", facility = fac, "{log_message}")
            }
            RDKafkaLogLevel::Warning => {
                tracing::warn!(target: "procon::kafka", facility = fac, "{log_message}")
            }
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                tracing::info!(target: "procon::kafka", facility = fac, "{log_message}")
            }
            RDKafkaLogLevel::Debug => {
                tracing::debug!(target: "procon::kafka", facility = fac, "{log_message}")
            }
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        tracing::warn!(target: "procon::kafka", %error, "kafka client error: {reason}");
    }
}

/// The default rebalance behaviour: [`read_topic`] assigns its partitions itself.
impl rdkafka::consumer::ConsumerContext for TracingContext {}

impl ProducerContext for TracingContext {
    type DeliveryOpaque = ();
    fn delivery(&self, _: &DeliveryResult<'_>, _: Self::DeliveryOpaque) {}
}

/// The producer type the relay uses.
type Producer = FutureProducer<TracingContext>;

/// A client option librdkafka refused, as a configuration error that names where the option
/// is set (the environment variable or `Config::kafka`) and what to do. Secret values are
/// masked.
pub(crate) fn rejected_option(
    error: &crate::transport::TransportError,
) -> Option<crate::ConfigError> {
    let crate::transport::TransportError::Kafka(KafkaError::ClientConfig(
        _,
        description,
        key,
        value,
    )) = error
    else {
        return None;
    };
    let variable = key.to_ascii_uppercase().replace('.', "_");
    let shown = if crate::secrets::is_secret_option(key) {
        crate::secrets::MASK.to_owned()
    } else {
        value.clone()
    };
    Some(crate::ConfigError::Invalid {
        name: format!(
            "PROCON_KAFKA_{variable} (or PROCON_CONSUMER_KAFKA_{variable}, or Config::kafka[\"{key}\"])"
        ),
        value: shown,
        reason: format!(
            "librdkafka refused option `{key}`: {description}; fix or remove it (the options \
             are listed in librdkafka's CONFIGURATION.md)"
        ),
    })
}

/// True for errors about the record itself (see [`crate::transport::TransportError::is_rejection`]).
pub(crate) fn is_rejection(error: &rdkafka::error::KafkaError) -> bool {
    use rdkafka::error::{KafkaError, RDKafkaErrorCode as Code};
    let code = match error {
        KafkaError::MessageProduction(code) => *code,
        _ => return false,
    };
    matches!(
        code,
        Code::MessageSizeTooLarge
            | Code::InvalidMessageSize
            | Code::InvalidMessage
            | Code::InvalidRecord
            | Code::InvalidTopic
            | Code::TopicAuthorizationFailed
            | Code::ClusterAuthorizationFailed
            | Code::PolicyViolation
            | Code::UnknownTopic
            | Code::UnknownPartition
            | Code::InvalidArgument
            | Code::InvalidRequiredAcks
    )
}

/// Options shared by every client, then the user's pass-through options.
pub fn client_config(config: &Config) -> ClientConfig {
    let mut client = ClientConfig::new();
    client.set("bootstrap.servers", &config.brokers);
    client.set("client.id", &config.service_name);
    for (name, value) in &config.kafka {
        client.set(name, value);
    }
    client
}

/// The relay's producer settings. Pinned after the user's options, because the relay's
/// guarantees rest on them:
/// - `enable.idempotence=true` (implies `acks=all` and at most 5 requests in flight): retries
///   neither duplicate nor reorder messages within a partition;
/// - `enable.gapless.guarantee=true`: a record the broker rejects for good stops the producer
///   instead of letting the records behind it through (see [`KafkaPublisher`]);
/// - `message.timeout.ms=0` unless the user set it: librdkafka retries a message until the
///   broker takes it, so a broker outage delays events but never fails or reorders them.
pub fn producer_config(config: &Config) -> ClientConfig {
    let mut client = client_config(config);
    client.set("enable.idempotence", "true");
    client.set("enable.gapless.guarantee", "true");
    client.set("acks", "all");
    if !config.kafka.contains_key("message.timeout.ms") {
        client.set("message.timeout.ms", "0");
    }
    client
}

/// The consumer's librdkafka settings: the shared ones, then procon's, then the user's
/// consumer-only options. Positions live in PostgreSQL; Kafka's committed offsets are only
/// hints, stored after the database commit. `fetch.wait.max.ms` defaults to 10 ms: the broker
/// answers a fetch as soon as data is there instead of waiting up to librdkafka's 500 ms.
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
        .set("enable.partition.eof", "false")
        .set("fetch.wait.max.ms", "10");
    for (name, value) in &config.consumer.kafka {
        client.set(name, value);
    }
    client
}
