//! Runtime configuration, from code or from the environment.
//!
//! Job: hold everything [`crate::start`] needs and reject what cannot work *before* anything
//! starts (an empty broker list, an unparsable database URL, a malformed number), with an error
//! naming the setting. librdkafka options are passed through untouched, so every client option
//! librdkafka knows can be set without procon knowing it.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::time::Duration;

use crate::backoff::BackoffConfig;

mod admin;
mod registry;
mod transport;

pub use admin::AdminConfig;
pub use registry::SchemaRegistryConfig;
pub use transport::{KinesisConfig, Transport};

/// Everything the runtime needs: where the database and the brokers are, and how the relay runs.
///
/// Its `Debug` output hides the database password and secret client options (`sasl.password`,
/// `ssl.key.password`...), so a logged configuration leaks no secret.
#[derive(Clone)]
pub struct Config {
    /// The service's name; later the consumer group id. Default `procon`.
    pub service_name: String,
    /// PostgreSQL URL, e.g. `postgres://user@127.0.0.1:5432/app`. Its `options` parameter may
    /// set a `search_path`; the relay reads the outbox of the connection's current schema.
    pub database_url: String,
    /// The transport events go over: Kafka (the default) or Kinesis.
    pub transport: Transport,
    /// Kafka bootstrap servers, comma separated (unused on another transport).
    pub brokers: String,
    /// librdkafka options for every client procon creates (`linger.ms`, `security.protocol`...).
    /// They override procon's defaults, except the ones the delivery guarantee depends on.
    pub kafka: BTreeMap<String, String>,
    /// Settings of the Kinesis transport (used when `transport` is [`Transport::Kinesis`]).
    pub kinesis: KinesisConfig,
    /// How the relay runs.
    pub relay: RelayConfig,
    /// How the consumer runs.
    pub consumer: ConsumerConfig,
    /// The admin server (metrics, health).
    pub admin: AdminConfig,
    /// The schema registry (Avro events).
    pub schema_registry: SchemaRegistryConfig,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("service_name", &self.service_name)
            .field("database_url", &redact(&self.database_url))
            .field("transport", &self.transport)
            .field("brokers", &self.brokers)
            .field("kafka", &crate::secrets::RedactedOptions(&self.kafka))
            .field(
                "kinesis",
                &KinesisConfig {
                    endpoint_url: self.kinesis.endpoint_url.as_deref().map(redact),
                    ..self.kinesis.clone()
                },
            )
            .field("relay", &self.relay)
            .field(
                "consumer",
                &ConsumerConfig {
                    kafka: crate::secrets::masked_options(&self.consumer.kafka),
                    ..self.consumer.clone()
                },
            )
            .field("admin", &self.admin)
            .field("schema_registry", &self.schema_registry)
            .finish()
    }
}

/// What the consumer does with an event no handler is registered for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UnknownEvents {
    /// Record it as consumed (its offset advances) and log at debug level. The default.
    #[default]
    Ignore,
    /// Treat it as a failure: its lane (key) holds on it and retries with backoff.
    Stop,
}

/// Settings of the exactly-once consumer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerConfig {
    /// Run the consumer in this process when handlers are registered. Default `true`.
    pub enabled: bool,
    /// Events without a handler: ignore and record (default) or stop.
    pub unknown_events: UnknownEvents,
    /// Physical topic names for the topics handlers name, e.g. `accounts` → `prod.accounts`.
    /// A topic not listed is used as written.
    pub topics: BTreeMap<String, String>,
    /// librdkafka options for the consumer only (`session.timeout.ms`, `fetch.wait.max.ms`...).
    pub kafka: BTreeMap<String, String>,
    /// How long applied event ids are remembered to recognise redelivered events. Default 7 days.
    pub dedup_retention: Duration,
    /// How often expired event ids are deleted. Default 10 minutes.
    pub cleanup_interval: Duration,
    /// Also commit applied positions to Kafka (as a hint for tools; positions are read from
    /// PostgreSQL). Default `true`.
    pub commit_hints: bool,
    /// Retry delays while the database is unreachable (retried without limit).
    pub backoff: BackoffConfig,
    /// What happens when applying an event fails (handler error, undecodable payload, unknown
    /// event with `unknown_events = Stop`): retries, then stop / dead letter / error event.
    pub failure: FailurePolicy,
    /// Per-topic policies, by the topic name handlers use; topics not listed use `failure`.
    pub failure_by_topic: BTreeMap<String, FailurePolicy>,
    /// Most messages of one partition applied in one transaction (by one processor). 1
    /// applies each message in a transaction of its own. Default 100. A failing unit is rolled
    /// back and its messages applied again one at a time, so a failure is pinned to its message.
    pub batch_size: usize,
    /// Processors applying messages at once, each with its own database connection
    /// (Broadway's processor `concurrency`). Default 8.
    pub concurrency: usize,
    /// Messages of one partition received and waiting for a processor, at most (Broadway's
    /// `max_demand`): at this bound the partition is paused until half of them are taken.
    /// Processors hold at most `concurrency` × `batch_size` more. Default 2000 (1000 halved
    /// the IO-bound benchmark's throughput: too little look-ahead to keep 16 processors busy).
    pub max_in_flight: usize,
    /// How messages of a partition are spread over processors, and so what order is kept.
    /// Default [`PartitionBy::Key`].
    pub partition_by: PartitionBy,
    /// How long a revoked partition's in-flight work may take to finish before the partition
    /// is released anyway (its unfinished messages are applied by the next owner). Default 10 s.
    pub drain_timeout: Duration,
    /// How long a partition whose topic has a [`crate::consumer::BatchHandler`] may wait for
    /// `batch_size` events before a smaller unit is handed out (Broadway's `batch_timeout`).
    /// Default 0: hand out what is there at once.
    pub batch_timeout: Duration,
    /// At most this many messages handed to processors per interval, over all partitions
    /// (Broadway's `rate_limiting`), e.g. to spare a downstream API. Default `None`.
    pub rate_limit: Option<RateLimit>,
    /// Check a claimed partition's stored position against the log's range (a position
    /// beyond the end or below the start stops the partition instead of being passed over).
    /// Default `true`; switch it off only for a broker whose reported range is wrong (the
    /// test broker tansu after idempotent batches).
    pub check_position_range: bool,
}

/// Broadway's `rate_limiting`: at most `allowed_messages` per `interval`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Messages allowed per interval.
    pub allowed_messages: usize,
    /// The interval.
    pub interval: Duration,
}

/// The lane of a message: messages of one lane are applied one after the other, in position
/// order; different lanes of a partition are applied concurrently.
#[derive(Clone, Default)]
pub enum PartitionBy {
    /// One lane per message key (the default): each key's events apply in order, keys in
    /// parallel. Messages without a key share one lane.
    #[default]
    Key,
    /// One lane per partition: strict position order, no concurrency within a partition.
    Partition,
    /// A lane per value of a function of the message (e.g. a tenant header): messages with
    /// the same value apply in order.
    Function(std::sync::Arc<dyn Fn(&crate::transport::Message) -> String + Send + Sync>),
}

impl std::fmt::Debug for PartitionBy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PartitionBy::Key => f.write_str("Key"),
            PartitionBy::Partition => f.write_str("Partition"),
            PartitionBy::Function(_) => f.write_str("Function(..)"),
        }
    }
}

impl PartialEq for PartitionBy {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (PartitionBy::Key, PartitionBy::Key) => true,
            (PartitionBy::Partition, PartitionBy::Partition) => true,
            (PartitionBy::Function(a), PartitionBy::Function(b)) => std::sync::Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

impl Eq for PartitionBy {}

impl PartitionBy {
    /// The lane label of `message`: `""` (the whole partition), `key:<key>` or `fn:<value>`.
    pub fn lane_of(&self, message: &crate::transport::Message) -> String {
        match self {
            PartitionBy::Key => {
                let key = message.key.as_deref().unwrap_or_default();
                match std::str::from_utf8(key) {
                    Ok(text) => format!("key:{text}"),
                    Err(_) => {
                        let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
                        format!("key:0x{hex}")
                    }
                }
            }
            PartitionBy::Partition => String::new(),
            PartitionBy::Function(lane) => format!("fn:{}", lane(message)),
        }
    }
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        ConsumerConfig {
            enabled: true,
            unknown_events: UnknownEvents::Ignore,
            topics: BTreeMap::new(),
            kafka: BTreeMap::new(),
            dedup_retention: Duration::from_secs(7 * 24 * 3600),
            cleanup_interval: Duration::from_secs(600),
            commit_hints: true,
            backoff: BackoffConfig {
                initial: Duration::from_millis(200),
                max: Duration::from_secs(30),
            },
            batch_size: 100,
            concurrency: 8,
            max_in_flight: 2000,
            partition_by: PartitionBy::Key,
            drain_timeout: Duration::from_secs(10),
            check_position_range: true,
            batch_timeout: Duration::ZERO,
            rate_limit: None,
            failure: FailurePolicy::default(),
            failure_by_topic: BTreeMap::new(),
        }
    }
}

/// How an event that cannot be applied is retried, and what happens after the last attempt.
/// Database outages are not counted: they are retried until the database is back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailurePolicy {
    /// Attempts in all (the first one included) before `exhausted` applies. Default 10.
    pub max_attempts: u32,
    /// Delays between attempts: doubling from `initial` to `max`, each ±25% jitter. The
    /// message's lane waits meanwhile; other lanes go on. Default 200 ms to 30 s.
    pub backoff: BackoffConfig,
    /// What happens after the last attempt. Default [`Exhausted::Stop`].
    pub exhausted: Exhausted,
}

impl Default for FailurePolicy {
    fn default() -> Self {
        FailurePolicy {
            max_attempts: 10,
            backoff: BackoffConfig {
                initial: Duration::from_millis(200),
                max: Duration::from_secs(30),
            },
            exhausted: Exhausted::Stop,
        }
    }
}

/// What the consumer does with an event whose attempts are exhausted.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Exhausted {
    /// The event's lane stops on it (its key; the whole partition with
    /// `partition_by = partition`): a `procon_stopped_partitions` row records it, and the lane
    /// stays stopped (across restarts) until `resume_partition` / `resume_lane` /
    /// `procon resume`. Everything behind the event in its lane waits: nothing is skipped.
    #[default]
    Stop,
    /// The message (original bytes and headers, plus error, attempts and coordinates headers)
    /// is written to the outbox for the dead-letter topic, in the transaction that records the
    /// event as consumed; processing continues. `None`: `<topic>.dlq`.
    DeadLetter {
        /// The dead-letter topic.
        topic: Option<String>,
    },
    /// An `event.error.<event name>` event (payload: [`crate::consumer::FailedEvent`]) is
    /// written to the outbox in the transaction that records the event as consumed;
    /// processing continues. `None`: `<topic>.errors`.
    ErrorEvent {
        /// The topic of error events.
        topic: Option<String>,
    },
}

impl ConsumerConfig {
    /// The failure policy of a topic, by the name handlers use.
    pub fn failure_policy(&self, topic: &str) -> &FailurePolicy {
        self.failure_by_topic.get(topic).unwrap_or(&self.failure)
    }
}

impl ConsumerConfig {
    /// The topic to subscribe to for a topic named by a handler.
    pub fn physical_topic<'a>(&'a self, topic: &'a str) -> &'a str {
        self.topics.get(topic).map(String::as_str).unwrap_or(topic)
    }
}

/// Settings of the outbox relay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayConfig {
    /// Run the relay in this process. Default `true`.
    pub enabled: bool,
    /// Largest number of rows read, published and deleted in one round. Default 5000.
    pub batch_size: u32,
    /// How often the relay looks at the outbox when no notification woke it. Default 250 ms:
    /// under load a fraction of wake-ups is not observed (see docs/BENCHMARKS.md), and this
    /// bounds the extra delay.
    pub poll_interval: Duration,
    /// How long shutdown waits for in-flight deliveries before leaving them to the next start.
    /// Default 10 s.
    pub shutdown_timeout: Duration,
    /// Retry delays after a database or broker failure.
    pub backoff: BackoffConfig,
    /// Physical topic names for the topics models name, e.g. `accounts` → `prod.accounts`.
    /// A topic not listed is used as written.
    pub topics: BTreeMap<String, String>,
    /// The topic realtime notifications are published to. Default `procon-realtime`.
    pub realtime_topic: String,
    /// Per-channel throttle window of realtime notifications that do not set their own
    /// (`rt_threshold`). Default 1000 ms. See [`crate::realtime`] for the exact rule.
    pub realtime_threshold: Duration,
    /// Payload bytes the relay holds at most (read and not yet acknowledged), besides at most
    /// `2 × batch_size` rows. Reads are sized to fit. Default 8 MiB.
    pub max_bytes_in_flight: usize,
    /// How many times the broker may reject a row (too large, not allowed, invalid topic...)
    /// before the relay parks it (`procon_outbox_parked`; `procon parked list|retry|drop`).
    /// Outages and timeouts are never counted: they are retried without limit. Default 3.
    pub park_after_attempts: u32,
    /// Events of one key in flight at most, with a transport whose failed record fails the
    /// later ones of its key too (Kafka); other transports send one at a time per key.
    /// Default 256.
    pub max_in_flight_per_key: usize,
    /// Shards the outbox is split into (by a hash of topic and key) for several relays to
    /// share through leases in PostgreSQL. Every relay of an outbox must use the same count;
    /// change it only with every relay stopped. Default 1 (one relay publishes, the others
    /// stand by).
    pub shards: u32,
    /// How long a relay's lease on a shard lasts without renewal (renewed every third of it):
    /// a dead relay's shards move after at most this. Default 6 s.
    pub lease_ttl: Duration,
    /// What the relay does with an event whose topic the program never declared (no
    /// `#[derive(Outbox)]` model, `declare_topic!` or `relay.topics` entry names it). Default
    /// [`UndeclaredTopics::Warn`].
    pub undeclared_topics: UndeclaredTopics,
}

/// What the relay does with an event published to a topic nothing declared (see
/// [`crate::outbox::declared`]). Dead letters and error events of the consumer's failure
/// policies are never checked. When the program declares no topic at all (a standalone
/// `procon relay` without `--topic`), there is nothing to check against and every topic goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UndeclaredTopics {
    /// Publish it, and log a warning once per topic. The default.
    #[default]
    Warn,
    /// Do not publish it: it is refused like an event the broker rejects, so it is parked
    /// (with the reason) after `park_after_attempts` and its key's later events wait.
    Refuse,
}

/// The default realtime topic.
pub const DEFAULT_REALTIME_TOPIC: &str = "procon-realtime";

impl RelayConfig {
    /// The topic to publish to for a topic named by a model.
    pub fn physical_topic<'a>(&'a self, topic: &'a str) -> &'a str {
        self.topics.get(topic).map(String::as_str).unwrap_or(topic)
    }
}

impl Default for RelayConfig {
    fn default() -> Self {
        RelayConfig {
            enabled: true,
            batch_size: 5000,
            poll_interval: Duration::from_millis(250),
            shutdown_timeout: Duration::from_secs(10),
            backoff: BackoffConfig::default(),
            topics: BTreeMap::new(),
            realtime_topic: DEFAULT_REALTIME_TOPIC.to_owned(),
            realtime_threshold: Duration::from_millis(1000),
            max_bytes_in_flight: 8 << 20,
            park_after_attempts: 3,
            max_in_flight_per_key: 256,
            shards: 1,
            lease_ttl: Duration::from_secs(6),
            undeclared_topics: UndeclaredTopics::Warn,
        }
    }
}

/// A configuration that cannot work, named precisely.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A required setting is absent.
    #[error("missing setting `{name}`: {hint}")]
    Missing {
        /// The setting (environment variable or field).
        name: &'static str,
        /// How to provide it.
        hint: &'static str,
    },
    /// A setting has a value that cannot be used.
    #[error("invalid setting `{name}` = `{value}`: {reason}")]
    Invalid {
        /// The setting (environment variable or field).
        name: String,
        /// The rejected value.
        value: String,
        /// Why it was rejected.
        reason: String,
    },
}

/// librdkafka options procon sets itself because the delivery guarantee depends on them.
const PINNED_PRODUCER_OPTIONS: [&str; 4] = [
    "enable.idempotence",
    "enable.gapless.guarantee",
    "acks",
    "message.timeout.ms",
];

/// The environment variable prefix of librdkafka pass-through options:
/// `PROCON_KAFKA_LINGER_MS=5` sets `linger.ms=5`.
pub const KAFKA_ENV_PREFIX: &str = "PROCON_KAFKA_";

/// The environment variable prefix of consumer-only librdkafka options.
pub const CONSUMER_KAFKA_ENV_PREFIX: &str = "PROCON_CONSUMER_KAFKA_";

/// `SESSION_TIMEOUT_MS` → `session.timeout.ms`.
fn env_option(name: &str) -> String {
    name.to_ascii_lowercase().replace('_', ".")
}

impl Config {
    /// A configuration with defaults for everything but the database and the brokers.
    pub fn new(database_url: impl Into<String>, brokers: impl Into<String>) -> Self {
        Config {
            service_name: "procon".to_owned(),
            database_url: database_url.into(),
            transport: Transport::Kafka,
            brokers: brokers.into(),
            kafka: BTreeMap::new(),
            kinesis: KinesisConfig::default(),
            relay: RelayConfig::default(),
            consumer: ConsumerConfig::default(),
            admin: AdminConfig::default(),
            schema_registry: SchemaRegistryConfig::default(),
        }
    }

    /// A configuration publishing to Kinesis with `kinesis`'s settings, defaults for the rest.
    pub fn new_kinesis(database_url: impl Into<String>, kinesis: KinesisConfig) -> Self {
        Config {
            transport: Transport::Kinesis,
            kinesis,
            ..Config::new(database_url, "")
        }
    }

    /// Reads the configuration from the process environment; see [`Config::from_vars`].
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(std::env::vars())
    }

    /// Reads the configuration from `(name, value)` pairs:
    ///
    /// | variable | meaning |
    /// |---|---|
    /// | `PROCON_DATABASE_URL` (or `DATABASE_URL`) | PostgreSQL URL (required) |
    /// | `PROCON_TRANSPORT` | `kafka` (default) or `kinesis` |
    /// | `PROCON_BROKERS` | Kafka bootstrap servers (required on Kafka) |
    /// | `PROCON_KINESIS_REGION` (or `AWS_REGION`) | Kinesis region, default `us-east-1` |
    /// | `PROCON_KINESIS_ENDPOINT_URL` | Kinesis endpoint other than AWS's (an emulator) |
    /// | `PROCON_KINESIS_MAX_REQUESTS_IN_FLIGHT` | `PutRecords` calls at once, default 8 |
    /// | `PROCON_KINESIS_LEASE_TTL_MS` | a consumer's shard lease, default 10000 |
    /// | `PROCON_KINESIS_MAX_RECORDS_PER_READ` | records per `GetRecords`, default 1000 |
    /// | `PROCON_KINESIS_IDLE_POLL_INTERVAL_MS` | wait after an empty read, default 200 |
    /// | `PROCON_ADMIN_ENABLED` | run the admin server, default `false` |
    /// | `PROCON_ADMIN_BIND` | its address, default `127.0.0.1:9464` |
    /// | `PROCON_ADMIN_TOKEN` | token of its state-changing actions (16+ characters) |
    /// | `PROCON_SCHEMA_REGISTRY_URL` | schema registry for Avro events, e.g. `http://sr:8081` |
    /// | `PROCON_SCHEMA_REGISTRY_SUBJECT_STRATEGY` | `topic_name` (default), `record_name`, `topic_record_name` |
    /// | `PROCON_SCHEMA_REGISTRY_COMPATIBILITY` | level `procon schemas` checks, default `BACKWARD` |
    /// | `PROCON_SCHEMA_REGISTRY_AUTO_REGISTER` | the relay registers new schemas, default `true` |
    /// | `PROCON_SCHEMA_REGISTRY_TIMEOUT_MS` | bound of each registry call, default 5000 |
    /// | `PROCON_SERVICE_NAME` | service name, default `procon` |
    /// | `PROCON_RELAY_ENABLED` | `true` / `false`, default `true` |
    /// | `PROCON_RELAY_BATCH_SIZE` | rows per round, default 5000 |
    /// | `PROCON_RELAY_POLL_INTERVAL_MS` | fallback polling period, default 250 |
    /// | `PROCON_RELAY_SHUTDOWN_TIMEOUT_MS` | drain time on shutdown, default 10000 |
    /// | `PROCON_RELAY_REALTIME_TOPIC` | realtime topic, default `procon-realtime` |
    /// | `PROCON_RELAY_REALTIME_THRESHOLD_MS` | default realtime throttle window, default 1000 |
    /// | `PROCON_RELAY_MAX_BYTES_IN_FLIGHT` | bytes the relay holds at most, default 8388608 |
    /// | `PROCON_RELAY_PARK_AFTER_ATTEMPTS` | rejections before a row is parked, default 3 |
    /// | `PROCON_RELAY_MAX_IN_FLIGHT_PER_KEY` | events of a key in flight (Kafka), default 256 |
    /// | `PROCON_RELAY_TOPICS` | topic map of the relay, `accounts=prod.accounts,orders=prod.orders` |
    /// | `PROCON_RELAY_SHARDS` | shards several relays share, default 1 |
    /// | `PROCON_RELAY_LEASE_TTL_MS` | a relay's lease on a shard, default 6000 |
    /// | `PROCON_RELAY_UNDECLARED_TOPICS` | `warn` (default) or `refuse` events of undeclared topics |
    /// | `PROCON_CONSUMER_TOPICS` | topic map of the consumer, same form |
    /// | `PROCON_CONSUMER_ENABLED` | `true` / `false`, default `true` |
    /// | `PROCON_CONSUMER_UNKNOWN_EVENTS` | `ignore` (default) or `stop` |
    /// | `PROCON_CONSUMER_DEDUP_RETENTION_S` | how long applied event ids are kept, default 604800 |
    /// | `PROCON_CONSUMER_BATCH_SIZE` | most messages per transaction, default 100 |
    /// | `PROCON_CONSUMER_CONCURRENCY` | processors (database connections), default 8 |
    /// | `PROCON_CONSUMER_MAX_IN_FLIGHT` | messages waiting per partition, default 2000 |
    /// | `PROCON_CONSUMER_PARTITION_BY` | `key` (default) or `partition` |
    /// | `PROCON_CONSUMER_BATCH_TIMEOUT_MS` | wait for full batch-handler units, default 0 |
    /// | `PROCON_CONSUMER_RATE_LIMIT` | `<messages>/<milliseconds>`, e.g. `100/1000`; default none |
    /// | `PROCON_CONSUMER_CHECK_POSITION_RANGE` | check stored positions against the log, default `true` |
    /// | `PROCON_CONSUMER_MAX_ATTEMPTS` | attempts before the failure policy applies, default 10 |
    /// | `PROCON_CONSUMER_ON_FAILURE` | `stop` (default), `dead_letter` or `error_event` |
    /// | `PROCON_CONSUMER_COMMIT_HINTS` | also commit positions to Kafka, default `true` |
    /// | `PROCON_KAFKA_<OPTION>` | librdkafka option, `_` read as `.`: `PROCON_KAFKA_LINGER_MS=5` |
    /// | `PROCON_CONSUMER_KAFKA_<OPTION>` | librdkafka option for the consumer only |
    pub fn from_vars<I, K, V>(vars: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        let vars = collect_vars(vars);
        let database_url = vars
            .get("PROCON_DATABASE_URL")
            .or_else(|| vars.get("DATABASE_URL"))
            .cloned()
            .ok_or(ConfigError::Missing {
                name: "PROCON_DATABASE_URL",
                hint: "set it (or DATABASE_URL) to a PostgreSQL URL",
            })?;
        let (transport, kinesis) = transport::from_vars(&vars)?;
        let brokers = match (vars.get("PROCON_BROKERS"), transport) {
            (Some(brokers), _) => brokers.clone(),
            (None, Transport::Kafka) => {
                return Err(ConfigError::Missing {
                    name: "PROCON_BROKERS",
                    hint: "set it to the Kafka bootstrap servers, e.g. 127.0.0.1:9092 \
                           (or PROCON_TRANSPORT=kinesis)",
                })
            }
            (None, _) => String::new(),
        };
        let mut config = Config::new(database_url, brokers);
        config.transport = transport;
        config.kinesis = kinesis;
        config.admin = admin::from_vars(&vars)?;
        config.schema_registry = registry::from_vars(&vars)?;
        if let Some(name) = vars.get("PROCON_SERVICE_NAME") {
            config.service_name = name.clone();
        }
        let relay = &mut config.relay;
        if let Some(v) = vars.get("PROCON_RELAY_ENABLED") {
            relay.enabled = parse("PROCON_RELAY_ENABLED", v)?;
        }
        if let Some(v) = vars.get("PROCON_RELAY_SHARDS") {
            relay.shards = parse("PROCON_RELAY_SHARDS", v)?;
        }
        if let Some(v) = vars.get("PROCON_RELAY_LEASE_TTL_MS") {
            relay.lease_ttl = Duration::from_millis(parse("PROCON_RELAY_LEASE_TTL_MS", v)?);
        }
        if let Some(v) = vars.get("PROCON_RELAY_UNDECLARED_TOPICS") {
            relay.undeclared_topics = match v.trim() {
                "warn" => UndeclaredTopics::Warn,
                "refuse" => UndeclaredTopics::Refuse,
                _ => {
                    return Err(invalid(
                        "PROCON_RELAY_UNDECLARED_TOPICS",
                        v,
                        "expected `warn` or `refuse`",
                    ))
                }
            };
        }
        if let Some(v) = vars.get("PROCON_RELAY_TOPICS") {
            relay.topics = parse_topic_map("PROCON_RELAY_TOPICS", v)?;
        }
        if let Some(v) = vars.get("PROCON_RELAY_MAX_BYTES_IN_FLIGHT") {
            relay.max_bytes_in_flight = parse("PROCON_RELAY_MAX_BYTES_IN_FLIGHT", v)?;
        }
        if let Some(v) = vars.get("PROCON_RELAY_MAX_IN_FLIGHT_PER_KEY") {
            relay.max_in_flight_per_key = parse("PROCON_RELAY_MAX_IN_FLIGHT_PER_KEY", v)?;
        }
        if let Some(v) = vars.get("PROCON_RELAY_PARK_AFTER_ATTEMPTS") {
            relay.park_after_attempts = parse("PROCON_RELAY_PARK_AFTER_ATTEMPTS", v)?;
        }
        if let Some(v) = vars.get("PROCON_RELAY_BATCH_SIZE") {
            relay.batch_size = parse("PROCON_RELAY_BATCH_SIZE", v)?;
        }
        if let Some(v) = vars.get("PROCON_RELAY_POLL_INTERVAL_MS") {
            relay.poll_interval = Duration::from_millis(parse("PROCON_RELAY_POLL_INTERVAL_MS", v)?);
        }
        if let Some(v) = vars.get("PROCON_RELAY_SHUTDOWN_TIMEOUT_MS") {
            relay.shutdown_timeout =
                Duration::from_millis(parse("PROCON_RELAY_SHUTDOWN_TIMEOUT_MS", v)?);
        }
        if let Some(v) = vars.get("PROCON_RELAY_REALTIME_TOPIC") {
            relay.realtime_topic = v.clone();
        }
        if let Some(v) = vars.get("PROCON_RELAY_REALTIME_THRESHOLD_MS") {
            relay.realtime_threshold =
                Duration::from_millis(parse("PROCON_RELAY_REALTIME_THRESHOLD_MS", v)?);
        }
        let consumer = &mut config.consumer;
        if let Some(v) = vars.get("PROCON_CONSUMER_ENABLED") {
            consumer.enabled = parse("PROCON_CONSUMER_ENABLED", v)?;
        }
        if let Some(v) = vars.get("PROCON_CONSUMER_UNKNOWN_EVENTS") {
            consumer.unknown_events = match v.trim() {
                "ignore" => UnknownEvents::Ignore,
                "stop" => UnknownEvents::Stop,
                _ => {
                    return Err(invalid(
                        "PROCON_CONSUMER_UNKNOWN_EVENTS",
                        v,
                        "expected `ignore` or `stop`",
                    ))
                }
            };
        }
        if let Some(v) = vars.get("PROCON_CONSUMER_DEDUP_RETENTION_S") {
            consumer.dedup_retention =
                Duration::from_secs(parse("PROCON_CONSUMER_DEDUP_RETENTION_S", v)?);
        }
        if let Some(v) = vars.get("PROCON_CONSUMER_BATCH_SIZE") {
            consumer.batch_size = parse("PROCON_CONSUMER_BATCH_SIZE", v)?;
        }
        if let Some(v) = vars.get("PROCON_CONSUMER_CONCURRENCY") {
            consumer.concurrency = parse("PROCON_CONSUMER_CONCURRENCY", v)?;
        }
        if let Some(v) = vars.get("PROCON_CONSUMER_MAX_IN_FLIGHT") {
            consumer.max_in_flight = parse("PROCON_CONSUMER_MAX_IN_FLIGHT", v)?;
        }
        if let Some(v) = vars.get("PROCON_CONSUMER_PARTITION_BY") {
            consumer.partition_by = match v.trim() {
                "key" => PartitionBy::Key,
                "partition" => PartitionBy::Partition,
                _ => {
                    return Err(invalid(
                        "PROCON_CONSUMER_PARTITION_BY",
                        v,
                        "expected `key` or `partition` (a function can be set in code)",
                    ))
                }
            };
        }
        if let Some(v) = vars.get("PROCON_CONSUMER_BATCH_TIMEOUT_MS") {
            consumer.batch_timeout =
                Duration::from_millis(parse("PROCON_CONSUMER_BATCH_TIMEOUT_MS", v)?);
        }
        if let Some(v) = vars.get("PROCON_CONSUMER_RATE_LIMIT") {
            consumer.rate_limit = Some(parse_rate_limit(v)?);
        }
        if let Some(v) = vars.get("PROCON_CONSUMER_CHECK_POSITION_RANGE") {
            consumer.check_position_range = parse("PROCON_CONSUMER_CHECK_POSITION_RANGE", v)?;
        }
        if let Some(v) = vars.get("PROCON_CONSUMER_MAX_ATTEMPTS") {
            consumer.failure.max_attempts = parse("PROCON_CONSUMER_MAX_ATTEMPTS", v)?;
        }
        if let Some(v) = vars.get("PROCON_CONSUMER_ON_FAILURE") {
            consumer.failure.exhausted = match v.trim() {
                "stop" => Exhausted::Stop,
                "dead_letter" => Exhausted::DeadLetter { topic: None },
                "error_event" => Exhausted::ErrorEvent { topic: None },
                _ => {
                    return Err(invalid(
                        "PROCON_CONSUMER_ON_FAILURE",
                        v,
                        "expected `stop`, `dead_letter` or `error_event`",
                    ))
                }
            };
        }
        if let Some(v) = vars.get("PROCON_CONSUMER_TOPICS") {
            consumer.topics = parse_topic_map("PROCON_CONSUMER_TOPICS", v)?;
        }
        if let Some(v) = vars.get("PROCON_CONSUMER_COMMIT_HINTS") {
            consumer.commit_hints = parse("PROCON_CONSUMER_COMMIT_HINTS", v)?;
        }
        for (name, value) in &vars {
            if let Some(option) = name.strip_prefix(KAFKA_ENV_PREFIX) {
                config.kafka.insert(env_option(option), value.clone());
            } else if let Some(option) = name.strip_prefix(CONSUMER_KAFKA_ENV_PREFIX) {
                config
                    .consumer
                    .kafka
                    .insert(env_option(option), value.clone());
            }
        }
        config
            .validate()
            .map_err(|error| name_the_variable(error, &vars))?;
        Ok(config)
    }

    /// Sets one librdkafka option for every client procon creates.
    pub fn kafka_option(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.kafka.insert(name.into(), value.into());
        self
    }

    /// Sets the service name.
    pub fn service_name(mut self, name: impl Into<String>) -> Self {
        self.service_name = name.into();
        self
    }

    /// Replaces the consumer settings.
    pub fn consumer(mut self, consumer: ConsumerConfig) -> Self {
        self.consumer = consumer;
        self
    }

    /// Replaces the relay settings.
    pub fn relay(mut self, relay: RelayConfig) -> Self {
        self.relay = relay;
        self
    }

    /// Checks what can be checked without connecting to anything.
    pub fn validate(&self) -> Result<(), ConfigError> {
        match self.transport {
            Transport::Kafka if self.brokers.trim().is_empty() => {
                return Err(invalid(
                    "brokers",
                    &self.brokers,
                    "no bootstrap server given",
                ));
            }
            Transport::Kafka => {}
            Transport::Kinesis => transport::validate(&self.kinesis)?,
        }
        admin::validate(&self.admin)?;
        registry::validate(&self.schema_registry)?;
        if self.service_name.trim().is_empty() {
            return Err(invalid(
                "service_name",
                &self.service_name,
                "must not be empty",
            ));
        }
        if let Err(e) = crate::relay::relay_connection(&self.database_url) {
            return Err(invalid(
                "database_url",
                &redact(&self.database_url),
                &e.to_string(),
            ));
        }
        if self.relay.batch_size == 0 {
            return Err(invalid("relay.batch_size", "0", "must be at least 1"));
        }
        if self.relay.park_after_attempts == 0 {
            return Err(invalid(
                "relay.park_after_attempts",
                "0",
                "must be at least 1 (a row is tried before it can be parked)",
            ));
        }
        if self.relay.shards == 0 || self.relay.shards > 1024 {
            return Err(invalid(
                "relay.shards",
                &self.relay.shards.to_string(),
                "must be between 1 and 1024",
            ));
        }
        if self.relay.lease_ttl < Duration::from_millis(300) {
            return Err(invalid(
                "relay.lease_ttl",
                &format!("{:?}", self.relay.lease_ttl),
                "must be at least 300 ms (it is renewed every third of it)",
            ));
        }
        if self.relay.max_in_flight_per_key == 0 {
            return Err(invalid(
                "relay.max_in_flight_per_key",
                "0",
                "must be at least 1 (nothing could be sent)",
            ));
        }
        if self.relay.max_bytes_in_flight == 0 {
            return Err(invalid(
                "relay.max_bytes_in_flight",
                "0",
                "must be positive (nothing could be read)",
            ));
        }
        if self.relay.poll_interval.is_zero() {
            return Err(invalid(
                "relay.poll_interval",
                "0",
                "must be positive (a zero interval would busy-loop)",
            ));
        }
        if self.relay.realtime_topic.trim().is_empty() {
            return Err(invalid(
                "relay.realtime_topic",
                &self.relay.realtime_topic,
                "must not be empty",
            ));
        }
        if self.consumer.dedup_retention.is_zero() {
            return Err(invalid(
                "consumer.dedup_retention",
                "0",
                "must be positive: redelivered events are recognised only within it",
            ));
        }
        for (topic, policy) in std::iter::once(("(default)", &self.consumer.failure)).chain(
            self.consumer
                .failure_by_topic
                .iter()
                .map(|(t, p)| (t.as_str(), p)),
        ) {
            if policy.max_attempts == 0 {
                return Err(invalid(
                    "consumer.failure.max_attempts",
                    "0",
                    &format!("topic {topic}: at least one attempt is needed"),
                ));
            }
        }
        if self.consumer.batch_size == 0 {
            return Err(invalid("consumer.batch_size", "0", "must be at least 1"));
        }
        if self.consumer.concurrency == 0 {
            return Err(invalid("consumer.concurrency", "0", "must be at least 1"));
        }
        if let Some(limit) = &self.consumer.rate_limit {
            if limit.allowed_messages == 0 || limit.interval.is_zero() {
                return Err(invalid(
                    "consumer.rate_limit",
                    &format!("{}/{:?}", limit.allowed_messages, limit.interval),
                    "both the messages and the interval must be positive (nothing would ever be applied)",
                ));
            }
        }
        if self.consumer.max_in_flight == 0 {
            return Err(invalid(
                "consumer.max_in_flight",
                "0",
                "must be at least 1 (no message could be received)",
            ));
        }
        if self.consumer.cleanup_interval.is_zero() {
            return Err(invalid(
                "consumer.cleanup_interval",
                "0",
                "must be positive",
            ));
        }
        for pinned in PINNED_PRODUCER_OPTIONS {
            if let Some(value) = self.kafka.get(pinned) {
                let allowed = match pinned {
                    "enable.idempotence" | "enable.gapless.guarantee" => value == "true",
                    "acks" => value == "all" || value == "-1",
                    _ => true,
                };
                if !allowed {
                    return Err(invalid(
                        pinned,
                        value,
                        "the relay's ordering and at-least-once guarantee require \
                         enable.idempotence=true, enable.gapless.guarantee=true and acks=all: \
                         remove the setting (procon sets these itself) or set it to that value",
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Settings given as (name, value) pairs, by name.
fn collect_vars<I, K, V>(vars: I) -> BTreeMap<String, String>
where
    I: IntoIterator<Item = (K, V)>,
    K: Into<String>,
    V: Into<String>,
{
    vars.into_iter()
        .map(|(k, v)| (k.into(), v.into()))
        .collect()
}

fn parse<T: FromStr>(name: &str, value: &str) -> Result<T, ConfigError>
where
    T::Err: std::fmt::Display,
{
    value
        .trim()
        .parse()
        .map_err(|e: T::Err| invalid(name, value, &e.to_string()))
}

/// `logical=physical,logical=physical`: topic names as models and handlers write them, mapped
/// to the names on the broker.
fn parse_topic_map(name: &str, value: &str) -> Result<BTreeMap<String, String>, ConfigError> {
    let mut map = BTreeMap::new();
    for pair in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some((logical, physical))
                if !logical.trim().is_empty() && !physical.trim().is_empty() =>
            {
                map.insert(logical.trim().to_owned(), physical.trim().to_owned());
            }
            _ => {
                return Err(invalid(
                    name,
                    value,
                    &format!(
                        "`{pair}` is not `topic=physical-topic`; expected e.g. \
                         `accounts=prod.accounts,orders=prod.orders`"
                    ),
                ))
            }
        }
    }
    Ok(map)
}

/// A validation error about a librdkafka option set through the environment names the
/// variable the user set, not only the option.
fn name_the_variable(error: ConfigError, vars: &BTreeMap<String, String>) -> ConfigError {
    let ConfigError::Invalid {
        name,
        value,
        reason,
    } = error
    else {
        return error;
    };
    let variable = format!(
        "{KAFKA_ENV_PREFIX}{}",
        name.to_ascii_uppercase().replace('.', "_")
    );
    if vars.contains_key(&variable) {
        ConfigError::Invalid {
            name: format!("{variable} (librdkafka `{name}`)"),
            value,
            reason,
        }
    } else {
        ConfigError::Invalid {
            name,
            value,
            reason,
        }
    }
}

fn parse_rate_limit(value: &str) -> Result<RateLimit, ConfigError> {
    const NAME: &str = "PROCON_CONSUMER_RATE_LIMIT";
    let (messages, ms) = value.trim().split_once('/').ok_or_else(|| {
        invalid(
            NAME,
            value,
            "expected `<messages>/<milliseconds>`, e.g. `100/1000`",
        )
    })?;
    let limit = RateLimit {
        allowed_messages: parse(NAME, messages.trim())?,
        interval: Duration::from_millis(parse(NAME, ms.trim())?),
    };
    if limit.allowed_messages == 0 || limit.interval.is_zero() {
        return Err(invalid(NAME, value, "both numbers must be at least 1"));
    }
    Ok(limit)
}

fn invalid(name: &str, value: &str, reason: &str) -> ConfigError {
    ConfigError::Invalid {
        name: name.to_owned(),
        value: value.to_owned(),
        reason: reason.to_owned(),
    }
}

/// Hides the password of a database connection string (URL or key/value form) before it
/// reaches an error message or a log.
pub fn redact(conn: &str) -> String {
    crate::secrets::redact_connection_string(conn)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Vec<(&'static str, &'static str)> {
        vec![
            ("PROCON_DATABASE_URL", "postgres://u@127.0.0.1/db"),
            ("PROCON_BROKERS", "127.0.0.1:9092"),
        ]
    }

    #[test]
    fn reads_every_setting_and_passes_kafka_options_through() {
        let mut vars = base();
        vars.extend([
            ("PROCON_SERVICE_NAME", "billing"),
            ("PROCON_RELAY_BATCH_SIZE", "42"),
            ("PROCON_RELAY_POLL_INTERVAL_MS", "250"),
            ("PROCON_RELAY_ENABLED", "false"),
            ("PROCON_KAFKA_LINGER_MS", "7"),
            ("PROCON_CONSUMER_KAFKA_SESSION_TIMEOUT_MS", "2000"),
            ("PROCON_CONSUMER_UNKNOWN_EVENTS", "stop"),
            ("UNRELATED", "x"),
        ]);
        let config = Config::from_vars(vars).unwrap();
        assert_eq!(config.service_name, "billing");
        assert_eq!(config.relay.batch_size, 42);
        assert_eq!(config.relay.poll_interval, Duration::from_millis(250));
        assert!(!config.relay.enabled);
        assert_eq!(config.kafka.get("linger.ms").map(String::as_str), Some("7"));
        assert_eq!(config.kafka.len(), 1);
        assert_eq!(
            config
                .consumer
                .kafka
                .get("session.timeout.ms")
                .map(String::as_str),
            Some("2000")
        );
        assert_eq!(config.consumer.unknown_events, UnknownEvents::Stop);
    }

    #[test]
    fn failure_policy_comes_from_the_environment_and_bad_values_are_named() {
        let mut vars = base();
        vars.push(("PROCON_CONSUMER_ON_FAILURE", "dead_letter"));
        vars.push(("PROCON_CONSUMER_MAX_ATTEMPTS", "4"));
        let config = Config::from_vars(vars).unwrap();
        assert_eq!(config.consumer.failure.max_attempts, 4);
        assert_eq!(
            config.consumer.failure.exhausted,
            Exhausted::DeadLetter { topic: None }
        );
        let mut vars = base();
        vars.push(("PROCON_CONSUMER_ON_FAILURE", "ignore"));
        let err = Config::from_vars(vars).unwrap_err().to_string();
        assert!(
            err.contains("PROCON_CONSUMER_ON_FAILURE") && err.contains("ignore"),
            "{err}"
        );
        let mut vars = base();
        vars.push(("PROCON_CONSUMER_MAX_ATTEMPTS", "0"));
        let err = Config::from_vars(vars).unwrap_err().to_string();
        assert!(err.contains("max_attempts"), "{err}");
    }

    #[test]
    fn realtime_settings_come_from_the_environment() {
        let mut vars = base();
        vars.push(("PROCON_RELAY_REALTIME_TOPIC", "ui"));
        vars.push(("PROCON_RELAY_REALTIME_THRESHOLD_MS", "250"));
        let config = Config::from_vars(vars).unwrap();
        assert_eq!(config.relay.realtime_topic, "ui");
        assert_eq!(config.relay.realtime_threshold, Duration::from_millis(250));
        let mut vars = base();
        vars.push(("PROCON_RELAY_REALTIME_TOPIC", " "));
        assert!(Config::from_vars(vars).is_err());
    }

    #[test]
    fn database_url_falls_back_to_database_url() {
        let config = Config::from_vars([
            ("DATABASE_URL", "postgres://a@b/c"),
            ("PROCON_BROKERS", "k:1"),
        ])
        .unwrap();
        assert_eq!(config.database_url, "postgres://a@b/c");
    }

    #[test]
    fn missing_brokers_is_named() {
        let err = Config::from_vars([("PROCON_DATABASE_URL", "postgres://a@b/c")]).unwrap_err();
        assert!(matches!(
            err,
            ConfigError::Missing {
                name: "PROCON_BROKERS",
                ..
            }
        ));
        assert!(err.to_string().contains("PROCON_BROKERS"));
    }

    #[test]
    fn malformed_number_names_the_variable_and_value() {
        let mut vars = base();
        vars.push(("PROCON_RELAY_BATCH_SIZE", "lots"));
        let err = Config::from_vars(vars).unwrap_err().to_string();
        assert!(
            err.contains("PROCON_RELAY_BATCH_SIZE") && err.contains("lots"),
            "{err}"
        );
    }

    #[test]
    fn unparsable_database_url_is_rejected_without_leaking_the_password() {
        let config = Config::new("postgres://u:secret@host:notaport/db", "k:1");
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("database_url"), "{err}");
        assert!(!err.contains("secret"), "{err}");
    }

    #[test]
    fn weakening_the_delivery_guarantee_is_refused() {
        let config = Config::new("postgres://u@h/db", "k:1").kafka_option("acks", "1");
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("acks"), "{err}");
        let config =
            Config::new("postgres://u@h/db", "k:1").kafka_option("enable.idempotence", "false");
        assert!(config.validate().is_err());
    }

    #[test]
    fn zero_batch_and_zero_interval_are_refused() {
        let mut config = Config::new("postgres://u@h/db", "k:1");
        config.relay.batch_size = 0;
        assert!(config.validate().is_err());
        let mut config = Config::new("postgres://u@h/db", "k:1");
        config.relay.poll_interval = Duration::ZERO;
        assert!(config.validate().is_err());
    }

    #[test]
    fn pipeline_settings_come_from_the_environment_and_bad_values_are_named() {
        let mut vars = base();
        vars.extend([
            ("PROCON_CONSUMER_CONCURRENCY", "16"),
            ("PROCON_CONSUMER_MAX_IN_FLIGHT", "50"),
            ("PROCON_CONSUMER_PARTITION_BY", "partition"),
            ("PROCON_CONSUMER_CHECK_POSITION_RANGE", "false"),
        ]);
        let config = Config::from_vars(vars).unwrap();
        assert_eq!(config.consumer.concurrency, 16);
        assert_eq!(config.consumer.max_in_flight, 50);
        assert_eq!(config.consumer.partition_by, PartitionBy::Partition);
        assert!(!config.consumer.check_position_range);

        let mut vars = base();
        vars.push(("PROCON_CONSUMER_RATE_LIMIT", "100/250"));
        let limit = Config::from_vars(vars)
            .unwrap()
            .consumer
            .rate_limit
            .unwrap();
        assert_eq!(limit.allowed_messages, 100);
        assert_eq!(limit.interval, Duration::from_millis(250));
        for bad in ["100", "0/10", "x/10"] {
            let mut vars = base();
            vars.push(("PROCON_CONSUMER_RATE_LIMIT", bad));
            let error = Config::from_vars(vars).unwrap_err().to_string();
            assert!(
                error.contains("PROCON_CONSUMER_RATE_LIMIT"),
                "{bad}: {error}"
            );
        }

        let mut vars = base();
        vars.push(("PROCON_CONSUMER_PARTITION_BY", "tenant"));
        let error = Config::from_vars(vars).unwrap_err().to_string();
        assert!(error.contains("PROCON_CONSUMER_PARTITION_BY"), "{error}");
        assert!(error.contains("`key` or `partition`"), "{error}");
        for (name, zero) in [
            ("PROCON_CONSUMER_CONCURRENCY", "0"),
            ("PROCON_CONSUMER_MAX_IN_FLIGHT", "0"),
        ] {
            let mut vars = base();
            vars.push((name, zero));
            let error = Config::from_vars(vars).unwrap_err().to_string();
            assert!(error.contains("at least 1"), "{name}: {error}");
        }
    }

    #[test]
    fn lanes_follow_partition_by() {
        let message = |key: Option<&[u8]>| crate::transport::Message {
            partition: crate::transport::PartitionId::new("t", 0),
            position: crate::transport::Position::offset(0),
            key: key.map(<[u8]>::to_vec),
            headers: vec![("tenant".into(), b"acme".to_vec())],
            payload: Vec::new(),
        };
        assert_eq!(PartitionBy::Key.lane_of(&message(Some(b"42"))), "key:42");
        assert_eq!(
            PartitionBy::Key.lane_of(&message(Some(&[0xff, 0]))),
            "key:0xff00"
        );
        assert_eq!(PartitionBy::Key.lane_of(&message(None)), "key:");
        assert_eq!(PartitionBy::Partition.lane_of(&message(Some(b"42"))), "");
        let by_tenant =
            PartitionBy::Function(std::sync::Arc::new(|m: &crate::transport::Message| {
                m.header("tenant").unwrap_or_default().to_owned()
            }));
        assert_eq!(by_tenant.lane_of(&message(Some(b"42"))), "fn:acme");
    }

    #[test]
    fn redact_hides_only_the_password() {
        assert_eq!(redact("postgres://u:pw@h/db"), "postgres://u:***@h/db");
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(
            redact("host=h password=pw dbname=db"),
            "host=h password=*** dbname=db"
        );
    }

    #[test]
    fn topic_maps_come_from_the_environment_and_bad_ones_are_named() {
        let mut vars = base();
        vars.extend([
            (
                "PROCON_RELAY_TOPICS",
                "accounts=prod.accounts, orders=prod.orders",
            ),
            ("PROCON_CONSUMER_TOPICS", "ledger=prod.ledger"),
        ]);
        let config = Config::from_vars(vars).unwrap();
        assert_eq!(config.relay.physical_topic("accounts"), "prod.accounts");
        assert_eq!(config.relay.physical_topic("orders"), "prod.orders");
        assert_eq!(config.consumer.physical_topic("ledger"), "prod.ledger");
        let mut vars = base();
        vars.push(("PROCON_RELAY_TOPICS", "accounts:prod.accounts"));
        let error = Config::from_vars(vars).unwrap_err().to_string();
        assert!(error.contains("PROCON_RELAY_TOPICS"), "{error}");
        assert!(error.contains("topic=physical-topic"), "{error}");
    }

    #[test]
    fn a_pinned_kafka_option_from_the_environment_names_its_variable_and_the_fix() {
        let mut vars = base();
        vars.push(("PROCON_KAFKA_ACKS", "1"));
        let error = Config::from_vars(vars).unwrap_err().to_string();
        assert!(
            error.contains("PROCON_KAFKA_ACKS (librdkafka `acks`)"),
            "{error}"
        );
        assert!(error.contains("remove the setting"), "{error}");
        // Set in code, the error names the option.
        let error = Config::new("postgres://u@h/db", "b:9092")
            .kafka_option("acks", "1")
            .validate()
            .unwrap_err()
            .to_string();
        assert!(error.contains("`acks`"), "{error}");
    }

    #[test]
    fn debug_output_shows_no_password_of_any_form() {
        let mut config = Config::new("host=db.internal password=hunter2 dbname=app", "b:9092");
        config
            .kafka
            .insert("sasl.password".into(), "kafka-secret".into());
        config.kafka.insert("sasl.username".into(), "svc".into());
        config
            .consumer
            .kafka
            .insert("ssl.key.password".into(), "key-secret".into());
        let shown = format!("{config:?} {config:#?}");
        for secret in ["hunter2", "kafka-secret", "key-secret"] {
            assert!(!shown.contains(secret), "{secret} leaked: {shown}");
        }
        assert!(shown.contains("svc") && shown.contains("db.internal"));
        let url = Config::new("postgres://u:hunter2@h/db", "b:9092");
        assert!(!format!("{url:?}").contains("hunter2"));
    }
}
