//! Shared test support: a schema per test in real PostgreSQL, topics on the real broker, a
//! collector that reads what the broker holds, and a TCP proxy to cut the broker off.
#![allow(dead_code)]

pub mod avro_model;
pub mod broker;
pub mod db;
pub mod http;
pub mod kinesis;
pub mod kinesis_faults;
pub mod ledger;
pub mod model;
pub mod process;
pub mod proxy;
pub mod registry;

use std::time::{Duration, Instant};

/// Polls `check` every 50 ms until it returns `Some`, or panics with `what` after `timeout`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let started = Instant::now();
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(
            started.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// [`wait_for`] with an async check (one that talks to a server of the test's runtime).
pub async fn wait_for_async<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let started = Instant::now();
    // Checks every 50 ms: the condition decides, the period only paces the checks.
    let mut every = tokio::time::interval(Duration::from_millis(50));
    loop {
        every.tick().await;
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            started.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
    }
}

/// Runtime settings for tests: the test schema's database, the test broker, short intervals.
pub fn runtime_config(db: &db::TestDb, brokers: &str) -> procon::Config {
    let mut config = procon::Config::new(db.url.clone(), brokers).service_name("procon-tests");
    config.relay.poll_interval = Duration::from_millis(200);
    config.relay.backoff.max = Duration::from_secs(1);
    // Every test binary links the ledger handlers; only consumer tests run a consumer.
    config.consumer.enabled = false;
    config
}

/// Settings for a runtime that consumes the `ledger` topic from `physical_topic`, as group
/// `group`, with the client settings the test broker needs.
pub fn consumer_config(
    db: &db::TestDb,
    brokers: &str,
    group: &str,
    physical_topic: &str,
) -> procon::Config {
    let mut config = runtime_config(db, brokers).service_name(group);
    config.consumer.enabled = true;
    config
        .consumer
        .topics
        .insert(ledger::TOPIC.to_owned(), physical_topic.to_owned());
    for (name, value) in broker::TEST_CONSUMER_SETTINGS {
        config
            .consumer
            .kafka
            .insert(name.to_owned(), value.to_owned());
    }
    if let Ok(debug) = std::env::var("PROCON_TEST_KAFKA_DEBUG") {
        config.consumer.kafka.insert("debug".to_owned(), debug);
    }
    // tansu misreports the log end after idempotent batches (see tests/broker_blackbox.rs).
    config.consumer.check_position_range = false;
    config.consumer.backoff.initial = Duration::from_millis(100);
    config.consumer.backoff.max = Duration::from_secs(1);
    config
}

/// Installs a log subscriber once, so failing tests show the runtime's logs.
pub fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "warn,procon_runtime=info".into()),
        )
        .with_test_writer()
        .try_init();
}
