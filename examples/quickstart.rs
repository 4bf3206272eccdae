//! The quickstart: emit events in Diesel transactions and watch them arrive as a consumer sees
//! them.
//!
//! ```sh
//! cargo run --example quickstart                                # Kafka
//! PROCON_TRANSPORT=kinesis cargo run --example quickstart       # Kinesis
//! ```
//!
//! Uses PostgreSQL at `PROCON_DATABASE_URL` (default `postgres://postgres@127.0.0.1:5432/postgres`,
//! in a schema `procon_quickstart` it recreates) and the brokers at `PROCON_BROKERS`; with no
//! broker configured it starts librdkafka's in-process mock cluster, so nothing else is needed.
//! On Kinesis it publishes to the stream `accounts` (created when missing) at
//! `PROCON_KINESIS_ENDPOINT_URL`, by default the emulator of `scripts/kinesis.sh start`.

use std::time::Duration;

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use procon::prelude::*;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::mocking::MockCluster;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

diesel::table! {
    /// The service's accounts.
    accounts (id) {
        /// Primary key, also the Kafka key of the account's events.
        id -> BigInt,
        /// Published.
        email -> Text,
        /// Never published (`#[procon(skip)]`).
        password_hash -> Text,
    }
}

/// An account; its password hash never leaves the service.
#[derive(Debug, Clone, Queryable, Selectable, Insertable, serde::Serialize, Outbox)]
#[diesel(table_name = accounts)]
#[procon(topic = "accounts", entity = "account", key = id)]
struct Account {
    id: i64,
    email: String,
    #[procon(skip)]
    password_hash: String,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    tracing_subscriber::fmt()
        .with_env_filter(std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()))
        .init();

    let on_kinesis = std::env::var("PROCON_TRANSPORT").as_deref() == Ok("kinesis");
    // The broker: the configured one, or an in-process mock cluster (not needed on Kinesis).
    let mock;
    let brokers = match std::env::var("PROCON_BROKERS") {
        Ok(brokers) => brokers,
        Err(_) if on_kinesis => String::new(),
        Err(_) => {
            mock = MockCluster::new(1)?;
            mock.create_topic("accounts", 3, 1)?;
            println!("no PROCON_BROKERS set: using librdkafka's in-process mock cluster");
            mock.bootstrap_servers()
        }
    };
    let kinesis = procon::KinesisConfig {
        endpoint_url: Some(
            std::env::var("PROCON_KINESIS_ENDPOINT_URL")
                .unwrap_or_else(|_| "http://127.0.0.1:4568".into()),
        ),
        ..procon::KinesisConfig::default()
    };
    if on_kinesis {
        // The relay parks events for a stream that does not exist: make it first.
        kinesis_reader::ensure_stream(&kinesis, "accounts").await?;
    }

    // The database: a fresh schema with procon's tables and ours.
    let base = std::env::var("PROCON_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    PgConnection::establish(&base)?.batch_execute(
        "DROP SCHEMA IF EXISTS procon_quickstart CASCADE; CREATE SCHEMA procon_quickstart;",
    )?;
    let url = format!(
        "{base}{}options=-csearch_path%3Dprocon_quickstart",
        if base.contains('?') { '&' } else { '?' }
    );
    let mut conn = PgConnection::establish(&url)?;
    procon::migrate(&mut conn)?;
    conn.batch_execute(
        "CREATE TABLE accounts (id BIGINT PRIMARY KEY, email TEXT NOT NULL, password_hash TEXT NOT NULL)",
    )?;

    // The relay publishes each event once its transaction commits.
    let config = if on_kinesis {
        procon::Config::new_kinesis(url, kinesis.clone())
    } else {
        procon::Config::new(url, brokers.clone())
    };
    let runtime = procon::start(config)?;

    let ada = Account {
        id: 1,
        email: "ada@example.com".into(),
        password_hash: "x1".into(),
    };
    // The ids of this run's events: the topic may hold earlier runs' events too.
    let mut ours = std::collections::HashSet::new();
    ours.insert(conn.transaction(|conn| {
        diesel::insert_into(accounts::table)
            .values(&ada)
            .execute(conn)?;
        procon::OutboxEvent::created(&ada)
            .metadata("request_id", "req-1")
            .emit(conn)
    })?);

    let renamed = Account {
        email: "ada@lovelace.example".into(),
        ..ada.clone()
    };
    ours.insert(conn.transaction(|conn| {
        diesel::update(accounts::table.find(1))
            .set(accounts::email.eq(&renamed.email))
            .execute(conn)?;
        renamed.emit_updated(&ada, conn)
    })?);

    // Rolled back: neither the row nor its event exists.
    let ghost = Account {
        id: 2,
        email: "ghost@example.com".into(),
        password_hash: "x2".into(),
    };
    let rolled_back = conn.transaction(|conn| {
        diesel::insert_into(accounts::table)
            .values(&ghost)
            .execute(conn)?;
        ghost.emit_created(conn)?;
        Err::<(), _>(diesel::result::Error::RollbackTransaction)
    });
    println!("rolled back a transaction that emitted account 2: {rolled_back:?}");

    ours.insert(conn.transaction(|conn| {
        diesel::delete(accounts::table.find(1)).execute(conn)?;
        renamed.emit_deleted(conn)
    })?);

    let seen = if on_kinesis {
        kinesis_reader::show(&kinesis, "accounts", &ours).await?
    } else {
        show_from_kafka(&brokers, &ours).await?
    };
    runtime.shutdown().await?;
    if seen < 3 {
        return Err(format!("only {seen} of 3 events arrived within 30 s").into());
    }
    println!("\n3 committed events published in order; the rolled-back one never existed.");
    Ok(())
}

/// Reads the topic as any Kafka consumer would: every partition it has (a real broker may
/// have more than the mock's 3), printing this run's events only. Returns how many it saw.
async fn show_from_kafka(
    brokers: &str,
    ours: &std::collections::HashSet<uuid::Uuid>,
) -> Result<usize, BoxError> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "quickstart-reader")
        .set("enable.auto.commit", "false")
        .create()?;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let partitions = loop {
        // The relay's first send creates the topic on a broker that auto-creates topics.
        let metadata = consumer.fetch_metadata(Some("accounts"), Duration::from_secs(5))?;
        let count = metadata
            .topics()
            .first()
            .filter(|topic| topic.error().is_none())
            .map_or(0, |topic| topic.partitions().len());
        if count > 0 || std::time::Instant::now() > deadline {
            break count;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let mut assignment = TopicPartitionList::new();
    for partition in 0..partitions as i32 {
        assignment.add_partition_offset("accounts", partition, Offset::Beginning)?;
    }
    consumer.assign(&assignment)?;
    let mut seen = 0;
    while seen < 3 && std::time::Instant::now() < deadline {
        let Some(message) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let message = message?;
        let event_id = message
            .headers()
            .and_then(|headers| {
                headers
                    .iter()
                    .find(|h| h.key == "procon-event-id")
                    .and_then(|h| h.value)
                    .map(|v| String::from_utf8_lossy(v).into_owned())
            })
            .unwrap_or_default();
        if !ours.iter().any(|id| id.to_string() == event_id) {
            continue; // an earlier run's event
        }
        seen += 1;
        println!(
            "\n── partition {} offset {} key {:?}",
            message.partition(),
            message.offset(),
            message.key().map(String::from_utf8_lossy)
        );
        if let Some(headers) = message.headers() {
            for header in headers.iter() {
                println!(
                    "   {}: {}",
                    header.key,
                    header
                        .value
                        .map(String::from_utf8_lossy)
                        .unwrap_or_default()
                );
            }
        }
        let envelope: serde_json::Value =
            serde_json::from_slice(message.payload().unwrap_or_default())?;
        println!("{}", serde_json::to_string_pretty(&envelope)?);
    }
    Ok(seen)
}

/// Kinesis: the stream, and reading it as any Kinesis reader would (`GetRecords` on every
/// shard from its oldest record), headers taken from procon's record format.
mod kinesis_reader {
    use std::time::{Duration, Instant};

    use aws_sdk_kinesis::types::ShardIteratorType;
    use procon::runtime::transport::kinesis::{self, client, record};

    use super::BoxError;

    /// Creates `stream` (2 shards) unless it exists, and waits until it is active.
    pub async fn ensure_stream(
        config: &procon::KinesisConfig,
        stream: &str,
    ) -> Result<(), BoxError> {
        let client = client(config)?;
        kinesis::ensure_stream(&client, stream, 2, Duration::from_secs(10))
            .await
            .map_err(|error| {
                format!(
                    "Kinesis at {}: {error} (the emulator: scripts/kinesis.sh start)",
                    config.endpoint_url.as_deref().unwrap_or("AWS")
                )
            })?;
        Ok(())
    }

    /// Prints this run's events of `stream`; returns how many it saw (waits up to 30 s for 3).
    pub async fn show(
        config: &procon::KinesisConfig,
        stream: &str,
        ours: &std::collections::HashSet<uuid::Uuid>,
    ) -> Result<usize, BoxError> {
        let client = client(config)?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let mut found = Vec::new();
            let shards = client.list_shards().stream_name(stream).send().await?;
            for shard in shards.shards() {
                let mut iterator = client
                    .get_shard_iterator()
                    .stream_name(stream)
                    .shard_id(shard.shard_id())
                    .shard_iterator_type(ShardIteratorType::TrimHorizon)
                    .send()
                    .await?
                    .shard_iterator()
                    .map(str::to_owned);
                while let Some(current) = iterator.take() {
                    let page = client.get_records().shard_iterator(current).send().await?;
                    for r in page.records() {
                        let decoded = record::decode(r.data().as_ref())?;
                        let event_id = decoded
                            .headers
                            .iter()
                            .find(|(name, _)| name == "procon-event-id")
                            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
                            .unwrap_or_default();
                        if ours.iter().any(|id| id.to_string() == event_id) {
                            found.push((
                                shard.shard_id().to_owned(),
                                r.clone(),
                                decoded.headers.clone(),
                            ));
                        }
                    }
                    if !page.records().is_empty() || page.millis_behind_latest() != Some(0) {
                        iterator = page.next_shard_iterator().map(str::to_owned);
                    }
                }
            }
            if found.len() >= 3 || Instant::now() > deadline {
                for (shard, r, headers) in &found {
                    println!(
                        "\n── {shard} sequence {} partition key {:?}",
                        r.sequence_number(),
                        r.partition_key()
                    );
                    for (name, value) in headers {
                        println!("   {name}: {}", String::from_utf8_lossy(value));
                    }
                    let payload = record::decode(r.data().as_ref())?.payload;
                    let envelope: serde_json::Value = serde_json::from_slice(payload)?;
                    println!("{}", serde_json::to_string_pretty(&envelope)?);
                }
                return Ok(found.len());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}
