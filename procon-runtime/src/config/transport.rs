//! Which transport carries the events, and the settings of the ones that are not Kafka (Kafka's
//! are librdkafka's own options, passed through in [`super::Config::kafka`]).

use std::collections::BTreeMap;
use std::time::Duration;

use super::{invalid, parse, ConfigError};

/// The transport the relay publishes to (and, on Kafka, the consumer reads from).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Transport {
    /// Apache Kafka (or a Kafka-protocol broker), through librdkafka. The default.
    #[default]
    Kafka,
    /// Amazon Kinesis Data Streams (or an emulator), through `aws-sdk-kinesis`: topics are
    /// streams, the event key is the partition key. See [`KinesisConfig`].
    Kinesis,
}

impl Transport {
    /// The transport's name in `PROCON_TRANSPORT`.
    pub fn name(self) -> &'static str {
        match self {
            Transport::Kafka => "kafka",
            Transport::Kinesis => "kinesis",
        }
    }
}

/// Settings of the Kinesis transport.
///
/// Credentials are not settings: they come from the standard AWS variables
/// (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`) when the client is
/// built; with none set and an `endpoint_url` given, placeholder credentials (an emulator
/// checks no signature). For another credentials provider (web identity, instance profile, SSO), build an
/// `aws_sdk_kinesis::Client` with `aws-config` and hand it to
/// [`crate::transport::kinesis::KinesisPublisher::with_client`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KinesisConfig {
    /// The AWS region. Default: `AWS_REGION` when set at start, else `us-east-1`.
    pub region: String,
    /// Another endpoint than AWS's own for the region (an emulator:
    /// `http://127.0.0.1:4568`). Default none.
    pub endpoint_url: Option<String>,
    /// `PutRecords` requests the relay keeps in flight at once. Default 8.
    pub max_requests_in_flight: usize,
    /// How long a consumer's shard lease lasts without renewal: a member that died gives its
    /// shards up this long after its last heartbeat (renewals run every third of it).
    /// Default 10 s.
    pub lease_ttl: Duration,
    /// How long a consumer waits before reading a shard again after a read that returned no
    /// record (AWS allows five reads per second and shard, shared by every reader of the
    /// stream). Default 200 ms.
    pub idle_poll_interval: Duration,
    /// Records a consumer asks for per `GetRecords` call (1 to 10,000). Default 1,000.
    pub max_records_per_read: i32,
}

impl Default for KinesisConfig {
    fn default() -> Self {
        KinesisConfig {
            region: std::env::var("AWS_REGION").unwrap_or_else(|_| "us-east-1".to_owned()),
            endpoint_url: None,
            max_requests_in_flight: 8,
            lease_ttl: Duration::from_secs(10),
            idle_poll_interval: Duration::from_millis(200),
            max_records_per_read: 1000,
        }
    }
}

/// Reads `PROCON_TRANSPORT` and the `PROCON_KINESIS_*` variables.
pub(super) fn from_vars(
    vars: &BTreeMap<String, String>,
) -> Result<(Transport, KinesisConfig), ConfigError> {
    let transport = match vars.get("PROCON_TRANSPORT").map(|v| v.trim()) {
        None | Some("kafka") => Transport::Kafka,
        Some("kinesis") => Transport::Kinesis,
        Some(other) => {
            return Err(invalid(
                "PROCON_TRANSPORT",
                other,
                "expected `kafka` or `kinesis`",
            ))
        }
    };
    let mut kinesis = KinesisConfig::default();
    if let Some(region) = vars.get("PROCON_KINESIS_REGION").or(vars.get("AWS_REGION")) {
        kinesis.region = region.trim().to_owned();
    }
    if let Some(url) = vars.get("PROCON_KINESIS_ENDPOINT_URL") {
        kinesis.endpoint_url = Some(url.trim().to_owned());
    }
    if let Some(v) = vars.get("PROCON_KINESIS_MAX_REQUESTS_IN_FLIGHT") {
        kinesis.max_requests_in_flight = parse("PROCON_KINESIS_MAX_REQUESTS_IN_FLIGHT", v)?;
    }
    if let Some(v) = vars.get("PROCON_KINESIS_LEASE_TTL_MS") {
        kinesis.lease_ttl = Duration::from_millis(parse("PROCON_KINESIS_LEASE_TTL_MS", v)?);
    }
    if let Some(v) = vars.get("PROCON_KINESIS_MAX_RECORDS_PER_READ") {
        kinesis.max_records_per_read = parse("PROCON_KINESIS_MAX_RECORDS_PER_READ", v)?;
    }
    if let Some(v) = vars.get("PROCON_KINESIS_IDLE_POLL_INTERVAL_MS") {
        kinesis.idle_poll_interval =
            Duration::from_millis(parse("PROCON_KINESIS_IDLE_POLL_INTERVAL_MS", v)?);
    }
    Ok((transport, kinesis))
}

/// Checks the Kinesis settings (only when Kinesis is the transport).
pub(super) fn validate(kinesis: &KinesisConfig) -> Result<(), ConfigError> {
    if kinesis.region.trim().is_empty() {
        return Err(invalid("kinesis.region", "", "must name an AWS region"));
    }
    if kinesis.max_requests_in_flight == 0 {
        return Err(invalid(
            "kinesis.max_requests_in_flight",
            "0",
            "must be at least 1 (nothing could be sent)",
        ));
    }
    if !(1..=10_000).contains(&kinesis.max_records_per_read) {
        return Err(invalid(
            "kinesis.max_records_per_read",
            &kinesis.max_records_per_read.to_string(),
            "must be between 1 and 10000 (the GetRecords limit)",
        ));
    }
    if kinesis.lease_ttl < Duration::from_millis(300) {
        return Err(invalid(
            "kinesis.lease_ttl",
            &format!("{:?}", kinesis.lease_ttl),
            "must be at least 300 ms (a lease is renewed every third of it)",
        ));
    }
    if let Some(url) = &kinesis.endpoint_url {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(invalid(
                "kinesis.endpoint_url",
                &super::redact(url),
                "expected an http:// or https:// URL",
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::Config;
    use super::*;

    #[test]
    fn kinesis_needs_no_brokers_and_reads_its_settings() {
        let config = Config::from_vars([
            ("PROCON_DATABASE_URL", "postgres://u@127.0.0.1/db"),
            ("PROCON_TRANSPORT", "kinesis"),
            ("PROCON_KINESIS_REGION", "eu-west-1"),
            ("PROCON_KINESIS_ENDPOINT_URL", "http://127.0.0.1:4568"),
            ("PROCON_KINESIS_MAX_REQUESTS_IN_FLIGHT", "3"),
            ("PROCON_KINESIS_LEASE_TTL_MS", "4000"),
            ("PROCON_KINESIS_IDLE_POLL_INTERVAL_MS", "50"),
            ("PROCON_KINESIS_MAX_RECORDS_PER_READ", "25"),
        ])
        .unwrap();
        assert_eq!(config.transport, Transport::Kinesis);
        assert_eq!(config.kinesis.region, "eu-west-1");
        assert_eq!(
            config.kinesis.endpoint_url.as_deref(),
            Some("http://127.0.0.1:4568")
        );
        assert_eq!(config.kinesis.max_requests_in_flight, 3);
        assert_eq!(config.kinesis.lease_ttl, Duration::from_secs(4));
        assert_eq!(config.kinesis.idle_poll_interval, Duration::from_millis(50));
        assert_eq!(config.kinesis.max_records_per_read, 25);
    }

    #[test]
    fn kafka_stays_the_default_and_still_needs_its_brokers() {
        let error =
            Config::from_vars([("PROCON_DATABASE_URL", "postgres://u@127.0.0.1/db")]).unwrap_err();
        assert!(error.to_string().contains("PROCON_BROKERS"), "{error}");
        let config = Config::from_vars([
            ("PROCON_DATABASE_URL", "postgres://u@127.0.0.1/db"),
            ("PROCON_BROKERS", "k:9092"),
        ])
        .unwrap();
        assert_eq!(config.transport, Transport::Kafka);
    }

    #[test]
    fn a_wrong_transport_or_kinesis_setting_is_named() {
        let with = |name: &'static str, value: &'static str| {
            Config::from_vars([
                ("PROCON_DATABASE_URL", "postgres://u@127.0.0.1/db"),
                ("PROCON_TRANSPORT", "kinesis"),
                (name, value),
            ])
            .unwrap_err()
            .to_string()
        };
        let error = with("PROCON_TRANSPORT", "kinesys");
        assert!(error.contains("expected `kafka` or `kinesis`"), "{error}");
        let error = with("PROCON_KINESIS_MAX_REQUESTS_IN_FLIGHT", "0");
        assert!(error.contains("kinesis.max_requests_in_flight"), "{error}");
        let error = with("PROCON_KINESIS_MAX_RECORDS_PER_READ", "10001");
        assert!(error.contains("kinesis.max_records_per_read"), "{error}");
        let error = with("PROCON_KINESIS_LEASE_TTL_MS", "100");
        assert!(error.contains("kinesis.lease_ttl"), "{error}");
        let error = with("PROCON_KINESIS_ENDPOINT_URL", "localhost:4568");
        assert!(error.contains("http://"), "{error}");
    }

    #[test]
    fn the_debug_output_hides_a_password_in_the_endpoint() {
        let mut config = Config::new_kinesis(
            "postgres://u@127.0.0.1/db",
            KinesisConfig {
                endpoint_url: Some("https://user:hunter2@proxy.example:443".to_owned()),
                ..KinesisConfig::default()
            },
        );
        config.service_name = "s".to_owned();
        let shown = format!("{config:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("Kinesis"), "{shown}");
    }
}
