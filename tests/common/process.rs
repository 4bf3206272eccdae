//! Service processes the tests kill: `procon relay` and the ledger test consumer, each logging
//! to a file under the target directory.

use std::process::{Child, Command, Stdio};

fn log_file(name: &str) -> std::fs::File {
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}.log"));
    std::fs::File::create(path).expect("create the process log")
}

/// `procon relay` on the database `db_url`, publishing to `brokers`.
pub fn spawn_relay(db_url: &str, brokers: &str, name: &str) -> Child {
    Command::new(env!("CARGO_BIN_EXE_procon-test-cli"))
        .arg("relay")
        .env("PROCON_DATABASE_URL", db_url)
        .env("PROCON_BROKERS", brokers)
        .env("PROCON_RELAY_BATCH_SIZE", "100")
        .env("PROCON_RELAY_POLL_INTERVAL_MS", "200")
        .env("PROCON_KAFKA_RECONNECT_BACKOFF_MAX_MS", "500")
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(log_file(name))
        .spawn()
        .expect("spawn `procon relay`")
}

/// The ledger test consumer as group `group`, reading the ledger events from `topic`. Kafka
/// offsets are never committed, so every restart after a kill starts from PostgreSQL's positions.
pub fn spawn_consumer(db_url: &str, brokers: &str, group: &str, topic: &str, name: &str) -> Child {
    spawn_consumer_with(db_url, brokers, group, topic, name, &[])
}

/// [`spawn_consumer`] with more `PROCON_*` variables (another transport, its settings).
pub fn spawn_consumer_with(
    db_url: &str,
    brokers: &str,
    group: &str,
    topic: &str,
    name: &str,
    vars: &[(&str, String)],
) -> Child {
    let mut command = Command::new(env!("CARGO_BIN_EXE_procon-test-consumer"));
    command
        .env("PROCON_DATABASE_URL", db_url)
        .env("PROCON_BROKERS", brokers)
        .env("PROCON_SERVICE_NAME", group)
        .env("PROCON_RELAY_ENABLED", "false")
        .env("PROCON_CONSUMER_COMMIT_HINTS", "false")
        .env("PROCON_CONSUMER_CHECK_POSITION_RANGE", "false")
        .env("PROCON_KAFKA_RECONNECT_BACKOFF_MAX_MS", "500")
        .env("LEDGER_TOPIC", topic)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(log_file(name));
    for (option, value) in super::broker::TEST_CONSUMER_SETTINGS {
        let variable = option.to_uppercase().replace('.', "_");
        command.env(format!("PROCON_CONSUMER_KAFKA_{variable}"), value);
    }
    command.envs(vars.iter().map(|(name, value)| (name, value)));
    command.spawn().expect("spawn the test consumer")
}
