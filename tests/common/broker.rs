//! The real broker: topic creation and a collector reading what a topic holds.
//!
//! The client settings this broker (tansu) needs are pinned here and nowhere else:
//! - `session.timeout.ms=6000`, `heartbeat.interval.ms=1000`: tansu delays a new group's first
//!   assignment by about half the session timeout (23 s with the default 45 s), and under load it
//!   leaves heartbeats unanswered for over 2 s, which with a 2 s timeout makes members churn;
//! - `allow.auto.create.topics=false`: tansu does not auto-create topics; tests create them.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};

/// The broker the tests use (the one `scripts/broker.sh` starts by default).
pub fn brokers() -> String {
    std::env::var("PROCON_TEST_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".to_owned())
}

/// Client settings every test consumer needs against the test broker.
pub const TEST_CONSUMER_SETTINGS: [(&str, &str); 3] = [
    ("session.timeout.ms", "6000"),
    ("heartbeat.interval.ms", "1000"),
    ("allow.auto.create.topics", "false"),
];

/// A topic name no other test (or earlier run against the same broker) uses.
pub fn unique_topic(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::now_v7().simple())
}

/// Creates `topic` with `partitions` partitions through the admin API.
pub async fn create_topic(brokers: &str, topic: &str, partitions: i32) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .expect("admin client");
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let results = admin
        .create_topics(
            &[NewTopic::new(topic, partitions, TopicReplication::Fixed(1))],
            &options,
        )
        .await
        .expect("create_topics request");
    for result in results {
        result.unwrap_or_else(|(name, code)| panic!("creating topic {name} failed: {code}"));
    }
}

/// One message as a consumer sees it.
#[derive(Debug, Clone)]
pub struct Received {
    pub partition: i32,
    pub offset: i64,
    pub key: String,
    /// The key's bytes as sent.
    pub raw_key: Vec<u8>,
    pub payload: serde_json::Value,
    /// The payload's bytes as published.
    pub raw_payload: Vec<u8>,
    pub headers: BTreeMap<String, String>,
    /// The message's timestamp (CreateTime: when the producer sent it), in ms.
    pub timestamp_ms: Option<i64>,
}

impl Received {
    /// The `procon-event-id` header.
    pub fn event_id(&self) -> &str {
        self.headers
            .get("procon-event-id")
            .map(String::as_str)
            .unwrap_or("")
    }

    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }
}

/// Reads every partition of `topic` from the beginning, by assignment (no group join).
pub struct Collector {
    consumer: BaseConsumer,
    pub received: Vec<Received>,
}

impl Collector {
    pub fn new(brokers: &str, topic: &str, partitions: i32) -> Collector {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", brokers)
            .set("group.id", unique_topic("collector"))
            .set("enable.auto.commit", "false");
        for (name, value) in TEST_CONSUMER_SETTINGS {
            config.set(name, value);
        }
        let consumer: BaseConsumer = config.create().expect("collector consumer");
        let mut assignment = TopicPartitionList::new();
        for partition in 0..partitions {
            assignment
                .add_partition_offset(topic, partition, Offset::Beginning)
                .expect("assignment");
        }
        consumer.assign(&assignment).expect("assign");
        Collector {
            consumer,
            received: Vec::new(),
        }
    }

    /// Reads until `done(received)` holds, or panics after `timeout`.
    ///
    /// `done` is asked again only after the messages already waiting were read (up to
    /// [`BURST`] at a time), so a check that walks everything received stays cheap.
    pub fn until(
        &mut self,
        timeout: Duration,
        mut done: impl FnMut(&[Received]) -> bool,
    ) -> &[Received] {
        const BURST: usize = 1000;
        let started = Instant::now();
        while !done(&self.received) {
            assert!(
                started.elapsed() < timeout,
                "timed out after {timeout:?}; received {} messages",
                self.received.len()
            );
            if self.poll(Duration::from_millis(100)) {
                for _ in 1..BURST {
                    if !self.poll(Duration::ZERO) {
                        break;
                    }
                }
            }
        }
        &self.received
    }

    /// Reads until at least `n` messages arrived.
    pub fn at_least(&mut self, n: usize, timeout: Duration) -> &[Received] {
        self.until(timeout, |r| r.len() >= n)
    }

    /// Reads whatever arrives during `period`.
    pub fn drain_for(&mut self, period: Duration) -> &[Received] {
        let started = Instant::now();
        while started.elapsed() < period {
            self.poll(Duration::from_millis(50));
        }
        &self.received
    }

    /// Reads at most one message; tells whether one arrived.
    fn poll(&mut self, timeout: Duration) -> bool {
        if let Some(message) = self.consumer.poll(timeout) {
            let message = message.expect("consume");
            let mut headers = BTreeMap::new();
            if let Some(h) = message.headers() {
                for header in h.iter() {
                    let value = header
                        .value
                        .map(|v| String::from_utf8_lossy(v).into_owned());
                    headers.insert(header.key.to_owned(), value.unwrap_or_default());
                }
            }
            let payload = message.payload().map(|p| {
                serde_json::from_slice(p).unwrap_or_else(|_| {
                    serde_json::Value::String(String::from_utf8_lossy(p).into_owned())
                })
            });
            self.received.push(Received {
                partition: message.partition(),
                offset: message.offset(),
                key: message
                    .key()
                    .map(|k| String::from_utf8_lossy(k).into_owned())
                    .unwrap_or_default(),
                raw_key: message.key().map(<[u8]>::to_vec).unwrap_or_default(),
                payload: payload.unwrap_or(serde_json::Value::Null),
                raw_payload: message.payload().map(<[u8]>::to_vec).unwrap_or_default(),
                headers,
                timestamp_ms: message.timestamp().to_millis(),
            });
            return true;
        }
        false
    }
}

/// Produces one message as-is (for duplicates and malformed input).
pub async fn produce_raw(
    brokers: &str,
    topic: &str,
    key: impl AsRef<[u8]>,
    payload: &[u8],
    headers: &[(&str, &str)],
) {
    use rdkafka::message::{Header, OwnedHeaders};
    use rdkafka::producer::{FutureProducer, FutureRecord};
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .expect("producer");
    let mut owned = OwnedHeaders::new();
    for (name, value) in headers {
        owned = owned.insert(Header {
            key: name,
            value: Some(*value),
        });
    }
    producer
        .send(
            FutureRecord::to(topic)
                .key(key.as_ref())
                .payload(payload)
                .headers(owned),
            Duration::from_secs(10),
        )
        .await
        .map_err(|(e, _)| e)
        .expect("produce");
}

/// The tansu binary `scripts/broker.sh` installed, for tests that run a broker of their own.
pub fn tansu_bin() -> std::path::PathBuf {
    let bin = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(".procon/broker/bin/tansu");
    assert!(
        bin.exists(),
        "{} is missing: run scripts/broker.sh install",
        bin.display()
    );
    bin
}
